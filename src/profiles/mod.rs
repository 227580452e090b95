//! The profile-image domain: reading, setting, cropping and deleting users' profile
//! images and media. The gRPC layer translates to and from these calls.

mod locks;
mod media;
mod processing;
mod read;
mod renditions;
mod upload;
mod view;

use std::sync::Arc;

pub use processing::{ProcessingLimits, Processor, imaging_error};
pub use upload::UploadBuffer;
pub use view::{MediaView, ProfileView, ServedImage, format_from_record, format_to_record};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::imaging::{Limits, Processed, RenditionSpec};
use crate::model::{CropRequest, ExpectedVersion, ImageSource, OutputFormat, UserId, now_millis};
use crate::store::records::{
    self, MediaRecord, ProfileRecord, RenditionRecord, SOURCE_MEDIA, SOURCE_UPLOAD, STATUS_READY,
};
use crate::store::{StagedBlob, Store, Tx, TxResult, abort};
use crate::telemetry;
use crate::watch::{EventKind, Hub};
use locks::UserLocks;

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

/// A new image from bytes the client sent.
pub struct NewImage {
    pub bytes: Arc<[u8]>,
    /// The request field the bytes came in, for error reports.
    pub field: &'static str,
    pub crop: Option<CropRequest>,
    pub expected: ExpectedVersion,
}

/// The profile-image service's domain logic. Cheap to clone.
#[derive(Clone)]
pub struct ProfileImages {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    processor: Processor,
    locks: UserLocks,
    events: Arc<Hub>,
    rendition_sizes: Vec<u32>,
    full_max_edge: u32,
    max_upload_bytes: u64,
}

