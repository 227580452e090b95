//! The sled store: profile state, media records and download jobs in sled; image bytes
//! as content-addressed files beside it ([`BlobStore`]).
//!
//! Rules that keep the server alive under concurrent writes:
//! - every transaction and scan runs on a blocking thread ([`Store::transact`],
//!   [`Store::list_media`]), never on a runtime worker; point reads stay inline;
//! - durability is group commit ([`durability`]): a writer waits for a ticket that the
//!   one flusher thread completes, so sled's flush is never called concurrently;
//! - a `Drop` never touches storage: staged blobs queue their clean-up for the
//!   sweeper thread.

mod blobs;
mod cache;
mod durability;
pub mod records;
mod space;
mod tx;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

pub use blobs::{BlobStore, StagedBlob};
use durability::GroupCommit;
use records::{DownloadJob, MediaRecord, ProfileRecord};
pub use space::{FreeSpace, Reserve};
pub use tx::Tx;

use crate::error::{Error, Result};
use crate::model::UserId;

/// The result type inside a transaction closure.
pub type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

/// Aborts a transaction with a domain error.
pub fn abort<T>(error: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(error))
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// user -> ProfileRecord
    profiles: sled::Tree,
    /// user -> last version (u64 BE); never removed, so versions are never reused
    versions: sled::Tree,
    /// media id -> MediaRecord
    media: sled::Tree,
    /// user \0 seq (u64 BE) -> media id
    user_media: sled::Tree,
    /// user -> DownloadJob
    jobs: sled::Tree,
    pub blobs: BlobStore,
    commits: Arc<GroupCommit>,
    space: Arc<FreeSpace>,
    reserve: Arc<Reserve>,
}

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Changes are refused while the data dir's filesystem has less free space than
    /// this; None = 256 MiB, or 5% of the filesystem when that is smaller.
    pub min_free_bytes: Option<u64>,
}

