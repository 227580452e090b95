//! Fan-out of profile changes to watchers, with a bounded retention window for resume.
//!
//! Writers publish while holding their user's lock, after the change is durable. A
//! sequence number is taken and the event is retained and broadcast under one mutex,
//! so sequence order is publication order. Broadcasting never waits for a watcher: a
//! watcher that falls behind the channel's capacity is told it lagged and resyncs.
//!
//! With a shared store (replicas), the hub *follows* the store's event log instead: a
//! relay (`profiles::EventRelay`) publishes every replica's committed events in log
//! order, and a writer only waits until its own event came through ([`Hub::committed`]),
//! so its client's next watch already sees it.
//!
//! Each watched user has a channel of its own (created by the first watcher, dropped
//! once nobody watches), so a change wakes only that user's watchers and the
//! all-users feed, never every watcher on the server.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::error::{Error, Result};
use crate::model::{Event, EventKind, ProfileView, UserId};

/// All-users feed capacity: how far a feed watcher may fall behind before it resyncs.
const FEED_CAPACITY: usize = 1024;
/// Per-user channel capacity: one user's changes a watcher may be behind on.
const USER_CAPACITY: usize = 32;
/// Subscriptions between two sweeps of unwatched users' channels.
const SWEEP_EVERY: u64 = 1024;

/// What a new watcher starts from.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<Event>>,
    /// The last sequence published before the subscription.
    pub last_sequence: u64,
    /// Retained events after the requested sequence; None when some are gone.
    pub replay: Option<Vec<Arc<Event>>>,
}

pub struct Hub {
    retention: usize,
    window: Mutex<Window>,
    /// Events come from a shared log's relay, not from this process's writers.
    follows_log: bool,
    /// The last sequence published, for those waiting for one.
    published: watch::Sender<u64>,
}

/// How long a writer waits for its event to come back through the log's relay, and a
/// resuming watcher for the sequence it names (normally a few milliseconds).
const RELAY_WAIT: Duration = Duration::from_secs(2);

struct Window {
    /// Every user's changes; None once the hub is closed.
    feed: Option<broadcast::Sender<Arc<Event>>>,
    /// Channels of the users somebody watches (or watched since the last sweep).
    users: HashMap<UserId, broadcast::Sender<Arc<Event>>>,
    subscriptions: u64,
    events: VecDeque<Arc<Event>>,
    last_sequence: u64,
    /// Events at or below this sequence can no longer be replayed (evicted, or from
    /// before this process started).
    forgotten_through: u64,
}

impl Hub {
    /// A hub whose events get sequence numbers above `start` (taken from the store, so
    /// they increase across restarts), retaining the last `retention` for resume.
    pub fn new(start: u64, retention: usize) -> Self {
        Self::with_source(start, retention, false)
    }

    /// A hub fed by a shared store's event log (through the relay) from sequence
    /// `start` on, retaining the last `retention` for resume.
    pub fn following(start: u64, retention: usize) -> Self {
        Self::with_source(start, retention, true)
    }

    fn with_source(start: u64, retention: usize, follows_log: bool) -> Self {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Hub {
            follows_log,
            published: watch::channel(start).0,
            retention: retention.max(1),
            window: Mutex::new(Window {
                feed: Some(feed),
                users: HashMap::new(),
                subscriptions: 0,
                events: VecDeque::new(),
                last_sequence: start,
                forgotten_through: start,
            }),
        }
    }

    /// Publishes a change committed as `sequence` (the store's number for it). Events go
    /// out in publication order with increasing sequence numbers: a change committed
    /// earlier but published later than another user's gets the next number instead.
    /// Returns the event as sent.
    pub fn publish(
        &self,
        sequence: u64,
        kind: EventKind,
        user_id: &UserId,
        state: Option<ProfileView>,
    ) -> Result<Arc<Event>> {
        let mut window = self.lock()?;
        let sequence = sequence.max(window.last_sequence + 1);
        let event = Arc::new(Event::new(sequence, kind, Some(user_id.clone()), state));
        window.last_sequence = sequence;
        window.events.push_back(event.clone());
        while window.events.len() > self.retention {
            if let Some(old) = window.events.pop_front() {
                window.forgotten_through = old.sequence;
            }
        }
        // No receiver is not an error: nobody is watching.
        if let Some(feed) = &window.feed {
            let _ = feed.send(event.clone());
        }
        if let Some(channel) = window.users.get(user_id)
            && channel.send(event.clone()).is_err()
        {
            window.users.remove(user_id);
        }
        self.published.send_replace(sequence);
        Ok(event)
    }

    /// A writer's change committed as `sequence`: published now, or, when the hub
    /// follows a shared log, once the relay has published it (waited for, briefly).
    pub async fn committed(
        &self,
        sequence: u64,
        kind: EventKind,
        user_id: &UserId,
        state: Option<ProfileView>,
    ) -> Result<()> {
        if self.follows_log {
            self.wait_for(sequence).await;
        } else {
            self.publish(sequence, kind, user_id, state)?;
        }
        Ok(())
    }

    /// With a shared log: waits (briefly) until `sequence` was published here, so a
    /// watcher resuming after an event another replica sent finds it in the window.
    pub async fn wait_for(&self, sequence: u64) {
        if !self.follows_log {
            return;
        }
        let mut published = self.published.subscribe();
        let _ =
            tokio::time::timeout(RELAY_WAIT, published.wait_for(|&last| last >= sequence)).await;
    }

