//! Collects an upload's chunks, enforcing the limits while bytes arrive.

use bytes::Bytes;

use crate::error::{Error, Result, reason};

/// Largest chunk an upload message may carry.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

pub struct UploadBuffer {
    limit: u64,
    declared: Option<u64>,
    bytes: Vec<u8>,
}

impl UploadBuffer {
    /// `declared` is the size the client announced (0 = unknown). An announced size over
    /// the limit is refused before any byte is read.
    pub fn new(limit: u64, declared: u64) -> Result<Self> {
        if declared > limit {
            return Err(too_large("metadata.size_bytes", limit));
        }
        let declared = (declared > 0).then_some(declared);
        // The declared size is the client's word: reserve at most one chunk up front
        // and grow as bytes really arrive (a client that declares 10 MiB and stalls
        // must not hold 10 MiB, nor a huge declaration abort the process).
        let capacity = declared.unwrap_or(0).min(limit).min(MAX_CHUNK_BYTES as u64) as usize;
        Ok(UploadBuffer {
            limit,
            declared,
            bytes: Vec::with_capacity(capacity),
        })
    }

    /// Appends one chunk; fails as soon as the total passes the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        if chunk.len() > MAX_CHUNK_BYTES {
            return Err(Error::invalid(
                "chunk",
                reason::FIELD_INVALID,
                format!(
                    "a chunk may carry at most {MAX_CHUNK_BYTES} bytes, this one has {}",
                    chunk.len()
                ),
            ));
        }
        let total = self.bytes.len() as u64 + chunk.len() as u64;
        if total > self.limit {
            return Err(too_large("chunk", self.limit));
        }
        if let Some(declared) = self.declared
            && total > declared
        {
            return Err(Error::invalid(
                "metadata.size_bytes",
                reason::FIELD_INVALID,
                format!("more bytes arrived than the {declared} declared"),
            ));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The complete file, once the stream ended.
    pub fn finish(self) -> Result<Bytes> {
        if self.bytes.is_empty() {
            return Err(Error::invalid(
                "chunk",
                reason::FIELD_MISSING,
                "the upload carried no image bytes",
            ));
        }
        if let Some(declared) = self.declared
            && declared != self.bytes.len() as u64
        {
            return Err(Error::invalid(
                "metadata.size_bytes",
                reason::FIELD_INVALID,
                format!(
                    "{} bytes arrived but {declared} were declared",
                    self.bytes.len()
                ),
            ));
        }
        Ok(Bytes::from(self.bytes))
    }
}

fn too_large(field: &str, limit: u64) -> Error {
    Error::invalid(
        field,
        reason::FILE_TOO_LARGE,
        format!("the file is larger than the {limit}-byte limit"),
    )
}
