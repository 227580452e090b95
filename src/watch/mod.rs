//! WatchStatus: profile change events, fanned out to watchers.

mod hub;
mod watcher;

pub use hub::{Event, EventKind, Hub, Subscription};
pub use watcher::{WatchRequest, WatchStream, watch};
