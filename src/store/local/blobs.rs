//! Content-addressed blobs as files: `objects/ab/cd/<BLAKE3 hex>` under the data dir.
//! A file's name is the hash of its bytes, so a file is written once and never changes
//! meaning; sled keeps only the small metadata (reference counts and the pending set).
//!
//! The blobs written together for a media item (its original and renditions) share
//! one file, a pack: its name is a hash of their hashes and lengths, and each blob's
//! record says where in it its bytes start. One file per set instead of four is fewer
//! file-system operations and no 4 KiB block per 2.5 KB rendition. Reference counts,
//! pins and clean-up work on files: a pack goes when no blob of it is referenced. A blob
//! added later (a rendition made on first read) is a file of its own.
//!
//! Bytes are written before the metadata that references them is committed, pinned in
//! memory until then. The sweeper (a background thread, never a runtime worker and
//! never a `Drop`) deletes a blob that no record references and no request has pinned:
//! - when a request's pin is dropped (its commit failed, or it was superseded): that
//!   blob, checked by a read, with no write on the success path;
//! - when a commit released the last reference: the commit marks the blob `pending`
//!   in its transaction, and the sweeper settles the pending set;
//! - after a crash, files written by requests that never committed (no pending mark was
//!   written for them, which saves two sled writes per blob on every set): the start-up
//!   scan of the blob directory, which the sweeper runs in the background.
//!
//! Durability: files are written to `objects/tmp` and renamed into place without a
//! per-file fsync; the group-commit flusher ([`super::durability`]) syncs the whole
//! filesystem once before it flushes sled, so every acknowledged write has its bytes
//! on disk before its metadata.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::model::{BlobRef, Packed};
use crate::store::StagedBlob;
use crate::store::cache::BlobCache;

/// Bytes of renditions the local store keeps in memory (a file read is cheap: small).
const LOCAL_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The blob files, their metadata trees, and the in-process pins that stop clean-up
/// from deleting a blob a concurrent request is writing or about to commit.
#[derive(Clone)]
pub struct LocalBlobs {
    shared: Arc<Shared>,
    /// Clean-up requests for the sweeper thread (which exits once every sender is gone).
    sweeper: mpsc::Sender<Sweep>,
}

struct Shared {
    files: BlobFiles,
    cache: BlobCache,
    /// hash -> reference count (u64 BE); absent = unreferenced
    refs: sled::Tree,
    /// hash -> () : blobs that may be unreferenced
    pending: sled::Tree,
    pins: Mutex<HashMap<[u8; 32], usize>>,
}

enum Sweep {
    /// A staged blob's guard was dropped: settle that blob.
    One([u8; 32]),
    /// Settle every blob file on disk (after a start: files of requests a crash cut
    /// off before their commit).
    Orphans,
    /// References were released: settle every pending blob.
    All,
    /// Answer once every request sent before this one is done (tests, shutdown).
    Barrier(mpsc::Sender<()>),
}

impl LocalBlobs {
    /// Opens the blob directory under `data_dir` and starts the sweeper thread.
    pub(super) fn open(data_dir: &Path, refs: sled::Tree, pending: sled::Tree) -> Result<Self> {
        let shared = Arc::new(Shared {
            files: BlobFiles::open(&data_dir.join("objects"))?,
            cache: BlobCache::new(LOCAL_CACHE_BYTES),
            refs,
            pending,
            pins: Mutex::default(),
        });
        let (sweeper, requests) = mpsc::channel();
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("blob-sweeper".into())
            .spawn(move || worker.run_sweeper(&requests))
            .map_err(Error::internal)?;
        Ok(LocalBlobs { shared, sweeper })
    }

    pub(super) fn refs_tree(&self) -> &sled::Tree {
        &self.shared.refs
    }

    pub(super) fn pending_tree(&self) -> &sled::Tree {
        &self.shared.pending
    }

    /// The directory the blob files live in (for the flusher's filesystem sync).
    pub(super) fn root(&self) -> &Path {
        &self.shared.files.root
    }

    /// Writes `bytes` as a blob of its own and pins it until the returned guard drops.
    /// Blocking: call it from a blocking thread.
    pub fn stage(&self, bytes: &[u8]) -> Result<StagedBlob> {
        let blob = BlobRef::of(bytes);
        // From here on, dropping the guard unpins and queues the clean-up.
        let pin = Arc::new(self.pin(blob.hash));
        self.shared.files.write(&blob.hash, &[bytes])?;
        Ok(StagedBlob::new(blob, Box::new(pin)))
    }

