//! One WatchStatus stream: a task that sends a snapshot (or a replay), then live events,
//! into a bounded channel, and stops when the client goes away, the state completes
//! (`until_complete`) or the server shuts down.

use std::sync::Arc;

use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::model::{UserId, now_millis};
use crate::profiles::ProfileImages;
use crate::store::records::{STATUS_FAILED, STATUS_READY};
use crate::watch::{Event, EventKind};

/// Messages buffered per watcher; a client slower than this waits in its own channel
/// only, never in the writers' path.
const WATCHER_BUFFER: usize = 8;

/// What a watcher asked for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// None = every user.
    pub user: Option<UserId>,
    pub until_complete: bool,
    /// Resume after this sequence (None = start from a snapshot).
    pub after_sequence: Option<u64>,
}

/// Starts a watcher; events arrive on the returned channel, which closes when the stream
/// is over.
pub fn spawn(
    profiles: ProfileImages,
    request: WatchRequest,
    shutdown: CancellationToken,
) -> Result<mpsc::Receiver<Arc<Event>>> {
    let subscription = profiles.events().subscribe(request.after_sequence)?;
    let (sender, receiver) = mpsc::channel(WATCHER_BUFFER);
    let watcher = Watcher {
        profiles,
        request,
        sender,
        shutdown,
    };
    tokio::spawn(watcher.run(subscription));
    Ok(receiver)
}

struct Watcher {
    profiles: ProfileImages,
    request: WatchRequest,
    sender: mpsc::Sender<Arc<Event>>,
    shutdown: CancellationToken,
}

impl Watcher {
    async fn run(self, subscription: crate::watch::Subscription) {
        let mut receiver = subscription.receiver;
        let mut last_sent = subscription.last_sequence;
        let start = match subscription.replay {
            Some(events) => events.into_iter().filter(|e| self.wants(e)).collect(),
            None => match self.snapshot(subscription.last_sequence) {
                Ok(snapshot) => vec![snapshot],
                Err(error) => {
                    tracing::warn!(%error, "watcher could not read the snapshot");
                    return;
                }
            },
        };
        for event in start {
            last_sent = last_sent.max(event.sequence);
            if !self.send(event.clone()).await || self.complete(&event) {
                return;
            }
        }
        loop {
            let received = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.sender.closed() => return,
                received = receiver.recv() => received,
            };
            let event = match received {
                Ok(event) if event.sequence > last_sent && self.wants(&event) => event,
                Ok(_) => continue,
                // Fell behind: what was missed is replaced by the current state.
                Err(RecvError::Lagged(_)) => {
                    match self.snapshot(self.profiles.events().last_sequence()) {
                        Ok(snapshot) => snapshot,
                        Err(_) => return,
                    }
                }
                Err(RecvError::Closed) => return,
            };
            last_sent = last_sent.max(event.sequence);
            if !self.send(event.clone()).await || self.complete(&event) {
                return;
            }
        }
    }

    fn wants(&self, event: &Event) -> bool {
        self.request
            .user
            .as_ref()
            .is_none_or(|user| *user == event.user_id)
    }

    /// The current state. For the all-users feed, a marker with no user and no image
    /// that says from which sequence on the feed is live.
    fn snapshot(&self, sequence: u64) -> Result<Arc<Event>> {
        let (user_id, state) = match &self.request.user {
            Some(user) => (user.clone(), self.profiles.state(user)?),
            None => (UserId::empty(), None),
        };
        Ok(Arc::new(Event {
            sequence,
            kind: EventKind::Snapshot,
            user_id,
            state,
            time_ms: now_millis(),
        }))
    }

    fn complete(&self, event: &Event) -> bool {
        self.request.until_complete
            && self.request.user.is_some()
            && event
                .state
                .as_ref()
                .is_none_or(|view| matches!(view.record.status, STATUS_READY | STATUS_FAILED))
    }

    async fn send(&self, event: Arc<Event>) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            sent = self.sender.send(event) => sent.is_ok(),
        }
    }
}
