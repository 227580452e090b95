//! Profile change events, as watchers receive them.

use super::{ProfileView, UserId, now_millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The current state, sent first (and after a watcher fell behind).
    Snapshot,
    Set,
    StatusChanged,
    Cropped,
    Deleted,
}

/// One change of one user's profile image, or a snapshot.
#[derive(Debug, Clone)]
pub struct Event {
    /// Increasing over the store's life: a watcher resumes after one.
    pub sequence: u64,
    pub kind: EventKind,
    /// None only for the all-users feed's snapshot marker, which is about no user.
    pub user: Option<UserId>,
    /// The state after the change (metadata only); None when the user has no image.
    pub state: Option<ProfileView>,
    pub time_ms: i64,
}

impl Event {
    /// An event that happens now.
    pub fn new(
        sequence: u64,
        kind: EventKind,
        user: Option<UserId>,
        state: Option<ProfileView>,
    ) -> Self {
        Event {
            sequence,
            kind,
            user,
            state,
            time_ms: now_millis(),
        }
    }

    /// Whether a watcher waiting for `user`'s download to finish can stop after this.
    pub fn completes(&self) -> bool {
        self.state
            .as_ref()
            .is_none_or(|view| view.profile.status.is_terminal())
    }
}
