//! The schema, as numbered migrations embedded in the binary. Each replica applies the
//! missing ones at start-up under a PostgreSQL advisory lock, so replicas starting
//! together wait for one another instead of racing; a migration and its entry in
//! `schema_migrations` commit together. Never edit a released migration: add one.

use tokio_postgres::Client;

use super::db;
use crate::error::{Error, Result};

/// Key of the advisory lock held while migrating (any constant no other tool uses).
const MIGRATION_LOCK: i64 = 0x7072_6f66_696c_6531; // "profile1"

/// (version, SQL), in order.
const MIGRATIONS: &[(i64, &str)] = &[(1, V1_INITIAL), (2, V2_PROFILE_VERSIONS)];

/// What each profile version showed (its media item and crop then), so that the
/// image URL of a version that is no longer current keeps resolving while its item
/// exists with that crop.
const V2_PROFILE_VERSIONS: &str = "
CREATE TABLE profile_versions (
    tenant text NOT NULL DEFAULT '',
    user_id text NOT NULL,
    version bigint NOT NULL,
    media_id text NOT NULL,
    crop_x bigint NOT NULL,
    crop_y bigint NOT NULL,
    crop_size bigint NOT NULL,
    PRIMARY KEY (tenant, user_id, version)
);
";

/// Users are keyed by (tenant, user_id); until tenants exist every tenant is ''.
/// Records are the protobuf messages of `store::records` (as in the local store);
/// columns beside them are what queries select, order and lock on.
const V1_INITIAL: &str = "
CREATE TABLE users (
    tenant text NOT NULL DEFAULT '',
    user_id text NOT NULL,
    -- The last version given (never reused, so it outlives a deleted profile).
    version bigint NOT NULL DEFAULT 0,
    -- ProfileRecord; NULL when the user has no profile image.
    profile bytea,
    -- The profile's active media item (read with the profile in one query).
    media_id text,
    PRIMARY KEY (tenant, user_id)
);
CREATE TABLE media (
    media_id text PRIMARY KEY,
    tenant text NOT NULL DEFAULT '',
    user_id text NOT NULL,
    seq bigint NOT NULL,
    -- MediaRecord
    record bytea NOT NULL
);
CREATE INDEX media_by_user ON media (tenant, user_id, seq DESC);
-- Which blobs each media item references: what the bucket sweep keeps.
CREATE TABLE media_blobs (
    media_id text NOT NULL REFERENCES media ON DELETE CASCADE,
    hash bytea NOT NULL,
    PRIMARY KEY (media_id, hash)
);
CREATE INDEX media_blobs_by_hash ON media_blobs (hash);
CREATE TABLE download_jobs (
    tenant text NOT NULL DEFAULT '',
    user_id text NOT NULL,
    version bigint NOT NULL,
    -- DownloadJob record
    record bytea NOT NULL,
    -- The replica running the job, until when (it renews the lease while it runs).
    lease_owner text NOT NULL,
    lease_until timestamptz NOT NULL,
    PRIMARY KEY (tenant, user_id)
);
CREATE INDEX download_jobs_by_lease ON download_jobs (lease_until);
-- Every profile change, numbered without gaps in commit order (event_counter's row
-- lock orders the commits that write events).
CREATE TABLE events (
    sequence bigint PRIMARY KEY,
    tenant text NOT NULL DEFAULT '',
    user_id text NOT NULL,
    kind text NOT NULL,
    -- ProfileRecord and MediaRecord after the change; NULL profile = removed.
    profile bytea,
    media bytea,
    time_ms bigint NOT NULL
);
CREATE TABLE event_counter (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint NOT NULL
);
INSERT INTO event_counter (one, last) VALUES (true, 0);
-- Media sequence numbers.
CREATE SEQUENCE ids;
";

/// Applies every migration the database lacks; returns the schema version.
pub async fn migrate(client: &mut Client) -> Result<i64> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version bigint PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .or_else(|e| {
            // Two replicas creating the table at once: one loses the race, harmlessly.
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Ok(())
            } else {
                Err(db(e))
            }
        })?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    let applied = apply_missing(client).await;
    // Released whatever happened (the session ends soon anyway on an error).
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db);
    let version = applied?;
    unlocked?;
    Ok(version)
}

async fn apply_missing(client: &mut Client) -> Result<i64> {
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    let newest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > newest {
        return Err(Error::internal(format!(
            "the database schema is version {current}, newer than this binary's {newest}: \
             run the newer binary"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(version, "applied database migration");
    }
    Ok(newest)
}
