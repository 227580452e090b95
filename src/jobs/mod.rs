//! Background URL downloads.
//!
//! A download job is stored in the same transaction as the DOWNLOADING state it fills,
//! before the client gets its reply, so it survives a crash and resumes at start-up.
//! Every later step commits only if the profile is still at the job's version: a newer
//! set, crop or delete supersedes the job, and its running download is cancelled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::{Error, Result, reason};
use crate::fetch::{FetchConfig, Fetcher, validate_url};
use crate::model::{CropRequest, ExpectedVersion, ImageSource, UserId, now_millis};
use crate::profiles::{ProfileImages, ProfileView};
use crate::store::abort;
use crate::store::records::{
    DownloadJob, ProfileRecord, SOURCE_URL, STATUS_DOWNLOADING, STATUS_FAILED, STATUS_PROCESSING,
    STATUS_READY,
};
use crate::telemetry;
use crate::watch::EventKind;

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

/// How one attempt ended.
enum Outcome {
    Done,
    /// A transient failure; the reason is reported if no attempt is left.
    Retry {
        reason: &'static str,
        message: String,
    },
    Failed {
        reason: &'static str,
        message: String,
    },
    /// The disk is full: wait until space is back and try again, without spending an
    /// attempt (a full disk is not the download's fault).
    WaitForSpace,
    Cancelled,
}