impl Store {
    /// Opens (or creates) the store in `dir` with default options. Blocking.
    pub fn open(dir: &Path) -> Result<Store> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir` and cleans up blobs left by requests that
    /// were interrupted. Blocking.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| Error::storage_io(&e, "create data dir"))?;
        let reserve = Reserve::of(dir)?;
        reserve.release();
        let space = Arc::new(FreeSpace::new(dir, options.min_free_bytes)?);
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // Only the group-commit flusher flushes: then sled's log is never made
            // durable ahead of the blob files it references.
            .flush_every_ms(None)
            .open()?;
        let blobs = BlobStore::open(
            dir,
            db.open_tree("blob_refs")?,
            db.open_tree("blob_pending")?,
        )?;
        migrate_chunks_to_files(&db, &blobs)?;
        let store = Store {
            profiles: db.open_tree("profiles")?,
            versions: db.open_tree("versions")?,
            media: db.open_tree("media")?,
            user_media: db.open_tree("user_media")?,
            jobs: db.open_tree("jobs")?,
            commits: Arc::new(GroupCommit::start(db.clone(), blobs.root())?),
            blobs,
            db,
            space,
            reserve: Arc::new(reserve),
        };
        let swept = store.blobs.sweep()?;
        if swept > 0 {
            tracing::info!(blobs = swept, "removed blobs left by interrupted writes");
        }
        store.refill_reserve();
        Ok(store)
    }

    /// Waits until every write committed so far is durable. Call before acknowledging
    /// a write.
    pub async fn durable(&self) -> Result<()> {
        self.commits.durable().await
    }

    /// Refuses a change (storage-full) while free space is under the watermark. Cheap:
    /// the reading is cached for a few hundred milliseconds.
    pub fn ensure_space(&self) -> Result<()> {
        self.space.check()
    }

    /// Writes the data dir's reserve file again if it is missing and there is room
    /// (see [`Reserve`]). Blocking.
    pub fn refill_reserve(&self) {
        self.reserve.refill(&self.space);
    }

    /// The free-space watermark of the data dir's filesystem.
    pub fn space(&self) -> &FreeSpace {
        &self.space
    }

    /// How long the flush in progress has been running (None between flushes): a
    /// store whose flush never ends has stopped making progress.
    pub fn flushing_for(&self) -> Option<Duration> {
        self.commits.flushing_for()
    }

    /// A store-wide increasing id (sled keeps it increasing across restarts and crashes).
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    pub fn profile(&self, user: &UserId) -> Result<Option<ProfileRecord>> {
        decode_opt(self.profiles.get(user.as_str())?)
    }

    pub fn media(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        decode_opt(self.media.get(media_id)?)
    }

    pub fn current_version(&self, user: &UserId) -> Result<u64> {
        Ok(self.versions.get(user.as_str())?.map_or(0, |v| be_u64(&v)))
    }

    /// A page of the user's media, newest first, starting after `after_seq` (exclusive)
    /// when given. Returns up to `limit` records and whether more follow. Runs on a
    /// blocking thread.
    pub async fn list_media(
        &self,
        user: &UserId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MediaRecord>, bool)> {
        let user = user.clone();
        self.blocking(move |store| store.list_media_blocking(&user, after_seq, limit))
            .await
    }

    fn list_media_blocking(
        &self,
        user: &UserId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MediaRecord>, bool)> {
        let prefix = user_media_prefix(user);
        let upper = match after_seq {
            Some(seq) => user_media_key(user, seq),
            None => {
                let mut end = prefix.clone();
                end.extend_from_slice(&[0xff; 9]);
                end
            }
        };
        let mut out = Vec::with_capacity(limit.min(64));
        let mut more = false;
        for entry in self.user_media.range(prefix..upper).rev() {
            let (_, media_id) = entry?;
            if out.len() == limit {
                more = true;
                break;
            }
            let media_id = String::from_utf8_lossy(&media_id);
            if let Some(record) = self.media(&media_id)? {
                out.push(record);
            }
        }
        Ok((out, more))
    }

    /// Every stored download job (to resume them at start-up). Runs on a blocking thread.
    pub async fn jobs(&self) -> Result<Vec<DownloadJob>> {
        self.blocking(|store| {
            store
                .jobs
                .iter()
                .values()
                .map(|v| DownloadJob::decode(v?.as_ref()).map_err(Error::internal))
                .collect()
        })
        .await
    }

    /// Runs `f` as one atomic transaction over all metadata trees, on a blocking
    /// thread. `f` may run more than once (on conflicts), so it must not have side
    /// effects outside the transaction. The change is not yet durable: see
    /// [`Store::durable`].
    pub async fn transact<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> TxResult<T> + Send + 'static,
    {
        self.blocking(move |store| store.transact_blocking(f)).await
    }

    /// [`Store::transact`] for a change that adds bytes: refused (storage-full) before
    /// anything is written while free space is under the watermark.
    pub async fn transact_change<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> TxResult<T> + Send + 'static,
    {
        self.space.check()?;
        self.transact(f).await
    }

    /// [`Store::transact`] on the calling thread (which must not be a runtime worker).
    pub fn transact_blocking<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T> {
        let trees = [
            self.profiles.clone(),
            self.versions.clone(),
            self.media.clone(),
            self.user_media.clone(),
            self.jobs.clone(),
            self.blobs.refs_tree().clone(),
            self.blobs.pending_tree().clone(),
        ];
        Ok(trees.as_slice().transaction(|views| f(&Tx { views }))?)
    }

    /// Runs blocking storage work on tokio's blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(Error::internal)?
    }

    /// Bytes the data dir's sled files and blob files take (apparent sizes).
    pub fn disk_bytes(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()? + self.blobs.disk_bytes())
    }
}

/// Moves blobs an older version kept inside sled (tree `blob_chunks`: hash ++ chunk
/// index -> bytes) to files, once.
fn migrate_chunks_to_files(db: &sled::Db, blobs: &BlobStore) -> Result<()> {
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

fn user_media_prefix(user: &UserId) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.as_str().len() + 9);
    key.extend_from_slice(user.as_str().as_bytes());
    key.push(0);
    key
}

pub(crate) fn user_media_key(user: &UserId, seq: u64) -> Vec<u8> {
    let mut key = user_media_prefix(user);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn be_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
}

pub(crate) fn decode_opt<M: Message + Default>(value: Option<sled::IVec>) -> Result<Option<M>> {
    value
        .map(|v| M::decode(v.as_ref()).map_err(|e| Error::internal(format!("corrupt record: {e}"))))
        .transpose()
}
