//! Media items: re-activating, listing and deleting them.

use super::next_ready_profile;
use super::renditions;
use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MediaView, ProfileImages, ProfileView, ServedImage};
use crate::error::{Error, Result, reason};
use crate::model::{CropRequest, ExpectedVersion, UserId};
use crate::store::abort;
use crate::store::records::{MediaRecord, SOURCE_MEDIA};
use crate::watch::EventKind;

impl ProfileImages {
    /// Makes one of the user's earlier media items active again, optionally re-cropped.
    pub async fn set_media(
        &self,
        user: &UserId,
        media_id: &str,
        crop: Option<CropRequest>,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        self.inner.store.ensure_space()?;
        let _lock = self.inner.locks.lock(user).await;
        let media = self.owned_media(user, media_id, "media_id")?;
        let recropped = match crop {
            Some(crop) => Some(self.recrop(user, &media, crop).await?),
            None => None,
        };
        let (updated, _staged) = recropped.unzip();
        let owner = user.clone();
        let media_id = media_id.to_owned();
        self.commit_locked(user, EventKind::Set, move |tx| {
            expected.check(tx.version(&owner)?).or_else(abort)?;
            let Some(current) = tx.media(&media_id)? else {
                return abort(Error::NotFound(format!("media {media_id} not found")));
            };
            let active = match &updated {
                Some(updated) => {
                    tx.replace_media(&current, updated)?;
                    updated.clone()
                }
                None => current,
            };
            let record = next_ready_profile(tx, &owner, &active, SOURCE_MEDIA)?;
            Ok((record, Some(active)))
        })
        .await
    }

    /// Deletes a media item and its bytes; if it is active, the profile image too.
    pub async fn delete_media(&self, user: &UserId, media_id: &str) -> Result<()> {
        self.inner.store.ensure_space()?;
        let lock = self.inner.locks.lock(user).await;
        self.owned_media(user, media_id, "media_id")?;
        let owner = user.clone();
        let id = media_id.to_owned();
        let deleted_profile = self
            .inner
            .store
            .transact_change(move |tx| {
                let Some(current) = tx.media(&id)? else {
                    return abort(Error::NotFound(format!("media {id} not found")));
                };
                tx.remove_media(&owner, &current)?;
                let active = tx.profile(&owner)?.is_some_and(|p| p.media_id == id);
                if active {
                    tx.bump_version(&owner)?;
                    tx.remove_profile(&owner)?;
                }
                Ok(active)
            })
            .await?;
        self.inner.store.durable().await?;
        if deleted_profile {
            self.inner.events.publish(EventKind::Deleted, user, None)?;
        }
        drop(lock);
        self.release_unreferenced_blobs();
        Ok(())
    }

    /// A page of the user's media, newest first. The page token is the position of the
    /// last item returned.
    pub async fn list_media(
        &self,
        user: &UserId,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<MediaView>, String)> {
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        } as usize;
        let after = match page_token {
            "" => None,
            token => Some(u64::from_str_radix(token, 16).map_err(|_| {
                Error::invalid(
                    "page_token",
                    reason::FIELD_INVALID,
                    "page_token is not one this service returned",
                )
            })?),
        };
        let active_id = self
            .inner
            .store
            .profile(user)?
            .map(|p| p.media_id)
            .unwrap_or_default();
        let (records, more) = self.inner.store.list_media(user, after, limit).await?;
        let next = match (more, records.last()) {
            (true, Some(last)) => format!("{:016x}", last.seq),
            _ => String::new(),
        };
        let media = records
            .into_iter()
            .map(|record| MediaView {
                active: !active_id.is_empty() && record.media_id == active_id,
                full: renditions::pick_default(&record, self.inner.full_max_edge)
                    .map(ServedImage::from_rendition),
                record,
            })
            .collect();
        Ok((media, next))
    }

    fn owned_media(&self, user: &UserId, media_id: &str, field: &str) -> Result<MediaRecord> {
        if media_id.is_empty() {
            return Err(Error::missing(field));
        }
        match self.inner.store.media(media_id)? {
            Some(media) if media.user_id == user.as_str() => Ok(media),
            _ => Err(Error::NotFound(format!(
                "media {media_id} not found for user {user}"
            ))),
        }
    }
}