    /// Writes `blobs` into one pack file (one create, write and rename instead of one
    /// per blob, and one file's slack instead of one per blob) and pins it until every
    /// returned guard drops. A single blob is stored on its own. Blocking.
    pub fn stage_pack(&self, blobs: &[Bytes]) -> Result<Vec<StagedBlob>> {
        match blobs {
            [] => return Ok(Vec::new()),
            [single] => return Ok(vec![self.stage(single)?]),
            _ => {}
        }
        let mut refs: Vec<BlobRef> = blobs.iter().map(|b| BlobRef::of(b)).collect();
        let pack = pack_name(&refs);
        let mut offset = 0;
        for blob in &mut refs {
            blob.packed = Some(Packed { pack, offset });
            offset += blob.len;
        }
        let pin = Arc::new(self.pin(pack));
        let parts: Vec<&[u8]> = blobs.iter().map(|b| b.as_ref()).collect();
        self.shared.files.write(&pack, &parts)?;
        Ok(refs
            .into_iter()
            .map(|blob| StagedBlob::new(blob, Box::new(pin.clone())))
            .collect())
    }

    /// Pins the file `key` until the returned guard drops.
    fn pin(&self, key: [u8; 32]) -> Pin {
        self.shared.pin(key);
        Pin {
            key,
            blobs: self.clone(),
        }
    }

    /// Reads a whole blob. A blob that is gone (deleted by a concurrent change) is
    /// [`Error::BlobMissing`], which readers answer by reading the state again.
    pub fn read(&self, blob: &BlobRef) -> Result<Bytes> {
        let hash = blob.hash;
        if let Some(bytes) = self.shared.cache.get(&hash) {
            return Ok(bytes);
        }
        let bytes = match blob.packed {
            None => self.shared.files.read(&hash)?,
            Some(packed) => self
                .shared
                .files
                .read_at(&packed.pack, packed.offset, blob.len)?,
        };
        if bytes.len() as u64 != blob.len {
            return Err(Error::BlobMissing);
        }
        let bytes = Bytes::from(bytes);
        self.shared.cache.insert(hash, bytes.clone());
        Ok(bytes)
    }

    /// Deletes every pending blob that nothing references and nobody has pinned, now,
    /// on this thread. Used at start-up; everything else asks the sweeper.
    pub fn sweep(&self) -> Result<usize> {
        self.shared.sweep_pending()
    }

    /// Asks the sweeper to settle every pending blob (after references were released).
    pub fn request_sweep(&self) {
        let _ = self.sweeper.send(Sweep::All);
    }

    /// Asks the sweeper to look at every blob file once (after a start).
    pub fn request_orphan_scan(&self) {
        let _ = self.sweeper.send(Sweep::Orphans);
    }

    /// Waits (blocking) until the sweeper has handled every request sent so far.
    pub fn wait_for_sweeper(&self) {
        let (done, finished) = mpsc::channel();
        if self.sweeper.send(Sweep::Barrier(done)).is_ok() {
            let _ = finished.recv();
        }
    }

    /// Bytes of blob files on disk (apparent size), for reports.
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.shared.files.root)
    }
}

