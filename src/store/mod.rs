//! What the domain needs from storage, as two traits with no storage engine in their
//! signatures: [`MetadataStore`] (profiles, media, download jobs, event sequence
//! numbers) and [`BlobStore`] (content-addressed image bytes).
//!
//! [`local`] implements both over sled and files in the data dir (the default);
//! [`postgres`] and [`s3`] implement them over shared engines, for several replicas of
//! the service (`--store postgres://...`, `--blobs s3://...`). The shapes fit both:
//! - a change is data ([`Change`]), applied atomically only if the user's state is still
//!   the one it was decided on ([`Error::Conflict`] otherwise, and the caller decides
//!   again), so it maps onto one transaction with a row check;
//! - blobs are written (and pinned by a [`StagedBlob`]) before the commit that references
//!   them; a blob that no committed record references is deleted later by the blob
//!   store, never while a [`StagedBlob`] for it is alive;
//! - a job is stored with the DOWNLOADING state it fills and removed by the change that
//!   completes, fails or supersedes it.

pub mod cache;
pub mod local;
pub mod postgres;
pub mod records;
pub mod s3;
pub mod transfer;

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::model::{
    BlobRef, Crop, DownloadJob, EventKind, Media, Profile, Rendition, UserId, UserState,
};

#[cfg(doc)]
use crate::error::Error;

/// What a change does to one field of a user's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write<T> {
    Keep,
    Put(T),
    Remove,
}

/// What a change does to a media item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaWrite {
    /// A new item: stored and indexed under its user; its blobs gain a reference.
    Insert(Media),
    /// The item with this id again, with new renditions (a crop): references move from
    /// the stored item's blobs to these.
    Replace(Media),
    /// The item with this id is deleted and its blobs lose a reference.
    Remove(String),
}

/// One atomic change of one user's stored state.
#[derive(Debug, Clone)]
pub struct Change {
    pub user: UserId,
    /// The state the change was decided on: it applies only if the stored state (last
    /// version, profile and job) is still this one.
    pub base: UserState,
    /// The user's new last version; None = unchanged.
    pub version: Option<u64>,
    pub profile: Write<Profile>,
    pub job: Write<DownloadJob>,
    pub media: Vec<MediaWrite>,
    /// The event watchers get for this change (None: the profile does not change). A
    /// store with an [`EventLog`] records it in the same transaction; the local store
    /// leaves publishing to the caller.
    pub event: Option<ChangeEvent>,
}

/// A change's event as stored: its kind and the profile (with its active media item)
/// after the change, None when the change removed the profile.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    pub kind: EventKind,
    pub after: Option<(Profile, Option<Media>)>,
}

/// An event read back from an event log.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub sequence: u64,
    pub user: UserId,
    pub event: ChangeEvent,
    pub time_ms: i64,
}

impl Change {
    /// A change that does nothing yet, on top of `base`.
    pub fn on(user: &UserId, base: &UserState) -> Self {
        Change {
            user: user.clone(),
            base: base.clone(),
            version: None,
            profile: Write::Keep,
            job: Write::Keep,
            media: Vec::new(),
            event: None,
        }
    }

    /// The crop media item `id` gets from this change, when the change inserts or
    /// replaces it (None: the item keeps its stored crop, if it exists).
    pub fn written_crop(&self, id: &str) -> Option<Crop> {
        self.media.iter().find_map(|write| match write {
            MediaWrite::Insert(media) | MediaWrite::Replace(media) if media.id == id => {
                Some(media.crop)
            }
            _ => None,
        })
    }
}

/// A committed change.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// The sequence number of the change's event: increasing over the store's life.
    pub sequence: u64,
}

