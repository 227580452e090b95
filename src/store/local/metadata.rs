//! [`MetadataStore`] over sled: point reads inline, transactions and scans on the
//! blocking pool, and a commit that returns once the group-commit flush made it durable.

use async_trait::async_trait;
use prost::Message;

use super::tx::Tx;
use super::{
    LocalStore, TxResult, abort, be_u64, decode_opt, user_key, user_media_key, user_media_prefix,
    user_version_key,
};
use crate::error::{Error, Result};
use crate::model::{DownloadJob, Media, Profile, Rendition, UserId, UserState};
use crate::store::records::{DownloadJob as JobRecord, MediaRecord, ProfileRecord, VersionRecord};
use crate::store::{Change, Committed, MediaWrite, MetadataStore, Write};

impl LocalStore {
    /// Rewrites media item `media_id` in one transaction with what `update` makes of
    /// it: false when the item is gone or `update` answers None (nothing to change).
    async fn update_media(
        &self,
        media_id: &str,
        update: impl Fn(&Media) -> Option<Media> + Send + 'static,
    ) -> Result<bool> {
        let media_id = media_id.to_owned();
        self.blocking(move |store| {
            store.transact_blocking(|tx| {
                let Some(current) = tx.media(&media_id)? else {
                    return Ok(false);
                };
                let stored = Media::try_from(current.clone()).or_else(abort)?;
                let Some(updated) = update(&stored) else {
                    return Ok(false);
                };
                tx.replace_media(&current, &MediaRecord::from(&updated))?;
                Ok(true)
            })
        })
        .await
    }
}

#[async_trait]
impl MetadataStore for LocalStore {
    async fn user_state(&self, user: &UserId) -> Result<UserState> {
        let version = self.versions.get(user_key(user))?.map_or(0, |v| be_u64(&v));
        let profile = decode_opt::<ProfileRecord>(self.profiles.get(user_key(user))?)?
            .map(Profile::try_from)
            .transpose()?;
        let media = match profile.as_ref().and_then(|p| p.media_id.as_deref()) {
            Some(id) => self.media_blocking(id)?,
            None => None,
        };
        let job = decode_opt::<JobRecord>(self.jobs.get(user_key(user))?)?
            .map(DownloadJob::try_from)
            .transpose()?;
        Ok(UserState {
            version,
            profile,
            media,
            job,
        })
    }

    async fn media(&self, media_id: &str) -> Result<Option<Media>> {
        self.media_blocking(media_id)
    }

    async fn media_at_version(&self, user: &UserId, version: u64) -> Result<Option<Media>> {
        let key = user_version_key(user, version);
        let Some(shown) = decode_opt::<VersionRecord>(self.profile_versions.get(key)?)? else {
            return Ok(None);
        };
        Ok(self
            .media_blocking(&shown.media_id)?
            .filter(|media| media.user == *user && media.crop == shown.crop()))
    }

    async fn set_thumbhash(
        &self,
        media_id: &str,
        base: Rendition,
        thumbhash: Vec<u8>,
    ) -> Result<bool> {
        self.update_media(media_id, move |stored| {
            stored.renditions.contains(&base).then(|| Media {
                thumbhash: Some(thumbhash.clone()),
                ..stored.clone()
            })
        })
        .await
    }

    async fn list_media(
        &self,
        user: &UserId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Media>, bool)> {
        let user = user.clone();
        self.blocking(move |store| store.list_media_blocking(&user, after_seq, limit))
            .await
    }

    async fn commit(&self, change: Change) -> Result<Committed> {
        // Every change is refused while the disk is (nearly) full, before anything is
        // written: a delete now must not fail half way later.
        self.space.check()?;
        let released = self
            .blocking(move |store| store.transact_blocking(|tx| apply(tx, &change)))
            .await?;
        self.durable().await?;
        if released {
            self.blobs.request_sweep();
        }
        Ok(Committed {
            sequence: self.generate_id()?,
        })
    }

    async fn add_rendition(
        &self,
        media_id: &str,
        base: Rendition,
        added: Rendition,
    ) -> Result<bool> {
        self.update_media(media_id, move |stored| {
            let taken = stored
                .renditions
                .iter()
                .any(|s| s.edge == added.edge && s.format == added.format);
            (stored.renditions.contains(&base) && !taken).then(|| {
                let mut updated = stored.clone();
                updated.renditions.push(added);
                updated
            })
        })
        .await
    }

