//! Turning bytes into a media item: process the image, write its blobs (pinned until
//! the commit that references them), and build the item. Nothing is committed here.

use bytes::Bytes;

use super::{ProfileImages, StageTimer};
use crate::error::Result;
use crate::imaging::Processed;
use crate::model::{Crop, CropRequest, Media, Rendition, Source, UserId, now_millis};
use crate::store::StagedBlob;

impl ProfileImages {
    /// Processes `original` (with `crop`) and writes its blobs: a media item ready to be
    /// committed while the returned guards live.
    pub async fn prepare_media(
        &self,
        user: &UserId,
        original: Bytes,
        crop: Option<CropRequest>,
        source: Source,
        source_url: &str,
    ) -> Result<(Media, Vec<StagedBlob>)> {
        let processed = self.inner.processor.process(original.clone(), crop).await?;
        let id = self.inner.meta.next_id().await?;
        let (blobs, staged) = self.stage(original, processed).await?;
        let media = Media {
            id: format!("m{id:016x}"),
            user: user.clone(),
            seq: id,
            width: blobs.width,
            height: blobs.height,
            source,
            source_url: source_url.to_owned(),
            create_time_ms: now_millis(),
            crop: blobs.crop,
            has_alpha: blobs.has_alpha,
            original: blobs.original,
            renditions: blobs.renditions,
            thumbhash: Some(blobs.thumbhash),
        };
        Ok((media, staged))
    }

    /// `media` rendered again from its stored original with a new crop (blobs written).
    pub(super) async fn recrop(
        &self,
        media: &Media,
        crop: CropRequest,
    ) -> Result<(Media, Vec<StagedBlob>)> {
        let original = self.inner.blobs.get(&media.original).await?;
        let processed = self
            .inner
            .processor
            .process(original.clone(), Some(crop))
            .await?;
        let (blobs, staged) = self.stage(original, processed).await?;
        let cropped = Media {
            crop: blobs.crop,
            renditions: blobs.renditions,
            thumbhash: Some(blobs.thumbhash),
            ..media.clone()
        };
        Ok((cropped, staged))
    }

    /// Writes the original and the renditions of a processed image.
    async fn stage(
        &self,
        original: Bytes,
        processed: Processed,
    ) -> Result<(StagedImage, Vec<StagedBlob>)> {
        let _timer = StageTimer::new("store");
        let mut bytes = Vec::with_capacity(processed.renditions.len() + 1);
        bytes.push(original);
        let formats: Vec<_> = processed
            .renditions
            .iter()
            .map(|r| (r.edge, r.format))
            .collect();
        bytes.extend(
            processed
                .renditions
                .into_iter()
                .map(|r| Bytes::from(r.bytes)),
        );
        let staged = self.inner.blobs.put_all(bytes).await?;
        let renditions = formats
            .iter()
            .zip(&staged[1..])
            .map(|(&(edge, format), blob)| Rendition {
                edge,
                format,
                blob: *blob.blob(),
            })
            .collect();
        let image = StagedImage {
            width: processed.width,
            height: processed.height,
            crop: Crop {
                x: processed.crop.x(),
                y: processed.crop.y(),
                size: processed.crop.size(),
            },
            has_alpha: processed.has_alpha,
            original: *staged[0].blob(),
            renditions,
            thumbhash: processed.thumbhash,
        };
        Ok((image, staged))
    }
}

/// What a processed image became once written.
struct StagedImage {
    width: u32,
    height: u32,
    crop: Crop,
    has_alpha: bool,
    original: crate::model::BlobRef,
    renditions: Vec<Rendition>,
    thumbhash: Vec<u8>,
}
