//! How a [`Change`] is written to PostgreSQL: one transaction that takes the user's row
//! lock, checks the change's base, and writes the profile, media, job, version index
//! and event rows together.

use prost::Message;

use super::events::{insert_event, kind_name};
use super::metadata::{job_from, media_from, profile_from, seconds};
use super::{PostgresStore, bigint, db, unsigned, user_key};
use crate::error::{Error, Result};
use crate::model::{Media, Profile};
use crate::store::records::{DownloadJob as JobRecord, MediaRecord, ProfileRecord};
use crate::store::{Change, MediaWrite, Write};

pub(super) type Transaction<'a> = deadpool_postgres::Transaction<'a>;

impl PostgresStore {
    /// Applies `change` inside `tx` if the user's state is still its base: the event's
    /// sequence (or the last one, when the change has no event).
    pub(super) async fn apply(&self, tx: &Transaction<'_>, change: &Change) -> Result<u64> {
        let (tenant, user_id) = user_key(&change.user);
        tx.execute(
            "INSERT INTO users (tenant, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&tenant, &user_id],
        )
        .await
        .map_err(db)?;
        let row = tx
            .query_one(
                "SELECT u.version, u.profile, j.record
                 FROM users u
                 LEFT JOIN download_jobs j ON j.tenant = u.tenant AND j.user_id = u.user_id
                 WHERE u.tenant = $1 AND u.user_id = $2
                 FOR UPDATE OF u",
                &[&tenant, &user_id],
            )
            .await
            .map_err(db)?;
        let version = unsigned(row.get(0));
        let stored_profile: Option<Vec<u8>> = row.get(1);
        let profile = profile_from(stored_profile.clone())?;
        let job = job_from(row.get(2))?;
        let base = &change.base;
        if version != base.version || profile != base.profile || job != base.job {
            return Err(Error::Conflict);
        }
        for write in &change.media {
            self.write_media(tx, change, write).await?;
        }
        let (profile_bytes, active) = match &change.profile {
            Write::Keep => (stored_profile, profile.and_then(|p| p.media_id)),
            Write::Put(p) => (
                Some(ProfileRecord::from(p).encode_to_vec()),
                p.media_id.clone(),
            ),
            Write::Remove => (None, None),
        };
        let new_version = bigint(change.version.unwrap_or(version));
        tx.execute(
            "UPDATE users SET version = $3, profile = $4, media_id = $5
             WHERE tenant = $1 AND user_id = $2",
            &[&tenant, &user_id, &new_version, &profile_bytes, &active],
        )
        .await
        .map_err(db)?;
        if let Write::Put(profile) = &change.profile {
            record_version(tx, change, profile).await?;
        }
        match &change.job {
            Write::Keep => {}
            Write::Put(job) => {
                let record = JobRecord::from(job).encode_to_vec();
                tx.execute(
                    "INSERT INTO download_jobs
                         (tenant, user_id, version, record, lease_owner, lease_until)
                     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
                     ON CONFLICT (tenant, user_id) DO UPDATE SET
                         version = EXCLUDED.version, record = EXCLUDED.record,
                         lease_owner = EXCLUDED.lease_owner,
                         lease_until = EXCLUDED.lease_until",
                    &[
                        &tenant,
                        &user_id,
                        &bigint(job.version),
                        &record,
                        &self.replica,
                        &seconds(self.job_lease),
                    ],
                )
                .await
                .map_err(db)?;
            }
            Write::Remove => {
                tx.execute(
                    "DELETE FROM download_jobs WHERE tenant = $1 AND user_id = $2",
                    &[&tenant, &user_id],
                )
                .await
                .map_err(db)?;
            }
        }
        match &change.event {
            Some(event) => insert_event(tx, &change.user, kind_name(event.kind), event).await,
            None => {
                let row = tx
                    .query_one("SELECT last FROM event_counter", &[])
                    .await
                    .map_err(db)?;
                Ok(unsigned(row.get(0)))
            }
        }
    }

