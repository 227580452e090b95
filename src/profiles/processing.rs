//! Runs CPU-bound image work off the async runtime, behind a semaphore sized to the
//! cores, and turns imaging failures (panics included) into domain errors.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::{Error, Result, reason};
use crate::imaging::{self, ImageFormat, ImagingError, Limits, Processed, RenditionSpec};
use crate::model::CropRequest;

#[derive(Clone)]
pub struct Processor {
    permits: Arc<Semaphore>,
    pub limits: Arc<Limits>,
    pub spec: Arc<RenditionSpec>,
}

impl Processor {
    pub fn new(threads: usize, limits: Limits, spec: RenditionSpec) -> Self {
        Processor {
            permits: Arc::new(Semaphore::new(threads)),
            limits: Arc::new(limits),
            spec: Arc::new(spec),
        }
    }

    /// Decodes, orients, crops and renders `bytes`. `field` names the request field the
    /// bytes came from, for error reports.
    pub async fn process(
        &self,
        field: &'static str,
        bytes: Arc<[u8]>,
        crop: Option<CropRequest>,
    ) -> Result<Processed> {
        let (limits, spec) = (self.limits.clone(), self.spec.clone());
        let crop = crop.map(|c| (c.x, c.y, c.size));
        self.run(move || imaging::process(&bytes, crop, &limits, &spec))
            .await?
            .map_err(|e| imaging_error(field, e))
    }

    /// Re-encodes one of our renditions into another format.
    pub async fn transcode(&self, rendition: bytes::Bytes, format: ImageFormat) -> Result<Vec<u8>> {
        let quality = self.spec.jpeg_quality;
        self.run(move || imaging::transcode(&rendition, format, quality))
            .await?
            .map_err(|e| Error::internal(format!("transcoding a stored rendition: {e}")))
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
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::ShuttingDown)?;
        tokio::task::spawn_blocking(work).await.map_err(|e| {
            // The imaging code catches decoder panics itself; this is the last line.
            Error::invalid(
                "image",
                reason::INVALID_FILE_FORMAT,
                format!("the image could not be processed ({e})"),
            )
        })
    }
}

/// Maps an imaging failure on the bytes of request field `field` to a domain error.
pub fn imaging_error(field: &str, error: ImagingError) -> Error {
    match error {
        ImagingError::InvalidFormat(message) => {
            Error::invalid(field, reason::INVALID_FILE_FORMAT, message)
        }
        ImagingError::TooLarge(message) => Error::invalid(field, reason::FILE_TOO_LARGE, message),
        e @ ImagingError::CropOutOfBounds { .. } => {
            Error::invalid("crop", reason::CROP_OUT_OF_BOUNDS, e.to_string())
        }
        #[allow(unreachable_patterns)]
        other => Error::internal(other),
    }
}
