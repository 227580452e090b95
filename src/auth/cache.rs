//! Verified tokens, remembered until they expire, so that a client calling with the
//! same token again costs a hash and a map lookup instead of a signature check (an
//! RS256 verification is ~50 µs, more than a cached Get).
//!
//! A few dozen lines instead of a cache crate: entries are small, expiry is the token's
//! own `exp`, and the bound only has to keep a flood of distinct tokens from growing
//! memory. Keys are BLAKE3 hashes of the token, so no token is held after its call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Caller;

/// Shards: concurrent calls rarely wait for one another.
const SHARDS: usize = 16;
/// Entries per shard; 65,536 tokens in all.
const SHARD_CAPACITY: usize = 4096;

type TokenHash = [u8; 32];

struct Entry {
    caller: Arc<Caller>,
    /// Seconds since the Unix epoch after which the entry is no longer used.
    expires_at: u64,
}

pub struct TokenCache {
    shards: Vec<Mutex<HashMap<TokenHash, Entry>>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCache {
    pub fn new() -> Self {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn hash(token: &str) -> TokenHash {
        *blake3::hash(token.as_bytes()).as_bytes()
    }

    /// The caller of a token verified before and not expired at `now`.
    pub fn get(&self, token: &TokenHash, now: u64) -> Option<Arc<Caller>> {
        let mut shard = self.shard(token).lock().ok()?;
        match shard.get(token) {
            Some(entry) if entry.expires_at > now => Some(entry.caller.clone()),
            Some(_) => {
                shard.remove(token);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token until `expires_at`. A full shard first drops its
    /// expired entries, then, if still full, an arbitrary one.
    pub fn insert(&self, token: TokenHash, caller: Arc<Caller>, expires_at: u64, now: u64) {
        let Ok(mut shard) = self.shard(&token).lock() else {
            return;
        };
        if shard.len() >= SHARD_CAPACITY {
            shard.retain(|_, entry| entry.expires_at > now);
        }
        if shard.len() >= SHARD_CAPACITY
            && let Some(victim) = shard.keys().next().copied()
        {
            shard.remove(&victim);
        }
        shard.insert(token, Entry { caller, expires_at });
    }

    fn shard(&self, token: &TokenHash) -> &Mutex<HashMap<TokenHash, Entry>> {
        &self.shards[usize::from(token[0]) % SHARDS]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Arc<Caller> {
        Arc::new(Caller::unauthenticated_admin())
    }

    #[test]
    fn a_token_is_remembered_until_it_expires() {
        let cache = TokenCache::new();
        let token = TokenCache::hash("a.b.c");
        cache.insert(token, caller(), 100, 50);
        assert!(cache.get(&token, 99).is_some());
        assert!(cache.get(&token, 100).is_none(), "expired");
        assert_eq!(cache.len(), 0, "an expired entry is dropped when met");
    }

    #[test]
    fn distinct_tokens_never_grow_it_past_its_bound() {
        let cache = TokenCache::new();
        for i in 0..(SHARDS * SHARD_CAPACITY + 1000) {
            cache.insert(TokenCache::hash(&format!("t{i}")), caller(), 100, 50);
        }
        assert!(cache.len() <= SHARDS * SHARD_CAPACITY);
    }
}