    async fn write_media(
        &self,
        tx: &Transaction<'_>,
        change: &Change,
        write: &MediaWrite,
    ) -> Result<()> {
        let (tenant, user_id) = user_key(&change.user);
        match write {
            MediaWrite::Insert(media) => {
                let record = MediaRecord::from(media).encode_to_vec();
                tx.execute(
                    "INSERT INTO media (media_id, tenant, user_id, seq, record)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&media.id, &tenant, &user_id, &bigint(media.seq), &record],
                )
                .await
                .map_err(db)?;
                reference_blobs(tx, media).await
            }
            MediaWrite::Replace(media) => {
                let record = MediaRecord::from(media).encode_to_vec();
                let updated = tx
                    .execute(
                        "UPDATE media SET record = $4
                         WHERE media_id = $1 AND tenant = $2 AND user_id = $3",
                        &[&media.id, &tenant, &user_id, &record],
                    )
                    .await
                    .map_err(db)?;
                if updated == 0 {
                    return Err(Error::Conflict);
                }
                tx.execute("DELETE FROM media_blobs WHERE media_id = $1", &[&media.id])
                    .await
                    .map_err(db)?;
                reference_blobs(tx, media).await
            }
            MediaWrite::Remove(id) => {
                let removed = tx
                    .execute(
                        "DELETE FROM media WHERE media_id = $1 AND tenant = $2 AND user_id = $3",
                        &[id, &tenant, &user_id],
                    )
                    .await
                    .map_err(db)?;
                if removed == 0 {
                    return Err(Error::Conflict);
                }
                Ok(())
            }
        }
    }
}

/// Media item `media_id`, its row locked until `tx` ends.
pub(super) async fn locked_media(tx: &Transaction<'_>, media_id: &str) -> Result<Option<Media>> {
    let row = tx
        .query_opt(
            "SELECT record FROM media WHERE media_id = $1 FOR UPDATE",
            &[&media_id],
        )
        .await
        .map_err(db)?;
    media_from(row.map(|r| r.get(0)))
}

/// Indexes what a profile put by `change` shows, so the version's image URL resolves
/// later too (see [`MetadataStore::media_at_version`]).
async fn record_version(tx: &Transaction<'_>, change: &Change, profile: &Profile) -> Result<()> {
    let Some(id) = profile.media_id.as_deref() else {
        return Ok(());
    };
    let crop = match change.written_crop(id) {
        Some(crop) => crop,
        None => {
            let row = tx
                .query_opt("SELECT record FROM media WHERE media_id = $1", &[&id])
                .await
                .map_err(db)?;
            match media_from(row.map(|r| r.get(0)))? {
                Some(media) => media.crop,
                // A profile naming a missing item: nothing to show, nothing to index.
                None => return Ok(()),
            }
        }
    };
    let (tenant, user_id) = user_key(&change.user);
    tx.execute(
        "INSERT INTO profile_versions
             (tenant, user_id, version, media_id, crop_x, crop_y, crop_size)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant, user_id, version) DO UPDATE SET
             media_id = EXCLUDED.media_id, crop_x = EXCLUDED.crop_x,
             crop_y = EXCLUDED.crop_y, crop_size = EXCLUDED.crop_size",
        &[
            &tenant,
            &user_id,
            &bigint(profile.version),
            &id,
            &i64::from(crop.x),
            &i64::from(crop.y),
            &i64::from(crop.size),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Records which blobs `media` references (what the bucket sweep keeps).
pub(super) async fn reference_blobs(tx: &Transaction<'_>, media: &Media) -> Result<()> {
    let hashes: Vec<Vec<u8>> = std::iter::once(&media.original)
        .chain(media.renditions.iter().map(|r| &r.blob))
        .map(|b| b.hash.to_vec())
        .collect();
    tx.execute(
        "INSERT INTO media_blobs (media_id, hash)
         SELECT $1, h FROM unnest($2::bytea[]) AS h
         ON CONFLICT DO NOTHING",
        &[&media.id, &hashes],
    )
    .await
    .map_err(db)?;
    Ok(())
}
