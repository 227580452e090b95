//! Moves data kept by older versions of the service to today's layout, once, at open.

use super::blobs::LocalBlobs;
use crate::error::{Error, Result};

/// Moves blobs an older version kept inside sled (tree `blob_chunks`: hash ++ chunk
/// index -> bytes) to files, once.
pub(super) fn chunks_to_files(db: &sled::Db, blobs: &LocalBlobs) -> Result<()> {
    const LEGACY_TREE: &[u8] = b"blob_chunks";
    if !db.tree_names().iter().any(|name| name == LEGACY_TREE) {
        return Ok(());
    }
    let chunks = db.open_tree(LEGACY_TREE)?;
    let mut moved = 0usize;
    let mut current: Option<(Vec<u8>, Vec<u8>)> = None;
    for entry in chunks.iter() {
        let (key, value) = entry?;
        let hash = key.get(..32).unwrap_or_default();
        match &mut current {
            Some((h, bytes)) if h.as_slice() == hash => bytes.extend_from_slice(&value),
            _ => {
                if let Some((_, bytes)) = current.take() {
                    drop(blobs.stage(&bytes)?);
                    moved += 1;
                }
                current = Some((hash.to_vec(), value.to_vec()));
            }
        }
    }
    if let Some((_, bytes)) = current {
        drop(blobs.stage(&bytes)?);
        moved += 1;
    }
    blobs.wait_for_sweeper();
    db.flush()?;
    db.drop_tree(LEGACY_TREE)?;
    tracing::info!(blobs = moved, "moved image bytes from sled to blob files");
    Ok(())
}

/// The layout this version writes. 1 (never recorded): users keyed by bare id. 2: users
/// of tenants other than `default` keyed `0x01 tenant 0x00 id`, and records carry their
/// tenant; a layout-1 store is a valid layout-2 store whose users are all in `default`.
pub const SCHEMA_VERSION: u64 = 2;
const META_TREE: &[u8] = b"meta";
const SCHEMA_KEY: &[u8] = b"schema_version";

/// Records [`SCHEMA_VERSION`] in the store, and refuses a store written by a newer
/// version of the service (whose layout this one would misread or damage).
pub(super) fn record_schema_version(db: &sled::Db) -> Result<()> {
    let meta = db.open_tree(META_TREE)?;
    let stored = meta
        .get(SCHEMA_KEY)?
        .map_or(1, |v| super::be_u64(v.as_ref()));
    if stored > SCHEMA_VERSION {
        return Err(Error::internal(format!(
            "the data dir has schema version {stored}, written by a newer version of the \
             service; this one reads up to {SCHEMA_VERSION}"
        )));
    }
    if stored < SCHEMA_VERSION {
        meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
        tracing::info!(
            from = stored,
            to = SCHEMA_VERSION,
            "recorded the store's schema version"
        );
    }
    Ok(())
}
