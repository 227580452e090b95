//! A bounded in-memory cache of blob bytes, keyed by the blob's content hash. Blobs are
//! content-addressed and never change, so a cached entry is never wrong; the sweeper
//! drops an entry when it deletes a blob stored on its own. (A blob in a local pack
//! keeps its entry until evicted: the pack's file name does not say which blobs it held,
//! and only a record still being read names such a blob.) Hot renditions are then
//! served without a file open and read per Get.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// Larger blobs (originals) are not cached: Get never serves them.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Shards, so concurrent Gets rarely wait on one lock.
const SHARDS: usize = 16;

pub struct BlobCache {
    shards: Vec<Mutex<Shard>>,
    /// Bytes one shard holds at most.
    shard_budget: usize,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<[u8; 32], Bytes>,
    bytes: usize,
}

impl BlobCache {
    /// A cache of at most `capacity_bytes` (0 caches nothing).
    pub fn new(capacity_bytes: usize) -> Self {
        BlobCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: capacity_bytes / SHARDS,
        }
    }

    fn shard(&self, hash: &[u8; 32]) -> &Mutex<Shard> {
        &self.shards[usize::from(hash[0]) % SHARDS]
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<Bytes> {
        self.shard(hash).lock().ok()?.entries.get(hash).cloned()
    }

    pub fn insert(&self, hash: [u8; 32], bytes: Bytes) {
        if bytes.len() > MAX_ENTRY_BYTES.min(self.shard_budget) {
            return;
        }
        let Ok(mut shard) = self.shard(&hash).lock() else {
            return;
        };
        let budget = self.shard_budget;
        // Over budget: drop arbitrary entries (hash order is random) until there is room.
        while shard.bytes + bytes.len() > budget {
            let Some(victim) = shard.entries.keys().next().copied() else {
                break;
            };
            if let Some(evicted) = shard.entries.remove(&victim) {
                shard.bytes -= evicted.len();
            }
        }
        shard.bytes += bytes.len();
        if let Some(replaced) = shard.entries.insert(hash, bytes) {
            shard.bytes -= replaced.len();
        }
    }

    pub fn remove(&self, hash: &[u8; 32]) {
        if let Ok(mut shard) = self.shard(hash).lock()
            && let Some(removed) = shard.entries.remove(hash)
        {
            shard.bytes -= removed.len();
        }
    }
}
