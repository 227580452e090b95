//! ThumbHashes for media items made before they were: computed on first read from the
//! smallest rendition and kept, like a rendition added on demand.

use super::ProfileImages;
use crate::error::Result;
use crate::model::{Media, Rendition};

impl ProfileImages {
    /// `media` with its ThumbHash, computed and stored now if it has none. Best effort:
    /// when that fails the item is answered without one (and tried again next read).
    pub(super) async fn with_thumbhash(&self, mut media: Media) -> Media {
        if media.thumbhash.is_some() {
            return media;
        }
        let Some(base) = smallest_default(&media) else {
            return media;
        };
        match self.compute_thumbhash(&media, base).await {
            Ok(thumbhash) => media.thumbhash = Some(thumbhash),
            Err(error) => {
                tracing::warn!(%error, media = %media.id, "could not compute a thumbhash");
            }
        }
        media
    }

    async fn compute_thumbhash(&self, media: &Media, base: Rendition) -> Result<Vec<u8>> {
        let bytes = self.inner.blobs.get(&base.blob).await?;
        let thumbhash = self.inner.processor.thumbhash(bytes).await?;
        // Not a profile change (no version, no event). An item cropped or deleted
        // meanwhile keeps what it has; a full disk only means hashing again next time.
        if let Err(error) = self
            .inner
            .meta
            .set_thumbhash(&media.id, base, thumbhash.clone())
            .await
        {
            tracing::debug!(%error, media = %media.id, "thumbhash not stored");
        }
        Ok(thumbhash)
    }
}

/// The smallest default-format rendition: the cheapest to decode.
fn smallest_default(media: &Media) -> Option<Rendition> {
    let format = media.default_format();
    media
        .renditions
        .iter()
        .filter(|r| r.format == format)
        .min_by_key(|r| r.edge)
        .copied()
}
