//! Reading the image an earlier profile version showed: what versioned image URLs
//! answer, unchanged for as long as that version's media item (with its crop) exists.

use super::renditions;
use super::{ImageRequest, ProfileImages};
use crate::error::{Error, Result};
use crate::model::{Media, ServedImage, Status, UserId};

impl ProfileImages {
    /// The image profile version `version` of `user` showed, in the size and format
    /// asked for: the bytes Get answered while that version was current. NOT_FOUND when
    /// the version showed no image, or its media item was deleted or cropped again.
    pub async fn get_version(
        &self,
        user: &UserId,
        version: u64,
        request: ImageRequest,
    ) -> Result<ServedImage> {
        const ATTEMPTS: usize = 4;
        let target = renditions::target_edge(
            request.size,
            &self.inner.rendition_sizes,
            self.inner.full_max_edge,
        );
        for _ in 0..ATTEMPTS {
            let media = self
                .media_at_version(user, version)
                .await?
                .ok_or_else(|| no_version(user, version))?;
            match self.rendition(&media, target, request).await {
                // Cropped again or deleted between the two reads: look again.
                Err(Error::BlobMissing) => {}
                other => return other,
            }
        }
        Err(no_version(user, version))
    }

    /// A generated placeholder for `user` in the size and format asked for (what an
    /// image URL answers for a missing image when asked to).
    pub async fn placeholder_image(
        &self,
        user: &UserId,
        request: ImageRequest,
    ) -> Result<ServedImage> {
        let target = renditions::target_edge(
            request.size,
            &self.inner.rendition_sizes,
            self.inner.full_max_edge,
        );
        self.placeholder(user, target, request).await
    }

    async fn media_at_version(&self, user: &UserId, version: u64) -> Result<Option<Media>> {
        if let Some(media) = self.inner.meta.media_at_version(user, version).await? {
            return Ok(Some(media));
        }
        // Versions committed before the store recorded them: the current one still
        // resolves through the profile.
        let state = self.inner.meta.user_state(user).await?;
        Ok(match (state.profile, state.media) {
            (Some(profile), Some(media))
                if profile.version == version && profile.status == Status::Ready =>
            {
                Some(media)
            }
            _ => None,
        })
    }
}

fn no_version(user: &UserId, version: u64) -> Error {
    Error::NotFound(format!(
        "user {user} has no image of version {version} (any more)"
    ))
}
