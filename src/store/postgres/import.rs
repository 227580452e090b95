//! Writes that copy another store's records in (`profile-image migrate`). Each is
//! idempotent, so a copy that stopped half way is simply run again.

use prost::Message;

use super::{PostgresStore, bigint, db, user_key};
use crate::error::Result;
use crate::model::{DownloadJob, Media, Profile, UserId};
use crate::store::records::{DownloadJob as JobRecord, MediaRecord, ProfileRecord};

impl PostgresStore {
    /// Whether media item `media_id` is stored.
    pub async fn has_media(&self, media_id: &str) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT 1 FROM media WHERE media_id = $1", &[&media_id])
            .await
            .map_err(db)?;
        Ok(row.is_some())
    }

    /// Stores a media item (its blobs already in the bucket) unless it is there.
    pub async fn import_media(&self, media: &Media) -> Result<()> {
        let (tenant, user_id) = user_key(&media.user);
        let record = MediaRecord::from(media).encode_to_vec();
        let hashes: Vec<Vec<u8>> = std::iter::once(&media.original)
            .chain(media.renditions.iter().map(|r| &r.blob))
            .map(|b| b.hash.to_vec())
            .collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(
            "INSERT INTO media (media_id, tenant, user_id, seq, record)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&media.id, &tenant, &user_id, &bigint(media.seq), &record],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "INSERT INTO media_blobs (media_id, hash)
             SELECT $1, h FROM unnest($2::bytea[]) AS h ON CONFLICT DO NOTHING",
            &[&media.id, &hashes],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Stores a user's version, profile and pending download, unless the database
    /// already has a newer version of the user. A job is stored with an expired lease,
    /// so the first replica that looks claims it.
    pub async fn import_user(
        &self,
        user: &UserId,
        version: u64,
        profile: Option<&Profile>,
        job: Option<&DownloadJob>,
    ) -> Result<()> {
        let (tenant, user_id) = user_key(user);
        let profile_bytes = profile.map(|p| ProfileRecord::from(p).encode_to_vec());
        let active = profile.and_then(|p| p.media_id.clone());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(
            "INSERT INTO users (tenant, user_id, version, profile, media_id)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, user_id) DO UPDATE SET
                 version = EXCLUDED.version, profile = EXCLUDED.profile,
                 media_id = EXCLUDED.media_id
             WHERE users.version <= EXCLUDED.version",
            &[&tenant, &user_id, &bigint(version), &profile_bytes, &active],
        )
        .await
        .map_err(db)?;
        if let Some(job) = job {
            let record = JobRecord::from(job).encode_to_vec();
            tx.execute(
                "INSERT INTO download_jobs
                     (tenant, user_id, version, record, lease_owner, lease_until)
                 VALUES ($1, $2, $3, $4, 'migrate', now())
                 ON CONFLICT DO NOTHING",
                &[&tenant, &user_id, &bigint(job.version), &record],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// Moves the id sequence and the event counter to at least `floor`, so that media
    /// and event numbers go on increasing past those of the store copied in.
    pub async fn raise_counters(&self, floor: u64) -> Result<()> {
        let client = self.client().await?;
        let floor = bigint(floor);
        client
            .execute(
                "SELECT setval('ids', GREATEST($1, (SELECT last_value FROM ids)))",
                &[&floor],
            )
            .await
            .map_err(db)?;
        client
            .execute(
                "UPDATE event_counter SET last = GREATEST(last, $1)",
                &[&floor],
            )
            .await
            .map_err(db)?;
        Ok(())
    }
}
