//! How long a download waits before its next attempt: exponential, capped, jittered.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The longest wait between two attempts, whatever the base and the attempt count.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The wait before attempt `attempts + 1` (after `attempts` failed ones, at least 1):
/// `base * 2^(attempts - 1)`, capped at [`MAX_RETRY_DELAY`], then drawn uniformly from
/// its upper half, so downloads that failed together (one origin down) do not come
/// back together.
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1 << exponent).min(MAX_RETRY_DELAY);
    let half = ceiling / 2;
    half + half.mul_f64(unit_random())
}

/// A random number in [0, 1): the standard library's per-process random hash keys are
/// enough for jitter.
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_their_jitter_band() {
        let base = Duration::from_millis(500);
        for (attempts, ceiling_ms) in [(1, 500), (2, 1000), (3, 2000), (4, 4000)] {
            let ceiling = Duration::from_millis(ceiling_ms);
            for _ in 0..50 {
                let delay = retry_delay(base, attempts);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "attempt {attempts}: {delay:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
    }

    #[test]
    fn delays_are_capped_however_many_attempts_failed() {
        for attempts in [10, 31, 1000, u32::MAX] {
            let delay = retry_delay(Duration::from_secs(1), attempts);
            assert!(delay <= MAX_RETRY_DELAY, "{attempts}: {delay:?}");
            assert!(delay >= MAX_RETRY_DELAY / 2, "{attempts}: {delay:?}");
        }
    }

    #[test]
    fn delays_are_jittered() {
        let delays: std::collections::HashSet<_> = (0..20)
            .map(|_| retry_delay(Duration::from_secs(1), 3))
            .collect();
        assert!(
            delays.len() > 10,
            "20 draws gave {} distinct delays",
            delays.len()
        );
    }
}