    async fn record_attempt(&self, user: &UserId, version: u64, attempts: u32) -> Result<bool> {
        let user = user.clone();
        self.blocking(move |store| {
            store.transact_blocking(|tx| {
                let Some(mut stored) = tx.job(&user)? else {
                    return Ok(false);
                };
                if stored.version != version {
                    return Ok(false);
                }
                stored.attempts = attempts;
                tx.put_job(&user, &stored)?;
                Ok(true)
            })
        })
        .await
    }

    async fn jobs(&self) -> Result<Vec<DownloadJob>> {
        self.blocking(|store| {
            store
                .jobs
                .iter()
                .values()
                .map(|v| {
                    let record = JobRecord::decode(v?.as_ref()).map_err(Error::internal)?;
                    DownloadJob::try_from(record)
                })
                .collect()
        })
        .await
    }

    async fn next_id(&self) -> Result<u64> {
        self.generate_id()
    }
}

impl LocalStore {
    fn media_blocking(&self, media_id: &str) -> Result<Option<Media>> {
        decode_opt::<MediaRecord>(self.media.get(media_id)?)?
            .map(Media::try_from)
            .transpose()
    }

    fn list_media_blocking(
        &self,
        user: &UserId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Media>, bool)> {
        let prefix = user_media_prefix(user);
        let upper = match after_seq {
            Some(seq) => user_media_key(user, seq),
            None => {
                let mut end = prefix.clone();
                end.extend_from_slice(&[0xff; 9]);
                end
            }
        };
        let mut out = Vec::with_capacity(limit.min(64));
        let mut more = false;
        for entry in self.user_media.range(prefix..upper).rev() {
            let (_, media_id) = entry?;
            if out.len() == limit {
                more = true;
                break;
            }
            if let Some(media) = self.media_blocking(&String::from_utf8_lossy(&media_id))? {
                out.push(media);
            }
        }
        Ok((out, more))
    }
}

/// Applies a change inside a transaction if the user's state is still its base.
/// Returns whether blob references were released (then the sweeper has work).
fn apply(tx: &Tx<'_>, change: &Change) -> TxResult<bool> {
    let user = &change.user;
    let base = &change.base;
    let profile = tx
        .profile(user)?
        .map(Profile::try_from)
        .transpose()
        .or_else(abort)?;
    let job = tx
        .job(user)?
        .map(DownloadJob::try_from)
        .transpose()
        .or_else(abort)?;
    if tx.version(user)? != base.version || profile != base.profile || job != base.job {
        return abort(Error::Conflict);
    }
    let mut released = false;
    for write in &change.media {
        match write {
            MediaWrite::Insert(media) => tx.insert_media(user, &MediaRecord::from(media))?,
            MediaWrite::Replace(media) => {
                let Some(current) = tx.media(&media.id)? else {
                    return abort(Error::Conflict);
                };
                tx.replace_media(&current, &MediaRecord::from(media))?;
                released = true;
            }
            MediaWrite::Remove(id) => {
                let Some(current) = tx.media(id)? else {
                    return abort(Error::Conflict);
                };
                tx.remove_media(user, &current)?;
                released = true;
            }
        }
    }
    if let Some(version) = change.version {
        tx.set_version(user, version)?;
    }
    match &change.profile {
        Write::Keep => {}
        Write::Put(profile) => {
            tx.put_profile(user, &ProfileRecord::from(profile))?;
            record_version(tx, change, profile)?;
        }
        Write::Remove => tx.remove_profile(user)?,
    }
    match &change.job {
        Write::Keep => {}
        Write::Put(job) => tx.put_job(user, &JobRecord::from(job))?,
        Write::Remove => tx.remove_job(user)?,
    }
    Ok(released)
}

/// Indexes what a profile put by `change` shows, so the version's image URL resolves
/// later too (see [`MetadataStore::media_at_version`]).
fn record_version(tx: &Tx<'_>, change: &Change, profile: &Profile) -> TxResult<()> {
    let Some(id) = profile.media_id.as_deref() else {
        return Ok(());
    };
    let crop = match change.written_crop(id) {
        Some(crop) => crop,
        None => match tx.media(id)? {
            Some(record) => Media::try_from(record).or_else(abort)?.crop,
            // A profile naming a missing item: nothing to show, nothing to index.
            None => return Ok(()),
        },
    };
    tx.put_version(&change.user, profile.version, &VersionRecord::of(id, crop))
}
