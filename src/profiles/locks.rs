//! Serialises writes per user: the version check, the commit, the flush and the event
//! happen in one order for a user, so events come out in version order.

use tokio::sync::{Mutex, MutexGuard};

use crate::model::UserId;

/// Enough stripes that unrelated users rarely share one, few enough to allocate once.
const STRIPES: usize = 1024;

pub struct UserLocks {
    stripes: Vec<Mutex<()>>,
}

impl UserLocks {
    pub fn new() -> Self {
        UserLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, user: &UserId) -> MutexGuard<'_, ()> {
        let hash = blake3::hash(user.as_str().as_bytes());
        let bytes = hash.as_bytes();
        let index = u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ]);
        self.stripes[(index % STRIPES as u64) as usize].lock().await
    }
}
