//! The read path: Get, and the state views that writes and events answer with.

use bytes::Bytes;

use super::renditions;
use super::{ImageRequest, ProfileImages, ProfileView, ServedImage, format_from_record, no_image};
use crate::error::{Error, Result};
use crate::imaging::ImageFormat;
use crate::model::{OutputFormat, UserId};
use crate::store::records::{self, MediaRecord, ProfileRecord, RenditionRecord, STATUS_READY};

impl ProfileImages {
    /// Reads the user's profile image, in the size and format asked for.
    ///
    /// The metadata and the bytes are read separately, so a concurrent replace or
    /// DeleteMedia may release the bytes in between: then the read starts again on the
    /// new state (which may have no image: NOT_FOUND).
    pub async fn get(&self, user: &UserId, request: ImageRequest) -> Result<ProfileView> {
        const ATTEMPTS: usize = 4;
        let mut attempt = 1;
        loop {
            match self.get_once(user, request).await {
                Err(Error::BlobMissing) if attempt < ATTEMPTS => attempt += 1,
                Err(Error::BlobMissing) => {
                    // Changed under every attempt: NOT_FOUND if the image is gone now.
                    self.state(user)?.ok_or_else(|| no_image(user))?;
                    return Err(Error::Unavailable(format!(
                        "user {user}'s image changed during every read; retry"
                    )));
                }
                other => return other,
            }
        }
    }

    async fn get_once(&self, user: &UserId, request: ImageRequest) -> Result<ProfileView> {
        let mut view = self.state(user)?.ok_or_else(|| no_image(user))?;
        let target = renditions::target_edge(
            request.size,
            &self.inner.rendition_sizes,
            self.inner.full_max_edge,
        );
        let image = match &view.media {
            Some(media) if view.record.status == STATUS_READY => {
                self.rendition(media, target, request).await?
            }
            _ => self.placeholder(user, target, request).await?,
        };
        view.image = Some(image);
        Ok(view)
    }

    /// The user's current state with the full-size default rendition's metadata, or
    /// None when the user has no image.
    pub fn state(&self, user: &UserId) -> Result<Option<ProfileView>> {
        let store = &self.inner.store;
        let Some(record) = store.profile(user)? else {
            return Ok(None);
        };
        let media = match record.media_id.as_str() {
            "" => None,
            id => store.media(id)?,
        };
        Ok(Some(self.view(user, record, media)))
    }

    pub(super) fn view(
        &self,
        user: &UserId,
        record: ProfileRecord,
        media: Option<MediaRecord>,
    ) -> ProfileView {
        let image = media
            .as_ref()
            .filter(|_| record.status == STATUS_READY)
            .and_then(|m| renditions::pick_default(m, self.inner.full_max_edge))
            .map(ServedImage::from_rendition);
        ProfileView {
            user_id: user.clone(),
            record,
            media,
            image,
        }
    }

    async fn rendition(
        &self,
        media: &MediaRecord,
        target: u32,
        request: ImageRequest,
    ) -> Result<ServedImage> {
        let base = renditions::pick_default(media, target).ok_or_else(|| {
            Error::internal(format!("media {} has no renditions", media.media_id))
        })?;
        let wanted = match request.format {
            OutputFormat::Default => base.format,
            OutputFormat::Jpeg => records::FORMAT_JPEG,
            OutputFormat::Png => records::FORMAT_PNG,
            OutputFormat::Webp => records::FORMAT_WEBP,
        };
        let rendition = match renditions::find(media, base.edge, wanted) {
            Some(found) => found.clone(),
            None => self.add_rendition(media, base, wanted).await?,
        };
        let mut image = ServedImage::from_rendition(&rendition);
        if !request.metadata_only {
            image.data = Some(self.inner.store.blobs.read(&rendition.blob)?);
        }
        Ok(image)
    }

    /// Makes a rendition in a non-default format from the default one of the same edge
    /// and keeps it, so the next Get for it is a pure read.
    async fn add_rendition(
        &self,
        media: &MediaRecord,
        base: &RenditionRecord,
        format: i32,
    ) -> Result<RenditionRecord> {
        let wanted = format_from_record(format);
        let encoded = if wanted == ImageFormat::Webp {
            // Lossy from lossy loses twice: WebP is made from the original's pixels.
            let original = self.inner.store.blobs.read(&media.original)?;
            let crop = (media.crop_x, media.crop_y, media.crop_size);
            self.inner
                .processor
                .render(original, crop, base.edge, wanted)
                .await?
        } else {
            let source = self.inner.store.blobs.read(&base.blob)?;
            self.inner.processor.transcode(source, wanted).await?
        };
        let store = self.inner.store.clone();
        let staged = store
            .blocking(move |store| store.blobs.stage(&encoded))
            .await?;
        let rendition = RenditionRecord {
            edge: base.edge,
            format,
            blob: staged.blob().clone(),
        };
        let media_id = media.media_id.clone();
        let added = rendition.clone();
        let base = base.clone();
        // The media item may have been deleted, replaced or cropped again meanwhile:
        // then the rendition is served once and its blob cleaned up when `staged` drops.
        self.inner
            .store
            .transact(move |tx| {
                let Some(current) = tx.media(&media_id)? else {
                    return Ok(());
                };
                let same_base = renditions::find(&current, base.edge, base.format)
                    .is_some_and(|found| found.blob == base.blob);
                if !same_base || renditions::find(&current, added.edge, added.format).is_some() {
                    return Ok(());
                }
                let mut updated = current.clone();
                updated.renditions.push(added.clone());
                tx.replace_media(&current, &updated)
            })
            .await?;
        drop(staged);
        Ok(rendition)
    }

    async fn placeholder(
        &self,
        user: &UserId,
        target: u32,
        request: ImageRequest,
    ) -> Result<ServedImage> {
        let format = match request.format {
            OutputFormat::Default | OutputFormat::Jpeg => ImageFormat::Jpeg,
            OutputFormat::Png => ImageFormat::Png,
            OutputFormat::Webp => ImageFormat::Webp,
        };
        let bytes = self
            .inner
            .processor
            .placeholder(user.as_str().to_owned(), target, format)
            .await?;
        Ok(ServedImage {
            format,
            edge: target,
            size_bytes: bytes.len() as u64,
            etag: blake3::hash(&bytes).to_hex().to_string(),
            data: (!request.metadata_only).then(|| Bytes::from(bytes)),
            placeholder: true,
        })
    }
}