/// How often a download waiting for disk space looks again.
const SPACE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

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
        for job in downloads.inner.profiles.store().jobs().await? {
            tracing::info!(user = %job.user_id, version = job.version, "resuming download");
            downloads.spawn(job);
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
        self.inner.profiles.store().ensure_space()?;
        let url = url.to_string();
        let (crop_x, crop_y, crop_size) = crop.map_or((0, 0, 0), |c| (c.x, c.y, c.size));
        let template = DownloadJob {
            user_id: user.as_str().to_owned(),
            version: 0,
            url: url.clone(),
            attempts: 0,
            crop_x,
            crop_y,
            crop_size,
        };
        let job = template.clone();
        let job_for = move |version| DownloadJob {
            version,
            ..job.clone()
        };
        let owner = user.clone();
        let job_url = url.clone();
        let view = self
            .inner
            .profiles
            .commit(user, EventKind::Set, move |tx| {
                let user = &owner;
                expected.check(tx.version(user)?).or_else(abort)?;
                let previous = tx.profile(user)?;
                let now = now_millis();
                let record = ProfileRecord {
                    version: tx.bump_version(user)?,
                    status: STATUS_DOWNLOADING,
                    media_id: String::new(),
                    source: SOURCE_URL,
                    source_url: job_url.clone(),
                    failure_reason: String::new(),
                    failure_message: String::new(),
                    create_time_ms: previous.map_or(now, |p| p.create_time_ms),
                    update_time_ms: now,
                };
                tx.put_job(&job_for(record.version))?;
                tx.put_profile(user, &record)?;
                Ok((record, None))
            })
            .await?;
        self.spawn(DownloadJob {
            version: view.record.version,
            ..template
        });
        Ok(view)
    }

    /// Waits until every download task has stopped (after shutdown).
    pub async fn stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn spawn(&self, job: DownloadJob) {
        let Ok(user) = UserId::parse("user_id", &job.user_id) else {
            return;
        };
        let cancel = self.inner.shutdown.child_token();
        if let Ok(mut running) = self.inner.running.lock()
            && let Some((_, older)) = running.insert(user.clone(), (job.version, cancel.clone()))
        {
            older.cancel();
        }
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            this.run(&user, job, &cancel).await;
            if let Ok(mut running) = this.inner.running.lock()
                && running
                    .get(&user)
                    .is_some_and(|(_, token)| token.is_cancelled() || token == &cancel)
            {
                running.remove(&user);
            }
        });
    }

    async fn run(&self, user: &UserId, mut job: DownloadJob, cancel: &CancellationToken) {
        // A job resumed after a crash may have stopped while PROCESSING.
        loop {
            match self.set_status(user, &job, STATUS_DOWNLOADING).await {
                Ok(true) => break,
                Ok(false) => return,
                Err(Error::StorageFull(_)) if self.wait_for_space(cancel).await => {}
                Err(error) => {
                    tracing::error!(%error, %user, "could not resume download");
                    return;
                }
            }
        }
        loop {
            if !self.wait_for_space(cancel).await {
                return;
            }
            // A download slot is held for one attempt only, not through the retry wait.
            let permit = tokio::select! {
                _ = cancel.cancelled() => return,
                permit = self.inner.permits.acquire() => permit,
            };
            let Ok(permit) = permit else { return };
            let outcome = self.attempt(user, &job, cancel).await;
            drop(permit);
            let result = match outcome {
                Outcome::Done => {
                    metrics::counter!(telemetry::DOWNLOADS, "outcome" => "ready").increment(1);
                    return;
                }
                Outcome::Cancelled => {
                    metrics::counter!(telemetry::DOWNLOADS, "outcome" => "superseded").increment(1);
                    return;
                }
                Outcome::WaitForSpace => continue,
                Outcome::Failed { reason, message } => {
                    self.fail(user, &job, reason, message).await.map(|_| false)
                }
                Outcome::Retry { reason, message }
                    if job.attempts + 1 >= self.inner.max_attempts =>
                {
                    let message =
                        format!("{message} (gave up after {} attempts)", job.attempts + 1);
                    self.fail(user, &job, reason, message).await.map(|_| false)
                }
                Outcome::Retry { .. } => self.record_attempt(user, &mut job).await,
            };
            match result {
                Ok(true) => {}
                Ok(false) => return,
                // The outcome could not be recorded for lack of space: try again later.
                Err(Error::StorageFull(_)) => continue,
                Err(error) => {
                    tracing::error!(%error, %user, "download bookkeeping failed; it resumes at the next start");
                    return;
                }
            }
            let delay = self.inner.retry_base * 2u32.saturating_pow(job.attempts.saturating_sub(1));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Waits until the data dir has room for changes again; false when cancelled first.
    async fn wait_for_space(&self, cancel: &CancellationToken) -> bool {
        let store = self.inner.profiles.store();
        let mut logged = false;
        while store.ensure_space().is_err() {
            if !logged {
                tracing::warn!("a download waits for disk space before it goes on");
                logged = true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(SPACE_POLL) => {}
            }
        }
        true
    }

    /// One download attempt, then processing and the READY commit.
    async fn attempt(
        &self,
        user: &UserId,
        job: &DownloadJob,
        cancel: &CancellationToken,
    ) -> Outcome {
        let Ok(url) = validate_url(&job.url) else {
            return Outcome::Failed {
                reason: "download-failed",
                message: "the stored URL is no longer valid".into(),
            };
        };
        let fetched = tokio::select! {
            _ = cancel.cancelled() => return Outcome::Cancelled,
            fetched = self.inner.fetcher.fetch(&url) => fetched,
        };
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(error) if error.is_transient() => {
                tracing::info!(%user, %error, attempt = job.attempts + 1, "download attempt failed");
                return Outcome::Retry {
                    reason: error.reason(),
                    message: error.to_string(),
                };
            }
            Err(error) => {
                return Outcome::Failed {
                    reason: error.reason(),
                    message: error.to_string(),
                };
            }
        };
        match self.set_status(user, job, STATUS_PROCESSING).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Cancelled,
            Err(error) => return storage_outcome(user, error),
        }
        let bytes: Arc<[u8]> = fetched.bytes.into();
        let crop = (job.crop_size > 0).then_some(CropRequest {
            x: job.crop_x,
            y: job.crop_y,
            size: job.crop_size,
        });
        let profiles = &self.inner.profiles;
        let processed = match profiles
            .processor()
            .process("url", bytes.clone(), crop)
            .await
        {
            Ok(processed) => processed,
            Err(Error::Invalid(violations)) => {
                let violation = violations.into_iter().next();
                let (reason, message) = violation
                    .map_or(("invalid-file-format", String::new()), |v| {
                        (v.reason, v.description)
                    });
                return Outcome::Failed { reason, message };
            }
            Err(error) => return storage_outcome(user, error),
        };
        let staged = profiles
            .stage_media(user, &bytes, processed, ImageSource::Url, url.as_str())
            .await;
        let (media, _blobs) = match staged {
            Ok(staged) => staged,
            Err(error) => return storage_outcome(user, error),
        };
        let version = job.version;
        let owner = user.clone();
        let committed = profiles
            .commit_if(user, EventKind::StatusChanged, move |tx| {
                let user = &owner;
                let Some(profile) = tx.profile(user)? else {
                    return Ok(None);
                };
                if profile.version != version || tx.job(user)?.is_none_or(|j| j.version != version)
                {
                    return Ok(None);
                }
                tx.insert_media(user, &media)?;
                tx.remove_job(user)?;
                let record = ProfileRecord {
                    status: STATUS_READY,
                    media_id: media.media_id.clone(),
                    update_time_ms: now_millis(),
                    ..profile
                };
                tx.put_profile(user, &record)?;
                Ok(Some((record, Some(media.clone()))))
            })
            .await;
        match committed {
            Ok(_) => Outcome::Done,
            Err(error) => storage_outcome(user, error),
        }
    }

    /// Moves the job's version to `status`; false when the job was superseded.
    async fn set_status(&self, user: &UserId, job: &DownloadJob, status: i32) -> Result<bool> {
        let version = job.version;
        let owner = user.clone();
        let changed = self
            .inner
            .profiles
            .commit_if(user, EventKind::StatusChanged, move |tx| {
                let user = &owner;
                let Some(profile) = tx.profile(user)? else {
                    return Ok(None);
                };
                if profile.version != version || profile.status == status {
                    return Ok(None);
                }
                let record = ProfileRecord {
                    status,
                    update_time_ms: now_millis(),
                    ..profile
                };
                tx.put_profile(user, &record)?;
                Ok(Some((record, None)))
            })
            .await?;
        Ok(changed.is_some() || self.is_current(user, version)?)
    }

    fn is_current(&self, user: &UserId, version: u64) -> Result<bool> {
        Ok(self
            .inner
            .profiles
            .store()
            .profile(user)?
            .is_some_and(|p| p.version == version))
    }

    /// Stores the failed attempt; false when the job was superseded meanwhile.
    async fn record_attempt(&self, user: &UserId, job: &mut DownloadJob) -> Result<bool> {
        let version = job.version;
        let attempts = job.attempts + 1;
        let owner = user.clone();
        let still_current = self
            .inner
            .profiles
            .store()
            .transact(move |tx| {
                let Some(mut stored) = tx.job(&owner)? else {
                    return Ok(false);
                };
                if stored.version != version {
                    return Ok(false);
                }
                stored.attempts = attempts;
                tx.put_job(&stored)?;
                Ok(true)
            })
            .await?;
        job.attempts = attempts;
        Ok(still_current)
    }

    async fn fail(
        &self,
        user: &UserId,
        job: &DownloadJob,
        reason: &'static str,
        message: String,
    ) -> Result<()> {
        tracing::info!(%user, reason, %message, "download failed");
        metrics::counter!(telemetry::DOWNLOADS, "outcome" => "failed").increment(1);
        let version = job.version;
        let owner = user.clone();
        self.inner
            .profiles
            .commit_if(user, EventKind::StatusChanged, move |tx| {
                let user = &owner;
                let Some(profile) = tx.profile(user)? else {
                    return Ok(None);
                };
                if profile.version != version {
                    return Ok(None);
                }
                tx.remove_job(user)?;
                let record = ProfileRecord {
                    status: STATUS_FAILED,
                    failure_reason: reason.to_owned(),
                    failure_message: message.clone(),
                    update_time_ms: now_millis(),
                    ..profile
                };
                tx.put_profile(user, &record)?;
                Ok(Some((record, None)))
            })
            .await?;
        Ok(())
    }

    /// Cancels a user's running download as soon as any change gives the user a version
    /// other than the one the download fills.
    fn cancel_superseded_downloads(&self) -> Result<()> {
        let mut subscription = self.inner.profiles.events().subscribe(None, None)?;
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
                let version = event.state.as_ref().map(|s| s.record.version);
                if let Ok(running) = inner.running.lock()
                    && let Some((running_version, token)) = running.get(&event.user_id)
                    && version != Some(*running_version)
                {
                    token.cancel();
                }
            }
        });
        Ok(())
    }
}

/// What a download does after a failure of ours (processing or storage), not of the
/// origin: wait for space, retry, or fail with a message that shows no internals.
fn storage_outcome(user: &UserId, error: Error) -> Outcome {
    match error {
        Error::StorageFull(_) => Outcome::WaitForSpace,
        Error::Unavailable(detail) => {
            tracing::warn!(%user, %detail, "download could not be stored; retrying");
            Outcome::Retry {
                reason: "download-failed",
                message: "the image could not be stored yet".into(),
            }
        }
        error => {
            tracing::error!(%user, %error, "download failed on the server's side");
            Outcome::Failed {
                reason: "download-failed",
                message: "the server could not process or store the image".into(),
            }
        }
    }
}
