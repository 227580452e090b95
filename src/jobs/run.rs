//! One download's life: attempts with retries, processing, and the transitions that
//! record each step.

use tokio_util::sync::CancellationToken;

use super::Downloads;
use super::backoff::retry_delay;
use crate::audit::{self, Action};
use crate::error::{Error, Result};
use crate::fetch::validate_url;
use crate::model::{DownloadJob, Failure, Source, Status, UserId};
use crate::telemetry;

/// How one attempt ended.
enum Outcome {
    Done,
    /// A transient failure; the reason is reported if no attempt is left.
    Retry(Failure),
    Failed(Failure),
    /// The disk is full: wait until space is back and try again, without spending an
    /// attempt (a full disk is not the download's fault).
    WaitForSpace,
    Cancelled,
}

/// How often a download waiting for disk space looks again.
const SPACE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

const DOWNLOAD_FAILED: &str = "download-failed";

fn failure(reason: &str, message: impl Into<String>) -> Failure {
    Failure {
        reason: reason.to_owned(),
        message: message.into(),
    }
}

impl Downloads {
    pub(super) async fn run(&self, mut job: DownloadJob, cancel: &CancellationToken) {
        let user = job.user.clone();
        // A job resumed after a crash may have stopped while PROCESSING.
        loop {
            match self.mark(&job, Status::Downloading).await {
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
            let outcome = self.attempt(&job, cancel).await;
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
                Outcome::Failed(failure) => self.fail(&job, failure).await.map(|()| false),
                Outcome::Retry(mut failure) if job.attempts + 1 >= self.inner.max_attempts => {
                    failure.message = format!(
                        "{} (gave up after {} attempts)",
                        failure.message,
                        job.attempts + 1
                    );
                    self.fail(&job, failure).await.map(|()| false)
                }
                Outcome::Retry(_) => self.record_attempt(&mut job).await,
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
            let delay = retry_delay(self.inner.retry_base, job.attempts);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Waits until storage has room for changes again; false when cancelled first.
    async fn wait_for_space(&self, cancel: &CancellationToken) -> bool {
        let mut logged = false;
        while self.inner.profiles.ensure_space().is_err() {
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

    /// One download attempt, then processing and the READY transition.
    async fn attempt(&self, job: &DownloadJob, cancel: &CancellationToken) -> Outcome {
        let user = &job.user;
        let Ok(url) = validate_url(&job.url) else {
            return Outcome::Failed(failure(
                DOWNLOAD_FAILED,
                "the stored URL is no longer valid",
            ));
        };
        let fetched = tokio::select! {
            _ = cancel.cancelled() => return Outcome::Cancelled,
            fetched = self.inner.fetcher.fetch(&url) => fetched,
        };
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(error) if error.is_transient() => {
                tracing::info!(%user, %error, attempt = job.attempts + 1, "download attempt failed");
                return Outcome::Retry(failure(error.reason(), error.to_string()));
            }
            Err(error) => return Outcome::Failed(failure(error.reason(), error.to_string())),
        };
        match self.mark(job, Status::Processing).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Cancelled,
            Err(error) => return server_side(user, error),
        }
        let profiles = &self.inner.profiles;
        let prepared = profiles
            .prepare_media(
                user,
                fetched.bytes.into(),
                job.crop,
                Source::Url,
                url.as_str(),
            )
            .await;
        let (media, _staged) = match prepared {
            Ok(prepared) => prepared,
            Err(Error::BadImage { reason, message }) => {
                return Outcome::Failed(failure(reason, message));
            }
            Err(Error::CropOutOfBounds(message)) => {
                return Outcome::Failed(failure(crate::error::reason::CROP_OUT_OF_BOUNDS, message));
            }
            Err(error) => return server_side(user, error),
        };
        let locked = profiles.transitions().lock(user).await;
        match locked.complete_download(job.version, media).await {
            Ok(true) => {
                audit::record_by_server(Action::DownloadComplete, user, job.version);
                Outcome::Done
            }
            // Superseded while it was being processed: counted as such, not as ready.
            Ok(false) => Outcome::Cancelled,
            Err(error) => server_side(user, error),
        }
    }

    /// Moves the job's version to `status`; false when the job was superseded.
    async fn mark(&self, job: &DownloadJob, status: Status) -> Result<bool> {
        let transitions = self.inner.profiles.transitions();
        transitions
            .lock(&job.user)
            .await
            .mark_download(job.version, status)
            .await
    }

    /// Stores the failed attempt; false when the job was superseded meanwhile.
    async fn record_attempt(&self, job: &mut DownloadJob) -> Result<bool> {
        let attempts = job.attempts + 1;
        let transitions = self.inner.profiles.transitions();
        let pending = transitions
            .lock(&job.user)
            .await
            .record_attempt(job.version, attempts)
            .await?;
        job.attempts = attempts;
        Ok(pending)
    }

    async fn fail(&self, job: &DownloadJob, failure: Failure) -> Result<()> {
        let user = &job.user;
        tracing::info!(%user, reason = %failure.reason, message = %failure.message, "download failed");
        metrics::counter!(telemetry::DOWNLOADS, "outcome" => "failed").increment(1);
        let transitions = self.inner.profiles.transitions();
        let failed = transitions
            .lock(user)
            .await
            .fail_download(job.version, failure)
            .await?;
        if failed {
            audit::record_by_server(Action::DownloadFailed, user, job.version);
        }
        Ok(())
    }
}

/// What a download does after a failure of ours (processing or storage), not of the
/// origin: wait for space, retry, or fail with a message that shows no internals (they
/// are logged).
fn server_side(user: &UserId, error: Error) -> Outcome {
    match error {
        Error::StorageFull(_) => Outcome::WaitForSpace,
        Error::Unavailable(detail) => {
            tracing::warn!(%user, %detail, "download could not be stored; retrying");
            Outcome::Retry(failure(
                DOWNLOAD_FAILED,
                "the image could not be stored yet",
            ))
        }
        error => {
            tracing::error!(%user, %error, "download failed on the server's side");
            Outcome::Failed(failure(
                DOWNLOAD_FAILED,
                "the server could not process or store the image",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("user_id", "alice").expect("user id")
    }

    #[test]
    fn an_internal_failure_shows_no_internals() {
        let outcome = server_side(
            &user(),
            Error::internal("storage: corrupt record at /data/db/blobs"),
        );
        let Outcome::Failed(failure) = outcome else {
            panic!("an internal error fails the download");
        };
        assert_eq!(failure.reason, DOWNLOAD_FAILED);
        assert!(!failure.message.contains("storage"), "{}", failure.message);
        assert!(!failure.message.contains("internal"), "{}", failure.message);
    }

    #[test]
    fn a_storage_outage_is_retried_and_a_full_disk_waited_for() {
        let retried = server_side(&user(), Error::Unavailable("EIO on /data".into()));
        let Outcome::Retry(failure) = retried else {
            panic!("an I/O failure is retried");
        };
        assert!(!failure.message.contains("/data"), "{}", failure.message);
        assert!(matches!(
            server_side(&user(), Error::StorageFull("ENOSPC".into())),
            Outcome::WaitForSpace
        ));
    }
}
