//! With a shared store, every replica's watchers get every replica's changes: the
//! relay reads the store's event log in order and publishes each event into this
//! process's hub. It reads when the log announces a new event (LISTEN/NOTIFY) and at
//! least every [`POLL`], so an announcement that never arrives only delays.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ProfileImages;
use crate::error::Result;
use crate::store::{EventLog, LoggedEvent};
use crate::watch::Hub;

/// Longest a committed event waits for the relay when no announcement came.
const POLL: Duration = Duration::from_secs(1);
/// Events read per query.
const BATCH: usize = 500;

pub struct EventRelay {
    log: Arc<dyn EventLog>,
    profiles: ProfileImages,
    hub: Arc<Hub>,
    /// The last sequence published.
    last: u64,
}

impl EventRelay {
    /// A relay that publishes into `hub` the events after the hub's last one.
    pub fn new(log: Arc<dyn EventLog>, profiles: ProfileImages, hub: Arc<Hub>) -> Self {
        let last = hub.last_sequence();
        EventRelay {
            log,
            profiles,
            hub,
            last,
        }
    }

    /// Publishes every event committed so far.
    pub async fn catch_up(&mut self) -> Result<()> {
        loop {
            let events = self.log.events_after(self.last, BATCH).await?;
            let full = events.len() == BATCH;
            for event in events {
                self.publish(event)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Relays events until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut announcements = self.log.announcements();
        let mut failing = false;
        loop {
            match self.catch_up().await {
                Ok(()) if failing => {
                    tracing::info!("reading the event log again");
                    failing = false;
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    tracing::warn!(%error, "cannot read the event log; watchers wait");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = announcements.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    fn publish(&mut self, logged: LoggedEvent) -> Result<()> {
        let view = logged.event.after.map(|(profile, media)| {
            self.profiles
                .transitions()
                .view(&logged.user, profile, media)
        });
        self.hub
            .publish(logged.sequence, logged.event.kind, &logged.user, view)?;
        self.last = logged.sequence;
        Ok(())
    }
}
