//! The read path: Get, and the current state that watchers start from.

use bytes::Bytes;

use super::renditions;
use super::{ImageRequest, ProfileImages, no_image};
use crate::error::{Error, Result};
use crate::model::{
    BlobRef, ImageFormat, Media, OutputFormat, ProfileView, Rendition, ServedImage, Status, UserId,
};

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
                    self.state(user).await?.ok_or_else(|| no_image(user))?;
                    return Err(Error::Unavailable(format!(
                        "user {user}'s image changed during every read; retry"
                    )));
                }
                other => return other,
            }
        }
    }

    /// Get, unless the caller has the bytes already: when what would be served has etag
    /// `if_none_match`, the view without bytes and `true` (not modified).
    pub async fn get_unless_match(
        &self,
        user: &UserId,
        request: ImageRequest,
        if_none_match: &str,
    ) -> Result<(ProfileView, bool)> {
        let probe = ImageRequest {
            metadata_only: true,
            ..request
        };
        let view = self.get(user, probe).await?;
        let matches = view
            .image
            .as_ref()
            .is_some_and(|image| image.etag == if_none_match);
        if matches || request.metadata_only {
            return Ok((view, matches));
        }
        Ok((self.get(user, request).await?, false))
    }

    async fn get_once(&self, user: &UserId, request: ImageRequest) -> Result<ProfileView> {
        let mut view = self.state(user).await?.ok_or_else(|| no_image(user))?;
        let target = renditions::target_edge(
            request.size,
            &self.inner.rendition_sizes,
            self.inner.full_max_edge,
        );
        let image = match &view.media {
            Some(media) if view.profile.status == Status::Ready => {
                self.rendition(media, target, request).await?
            }
            _ => self.placeholder(user, target, request).await?,
        };
        view.image = Some(image);
        Ok(view)
    }

    /// The user's current state with the full-size default rendition's metadata, or
    /// None when the user has no image.
    pub async fn state(&self, user: &UserId) -> Result<Option<ProfileView>> {
        let state = self.inner.meta.user_state(user).await?;
        let Some(profile) = state.profile else {
            return Ok(None);
        };
        let media = match state.media {
            Some(media) => Some(self.with_thumbhash(media).await),
            None => None,
        };
        Ok(Some(self.inner.transitions.view(user, profile, media)))
    }

    pub(super) async fn rendition(
        &self,
        media: &Media,
        target: u32,
        request: ImageRequest,
    ) -> Result<ServedImage> {
        let base = *renditions::pick_default(media, target)
            .ok_or_else(|| Error::internal(format!("media {} has no renditions", media.id)))?;
        let wanted = match request.format {
            OutputFormat::Default => base.format,
            OutputFormat::Jpeg => ImageFormat::Jpeg,
            OutputFormat::Png => ImageFormat::Png,
            OutputFormat::Webp => ImageFormat::Webp,
        };
        let (rendition, made) = match renditions::find(media, base.edge, wanted) {
            Some(found) => (*found, None),
            None => {
                let (rendition, bytes) = self.add_rendition(media, base, wanted).await?;
                (rendition, Some(bytes))
            }
        };
        let mut image = ServedImage::from_rendition(&rendition);
        if !request.metadata_only {
            image.data = Some(match made {
                Some(bytes) => bytes,
                None => self.inner.blobs.get(&rendition.blob).await?,
            });
        }
        Ok(image)
    }

    /// Makes a rendition in a non-default format for the edge of `base` and keeps it, so
    /// the next Get for it is a pure read. Not a profile change: the item's version and
    /// events stay as they are. When storage has no room, the rendition is served
    /// without being kept (reads go on on a full disk).
    async fn add_rendition(
        &self,
        media: &Media,
        base: Rendition,
        format: ImageFormat,
    ) -> Result<(Rendition, Bytes)> {
        let processor = &self.inner.processor;
        let encoded = if format == ImageFormat::Webp {
            // Lossy from lossy loses twice: WebP is made from the original's pixels.
            let original = self.inner.blobs.get(&media.original).await?;
            processor
                .render(original, media.crop, base.edge, format)
                .await?
        } else {
            let source = self.inner.blobs.get(&base.blob).await?;
            processor.transcode(source, format).await?
        };
        let encoded = Bytes::from(encoded);
        let rendition = Rendition {
            edge: base.edge,
            format,
            blob: BlobRef::of(&encoded),
        };
        let staged = match self.inner.blobs.put(encoded.clone()).await {
            Ok(staged) => staged,
            Err(Error::StorageFull(_) | Error::Unavailable(_)) => return Ok((rendition, encoded)),
            Err(error) => return Err(error),
        };
        // The media item may have been deleted, replaced or cropped again meanwhile:
        // then the rendition is served once and its blob cleaned up when `staged` drops.
        match self
            .inner
            .meta
            .add_rendition(&media.id, base, rendition)
            .await
        {
            Ok(_) | Err(Error::StorageFull(_) | Error::Unavailable(_)) => {}
            Err(error) => return Err(error),
        }
        drop(staged);
        Ok((rendition, encoded))
    }

    pub(super) async fn placeholder(
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
