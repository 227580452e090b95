//! `profile-image migrate`: copies a local (sled) data dir to the shared backends,
//! PostgreSQL and a bucket, so a team moves to replicas without losing a picture.
//!
//! Blobs first, then the media item that references them, then the users: a copy cut
//! short leaves nothing that points at missing bytes. Every write is idempotent and a
//! media item already in the database is skipped, so running the command again resumes
//! where it stopped. The event counter and id sequence are raised past the local
//! store's, so numbers clients saw keep increasing.

use super::local::LocalStore;
use super::postgres::PostgresStore;
use super::s3::S3Blobs;
use super::{BlobStore, MetadataStore};
use crate::error::Result;

/// How far a copy got.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub media_total: usize,
    pub media_copied: usize,
    /// Already in the database (an earlier run copied them).
    pub media_skipped: usize,
    pub blobs_copied: usize,
    pub users_total: usize,
    pub users_copied: usize,
}

/// Copies everything in `local` to `meta` and `blobs`, calling `report` after every
/// media item and user.
pub async fn copy_local_to_shared(
    local: &LocalStore,
    meta: &PostgresStore,
    blobs: &S3Blobs,
    report: impl Fn(&Progress),
) -> Result<Progress> {
    let media_ids = {
        let local = local.clone();
        tokio::task::spawn_blocking(move || local.media_ids())
            .await
            .map_err(crate::error::Error::internal)??
    };
    let users = {
        let local = local.clone();
        tokio::task::spawn_blocking(move || local.user_ids())
            .await
            .map_err(crate::error::Error::internal)??
    };
    let mut progress = Progress {
        media_total: media_ids.len(),
        users_total: users.len(),
        ..Progress::default()
    };
    for id in &media_ids {
        if meta.has_media(id).await? {
            progress.media_skipped += 1;
        } else if let Some(media) = MetadataStore::media(local, id).await? {
            let referenced =
                std::iter::once(&media.original).chain(media.renditions.iter().map(|r| &r.blob));
            for blob in referenced {
                if !blobs.contains(blob).await? {
                    blobs.put(local.get(blob).await?).await?;
                    progress.blobs_copied += 1;
                }
            }
            // The copy's blobs are objects of their own, even where the local store
            // packed them.
            meta.import_media(&media.unpacked()).await?;
            progress.media_copied += 1;
        }
        report(&progress);
    }
    for user in &users {
        let state = local.user_state(user).await?;
        meta.import_user(
            user,
            state.version,
            state.profile.as_ref(),
            state.job.as_ref(),
        )
        .await?;
        progress.users_copied += 1;
        report(&progress);
    }
    meta.raise_counters(local.next_id().await?).await?;
    Ok(progress)
}
