//! Per-caller limits: a rate of changes per (tenant, user) (governor's GCRA, keyed),
//! and caps on a caller's concurrent WatchStatus streams and uploads. Without
//! authentication (`--auth none`) callers are nobody in particular, and none of these
//! apply.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio_util::sync::CancellationToken;

use crate::auth::Caller;
use crate::config::Config;
use crate::error::{Error, Result, reason};
use crate::model::UserId;

/// How often the limiter forgets callers whose budget is full again.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

/// A cap on concurrent things per caller: (for everyone, for admins); 0 = none.
#[derive(Debug, Clone, Copy)]
struct Cap {
    everyone: u32,
    admins: u32,
}

impl Cap {
    fn of(&self, caller: &Caller) -> u32 {
        if caller.admin {
            self.admins
        } else {
            self.everyone
        }
    }
}

pub struct Limits {
    changes: Option<DefaultKeyedRateLimiter<UserId>>,
    clock: DefaultClock,
    watches: Slots,
    uploads: Slots,
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        let changes = NonZeroU32::new(config.rate_limit_per_minute).map(|rate| {
            let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(NonZeroU32::MIN);
            DefaultKeyedRateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Limits {
            changes,
            clock: DefaultClock::default(),
            watches: Slots::new(
                Cap {
                    everyone: config.max_watches_per_caller,
                    admins: config
                        .admin_max_watches_per_caller
                        .unwrap_or(config.max_watches_per_caller),
                },
                reason::TOO_MANY_WATCHES,
                "WatchStatus streams",
            ),
            uploads: Slots::new(
                Cap {
                    everyone: config.max_uploads_per_caller,
                    admins: config
                        .admin_max_uploads_per_caller
                        .unwrap_or(config.max_uploads_per_caller),
                },
                reason::TOO_MANY_UPLOADS,
                "uploads",
            ),
        }
    }

    /// Forgets idle callers' rate state now and then, so memory follows the active
    /// callers, not every caller ever seen.
    pub fn forget_idle_callers(self: &Arc<Self>, shutdown: CancellationToken) {
        if self.changes.is_none() {
            return;
        }
        let limits = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(FORGET_IDLE_EVERY) => {}
                }
                let Some(limits) = limits.upgrade() else {
                    return;
                };
                if let Some(changes) = &limits.changes {
                    changes.retain_recent();
                    changes.shrink_to_fit();
                }
            }
        });
    }

    /// Takes one change from the caller's budget, or refuses (RESOURCE_EXHAUSTED with
    /// the wait) when it is spent.
    pub fn change(&self, caller: &Caller) -> Result<()> {
        let (Some(changes), Some(user)) = (&self.changes, &caller.user) else {
            return Ok(());
        };
        changes.check_key(user).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Whole milliseconds, rounded up: a client that waits exactly this long
            // gets through.
            let wait = Duration::from_millis(wait.as_millis().saturating_add(1) as u64);
            Error::RateLimited {
                message: format!(
                    "{} made changes faster than allowed; retry in {} ms",
                    quota_subject(user),
                    wait.as_millis()
                ),
                quota: quota_subject(user),
                retry_after: wait,
            }
        })
    }

    /// A WatchStatus slot of the caller's, held while the returned guard lives.
    pub fn watch(&self, caller: &Caller) -> Result<Slot> {
        self.watches.take(caller)
    }

    /// An upload slot of the caller's, held while the returned guard lives.
    pub fn upload(&self, caller: &Caller) -> Result<Slot> {
        self.uploads.take(caller)
    }
}

/// How a quota names its caller: `tenant/user`.
fn quota_subject(user: &UserId) -> String {
    format!("{}/{}", user.tenant(), user)
}

/// How many slots each caller holds.
type Held = Arc<Mutex<HashMap<UserId, u32>>>;

/// Counts what each caller holds of one kind.
struct Slots {
    cap: Cap,
    reason: &'static str,
    what: &'static str,
    held: Held,
}

/// One slot held; given back when dropped.
pub struct Slot(Option<(Held, UserId)>);

impl Slots {
    fn new(cap: Cap, reason: &'static str, what: &'static str) -> Self {
        Slots {
            cap,
            reason,
            what,
            held: Arc::default(),
        }
    }

    fn take(&self, caller: &Caller) -> Result<Slot> {
        let cap = self.cap.of(caller);
        let Some(user) = caller.user.as_ref().filter(|_| cap > 0) else {
            return Ok(Slot(None));
        };
        let mut held = self
            .held
            .lock()
            .map_err(|_| Error::internal("slot lock poisoned"))?;
        let count = held.entry(user.clone()).or_insert(0);
        if *count >= cap {
            return Err(Error::TooManyStreams {
                reason: self.reason,
                message: format!(
                    "{} has {cap} {} open already, as many as a caller may",
                    quota_subject(user),
                    self.what
                ),
                quota: quota_subject(user),
            });
        }
        *count += 1;
        Ok(Slot(Some((self.held.clone(), user.clone()))))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((held, user)) = self.0.take() else {
            return;
        };
        let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;

    fn caller(user: &str, admin: bool) -> Caller {
        let tenant = TenantId::default_tenant();
        Caller {
            user: Some(UserId::parse_in(&tenant, "sub", user).unwrap()),
            tenant,
            admin,
        }
    }

    fn config() -> Config {
        Config {
            rate_limit_per_minute: 10,
            rate_limit_burst: 2,
            max_uploads_per_caller: 1,
            admin_max_uploads_per_caller: Some(2),
            ..Config::default()
        }
    }

    #[test]
    fn a_burst_then_refusals_with_the_wait() {
        let limits = Limits::new(&config());
        let alice = caller("alice", false);
        assert!(limits.change(&alice).is_ok());
        assert!(limits.change(&alice).is_ok());
        match limits.change(&alice) {
            Err(Error::RateLimited {
                retry_after, quota, ..
            }) => {
                assert!(retry_after > Duration::from_secs(4), "{retry_after:?}");
                assert!(retry_after <= Duration::from_secs(6), "{retry_after:?}");
                assert_eq!(quota, "default/alice");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(limits.change(&caller("bob", false)).is_ok(), "per user");
        assert!(
            limits.change(&Caller::unauthenticated_admin()).is_ok(),
            "nobody in particular is not limited"
        );
    }

    #[test]
    fn slots_are_given_back_and_admins_have_their_own_cap() {
        let limits = Limits::new(&config());
        let alice = caller("alice", false);
        let held = limits.upload(&alice).unwrap();
        assert!(limits.upload(&alice).is_err());
        drop(held);
        assert!(limits.upload(&alice).is_ok());
        let admin = caller("root", true);
        let _first = limits.upload(&admin).unwrap();
        let _second = limits.upload(&admin).unwrap();
        assert!(limits.upload(&admin).is_err());
    }
}
