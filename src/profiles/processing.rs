//! Runs CPU-bound image work off the async runtime, behind a semaphore sized to the
//! cores, and turns imaging failures (panics included) into domain errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::error::{Error, Result, reason};
use crate::imaging::{self, ImageFormat, ImagingError, Limits, Processed, RenditionSpec};
use crate::model::{Crop, CropRequest};

/// How long a client refused for overload is told to wait before retrying.
const OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How much image work may run and wait, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ProcessingLimits {
    /// Images processed at once (one blocking thread each).
    pub threads: usize,
    /// New images refused (UNAVAILABLE with RetryInfo) while this many already wait.
    pub max_queued: usize,
    /// Processing one image longer than this ends with DEADLINE_EXCEEDED.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Processor {
    permits: Arc<Semaphore>,
    /// New images being processed or waiting for a slot.
    queued: Arc<AtomicUsize>,
    processing: ProcessingLimits,
    pub limits: Arc<Limits>,
    pub spec: Arc<RenditionSpec>,
}

impl Processor {
    pub fn new(processing: ProcessingLimits, limits: Limits, spec: RenditionSpec) -> Self {
        Processor {
            permits: Arc::new(Semaphore::new(processing.threads.max(1))),
            queued: Arc::default(),
            processing,
            limits: Arc::new(limits),
            spec: Arc::new(spec),
        }
    }

    /// Decodes, orients, crops and renders `bytes`.
    pub async fn process(&self, bytes: Bytes, crop: Option<CropRequest>) -> Result<Processed> {
        let (limits, spec) = (self.limits.clone(), self.spec.clone());
        let crop = crop.map(|c| (c.x, c.y, c.size));
        let _queued = self.enqueue()?;
        let _timer = super::StageTimer::new("process");
        self.run(move || imaging::process(&bytes, crop, &limits, &spec))
            .await?
            .map_err(imaging_error)
    }

    /// Counts a new image in, or refuses it when every slot is busy and `max_queued`
    /// images wait already. The returned guard counts it out when it is done.
    fn enqueue(&self) -> Result<QueuedImage> {
        let ahead = self.queued.fetch_add(1, Ordering::SeqCst);
        let guard = QueuedImage(self.queued.clone());
        if ahead >= self.processing.threads + self.processing.max_queued {
            return Err(Error::Overloaded {
                message: format!(
                    "{} images are already waiting to be processed; retry shortly",
                    self.processing.max_queued
                ),
                retry_after: OVERLOAD_RETRY_AFTER,
            });
        }
        Ok(guard)
    }

    /// Makes one rendition (`edge` px, in `format`) from the stored original with its
    /// crop: for formats a lossy re-encode of a JPEG rendition would degrade (WebP).
    pub async fn render(
        &self,
        original: Bytes,
        crop: Crop,
        edge: u32,
        format: ImageFormat,
    ) -> Result<Vec<u8>> {
        let (limits, quality) = (self.limits.clone(), self.spec.jpeg_quality);
        let crop = (crop.x, crop.y, crop.size);
        self.run(move || imaging::render(&original, crop, edge, format, &limits, quality))
            .await?
            .map(|rendition| rendition.bytes)
            .map_err(|e| Error::internal(format!("rendering from a stored original: {e}")))
    }

    /// Re-encodes one of our renditions into another format.
    pub async fn transcode(&self, rendition: Bytes, format: ImageFormat) -> Result<Vec<u8>> {
        let quality = self.spec.jpeg_quality;
        self.run(move || imaging::transcode(&rendition, format, quality))
            .await?
            .map_err(|e| Error::internal(format!("transcoding a stored rendition: {e}")))
    }

    /// The ThumbHash of one of our renditions (for items made before thumbhashes were).
    pub async fn thumbhash(&self, rendition: Bytes) -> Result<Vec<u8>> {
        self.run(move || imaging::thumbhash_of_rendition(&rendition))
            .await?
            .map_err(|e| Error::internal(format!("hashing a stored rendition: {e}")))
    }

    pub async fn placeholder(
        &self,
        seed: String,
        edge: u32,
        format: ImageFormat,
    ) -> Result<Vec<u8>> {
        self.run(move || imaging::placeholder(&seed, edge, format))
            .await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::ShuttingDown)?;
        // The permit goes with the work: an image that overruns its time keeps its slot
        // until its thread is really done, so overruns cannot pile up.
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        });
        let timeout = self.processing.timeout;
        match tokio::time::timeout(timeout, task).await {
            Ok(done) => done.map_err(|e| {
                // The imaging code catches decoder panics itself; this is the last line.
                Error::BadImage {
                    reason: reason::INVALID_FILE_FORMAT,
                    message: format!("the image could not be processed ({e})"),
                }
            }),
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "processing the image took longer than {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

/// An image counted as waiting for (or holding) a processing slot.
struct QueuedImage(Arc<AtomicUsize>);

impl Drop for QueuedImage {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Maps an imaging failure to a domain error.
fn imaging_error(error: ImagingError) -> Error {
    match error {
        ImagingError::InvalidFormat(message) => Error::BadImage {
            reason: reason::INVALID_FILE_FORMAT,
            message,
        },
        ImagingError::TooLarge(message) => Error::BadImage {
            reason: reason::FILE_TOO_LARGE,
            message,
        },
        e @ ImagingError::CropOutOfBounds { .. } => Error::CropOutOfBounds(e.to_string()),
        #[allow(unreachable_patterns)]
        other => Error::internal(other),
    }
}
