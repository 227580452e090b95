//! One WatchStatus stream: the snapshot (or a replay), then live events, ending when the
//! state completes (`until_complete`), the server shuts down (the hub closes the
//! channels), or the client goes away (the stream is dropped, and with it the
//! subscription).
//!
//! The stream is polled directly by the transport: no task or channel per watcher, so a
//! delivery costs one wake-up, and a watcher costs only its broadcast receiver.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio_stream::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::error::Result;
use crate::model::UserId;
use crate::profiles::ProfileImages;
use crate::store::records::{STATUS_FAILED, STATUS_READY};
use crate::telemetry;
use crate::watch::{Event, EventKind};

/// What a watcher asked for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// None = every user.
    pub user: Option<UserId>,
    pub until_complete: bool,
    /// Resume after this sequence (None = start from a snapshot).
    pub after_sequence: Option<u64>,
}

/// Starts watching: subscribes first, then reads the snapshot (or collects the replay),
/// so that no event falls between the two.
pub fn watch(profiles: ProfileImages, request: WatchRequest) -> Result<WatchStream> {
    let subscription = profiles
        .events()
        .subscribe(request.user.as_ref(), request.after_sequence)?;
    let mut stream = WatchStream {
        initial: VecDeque::new(),
        live: BroadcastStream::new(subscription.receiver),
        last_sent: subscription.last_sequence,
        finished: false,
        profiles,
        request,
        _counted: OpenWatcher::new(),
    };
    stream.initial = match subscription.replay {
        Some(events) => events.into_iter().filter(|e| stream.wants(e)).collect(),
        None => VecDeque::from([stream.snapshot(subscription.last_sequence)?]),
    };
    Ok(stream)
}

pub struct WatchStream {
    /// The snapshot or the replayed events, sent before live ones.
    initial: VecDeque<Arc<Event>>,
    /// Ends when the hub closes (shutdown).
    live: BroadcastStream<Arc<Event>>,
    /// Live events at or below this were already covered by the snapshot or replay.
    last_sent: u64,
    finished: bool,
    profiles: ProfileImages,
    request: WatchRequest,
    _counted: OpenWatcher,
}

/// Counts an open stream in the watchers gauge while it lives.
struct OpenWatcher;

impl OpenWatcher {
    fn new() -> Self {
        metrics::gauge!(telemetry::WATCHERS).increment(1.0);
        OpenWatcher
    }
}

impl Drop for OpenWatcher {
    fn drop(&mut self) {
        metrics::gauge!(telemetry::WATCHERS).decrement(1.0);
    }
}

impl WatchStream {
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
        Ok(Arc::new(Event::new(
            sequence,
            EventKind::Snapshot,
            user_id,
            state,
        )))
    }

    fn completes(&self, event: &Event) -> bool {
        self.request.until_complete
            && self.request.user.is_some()
            && event
                .state
                .as_ref()
                .is_none_or(|view| matches!(view.record.status, STATUS_READY | STATUS_FAILED))
    }

    fn next_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arc<Event>>> {
        loop {
            match ready!(Pin::new(&mut self.live).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(event)) if event.sequence > self.last_sent && self.wants(&event) => {
                    return Poll::Ready(Some(event));
                }
                Some(Ok(_)) => {}
                // Fell behind: what was missed is replaced by the current state.
                Some(Err(BroadcastStreamRecvError::Lagged(_))) => {
                    let sequence = self.profiles.events().last_sequence();
                    return Poll::Ready(self.snapshot(sequence).ok());
                }
            }
        }
    }
}

impl Stream for WatchStream {
    type Item = Arc<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let next = match self.initial.pop_front() {
            Some(event) => Some(event),
            None => ready!(self.next_live(cx)),
        };
        let Some(event) = next else {
            self.finished = true;
            return Poll::Ready(None);
        };
        self.last_sent = self.last_sent.max(event.sequence);
        self.finished = self.completes(&event);
        Poll::Ready(Some(event))
    }
}
