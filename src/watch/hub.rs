//! Fan-out of profile changes to watchers, with a bounded retention window for resume.
//!
//! Writers publish while holding their user's lock, after the change is durable. A
//! sequence number is taken and the event is retained and broadcast under one mutex,
//! so sequence order is publication order. Broadcasting never waits for a watcher: a
//! watcher that falls behind the channel's capacity is told it lagged and resyncs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::model::{UserId, now_millis};
use crate::profiles::ProfileView;
use crate::store::Store;

/// Watcher channel capacity: how far a watcher may fall behind before it resyncs.
const BROADCAST_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Snapshot,
    Set,
    StatusChanged,
    Cropped,
    Deleted,
}

/// One change of one user's profile image.
#[derive(Debug, Clone)]
pub struct Event {
    pub sequence: u64,
    pub kind: EventKind,
    pub user_id: UserId,
    /// The state after the change (metadata only); None when the user has no image.
    pub state: Option<ProfileView>,
    pub time_ms: i64,
}

/// What a new watcher starts from.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<Event>>,
    /// The last sequence published before the subscription.
    pub last_sequence: u64,
    /// Retained events after the requested sequence; None when some are gone.
    pub replay: Option<Vec<Arc<Event>>>,
}

pub struct Hub {
    store: Store,
    retention: usize,
    sender: broadcast::Sender<Arc<Event>>,
    window: Mutex<Window>,
}

struct Window {
    events: VecDeque<Arc<Event>>,
    last_sequence: u64,
    /// Events at or below this sequence can no longer be replayed (evicted, or from
    /// before this process started).
    forgotten_through: u64,
}

impl Hub {
    pub fn new(store: Store, retention: usize) -> Result<Self> {
        let start = store.next_id()?;
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Ok(Hub {
            store,
            retention: retention.max(1),
            sender,
            window: Mutex::new(Window {
                events: VecDeque::new(),
                last_sequence: start,
                forgotten_through: start,
            }),
        })
    }

    /// Publishes a change. Returns the event as sent.
    pub fn publish(
        &self,
        kind: EventKind,
        user_id: &UserId,
        state: Option<ProfileView>,
    ) -> Result<Arc<Event>> {
        let mut window = self.lock()?;
        let sequence = self.store.next_id()?.max(window.last_sequence + 1);
        let event = Arc::new(Event {
            sequence,
            kind,
            user_id: user_id.clone(),
            state,
            time_ms: now_millis(),
        });
        window.last_sequence = sequence;
        window.events.push_back(event.clone());
        while window.events.len() > self.retention {
            if let Some(old) = window.events.pop_front() {
                window.forgotten_through = old.sequence;
            }
        }
        // No receiver is not an error: nobody is watching.
        let _ = self.sender.send(event.clone());
        Ok(event)
    }

    /// Subscribes to live events and, atomically with it, collects retained events after
    /// `after` (when `after` is Some), so that nothing falls between replay and live.
    pub fn subscribe(&self, after: Option<u64>) -> Result<Subscription> {
        let window = self.lock()?;
        let receiver = self.sender.subscribe();
        let replay = after.and_then(|after| {
            (after >= window.forgotten_through && after <= window.last_sequence).then(|| {
                window
                    .events
                    .iter()
                    .filter(|e| e.sequence > after)
                    .cloned()
                    .collect()
            })
        });
        Ok(Subscription {
            receiver,
            last_sequence: window.last_sequence,
            replay,
        })
    }

    pub fn last_sequence(&self) -> u64 {
        self.window.lock().map_or(0, |w| w.last_sequence)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Window>> {
        self.window
            .lock()
            .map_err(|_| Error::internal("event window lock poisoned"))
    }
}
