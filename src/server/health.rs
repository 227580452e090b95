//! What health reports beyond "the process is up": NOT_SERVING while the store cannot
//! make progress (a local flush that does not complete, a database that does not
//! answer), so that an orchestrator stops routing to this process or restarts it, and
//! SERVING again once the store recovers. Shutdown turns it NOT_SERVING too (in
//! `serve`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::ProfileImageApi;
use crate::pb::profile_image_service_server::ProfileImageServiceServer;
use crate::store::local::LocalStore;
use crate::store::postgres::PostgresStore;

/// Sets the status of the server ("") and of the service.
async fn report(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status(
            <ProfileImageServiceServer<ProfileImageApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Turns health NOT_SERVING while a store flush has been running longer than
/// `stall_timeout` (the store stopped making progress: an orchestrator should restart
/// the process), and SERVING again once flushes complete. It touches no storage itself,
/// so a stalled disk cannot stall it.
pub(super) async fn report_store_stalls(
    store: Arc<LocalStore>,
    health: HealthReporter,
    stall_timeout: Duration,
    shutdown: CancellationToken,
) {
    let period = (stall_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut stalled = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let flushing_for = store.flushing_for();
        let now_stalled = flushing_for.is_some_and(|running| running >= stall_timeout);
        if now_stalled == stalled {
            continue;
        }
        stalled = now_stalled;
        let status = if stalled {
            tracing::error!(
                running = ?flushing_for,
                "the store stopped making progress: a flush has not completed; reporting NOT_SERVING"
            );
            ServingStatus::NotServing
        } else {
            tracing::warn!("the store completes flushes again; reporting SERVING");
            ServingStatus::Serving
        };
        report(&health, status).await;
    }
}

/// Turns health NOT_SERVING while PostgreSQL does not answer a trivial query within
/// `timeout` (checked every second), and SERVING again once it does: a replica that
/// cannot reach the database can neither read nor change a profile.
pub(super) async fn report_database(
    store: Arc<PostgresStore>,
    health: HealthReporter,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    const PERIOD: Duration = Duration::from_secs(1);
    let timeout = timeout.min(Duration::from_secs(5));
    let mut down = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PERIOD) => {}
        }
        let checked = tokio::select! {
            () = shutdown.cancelled() => return,
            checked = store.check(timeout) => checked,
        };
        if checked.is_err() == down {
            continue;
        }
        down = checked.is_err();
        let status = match checked {
            Err(error) => {
                tracing::error!(%error, "PostgreSQL does not answer; reporting NOT_SERVING");
                ServingStatus::NotServing
            }
            Ok(()) => {
                tracing::warn!("PostgreSQL answers again; reporting SERVING");
                ServingStatus::Serving
            }
        };
        if !shutdown.is_cancelled() {
            report(&health, status).await;
        }
    }
}
