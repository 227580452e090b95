//! Upload chunk assembly: a declared size, a configured limit and any sequence of
//! chunks, fed to the buffer the UploadProfileImage handler uses, checked against a
//! model of the contract:
//! - a declared size over the limit is refused before any byte (file-too-large);
//! - a chunk over MAX_CHUNK_BYTES is refused (field-invalid), as is one that takes the
//!   total past the limit (file-too-large) or past a declared size (field-invalid);
//! - at the end the bytes are exactly the chunks in order, refused when there are none
//!   (field-missing) or when they fall short of the declared size (field-invalid);
//! - every refusal is INVALID_ARGUMENT's kind (`Error::Invalid`), never INTERNAL.
//!
//! The handler stops at the first refusal, and so does this target.
#![no_main]

// Everything this target takes from the service crate.
use profile_image::api::{MAX_CHUNK_BYTES, UploadBuffer};
use profile_image::error::{Error, reason};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Bytes fed in one run at most, so a run stays fast whatever the limit.
const MAX_FED: u64 = 32 * 1024 * 1024;

#[derive(Debug, Arbitrary)]
enum Chunk {
    Bytes(Vec<u8>),
    /// A large chunk from a few input bytes: `len` is taken modulo 2 x MAX_CHUNK_BYTES + 1.
    Fill {
        byte: u8,
        len: u32,
    },
}

impl Chunk {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Chunk::Bytes(bytes) => bytes.clone(),
            Chunk::Fill { byte, len } => {
                let len = *len as usize % (2 * MAX_CHUNK_BYTES + 1);
                vec![*byte; len]
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Upload {
    limit: u64,
    /// 0 = not declared.
    declared: u64,
    chunks: Vec<Chunk>,
}

fn reason_of(error: &Error) -> &'static str {
    match error {
        Error::Invalid(violations) if violations.len() == 1 => violations[0].reason,
        other => panic!("an upload refusal that is not INVALID_ARGUMENT: {other:?}"),
    }
}


fuzz_target!(|upload: Upload| {
    let Upload {
        limit,
        declared,
        chunks,
    } = upload;
    // Any configured limit (the service refuses 0 at start-up).
    let limit = limit.max(1);
    let mut buffer = match UploadBuffer::new(limit, declared) {
        Ok(buffer) => {
            assert!(
                declared <= limit,
                "a declared size over the limit was accepted"
            );
            buffer
        }
        Err(error) => {
            assert!(declared > limit, "refused a declared size within the limit");
            assert_eq!(reason_of(&error), reason::FILE_TOO_LARGE);
            return;
        }
    };
    let mut expected: Vec<u8> = Vec::new();
    for chunk in &chunks {
        let chunk = chunk.bytes();
        let total = expected.len() as u64 + chunk.len() as u64;
        if total > MAX_FED {
            return;
        }
        let refusal = if chunk.len() > MAX_CHUNK_BYTES {
            Some(reason::FIELD_INVALID)
        } else if total > limit {
            Some(reason::FILE_TOO_LARGE)
        } else if declared > 0 && total > declared {
            Some(reason::FIELD_INVALID)
        } else {
            None
        };
        match (buffer.push(&chunk), refusal) {
            (Ok(()), None) => expected.extend_from_slice(&chunk),
            (Err(error), Some(want)) => {
                assert_eq!(reason_of(&error), want, "{error}");
                return;
            }
            (got, want) => panic!(
                "chunk of {} at {}: got {got:?}, want a refusal {want:?}",
                chunk.len(),
                expected.len()
            ),
        }
    }
    let refusal = if expected.is_empty() {
        Some(reason::FIELD_MISSING)
    } else if declared > 0 && declared != expected.len() as u64 {
        Some(reason::FIELD_INVALID)
    } else {
        None
    };
    match (buffer.finish(), refusal) {
        (Ok(bytes), None) => assert!(
            bytes[..] == expected[..],
            "the bytes are the chunks in order"
        ),
        (Err(error), Some(want)) => assert_eq!(reason_of(&error), want, "{error}"),
        (got, want) => panic!(
            "finish after {} bytes: got {:?}, want a refusal {want:?}",
            expected.len(),
            got.map(|b| b.len())
        ),
    }
});
