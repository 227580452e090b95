//! The local store, the default: profile state, media records and download jobs in sled;
//! image bytes as content-addressed files beside it ([`LocalBlobs`]). Implements both
//! storage traits ([`super::MetadataStore`] in `metadata.rs`, [`super::BlobStore`]).
//!
//! Rules that keep the server alive under concurrent writes:
//! - every transaction and scan runs on a blocking thread ([`Store::transact`],
//!   [`Store::list_media`]), never on a runtime worker; point reads stay inline;
//! - durability is group commit ([`durability`]): a writer waits for a ticket that the
//!   one flusher thread completes, so sled's flush is never called concurrently;
//! - a `Drop` never touches storage: staged blobs queue their clean-up for the
//!   sweeper thread.

mod blobs;
mod durability;
mod metadata;
mod migrate;
/// The records moved to `store::records` (the PostgreSQL store keeps the same ones);
/// still reachable here for the fuzz target.
pub use super::records;
mod space;
mod tx;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use blobs::LocalBlobs;
use durability::GroupCommit;
pub use space::{FreeSpace, Reserve};
use tx::Tx;

use super::{BlobStore, StagedBlob};
use crate::error::{Error, Result};
use crate::model::{BlobRef, UserId};

/// The result type inside a transaction closure.
type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

/// Aborts a transaction with a domain error.
fn abort<T>(error: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(error))
}

#[derive(Clone)]
pub struct LocalStore {
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
    /// user \0 version (u64 BE) -> VersionRecord: what each version showed
    profile_versions: sled::Tree,
    blobs: LocalBlobs,
    commits: Arc<GroupCommit>,
    space: Arc<FreeSpace>,
    reserve: Arc<Reserve>,
}

/// sled's page cache: metadata only (records are a few hundred bytes), so this holds
/// the hot records of tens of thousands of users. sled counts a page by its serialized
/// size; in memory a node takes more, and a store that grows keeps filling the cache
/// up to the cap with pages it wrote and will not read again. At 128 MiB the soak
/// bench's RSS still rose at minute 30 (+10.3% over its last 20 minutes); at 32 MiB it
/// is flat from minute 4 (-1.4%). The sets bench (20,000 users, about 47 MiB of sled
/// data) ran 3-6% slower at 32 MiB than at 128.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Changes are refused while the data dir's filesystem has less free space than
    /// this; None = 256 MiB, or 5% of the filesystem when that is smaller.
    pub min_free_bytes: Option<u64>,
}