/// Profiles, media items and download jobs.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// The user's stored state: last version, profile, its active media item and job.
    async fn user_state(&self, user: &UserId) -> Result<UserState>;

    async fn media(&self, media_id: &str) -> Result<Option<Media>>;

    /// The media item that profile version `version` of `user` showed, while the item
    /// exists and still has the crop it had then (a later crop makes other pictures).
    /// None for a version that showed no image, or whose item was deleted or cropped
    /// again since, and for versions committed before the store recorded them.
    async fn media_at_version(&self, user: &UserId, version: u64) -> Result<Option<Media>>;

    /// A page of the user's media, newest first, after the item with sequence
    /// `after_seq` (exclusive) when given: up to `limit` items and whether more follow.
    async fn list_media(
        &self,
        user: &UserId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Media>, bool)>;

    /// Applies `change` atomically and durably (it survives a crash once this returns),
    /// or fails with [`Error::Conflict`] when the user's state is no longer
    /// `change.base` (or a media item it replaces or removes is gone).
    async fn commit(&self, change: Change) -> Result<Committed>;

    /// Adds `added` to media item `media_id` if it still has `base` (the rendition it was
    /// made from) and no rendition of the same edge and format. Whether it was added.
    async fn add_rendition(
        &self,
        media_id: &str,
        base: Rendition,
        added: Rendition,
    ) -> Result<bool>;

    /// Stores the ThumbHash of media item `media_id` if its renditions still include
    /// `base` (the rendition it was computed from). Whether it was stored.
    async fn set_thumbhash(
        &self,
        media_id: &str,
        base: Rendition,
        thumbhash: Vec<u8>,
    ) -> Result<bool>;

    /// Counts a failed attempt on the user's job for `version`: false when that job is
    /// gone (completed, failed or superseded).
    async fn record_attempt(&self, user: &UserId, version: u64, attempts: u32) -> Result<bool>;

    /// The stored download jobs this process should run now (at start-up): every one
    /// for a store only this process uses; for a shared store, those whose lease ran
    /// out (the replica running them died), claimed for this process.
    async fn jobs(&self) -> Result<Vec<DownloadJob>>;

    /// How long a claimed job stays this process's without a renewal; None for a store
    /// only this process uses (its jobs need no lease).
    fn job_lease(&self) -> Option<Duration> {
        None
    }

    /// Extends this process's lease on these jobs (user and version). Those it no
    /// longer holds (taken over, completed, superseded) are left alone.
    async fn renew_job_leases(&self, _jobs: &[(UserId, u64)]) -> Result<()> {
        Ok(())
    }

    /// A store-wide increasing number: media sequence numbers, and where event sequence
    /// numbers start.
    async fn next_id(&self) -> Result<u64>;
}

/// The events of a shared store, in commit order, numbered without gaps.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// The sequence of the last committed event (0: none yet).
    async fn last_sequence(&self) -> Result<u64>;

    /// Up to `limit` events after `after` (exclusive), in order.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>>;

    /// Changes whenever an event may have been committed (by any replica): the
    /// sequence announced last. A hint only; the log is the truth.
    fn announcements(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Content-addressed image bytes.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Refuses (storage-full) while the store has no room for new bytes. Cheap.
    fn ensure_space(&self) -> Result<()>;

    /// Writes `bytes` and pins the blob until the returned guard drops: the commit that
    /// references it must happen while the guard lives.
    async fn put(&self, bytes: Bytes) -> Result<StagedBlob>;

    /// Writes several blobs at once (one hop to the blocking pool for a local store).
    async fn put_all(&self, blobs: Vec<Bytes>) -> Result<Vec<StagedBlob>>;

    /// A blob's bytes. [`Error::BlobMissing`] when a concurrent change released it.
    async fn get(&self, blob: &BlobRef) -> Result<Bytes>;
}

/// A blob written and pinned: it is not cleaned up before the guard drops. Dropping
/// it does no I/O; the store's clean-up does that later.
pub struct StagedBlob {
    blob: BlobRef,
    _pin: Box<dyn Any + Send + Sync>,
}

impl StagedBlob {
    pub fn new(blob: BlobRef, pin: Box<dyn Any + Send + Sync>) -> Self {
        StagedBlob { blob, _pin: pin }
    }

    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }
}
