//! The free-space watermark ("flood stage"): below it every change is refused before
//! anything is written, so the disk never fills under the store's feet; reads go on.
//! Above it again, changes are accepted with no restart.
//!
//! Free space is read with statvfs at most once per [`REFRESH`]; every write asks the
//! cached answer, so the check costs a mutex and a clock read.
//!
//! The data dir also keeps a small reserve file ([`Reserve`]). It is deleted before the
//! store opens, so that sled's recovery after a crash (a snapshot, the id counter) has
//! room even when another process filled the disk to the last byte, and written again
//! once there is space for it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a free-space reading is trusted.
pub const REFRESH: Duration = Duration::from_millis(250);
/// The default watermark: 256 MiB, or 5% of the filesystem when that is smaller.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;
const DEFAULT_MIN_FREE_FRACTION: f64 = 0.05;

/// Free space of one filesystem against a watermark.
pub struct FreeSpace {
    path: PathBuf,
    min_free: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl FreeSpace {
    /// Watches the filesystem of `path`. `min_free` None means the default rule.
    pub fn new(path: &Path, min_free: Option<u64>) -> Result<Self> {
        let (free, total) = statvfs(path)?;
        let min_free = min_free.unwrap_or_else(|| {
            DEFAULT_MIN_FREE_BYTES.min((total as f64 * DEFAULT_MIN_FREE_FRACTION) as u64)
        });
        Ok(FreeSpace {
            path: path.to_path_buf(),
            min_free,
            last: Mutex::new(Some((Instant::now(), free))),
        })
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free
    }

    /// Free bytes (cached up to [`REFRESH`]).
    pub fn free_bytes(&self) -> u64 {
        let mut last = match self.last.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        match *last {
            Some((at, free)) if at.elapsed() < REFRESH => free,
            _ => {
                // On a failed reading, assume the worst only if the last one was low.
                let free = statvfs(&self.path).map_or_else(
                    |_| last.map_or(u64::MAX, |(_, free)| free),
                    |(free, _)| free,
                );
                *last = Some((Instant::now(), free));
                free
            }
        }
    }

    /// Refuses a change (storage-full) while free space is under the watermark.
    pub fn check(&self) -> Result<()> {
        let free = self.free_bytes();
        if free < self.min_free {
            return Err(Error::StorageFull(format!(
                "the data dir's filesystem has {free} bytes free, under the {} byte minimum; \
                 changes are refused until space is freed (reads go on)",
                self.min_free
            )));
        }
        Ok(())
    }

    /// Forgets the cached reading (after an ENOSPC: the next check reads again).
    pub fn invalidate(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }
}

/// (bytes available to unprivileged users, filesystem size) of the filesystem of `path`.
fn statvfs(path: &Path) -> Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path)
        .map_err(|e| Error::Unavailable(format!("statvfs {}: {e}", path.display())))?;
    Ok((
        stat.f_bavail.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

/// Space set aside in the data dir for opening the store on a full disk.
pub struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    /// The reserve of `data_dir`: 1/64 of the filesystem, between 256 KiB and 8 MiB.
    pub fn of(data_dir: &Path) -> Result<Self> {
        let (_, total) = statvfs(data_dir)?;
        Ok(Reserve {
            path: data_dir.join("reserved-space"),
            bytes: (total / 64).clamp(256 * 1024, 8 * 1024 * 1024),
        })
    }

    /// Gives the reserve's space back to the filesystem.
    pub fn release(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Writes the reserve again if it is missing and the filesystem has room for it
    /// above `space`'s watermark. A failure only means it is tried again later.
    pub fn refill(&self, space: &FreeSpace) {
        if self.path.exists() || space.free_bytes() < space.min_free_bytes() + self.bytes * 2 {
            return;
        }
        let written = std::fs::File::create(&self.path).and_then(|mut file| {
            std::io::Write::write_all(&mut file, &vec![0u8; self.bytes as usize])?;
            file.sync_all()
        });
        if written.is_err() {
            self.release();
        }
        space.invalidate();
    }
}