impl LocalStore {
    /// Opens (or creates) the store in `dir` with default options. Blocking.
    pub fn open(dir: &Path) -> Result<LocalStore> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir` and cleans up blobs left by requests that
    /// were interrupted. Blocking.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<LocalStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::storage_io(&e, "create data dir"))?;
        let reserve = Reserve::of(dir)?;
        reserve.release();
        let space = Arc::new(FreeSpace::new(dir, options.min_free_bytes)?);
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // sled's page cache defaults to 1 GiB, which a growing store fills: RSS then
            // grows with the data. Metadata records are small; image bytes have their
            // own bounded cache.
            .cache_capacity(SLED_CACHE_BYTES)
            // Only the group-commit flusher flushes: then sled's log is never made
            // durable ahead of the blob files it references.
            .flush_every_ms(None)
            .open()?;
        let blobs = LocalBlobs::open(
            dir,
            db.open_tree("blob_refs")?,
            db.open_tree("blob_pending")?,
        )?;
        migrate::chunks_to_files(&db, &blobs)?;
        migrate::record_schema_version(&db)?;
        let store = LocalStore {
            profiles: db.open_tree("profiles")?,
            versions: db.open_tree("versions")?,
            media: db.open_tree("media")?,
            user_media: db.open_tree("user_media")?,
            jobs: db.open_tree("jobs")?,
            profile_versions: db.open_tree("profile_versions")?,
            commits: Arc::new(GroupCommit::start(db.clone(), blobs.root())?),
            blobs,
            db,
            space,
            reserve: Arc::new(reserve),
        };
        let swept = store.blobs.sweep()?;
        if swept > 0 {
            tracing::info!(blobs = swept, "removed blobs whose last reference went");
        }
        store.blobs.request_orphan_scan();
        store.refill_reserve();
        Ok(store)
    }

    /// Waits until every write committed so far is durable. Call before acknowledging
    /// a write.
    pub async fn durable(&self) -> Result<()> {
        self.commits.durable().await
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
    fn generate_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    /// Runs `f` as one atomic transaction over all metadata trees, on the calling thread
    /// (which must not be a runtime worker). `f` may run more than once (on conflicts),
    /// so it must not have side effects outside the transaction. The change is not yet
    /// durable: see [`LocalStore::durable`].
    fn transact_blocking<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T> {
        let trees = [
            self.profiles.clone(),
            self.versions.clone(),
            self.media.clone(),
            self.user_media.clone(),
            self.jobs.clone(),
            self.blobs.refs_tree().clone(),
            self.blobs.pending_tree().clone(),
            self.profile_versions.clone(),
        ];
        Ok(trees.as_slice().transaction(|views| f(&Tx { views }))?)
    }

    /// Runs blocking storage work on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LocalStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(Error::internal)?
    }

    /// Every media item's id (what `migrate` copies). Blocking.
    pub fn media_ids(&self) -> Result<Vec<String>> {
        self.media
            .iter()
            .keys()
            .map(|key| Ok(String::from_utf8_lossy(&key?).into_owned()))
            .collect()
    }

    /// Every user ever given a version (what `migrate` copies). Blocking.
    pub fn user_ids(&self) -> Result<Vec<UserId>> {
        self.versions
            .iter()
            .keys()
            .map(|key| {
                let key = key?;
                UserId::parse("user_id", &String::from_utf8_lossy(&key))
                    .map_err(|_| Error::internal("corrupt user id in the local store"))
            })
            .collect()
    }

    /// Bytes the data dir's sled files and blob files take (apparent sizes).
    pub fn disk_bytes(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()? + self.blobs.disk_bytes())
    }
}

/// Marks a key of a user outside the `default` tenant. Neither user ids nor tenants
/// contain control characters, so no `default` user's key starts with it.
const TENANT_KEY_MARK: u8 = 0x01;

/// A user's key in the per-user trees: the bare id for the `default` tenant (the layout
/// before tenants existed, so such a data dir opens unchanged), else
/// `0x01 tenant 0x00 id`. Since neither part contains a control byte, one user's key
/// (or its `key 0x00` media prefix) is never a prefix of another user's.
fn user_key(user: &UserId) -> Vec<u8> {
    let id = user.as_str().as_bytes();
    let tenant = user.tenant();
    if tenant.is_default() {
        return id.to_vec();
    }
    let tenant = tenant.as_str().as_bytes();
    let mut key = Vec::with_capacity(tenant.len() + id.len() + 2);
    key.push(TENANT_KEY_MARK);
    key.extend_from_slice(tenant);
    key.push(0);
    key.extend_from_slice(id);
    key
}

fn user_media_prefix(user: &UserId) -> Vec<u8> {
    let mut key = user_key(user);
    key.reserve(9);
    key.push(0);
    key
}

fn user_media_key(user: &UserId, seq: u64) -> Vec<u8> {
    let mut key = user_media_prefix(user);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Same layout as the media index (user \0 u64 BE), so one user's keys are contiguous.
fn user_version_key(user: &UserId, version: u64) -> Vec<u8> {
    user_media_key(user, version)
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
}

fn decode_opt<M: Message + Default>(value: Option<sled::IVec>) -> Result<Option<M>> {
    value
        .map(|v| M::decode(v.as_ref()).map_err(|e| Error::internal(format!("corrupt record: {e}"))))
        .transpose()
}

#[async_trait]
impl BlobStore for LocalStore {
    fn ensure_space(&self) -> Result<()> {
        self.space.check()
    }

    async fn put(&self, bytes: Bytes) -> Result<StagedBlob> {
        self.space.check()?;
        self.blocking(move |store| store.blobs.stage(&bytes)).await
    }

    async fn put_all(&self, blobs: Vec<Bytes>) -> Result<Vec<StagedBlob>> {
        self.space.check()?;
        self.blocking(move |store| store.blobs.stage_pack(&blobs))
            .await
    }

    /// Reads inline: a cache hit or one small file read, cheaper than a hop to the
    /// blocking pool.
    async fn get(&self, blob: &BlobRef) -> Result<Bytes> {
        self.blobs.read(blob)
    }
}
