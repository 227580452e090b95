//! Moves data kept by older versions of the service to today's layout, once, at open.

use super::blobs::LocalBlobs;
use crate::error::Result;

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
