//! [`MetadataStore`] over PostgreSQL: reads are one query, a change is one transaction
//! holding the user's row lock.

use async_trait::async_trait;
use prost::Message;
use std::time::Duration;

use super::commit::{locked_media, reference_blobs};
use super::{PostgresStore, bigint, db, unsigned, user_key};
use crate::error::{Error, Result};
use crate::model::{Crop, DownloadJob, Media, Profile, Rendition, UserId, UserState};
use crate::store::records::{DownloadJob as JobRecord, MediaRecord, ProfileRecord};
use crate::store::{Change, Committed, MetadataStore};

/// Jobs claimed at once when taking over those of dead replicas.
const CLAIM_BATCH: i64 = 100;

pub(super) fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::internal(format!("corrupt record in the database: {e}")))
}

pub(super) fn profile_from(bytes: Option<Vec<u8>>) -> Result<Option<Profile>> {
    bytes
        .map(|b| Profile::try_from(decode::<ProfileRecord>(&b)?))
        .transpose()
}

pub(super) fn media_from(bytes: Option<Vec<u8>>) -> Result<Option<Media>> {
    bytes
        .map(|b| Media::try_from(decode::<MediaRecord>(&b)?))
        .transpose()
}

pub(super) fn job_from(bytes: Option<Vec<u8>>) -> Result<Option<DownloadJob>> {
    bytes
        .map(|b| DownloadJob::try_from(decode::<JobRecord>(&b)?))
        .transpose()
}

