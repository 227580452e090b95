//! The profile-image domain: reading, setting, cropping and deleting users' profile
//! images and media. The gRPC layer translates to and from these calls; every change
//! goes through [`Transitions`], the one owner of profile records and their events.

mod locks;
mod media;
mod processing;
mod read;
mod relay;
mod renditions;
mod stage;
mod thumbhash;
mod transitions;
mod versions;
mod views;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use processing::{ProcessingLimits, Processor};
pub use relay::EventRelay;
pub use transitions::{Locked, Transitions};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{
    CropRequest, ExpectedVersion, OutputFormat, ProfileView, Source, Status, UserId,
};
use crate::store::{BlobStore, MetadataStore};
use crate::telemetry;
use crate::watch::{Hub, Snapshots, Subscription};

/// Largest page ListMedia returns.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when the client gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// What Get asks for.
#[derive(Debug, Clone, Copy)]
pub struct ImageRequest {
    pub size: u32,
    pub format: OutputFormat,
    pub metadata_only: bool,
}

/// The profile-image service's domain logic. Cheap to clone.
#[derive(Clone)]
pub struct ProfileImages {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    transitions: Transitions,
    events: Arc<Hub>,
    processor: Processor,
    rendition_sizes: Vec<u32>,
    full_max_edge: u32,
    max_upload_bytes: u64,
}

impl ProfileImages {
    pub fn new(
        config: &Config,
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        events: Arc<Hub>,
    ) -> Self {
        let processing = ProcessingLimits {
            threads: config.processing_threads,
            max_queued: config.max_queued_processing,
            timeout: config.processing_timeout,
        };
        ProfileImages {
            inner: Arc::new(Inner {
                transitions: Transitions::new(meta.clone(), events.clone(), config.full_max_edge),
                meta,
                blobs,
                events,
                processor: Processor::new(
                    processing,
                    config.image_limits(),
                    config.rendition_spec(),
                ),
                rendition_sizes: config.rendition_sizes.clone(),
                full_max_edge: config.full_max_edge,
                max_upload_bytes: config.max_upload_bytes,
            }),
        }
    }

    /// The owner of every profile change.
    pub fn transitions(&self) -> &Transitions {
        &self.inner.transitions
    }

    /// Largest image accepted, in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.inner.max_upload_bytes
    }

    /// Refuses a change (storage-full) while storage has no room; cheap.
    pub fn ensure_space(&self) -> Result<()> {
        self.inner.blobs.ensure_space()
    }

    /// Every change event from now on (and none before), of every user.
    pub fn subscribe_all(&self) -> Result<Subscription> {
        self.inner.events.subscribe(None, None)
    }

    /// The downloads that were accepted, have not finished and are this process's to
    /// run: at start-up, and with a shared store whenever the replica that ran one died
    /// (its lease ran out; the jobs are claimed for this process).
    pub async fn pending_downloads(&self) -> Result<Vec<crate::model::DownloadJob>> {
        self.inner.meta.jobs().await
    }

    /// How long a download stays this process's without renewal; None when the store
    /// is this process's alone.
    pub fn download_lease(&self) -> Option<std::time::Duration> {
        self.inner.meta.job_lease()
    }

    /// Renews this process's claim on the downloads it runs (user and version).
    pub async fn renew_download_leases(&self, running: &[(UserId, u64)]) -> Result<()> {
        self.inner.meta.renew_job_leases(running).await
    }

    /// Sets the profile image from bytes the client sent (inline or uploaded).
    pub async fn set_image(
        &self,
        user: &UserId,
        bytes: Bytes,
        crop: Option<CropRequest>,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        self.ensure_space()?;
        // Fail fast on a stale precondition before spending CPU on the image; the commit
        // checks again.
        expected.check(self.inner.meta.user_state(user).await?.version)?;
        let (media, _staged) = self
            .prepare_media(user, bytes, crop, Source::Upload, "")
            .await?;
        let locked = self.inner.transitions.lock(user).await;
        locked.set_new_media(media, expected).await
    }

    /// Crops the stored original of the active image again, as a new version. The
    /// user's lock is held from reading the current image to the commit, so the crop
    /// applies to the image that is current when it commits; only the client's own
    /// `expected_version` can make it fail with a conflict.
    pub async fn crop(
        &self,
        user: &UserId,
        crop: CropRequest,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        self.ensure_space()?;
        let locked = self.inner.transitions.lock(user).await;
        let state = locked.state().await?;
        let profile = state.profile.ok_or_else(|| no_image(user))?;
        let media = match state.media {
            Some(media) if profile.status == Status::Ready => media,
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "user {user} has no ready image to crop (a download is in progress or failed)"
                )));
            }
        };
        // Fail fast on a stale precondition before spending CPU on the image.
        expected.check(state.version)?;
        let (cropped, _staged) = self.recrop(&media, crop).await?;
        locked.crop(cropped, expected).await
    }

    /// Removes the active profile image; the media item stays. The new version.
    pub async fn delete(&self, user: &UserId, expected: ExpectedVersion) -> Result<u64> {
        self.ensure_space()?;
        self.inner
            .transitions
            .lock(user)
            .await
            .delete(expected)
            .await
    }
}

#[async_trait]
impl Snapshots for ProfileImages {
    async fn snapshot(&self, user: &UserId) -> Result<Option<ProfileView>> {
        self.state(user).await
    }
}

/// Records how long a pipeline stage took when dropped (so early returns count too).
struct StageTimer {
    stage: &'static str,
    started: std::time::Instant,
}

impl StageTimer {
    fn new(stage: &'static str) -> Self {
        StageTimer {
            stage,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for StageTimer {
    fn drop(&mut self) {
        metrics::histogram!(telemetry::PIPELINE_SECONDS, "stage" => self.stage)
            .record(self.started.elapsed().as_secs_f64());
    }
}

fn no_image(user: &UserId) -> Error {
    Error::NotFound(format!("user {user} has no profile image"))
}
