//! One WatchStatus stream: the snapshot (or a replay), then live events, ending when the
//! state completes (`until_complete`), the server shuts down (the hub closes the
//! channels), or the client goes away (the stream is dropped, and with it the
//! subscription).
//!
//! The stream is polled directly by the transport: no task or channel per watcher, so a
//! delivery costs one wake-up, and a watcher costs only its broadcast receiver.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use tokio_stream::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::Hub;
use crate::error::Result;
use crate::model::{Event, EventKind, ProfileView, TenantId, UserId};
use crate::telemetry;

/// Where a watcher's snapshots come from: the current state of a user's profile.
#[async_trait]
pub trait Snapshots: Send + Sync + 'static {
    /// The user's current state; None when the user has no image.
    async fn snapshot(&self, user: &UserId) -> Result<Option<ProfileView>>;
}

type PendingSnapshot = Pin<Box<dyn Future<Output = Result<Arc<Event>>> + Send>>;

/// What a watcher asked for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// None = every user of `tenant`.
    pub user: Option<UserId>,
    /// The watcher's tenant: the all-users feed carries other tenants' events too, and
    /// they are not sent.
    pub tenant: TenantId,
    pub until_complete: bool,
    /// Resume after this sequence (None = start from a snapshot).
    pub after_sequence: Option<u64>,
}

/// Starts watching: subscribes first, then reads the snapshot (or collects the replay),
/// so that no event falls between the two.
pub async fn watch(
    hub: Arc<Hub>,
    snapshots: Arc<dyn Snapshots>,
    request: WatchRequest,
) -> Result<WatchStream> {
    if let Some(after) = request.after_sequence
        && after > hub.last_sequence()
    {
        // A sequence another replica published may not have come through yet.
        hub.wait_for(after).await;
    }
    let subscription = hub.subscribe(request.user.as_ref(), request.after_sequence)?;
    let initial = match subscription.replay {
        Some(events) => events.into_iter().filter(|e| wants(&request, e)).collect(),
        None => {
            let snapshot = snapshot(
                snapshots.clone(),
                request.user.clone(),
                subscription.last_sequence,
            );
            VecDeque::from([snapshot.await?])
        }
    };
    Ok(WatchStream {
        initial,
        live: BroadcastStream::new(subscription.receiver),
        last_sent: subscription.last_sequence,
        finished: false,
        resync: None,
        hub,
        snapshots,
        request,
        _counted: OpenWatcher::new(),
    })
}

fn wants(request: &WatchRequest, event: &Event) -> bool {
    match (&request.user, &event.user) {
        (Some(watched), Some(user)) => watched == user,
        (None, Some(user)) => user.tenant() == &request.tenant,
        (_, None) => false,
    }
}

/// The current state as a snapshot event. For the all-users feed, a marker with no
/// user and no image that says from which sequence on the feed is live.
fn snapshot(snapshots: Arc<dyn Snapshots>, user: Option<UserId>, sequence: u64) -> PendingSnapshot {
    Box::pin(async move {
        let state = match &user {
            Some(user) => snapshots.snapshot(user).await?,
            None => None,
        };
        Ok(Arc::new(Event::new(
            sequence,
            EventKind::Snapshot,
            user,
            state,
        )))
    })
}

pub struct WatchStream {
    /// The snapshot or the replayed events, sent before live ones.
    initial: VecDeque<Arc<Event>>,
    /// Ends when the hub closes (shutdown).
    live: BroadcastStream<Arc<Event>>,
    /// Live events at or below this were already covered by the snapshot or replay.
    last_sent: u64,
    finished: bool,
    /// The snapshot being read after the watcher fell behind.
    resync: Option<PendingSnapshot>,
    hub: Arc<Hub>,
    snapshots: Arc<dyn Snapshots>,
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
    fn completes(&self, event: &Event) -> bool {
        self.request.until_complete && self.request.user.is_some() && event.completes()
    }

    fn next_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arc<Event>>> {
        loop {
            if let Some(resync) = &mut self.resync {
                let snapshot = ready!(resync.as_mut().poll(cx));
                self.resync = None;
                return Poll::Ready(snapshot.ok());
            }
            match ready!(Pin::new(&mut self.live).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(event))
                    if event.sequence > self.last_sent && wants(&self.request, &event) =>
                {
                    return Poll::Ready(Some(event));
                }
                Some(Ok(_)) => {}
                // Fell behind: what was missed is replaced by the current state.
                Some(Err(BroadcastStreamRecvError::Lagged(_))) => {
                    self.resync = Some(snapshot(
                        self.snapshots.clone(),
                        self.request.user.clone(),
                        self.hub.last_sequence(),
                    ));
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