pub(super) fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn user_state(&self, user: &UserId) -> Result<UserState> {
        let (tenant, user_id) = user_key(user);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT u.version, u.profile, m.record, j.record
                 FROM users u
                 LEFT JOIN media m ON m.media_id = u.media_id
                 LEFT JOIN download_jobs j ON j.tenant = u.tenant AND j.user_id = u.user_id
                 WHERE u.tenant = $1 AND u.user_id = $2",
            )
            .await
            .map_err(db)?;
        let Some(row) = client
            .query_opt(&statement, &[&tenant, &user_id])
            .await
            .map_err(db)?
        else {
            return Ok(UserState::default());
        };
        Ok(UserState {
            version: unsigned(row.get(0)),
            profile: profile_from(row.get(1))?,
            media: media_from(row.get(2))?,
            job: job_from(row.get(3))?,
        })
    }

    async fn media(&self, media_id: &str) -> Result<Option<Media>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT record FROM media WHERE media_id = $1")
            .await
            .map_err(db)?;
        let row = client
            .query_opt(&statement, &[&media_id])
            .await
            .map_err(db)?;
        media_from(row.map(|r| r.get(0)))
    }

    async fn media_at_version(&self, user: &UserId, version: u64) -> Result<Option<Media>> {
        let (tenant, user_id) = user_key(user);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT m.record, v.crop_x, v.crop_y, v.crop_size
                 FROM profile_versions v JOIN media m ON m.media_id = v.media_id
                 WHERE v.tenant = $1 AND v.user_id = $2 AND v.version = $3",
            )
            .await
            .map_err(db)?;
        let Some(row) = client
            .query_opt(&statement, &[&tenant, &user_id, &bigint(version)])
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let shown = Crop {
            x: crop_value(row.get(1)),
            y: crop_value(row.get(2)),
            size: crop_value(row.get(3)),
        };
        Ok(
            media_from(Some(row.get(0)))?
                .filter(|media| media.user == *user && media.crop == shown),
        )
    }

    async fn set_thumbhash(
        &self,
        media_id: &str,
        base: Rendition,
        thumbhash: Vec<u8>,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(stored) = locked_media(&tx, media_id).await? else {
            return Ok(false);
        };
        if !stored.renditions.contains(&base) {
            return Ok(false);
        }
        let updated = Media {
            thumbhash: Some(thumbhash),
            ..stored
        };
        tx.execute(
            "UPDATE media SET record = $2 WHERE media_id = $1",
            &[&media_id, &MediaRecord::from(&updated).encode_to_vec()],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn list_media(
        &self,
        user: &UserId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Media>, bool)> {
        let (tenant, user_id) = user_key(user);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT record FROM media
                 WHERE tenant = $1 AND user_id = $2 AND ($3::bigint IS NULL OR seq < $3)
                 ORDER BY seq DESC LIMIT $4",
            )
            .await
            .map_err(db)?;
        let after = after_seq.map(bigint);
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let rows = client
            .query(&statement, &[&tenant, &user_id, &after, &fetch])
            .await
            .map_err(db)?;
        let more = rows.len() > limit;
        let media = rows
            .into_iter()
            .take(limit)
            .map(|row| Media::try_from(decode::<MediaRecord>(row.get(0))?))
            .collect::<Result<_>>()?;
        Ok((media, more))
    }

    async fn commit(&self, change: Change) -> Result<Committed> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let sequence = self.apply(&tx, &change).await?;
        tx.commit().await.map_err(db)?;
        if change.event.is_some() {
            self.announced.send_if_modified(|last| {
                let newer = sequence > *last;
                *last = (*last).max(sequence);
                newer
            });
        }
        Ok(Committed { sequence })
    }

    async fn add_rendition(
        &self,
        media_id: &str,
        base: Rendition,
        added: Rendition,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(mut stored) = locked_media(&tx, media_id).await? else {
            return Ok(false);
        };
        let has = stored.renditions.contains(&base);
        let taken = stored
            .renditions
            .iter()
            .any(|s| s.edge == added.edge && s.format == added.format);
        if !has || taken {
            return Ok(false);
        }
        stored.renditions.push(added);
        let record = MediaRecord::from(&stored).encode_to_vec();
        tx.execute(
            "UPDATE media SET record = $2 WHERE media_id = $1",
            &[&media_id, &record],
        )
        .await
        .map_err(db)?;
        reference_blobs(&tx, &stored).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn record_attempt(&self, user: &UserId, version: u64, attempts: u32) -> Result<bool> {
        let (tenant, user_id) = user_key(user);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let row = tx
            .query_opt(
                "SELECT record FROM download_jobs WHERE tenant = $1 AND user_id = $2 FOR UPDATE",
                &[&tenant, &user_id],
            )
            .await
            .map_err(db)?;
        let Some(mut job) = job_from(row.map(|r| r.get(0)))? else {
            return Ok(false);
        };
        if job.version != version {
            return Ok(false);
        }
        job.attempts = attempts;
        let record = JobRecord::from(&job).encode_to_vec();
        tx.execute(
            "UPDATE download_jobs SET record = $3 WHERE tenant = $1 AND user_id = $2",
            &[&tenant, &user_id, &record],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn jobs(&self) -> Result<Vec<DownloadJob>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE download_jobs SET lease_owner = $1,
                     lease_until = now() + make_interval(secs => $2)
                 WHERE (tenant, user_id) IN (
                     SELECT tenant, user_id FROM download_jobs
                     WHERE lease_until < now()
                     ORDER BY lease_until
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 RETURNING record",
                &[&self.replica, &seconds(self.job_lease), &CLAIM_BATCH],
            )
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|row| DownloadJob::try_from(decode::<JobRecord>(row.get(0))?))
            .collect()
    }

    fn job_lease(&self) -> Option<Duration> {
        Some(self.job_lease)
    }

    async fn renew_job_leases(&self, jobs: &[(UserId, u64)]) -> Result<()> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE download_jobs SET lease_until = now() + make_interval(secs => $5)
                 WHERE tenant = $1 AND user_id = $2 AND version = $3 AND lease_owner = $4",
            )
            .await
            .map_err(db)?;
        for (user, version) in jobs {
            let (tenant, user_id) = user_key(user);
            client
                .execute(
                    &statement,
                    &[
                        &tenant,
                        &user_id,
                        &bigint(*version),
                        &self.replica,
                        &seconds(self.job_lease),
                    ],
                )
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn next_id(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT nextval('ids')", &[])
            .await
            .map_err(db)?;
        Ok(unsigned(row.get(0)))
    }
}

fn crop_value(stored: i64) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}