impl Shared {
    fn run_sweeper(&self, requests: &mpsc::Receiver<Sweep>) {
        while let Ok(first) = requests.recv() {
            // Take everything queued, so a burst of deletes costs one scan.
            let mut batch = vec![first];
            batch.extend(requests.try_iter());
            let mut barriers = Vec::new();
            let (mut all, mut orphans) = (false, false);
            let mut ones = Vec::new();
            for request in batch {
                match request {
                    Sweep::One(hash) => ones.push(hash),
                    Sweep::All => all = true,
                    Sweep::Orphans => orphans = true,
                    Sweep::Barrier(done) => barriers.push(done),
                }
            }
            let mut result = ones
                .into_iter()
                .try_for_each(|hash| self.settle(hash).map(|_| ()));
            if all {
                result = result.and(self.sweep_pending().map(|_| ()));
            }
            if orphans {
                match self.sweep_orphans() {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(blobs = deleted, "removed blobs left by interrupted writes");
                    }
                    Err(error) => result = Err(error),
                }
            }
            if let Err(error) = result {
                tracing::warn!(%error, "blob clean-up failed; the next sweep retries it");
            }
            for done in barriers {
                let _ = done.send(());
            }
        }
    }

    fn sweep_pending(&self) -> Result<usize> {
        let mut deleted = 0;
        for entry in self.pending.iter() {
            let (hash, _) = entry?;
            if let Ok(hash) = <[u8; 32]>::try_from(hash.as_ref()) {
                deleted += usize::from(self.settle(hash)?);
                self.pending.remove(hash)?;
            }
        }
        Ok(deleted)
    }

    /// Settles every blob file there is.
    fn sweep_orphans(&self) -> Result<usize> {
        let mut deleted = 0;
        for hash in self.files.hashes() {
            deleted += usize::from(self.settle(hash)?);
        }
        Ok(deleted)
    }

    /// Deletes one blob if nothing references it and nobody pinned it. Whether it did.
    fn settle(&self, hash: [u8; 32]) -> Result<bool> {
        // Holding the pin lock while deleting means no request can pin (and so rewrite)
        // this hash half way through the deletion.
        let pins = self
            .pins
            .lock()
            .map_err(|_| Error::internal("blob pin lock poisoned"))?;
        if pins.contains_key(&hash) {
            return Ok(false);
        }
        if self.refs.contains_key(hash)? {
            return Ok(false);
        }
        self.cache.remove(&hash);
        self.files.remove(&hash)?;
        Ok(true)
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

/// The files themselves.
struct BlobFiles {
    root: PathBuf,
    tmp: PathBuf,
    /// Makes temporary file names unique within the process.
    next_tmp: AtomicU64,
}

impl BlobFiles {
    /// Opens (or creates) the blob directory and removes temporary files a crash left.
    fn open(root: &Path) -> Result<Self> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_error)?;
        for entry in fs::read_dir(&tmp).map_err(io_error)?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        Ok(BlobFiles {
            root: root.to_path_buf(),
            tmp,
            next_tmp: AtomicU64::new(0),
        })
    }

    fn path(&self, hash: &[u8; 32]) -> PathBuf {
        let hex = blake3::Hash::from_bytes(*hash).to_hex();
        self.root
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(hex.as_str())
    }

    /// Writes the file `key` with `parts` one after the other, unless a complete one is
    /// there already (a name is a hash of the content, so same name, same bytes).
    fn write(&self, key: &[u8; 32], parts: &[&[u8]]) -> Result<()> {
        let path = self.path(key);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if fs::metadata(&path).is_ok_and(|m| m.len() == len as u64) {
            return Ok(());
        }
        // Written under a temporary name and renamed, so the final name never shows a
        // half-written file.
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("{}.{n}", std::process::id()));
        let written = fs::File::create(&tmp)
            .and_then(|mut file| parts.iter().try_for_each(|part| file.write_all(part)));
        if let Err(error) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(error));
        }
        let renamed = match fs::rename(&tmp, &path) {
            Err(error) if error.kind() == ErrorKind::NotFound => {
                // The fan-out directory does not exist yet.
                path.parent()
                    .map_or(Ok(()), fs::create_dir_all)
                    .and_then(|()| fs::rename(&tmp, &path))
            }
            other => other,
        };
        if let Err(error) = renamed {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(error));
        }
        Ok(())
    }

    /// The hashes of every blob file (temporary files and stray names skipped).
    fn hashes(&self) -> impl Iterator<Item = [u8; 32]> {
        let entries = |dir: &Path| fs::read_dir(dir).into_iter().flatten().flatten();
        entries(&self.root)
            .filter(|e| e.file_name() != "tmp")
            .flat_map(move |outer| entries(&outer.path()).collect::<Vec<_>>())
            .flat_map(move |inner| entries(&inner.path()).collect::<Vec<_>>())
            .filter_map(|file| {
                let name = file.file_name();
                blake3::Hash::from_hex(name.to_str()?)
                    .ok()
                    .map(|h| *h.as_bytes())
            })
    }

    fn read(&self, key: &[u8; 32]) -> Result<Vec<u8>> {
        fs::read(self.path(key)).map_err(read_error)
    }

    /// `len` bytes at `offset` of the file `key` (a blob in a pack).
    fn read_at(&self, key: &[u8; 32], offset: u64, len: u64) -> Result<Vec<u8>> {
        let file = fs::File::open(self.path(key)).map_err(read_error)?;
        let mut bytes = vec![0; usize::try_from(len).map_err(Error::internal)?];
        file.read_exact_at(&mut bytes, offset).map_err(read_error)?;
        Ok(bytes)
    }

    fn remove(&self, hash: &[u8; 32]) -> Result<()> {
        match fs::remove_file(self.path(hash)) {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(io_error(error)),
            _ => Ok(()),
        }
    }
}

/// A file that is gone, or shorter than its record says, was deleted by a concurrent
/// change: the reader reads the state again.
fn read_error(error: std::io::Error) -> Error {
    match error.kind() {
        ErrorKind::NotFound | ErrorKind::UnexpectedEof => Error::BlobMissing,
        _ => io_error(error),
    }
}

/// A pack's name: derived from its blobs' hashes and lengths in order, which fix its
/// bytes, in a hash domain of its own so it never equals a single blob's name.
fn pack_name(blobs: &[BlobRef]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("profile-image 2026-12 blob pack");
    for blob in blobs {
        hasher.update(&blob.hash);
        hasher.update(&blob.len.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}

fn io_error(error: std::io::Error) -> Error {
    Error::storage_io(&error, "blob storage")
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The pin of a file written but not yet committed (shared by the guards of a pack's
/// blobs). Dropping it unpins the file and queues its clean-up (deleted if no committed
/// record references it) for the sweeper thread: no I/O in `drop`.
struct Pin {
    key: [u8; 32],
    blobs: LocalBlobs,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.blobs.shared.unpin(self.key);
        let _ = self.blobs.sweeper.send(Sweep::One(self.key));
    }
}
