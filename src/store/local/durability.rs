//! Group commit: one thread makes writes durable for everyone who waits.
//!
//! A writer commits its transaction, then takes a ticket and waits for it. The flusher
//! thread reads the newest ticket *before* each flush begins, syncs the blob files'
//! filesystem and flushes sled, and then completes every ticket up to the one it read:
//! a write that committed before its ticket was taken is covered by that flush.
//! Concurrent writers share one fsync, and sled's flush is never called concurrently
//! (sled 0.34 can deadlock on concurrent `flush_async`, spacejam/sled#1308).
//!
//! The flusher also records when the flush in progress started, so a stalled store
//! (a flush that does not finish) can be seen from outside and reported by health.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::{Error, Result};

/// Tickets completed so far.
#[derive(Debug, Clone, Copy, Default)]
struct Completed {
    /// Every ticket up to this one is durable.
    durable_through: u64,
    /// The flush for tickets up to this one failed (a later success still covers them).
    failed_through: u64,
    /// Whether that failure was a full disk.
    failed_full: bool,
}

/// The handle writers use; the thread stops when the last handle is dropped.
pub struct GroupCommit {
    shared: Arc<Shared>,
}

struct Shared {
    /// The newest ticket handed out.
    requested: AtomicU64,
    /// Set to wake the flusher; `stop` ends it.
    signal: Mutex<Signal>,
    wake: Condvar,
    completed: watch::Sender<Completed>,
    /// When the flush in progress began; None between flushes.
    flushing_since: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Signal {
    stop: bool,
}

impl GroupCommit {
    /// Starts the flusher thread for `db`, syncing the filesystem of `blob_dir` first.
    pub fn start(db: sled::Db, blob_dir: &Path) -> Result<Self> {
        let shared = Arc::new(Shared {
            requested: AtomicU64::new(0),
            signal: Mutex::default(),
            wake: Condvar::new(),
            completed: watch::Sender::new(Completed::default()),
            flushing_since: Mutex::new(None),
        });
        let worker = shared.clone();
        let blob_dir = blob_dir.to_path_buf();
        std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || worker.run(&db, &blob_dir))
            .map_err(Error::internal)?;
        Ok(GroupCommit { shared })
    }

    /// Waits until every write committed before this call is durable.
    pub async fn durable(&self) -> Result<()> {
        let mut completed = self.shared.completed.subscribe();
        let ticket = self.shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.wake();
        let outcome = completed
            .wait_for(|c| c.durable_through >= ticket || c.failed_through >= ticket)
            .await
            .map(|c| *c)
            .map_err(|_| Error::internal("the store flusher stopped"))?;
        if outcome.durable_through >= ticket {
            Ok(())
        } else if outcome.failed_full {
            Err(Error::StorageFull(
                "the disk filled up while the change was made durable".into(),
            ))
        } else {
            Err(Error::Unavailable(
                "the store could not make the change durable".into(),
            ))
        }
    }

    /// How long the flush in progress has been running, if one is.
    pub fn flushing_for(&self) -> Option<Duration> {
        self.shared
            .flushing_since
            .lock()
            .ok()
            .and_then(|since| since.map(|since| since.elapsed()))
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        if let Ok(mut signal) = self.shared.signal.lock() {
            signal.stop = true;
        }
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn wake(&self) {
        // Taking the lock orders this wake-up with the flusher's check before it waits.
        drop(self.signal.lock());
        self.wake.notify_one();
    }

    fn run(&self, db: &sled::Db, blob_dir: &Path) {
        let mut done = 0;
        loop {
            {
                let Ok(mut signal) = self.signal.lock() else {
                    return;
                };
                while !signal.stop && self.requested.load(Ordering::SeqCst) == done {
                    signal = match self.wake.wait(signal) {
                        Ok(signal) => signal,
                        Err(_) => return,
                    };
                }
                if signal.stop && self.requested.load(Ordering::SeqCst) == done {
                    return;
                }
            }
            let target = self.requested.load(Ordering::SeqCst);
            self.set_flushing(Some(Instant::now()));
            let result = sync_filesystem(blob_dir)
                .and_then(|()| db.flush().map(|_| ()).map_err(Error::from));
            self.set_flushing(None);
            done = target;
            self.completed.send_modify(|completed| match &result {
                Ok(()) => completed.durable_through = target,
                Err(error) => {
                    completed.failed_through = target;
                    completed.failed_full = matches!(error, Error::StorageFull(_));
                }
            });
            if let Err(error) = result {
                tracing::error!(%error, "store flush failed");
                // Do not spin on a failing disk.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn set_flushing(&self, since: Option<Instant>) {
        if let Ok(mut flushing) = self.flushing_since.lock() {
            *flushing = since;
        }
    }
}

/// Writes back every dirty file of the filesystem holding `dir` (the blob files and
/// their directory entries) in one call.
fn sync_filesystem(dir: &Path) -> Result<()> {
    let handle = std::fs::File::open(dir).map_err(|e| Error::storage_io(&e, "open blob dir"))?;
    rustix::fs::syncfs(&handle).map_err(|e| Error::storage_io(&e.into(), "syncfs"))
}
