//! WatchStatus: profile change events, fanned out to watchers. Depends on the domain's
//! values only; where snapshots come from is the [`Snapshots`] trait.

mod hub;
mod watcher;

pub use hub::{Hub, Subscription};
pub use watcher::{Snapshots, WatchRequest, WatchStream, watch};
