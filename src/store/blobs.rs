//! Content-addressed blobs in sled: the key is the BLAKE3 hash of the bytes plus a chunk
//! index, so a blob key is written once and never changes meaning. Values stay at or
//! under 128 KiB, which keeps sled's pages small.
//!
//! Chunks are written before the metadata that references them is committed. A blob
//! whose hash is in `pending` may be unreferenced: after every write (committed or not)
//! and at start-up, `settle` deletes the chunks of pending blobs that no record
//! references, so bytes of a request that failed half way are not leaked.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::store::records::BlobRef;

/// Largest value written to sled.
pub const MAX_CHUNK_BYTES: usize = 128 * 1024;

/// The blob trees, and the in-process pins that stop clean-up from deleting chunks a
/// concurrent request is writing or about to commit.
#[derive(Clone)]
pub struct BlobStore {
    /// hash ++ chunk index (u32 BE) -> bytes
    chunks: sled::Tree,
    /// hash -> reference count (u64 BE); absent = unreferenced
    refs: sled::Tree,
    /// hash -> () : chunks that may be unreferenced
    pending: sled::Tree,
    pins: Arc<Mutex<HashMap<[u8; 32], usize>>>,
}

impl BlobStore {
    pub(super) fn new(chunks: sled::Tree, refs: sled::Tree, pending: sled::Tree) -> Self {
        BlobStore {
            chunks,
            refs,
            pending,
            pins: Arc::default(),
        }
    }

    pub(super) fn refs_tree(&self) -> &sled::Tree {
        &self.refs
    }

    pub(super) fn pending_tree(&self) -> &sled::Tree {
        &self.pending
    }

    /// Writes `bytes` as a blob and pins it until the returned guard is settled.
    pub fn stage(&self, bytes: &[u8]) -> Result<StagedBlob> {
        let hash = *blake3::hash(bytes).as_bytes();
        self.pin(hash);
        let staged = StagedBlob {
            blob: BlobRef {
                hash: hash.to_vec(),
                len: bytes.len() as u64,
            },
            store: self.clone(),
        };
        self.pending.insert(hash, &[])?;
        for (index, chunk) in bytes.chunks(MAX_CHUNK_BYTES).enumerate() {
            self.chunks.insert(chunk_key(&hash, index as u32), chunk)?;
        }
        Ok(staged)
    }

    /// Reads a whole blob.
    pub fn read(&self, blob: &BlobRef) -> Result<Bytes> {
        let len = usize::try_from(blob.len).map_err(Error::internal)?;
        let count = len.div_ceil(MAX_CHUNK_BYTES).max(1);
        if count == 1 {
            // sled's value is reference counted: serve it without copying.
            return Ok(Bytes::from_owner(self.chunk(&blob.hash, 0)?));
        }
        let mut out = BytesMut::with_capacity(len);
        for index in 0..count {
            out.extend_from_slice(&self.chunk(&blob.hash, index as u32)?);
        }
        Ok(out.freeze())
    }

    fn chunk(&self, hash: &[u8], index: u32) -> Result<sled::IVec> {
        let hash: &[u8; 32] = hash
            .try_into()
            .map_err(|_| Error::internal("malformed blob hash"))?;
        self.chunks
            .get(chunk_key(hash, index))?
            .ok_or_else(|| Error::internal(format!("blob chunk {index} missing")))
    }

    /// Deletes the chunks of every pending blob that nothing references and nobody has
    /// pinned. Called at start-up (after a crash) and after deletes.
    pub fn sweep(&self) -> Result<usize> {
        let mut deleted = 0;
        for entry in self.pending.iter() {
            let (hash, _) = entry?;
            if let Ok(hash) = <[u8; 32]>::try_from(hash.as_ref()) {
                deleted += usize::from(self.settle_one(hash)?);
            }
        }
        Ok(deleted)
    }

    fn settle_one(&self, hash: [u8; 32]) -> Result<bool> {
        // Holding the pin lock while deleting means no request can pin (and so rewrite)
        // this hash half way through the deletion.
        let pins = self
            .pins
            .lock()
            .map_err(|_| Error::internal("blob pin lock poisoned"))?;
        if pins.contains_key(&hash) {
            return Ok(false);
        }
        let referenced = self.refs.contains_key(hash)?;
        if !referenced {
            for key in self.chunks.scan_prefix(hash).keys() {
                self.chunks.remove(key?)?;
            }
        }
        self.pending.remove(hash)?;
        Ok(!referenced)
    }

    fn pin(&self, hash: [u8; 32]) {
        if let Ok(mut pins) = self.pins.lock() {
            *pins.entry(hash).or_default() += 1;
        }
    }

    fn unpin(&self, hash: [u8; 32]) {
        if let Ok(mut pins) = self.pins.lock()
            && let Some(count) = pins.get_mut(&hash)
        {
            *count -= 1;
            if *count == 0 {
                pins.remove(&hash);
            }
        }
    }
}

fn chunk_key(hash: &[u8; 32], index: u32) -> [u8; 36] {
    let mut key = [0u8; 36];
    key[..32].copy_from_slice(hash);
    key[32..].copy_from_slice(&index.to_be_bytes());
    key
}

/// A blob written but not yet committed. Dropping it unpins it and, if no committed
/// record references it, deletes its chunks.
pub struct StagedBlob {
    blob: BlobRef,
    store: BlobStore,
}

impl StagedBlob {
    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if let Ok(hash) = <[u8; 32]>::try_from(self.blob.hash.as_slice()) {
            self.store.unpin(hash);
            if let Err(error) = self.store.settle_one(hash) {
                tracing::warn!(%error, "could not clean up a staged blob; the next start-up sweep will");
            }
        }
    }
}
