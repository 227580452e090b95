//! Media items: re-activating, listing and deleting them.

use super::renditions;
use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ProfileImages};
use crate::error::{Error, Result};
use crate::model::{
    CropRequest, ExpectedVersion, Media, MediaView, ProfileView, ServedImage, UserId,
};

/// Where a page of media starts: after the item with this sequence number.
pub type PageToken = Option<u64>;

impl ProfileImages {
    /// Makes one of the user's earlier media items active again, optionally re-cropped.
    pub async fn set_media(
        &self,
        user: &UserId,
        media_id: &str,
        crop: Option<CropRequest>,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        self.ensure_space()?;
        let locked = self.inner.transitions.lock(user).await;
        let media = self.owned_media(user, media_id).await?;
        let (media, _staged) = match crop {
            Some(crop) => self.recrop(&media, crop).await?,
            None => (media, Vec::new()),
        };
        locked.set_earlier_media(media, expected).await
    }

    /// Deletes a media item and its bytes; if it is active, the profile image too. The
    /// user's version after it.
    pub async fn delete_media(&self, user: &UserId, media_id: &str) -> Result<u64> {
        self.ensure_space()?;
        let locked = self.inner.transitions.lock(user).await;
        self.owned_media(user, media_id).await?;
        locked.delete_media(media_id).await
    }

    /// A page of the user's media, newest first, of at most `page_size` items (0 = the
    /// default), and the token of the next page (None = no more).
    pub async fn list_media(
        &self,
        user: &UserId,
        page_size: u32,
        after: PageToken,
    ) -> Result<(Vec<MediaView>, PageToken)> {
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        } as usize;
        let active_id = self
            .inner
            .meta
            .user_state(user)
            .await?
            .profile
            .and_then(|p| p.media_id);
        let (items, more) = self.inner.meta.list_media(user, after, limit).await?;
        let next = match (more, items.last()) {
            (true, Some(last)) => Some(last.seq),
            _ => None,
        };
        let media = items
            .into_iter()
            .map(|media| MediaView {
                active: active_id.as_deref() == Some(media.id.as_str()),
                full: renditions::pick_default(&media, self.inner.full_max_edge)
                    .map(ServedImage::from_rendition),
                media,
            })
            .collect();
        Ok((media, next))
    }

    async fn owned_media(&self, user: &UserId, media_id: &str) -> Result<Media> {
        match self.inner.meta.media(media_id).await? {
            Some(media) if media.user == *user => Ok(media),
            _ => Err(Error::NotFound(format!(
                "media {media_id} not found for user {user}"
            ))),
        }
    }
}
