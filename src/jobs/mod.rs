//! Background URL downloads.
//!
//! A download job is stored in the same commit as the DOWNLOADING state it fills,
//! before the client gets its reply, so it survives a crash and resumes at start-up.
//! Every later step is a transition that applies only if the profile is still at the
//! job's version: a newer set, crop or delete supersedes the job, and its running
//! download is cancelled. This module fetches and processes bytes; every change of
//! state goes through `profiles::Transitions`.

mod backoff;
mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::{Error, Result, reason};
use crate::fetch::{FetchConfig, Fetcher, validate_url};
use crate::model::{CropRequest, DownloadJob, ExpectedVersion, ProfileView, UserId};
use crate::profiles::ProfileImages;

/// Starts, resumes, retries and supersedes downloads. Cheap to clone.
#[derive(Clone)]
pub struct Downloads {
    inner: Arc<Inner>,
}

struct Inner {
    profiles: ProfileImages,
    fetcher: Fetcher,
    permits: Semaphore,
    max_attempts: u32,
    retry_base: Duration,
    /// The running download of each user, with the version it fills.
    running: Mutex<HashMap<UserId, (u64, CancellationToken)>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Downloads {
    /// Creates the downloader, resumes stored jobs and starts cancelling superseded ones.
    pub async fn start_worker(
        config: &Config,
        profiles: ProfileImages,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let fetcher = Fetcher::new(FetchConfig {
            connect_timeout: config.fetch_connect_timeout,
            total_timeout: config.fetch_timeout,
            max_bytes: config.max_upload_bytes,
            allow_cidrs: config.fetch_allow_cidrs.clone(),
            ..FetchConfig::default()
        });
        let downloads = Downloads {
            inner: Arc::new(Inner {
                profiles,
                fetcher,
                permits: Semaphore::new(config.download_concurrency),
                max_attempts: config.download_max_attempts,
                retry_base: config.download_retry_base,
                running: Mutex::default(),
                tasks: TaskTracker::new(),
                shutdown,
            }),
        };
        downloads.cancel_superseded_downloads()?;
        for job in downloads.inner.profiles.pending_downloads().await? {
            tracing::info!(user = %job.user, version = job.version, "resuming download");
            downloads.spawn(job);
        }
        if let Some(lease) = downloads.inner.profiles.download_lease() {
            downloads.keep_leases(lease);
        }
        Ok(downloads)
    }

    /// Accepts a URL: records DOWNLOADING and the job as a new version, then downloads in
    /// the background.
    pub async fn start(
        &self,
        user: &UserId,
        raw_url: &str,
        crop: Option<CropRequest>,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        let url = validate_url(raw_url)
            .map_err(|e| Error::invalid("url", reason::INVALID_URL, e.to_string()))?;
        let profiles = &self.inner.profiles;
        profiles.ensure_space()?;
        let locked = profiles.transitions().lock(user).await;
        let (view, job) = locked.begin_download(url.as_str(), crop, expected).await?;
        drop(locked);
        self.spawn(job);
        Ok(view)
    }

    /// Waits until every download task has stopped (after shutdown).
    pub async fn stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn spawn(&self, job: DownloadJob) {
        let user = job.user.clone();
        let cancel = self.inner.shutdown.child_token();
        if let Ok(mut running) = self.inner.running.lock()
            && let Some((_, older)) = running.insert(user.clone(), (job.version, cancel.clone()))
        {
            older.cancel();
        }
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            this.run(job, &cancel).await;
            if let Ok(mut running) = this.inner.running.lock()
                && running
                    .get(&user)
                    .is_some_and(|(_, token)| token.is_cancelled() || token == &cancel)
            {
                running.remove(&user);
            }
        });
    }

    /// With a shared store: renews the lease of every download this replica runs, and
    /// takes over the downloads of replicas that stopped renewing theirs (they died),
    /// three times per lease.
    fn keep_leases(&self, lease: Duration) {
        let this = Arc::downgrade(&self.inner);
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(lease / 3) => {}
                }
                let Some(inner) = this.upgrade() else { return };
                let downloads = Downloads { inner };
                if let Err(error) = downloads.renew_and_take_over().await {
                    tracing::warn!(%error, "could not renew or take over download leases");
                }
            }
        });
    }

    async fn renew_and_take_over(&self) -> Result<()> {
        let running: Vec<(UserId, u64)> = self
            .inner
            .running
            .lock()
            .map(|running| {
                running
                    .iter()
                    .filter(|(_, (_, token))| !token.is_cancelled())
                    .map(|(user, (version, _))| (user.clone(), *version))
                    .collect()
            })
            .unwrap_or_default();
        let profiles = &self.inner.profiles;
        profiles.renew_download_leases(&running).await?;
        for job in profiles.pending_downloads().await? {
            if running.contains(&(job.user.clone(), job.version)) {
                continue;
            }
            tracing::info!(user = %job.user, version = job.version, "taking over a download whose replica stopped");
            self.spawn(job);
        }
        Ok(())
    }

    /// Cancels a user's running download as soon as any change gives the user a version
    /// other than the one the download fills.
    fn cancel_superseded_downloads(&self) -> Result<()> {
        let mut subscription = self.inner.profiles.subscribe_all()?;
        let inner = Arc::downgrade(&self.inner);
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = subscription.receiver.recv() => event,
                };
                let Some(inner) = inner.upgrade() else { return };
                let Ok(event) = event else { continue };
                let Some(user) = &event.user else { continue };
                let version = event.state.as_ref().map(|s| s.profile.version);
                if let Ok(running) = inner.running.lock()
                    && let Some((running_version, token)) = running.get(user)
                    && version != Some(*running_version)
                {
                    token.cancel();
                }
            }
        });
        Ok(())
    }
}