impl ProfileImages {
    pub fn new(config: &Config, store: Store, events: Arc<Hub>) -> Self {
        let limits = Limits {
            max_bytes: config.max_upload_bytes,
            max_side: config.max_image_side,
            max_pixels: config.max_image_pixels,
            max_alloc_bytes: config.max_decode_alloc_bytes,
        };
        let spec = RenditionSpec {
            sizes: config.rendition_sizes.clone(),
            full_max_edge: config.full_max_edge,
            jpeg_quality: config.jpeg_quality,
        };
        ProfileImages {
            inner: Arc::new(Inner {
                store,
                processor: Processor::new(
                    ProcessingLimits {
                        threads: config.processing_threads,
                        max_queued: config.max_queued_processing,
                        timeout: config.processing_timeout,
                    },
                    limits,
                    spec,
                ),
                locks: UserLocks::new(),
                events,
                rendition_sizes: config.rendition_sizes.clone(),
                full_max_edge: config.full_max_edge,
                max_upload_bytes: config.max_upload_bytes,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn events(&self) -> &Arc<Hub> {
        &self.inner.events
    }

    pub fn processor(&self) -> &Processor {
        &self.inner.processor
    }

    /// A new upload buffer that enforces the size limit while bytes arrive.
    /// Refused (storage-full) up front while the disk is full, before any byte is read.
    pub fn upload_buffer(&self, declared_size: u64) -> Result<UploadBuffer> {
        self.inner.store.ensure_space()?;
        UploadBuffer::new(self.inner.max_upload_bytes, declared_size)
    }

    /// Sets the profile image from bytes the client sent (inline or uploaded).
    pub async fn set_image(&self, user: &UserId, image: NewImage) -> Result<ProfileView> {
        self.inner.store.ensure_space()?;
        // Fail fast on a stale precondition before spending CPU on the image; the commit
        // checks again.
        image
            .expected
            .check(self.inner.store.current_version(user)?)?;
        let processed = self
            .inner
            .processor
            .process(image.field, image.bytes.clone(), image.crop)
            .await?;
        let (media, _staged) = self
            .stage_media(user, &image.bytes, processed, ImageSource::Upload, "")
            .await?;
        self.activate_new_media(user, media, image.expected, EventKind::Set)
            .await
    }

    /// Writes the blobs of a processed image and builds its (uncommitted) media record.
    /// The blobs stay pinned until the returned guards drop.
    pub async fn stage_media(
        &self,
        user: &UserId,
        original: &Arc<[u8]>,
        processed: Processed,
        source: ImageSource,
        source_url: &str,
    ) -> Result<(MediaRecord, Vec<StagedBlob>)> {
        self.inner.store.ensure_space()?;
        let _timer = StageTimer::new("store");
        let store = self.inner.store.clone();
        let original = original.clone();
        let user = user.clone();
        let source_url = source_url.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut staged = Vec::with_capacity(processed.renditions.len() + 1);
            let original_blob = store.blobs.stage(&original)?;
            let original_ref = original_blob.blob().clone();
            staged.push(original_blob);
            let mut renditions = Vec::with_capacity(processed.renditions.len());
            for rendition in &processed.renditions {
                let blob = store.blobs.stage(&rendition.bytes)?;
                renditions.push(RenditionRecord {
                    edge: rendition.edge,
                    format: format_to_record(rendition.format),
                    blob: blob.blob().clone(),
                });
                staged.push(blob);
            }
            let seq = store.next_id()?;
            let crop = processed.crop;
            let record = MediaRecord {
                media_id: format!("m{seq:016x}"),
                user_id: user.as_str().to_owned(),
                seq,
                width: processed.width,
                height: processed.height,
                source: source_to_record(source),
                source_url,
                create_time_ms: now_millis(),
                crop_x: crop.x(),
                crop_y: crop.y(),
                crop_size: crop.size(),
                has_alpha: processed.has_alpha,
                original: original_ref,
                renditions,
            };
            Ok((record, staged))
        })
        .await
        .map_err(Error::internal)?
    }

    /// Commits a new media item as the user's active image, as a new version.
    pub async fn activate_new_media(
        &self,
        user: &UserId,
        media: MediaRecord,
        expected: ExpectedVersion,
        kind: EventKind,
    ) -> Result<ProfileView> {
        let owner = user.clone();
        self.commit(user, kind, move |tx| {
            expected.check(tx.version(&owner)?).or_else(abort)?;
            tx.insert_media(&owner, &media)?;
            let record = next_ready_profile(tx, &owner, &media, media.source)?;
            Ok((record, Some(media.clone())))
        })
        .await
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
        self.inner.store.ensure_space()?;
        let _lock = self.inner.locks.lock(user).await;
        let state = self.state(user)?.ok_or_else(|| no_image(user))?;
        let media = match state.media {
            Some(media) if state.record.status == STATUS_READY => media,
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "user {user} has no ready image to crop (a download is in progress or failed)"
                )));
            }
        };
        // Fail fast on a stale precondition before spending CPU on the image.
        expected.check(state.record.version)?;
        let (updated, _staged) = self.recrop(user, &media, crop).await?;
        let owner = user.clone();
        self.commit_locked(user, EventKind::Cropped, move |tx| {
            expected.check(tx.version(&owner)?).or_else(abort)?;
            let Some(profile) = tx.profile(&owner)? else {
                return abort(no_image(&owner));
            };
            let Some(current) = tx.media(&updated.media_id)? else {
                return abort(no_image(&owner));
            };
            if profile.media_id != updated.media_id {
                // Unreachable while the user's lock is held; kept as a guard.
                return abort(Error::internal(format!(
                    "user {owner}'s active image changed under the user's lock"
                )));
            }
            tx.replace_media(&current, &updated)?;
            let record = ProfileRecord {
                version: tx.bump_version(&owner)?,
                update_time_ms: now_millis(),
                ..profile
            };
            tx.put_profile(&owner, &record)?;
            Ok((record, Some(updated.clone())))
        })
        .await
    }

    /// Renders `media` again from its stored original with a new crop.
    async fn recrop(
        &self,
        user: &UserId,
        media: &MediaRecord,
        crop: CropRequest,
    ) -> Result<(MediaRecord, Vec<StagedBlob>)> {
        let original: Arc<[u8]> = self
            .inner
            .store
            .blobs
            .read(&media.original)?
            .to_vec()
            .into();
        let processed = self
            .inner
            .processor
            .process("crop", original.clone(), Some(crop))
            .await?;
        let (fresh, staged) = self
            .stage_media(user, &original, processed, ImageSource::Upload, "")
            .await?;
        let updated = MediaRecord {
            crop_x: fresh.crop_x,
            crop_y: fresh.crop_y,
            crop_size: fresh.crop_size,
            renditions: fresh.renditions,
            ..media.clone()
        };
        Ok((updated, staged))
    }

    /// Removes the active profile image; the media item stays.
    pub async fn delete(&self, user: &UserId, expected: ExpectedVersion) -> Result<()> {
        self.inner.store.ensure_space()?;
        let owner = user.clone();
        self.commit(user, EventKind::Deleted, move |tx| {
            expected.check(tx.version(&owner)?).or_else(abort)?;
            if tx.profile(&owner)?.is_none() {
                return abort(no_image(&owner));
            }
            tx.bump_version(&owner)?;
            tx.remove_profile(&owner)?;
            tx.remove_job(&owner)?;
            Ok((ProfileRecord::default(), None))
        })
        .await
        .map(|_| ())
    }

    /// Asks the sweeper to delete the bytes of blobs that changes released (a failure
    /// there only delays the clean-up to the next sweep or start-up).
    fn release_unreferenced_blobs(&self) {
        self.inner.store.blobs.request_sweep();
    }

    /// Runs a profile change: under the user's lock, one transaction, the wait for
    /// durability, then the event. `change` returns the new profile record (default =
    /// deleted) and its media.
    pub async fn commit<F>(&self, user: &UserId, kind: EventKind, change: F) -> Result<ProfileView>
    where
        F: Fn(&Tx<'_>) -> TxResult<(ProfileRecord, Option<MediaRecord>)> + Send + 'static,
    {
        let _lock = self.inner.locks.lock(user).await;
        self.commit_locked(user, kind, change).await
    }

    /// [`ProfileImages::commit`] for a caller that already holds the user's lock.
    async fn commit_locked<F>(
        &self,
        user: &UserId,
        kind: EventKind,
        change: F,
    ) -> Result<ProfileView>
    where
        F: Fn(&Tx<'_>) -> TxResult<(ProfileRecord, Option<MediaRecord>)> + Send + 'static,
    {
        let _timer = StageTimer::new("commit");
        let (record, media) = self.inner.store.transact_change(change).await?;
        self.inner.store.durable().await?;
        self.release_unreferenced_blobs();
        let view = self.view(user, record, media);
        let state = (kind != EventKind::Deleted).then(|| view.clone());
        self.inner.events.publish(kind, user, state)?;
        Ok(view)
    }

    /// Like `commit`, for changes that may decide to do nothing (returning None), such as
    /// a download whose version was superseded.
    pub async fn commit_if<F>(
        &self,
        user: &UserId,
        kind: EventKind,
        change: F,
    ) -> Result<Option<ProfileView>>
    where
        F: Fn(&Tx<'_>) -> TxResult<Option<(ProfileRecord, Option<MediaRecord>)>> + Send + 'static,
    {
        let _lock = self.inner.locks.lock(user).await;
        let _timer = StageTimer::new("commit");
        let Some((record, media)) = self.inner.store.transact_change(change).await? else {
            return Ok(None);
        };
        self.inner.store.durable().await?;
        let view = self.view(user, record, media);
        self.inner.events.publish(kind, user, Some(view.clone()))?;
        Ok(Some(view))
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

/// The next READY profile record showing `media`, as a new version. Supersedes any
/// download job of the user.
fn next_ready_profile(
    tx: &Tx<'_>,
    user: &UserId,
    media: &MediaRecord,
    source: i32,
) -> TxResult<ProfileRecord> {
    let previous = tx.profile(user)?;
    let now = now_millis();
    let record = ProfileRecord {
        version: tx.bump_version(user)?,
        status: STATUS_READY,
        media_id: media.media_id.clone(),
        source,
        source_url: if source == records::SOURCE_URL {
            media.source_url.clone()
        } else {
            String::new()
        },
        failure_reason: String::new(),
        failure_message: String::new(),
        create_time_ms: previous.map_or(now, |p| p.create_time_ms),
        update_time_ms: now,
    };
    tx.put_profile(user, &record)?;
    tx.remove_job(user)?;
    Ok(record)
}

fn no_image(user: &UserId) -> Error {
    Error::NotFound(format!("user {user} has no profile image"))
}

pub fn source_to_record(source: ImageSource) -> i32 {
    match source {
        ImageSource::Upload => SOURCE_UPLOAD,
        ImageSource::Url => records::SOURCE_URL,
        ImageSource::Media => SOURCE_MEDIA,
    }
}