    /// Subscribes to live events of `user` (None: of every user) and, atomically with
    /// it, collects retained events after `after` (when `after` is Some), so that
    /// nothing falls between replay and live. Replayed events are of every user.
    pub fn subscribe(&self, user: Option<&UserId>, after: Option<u64>) -> Result<Subscription> {
        let mut window = self.lock()?;
        window.subscriptions += 1;
        if window.subscriptions.is_multiple_of(SWEEP_EVERY) {
            window
                .users
                .retain(|_, channel| channel.receiver_count() > 0);
        }
        let receiver = match (user, &window.feed) {
            // Closed: a receiver whose sender is already gone, so the watcher ends
            // after its snapshot or replay.
            (_, None) => broadcast::channel(1).1,
            (None, Some(feed)) => feed.subscribe(),
            (Some(user), Some(_)) => window
                .users
                .entry(user.clone())
                .or_insert_with(|| broadcast::channel(USER_CAPACITY).0)
                .subscribe(),
        };
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

    /// Ends every watcher's live stream (they receive what was already sent, then
    /// the end) and every later subscription's; publishing goes on being recorded.
    /// Called once on shutdown, so that watchers need no shutdown signal of their own.
    pub fn close(&self) {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.feed = None;
        window.users.clear();
    }

    /// Users with a live channel (watched now, or since the last sweep).
    #[cfg(test)]
    fn watched_users(&self) -> usize {
        self.window.lock().map_or(0, |w| w.users.len())
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    fn hub() -> Hub {
        Hub::new(1000, 100)
    }

    fn user(name: &str) -> UserId {
        UserId::parse("user_id", name).expect("user id")
    }

    #[test]
    fn a_change_reaches_its_users_watchers_and_the_feed_only() {
        let hub = hub();
        let (alice, bob) = (user("alice"), user("bob"));
        let mut alice_watcher = hub.subscribe(Some(&alice), None).expect("subscribe");
        let mut feed = hub.subscribe(None, None).expect("subscribe");

        let sent = hub.publish(0, EventKind::Set, &bob, None).expect("publish");
        let nothing = alice_watcher.receiver.try_recv();
        assert!(
            matches!(nothing, Err(TryRecvError::Empty)),
            "{:?}",
            nothing.map(|e| e.user.clone())
        );
        assert_eq!(
            feed.receiver.try_recv().expect("feed").sequence,
            sent.sequence
        );

        let sent = hub
            .publish(0, EventKind::Deleted, &alice, None)
            .expect("publish");
        let got = alice_watcher.receiver.try_recv().expect("alice's event");
        assert_eq!(
            (got.sequence, got.user.as_ref()),
            (sent.sequence, Some(&alice))
        );
        assert_eq!(
            feed.receiver.try_recv().expect("feed").sequence,
            sent.sequence
        );
    }

    #[test]
    fn unwatched_users_channels_are_dropped() {
        let hub = hub();
        let alice = user("alice");
        let watcher = hub.subscribe(Some(&alice), None).expect("subscribe");
        let second = hub.subscribe(Some(&alice), None).expect("subscribe");
        assert_eq!(hub.watched_users(), 1, "one channel per user");
        drop((watcher, second));
        hub.publish(0, EventKind::Set, &alice, None)
            .expect("publish");
        assert_eq!(hub.watched_users(), 0, "dropped at the next change");

        for i in 0..SWEEP_EVERY {
            drop(hub.subscribe(Some(&user(&format!("u{i}"))), None));
        }
        // Without the sweep all 1,024 would still be there; only those subscribed after
        // it are.
        assert!(hub.watched_users() < 10, "swept without any change");
    }

    #[test]
    fn closing_ends_every_live_stream_after_what_was_sent() {
        let hub = hub();
        let alice = user("alice");
        let mut watcher = hub.subscribe(Some(&alice), None).expect("subscribe");
        let mut feed = hub.subscribe(None, None).expect("subscribe");
        let sent = hub
            .publish(0, EventKind::Set, &alice, None)
            .expect("publish");

        hub.close();
        for receiver in [&mut watcher.receiver, &mut feed.receiver] {
            assert_eq!(
                receiver.try_recv().expect("sent before").sequence,
                sent.sequence
            );
            assert!(matches!(receiver.try_recv(), Err(TryRecvError::Closed)));
        }
        let later = hub
            .subscribe(Some(&alice), Some(sent.sequence - 1))
            .expect("subscribe");
        assert_eq!(later.replay.map(|r| r.len()), Some(1), "replay still works");
        let mut later = later.receiver;
        assert!(matches!(later.try_recv(), Err(TryRecvError::Closed)));
        let after = hub
            .publish(0, EventKind::Deleted, &alice, None)
            .expect("publish");
        assert_eq!(
            hub.last_sequence(),
            after.sequence,
            "changes still recorded"
        );
    }

    #[test]
    fn replay_is_atomic_with_the_subscription() {
        let hub = hub();
        let alice = user("alice");
        let first = hub
            .publish(0, EventKind::Set, &alice, None)
            .expect("publish");
        let second = hub
            .publish(0, EventKind::Cropped, &alice, None)
            .expect("publish");
        let subscription = hub
            .subscribe(Some(&alice), Some(first.sequence))
            .expect("subscribe");
        let replay = subscription.replay.expect("still retained");
        assert_eq!(
            replay.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            vec![second.sequence]
        );
        assert_eq!(subscription.last_sequence, second.sequence);
    }
}
