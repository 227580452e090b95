//! Who may do what, decided per call from its [`Caller`] (attached by the auth
//! interceptor): `me` is the caller; reading is open to the caller's tenant; changing
//! and listing media are the user's own or an admin's; watching every user is an
//! admin's, and sees the caller's tenant only. Every user a request names is a user of
//! the caller's tenant, so no call reaches across tenants.

use std::sync::Arc;

use tonic::Request;

use crate::auth::Caller;
use crate::error::{Error, Result, reason};
use crate::model::UserId;

/// The user id that names the caller in any request.
pub const ME: &str = "me";

/// The caller of a request (the interceptor attached it).
pub fn caller<T>(request: &Request<T>) -> Result<Arc<Caller>> {
    request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| Error::internal("a call reached the service unauthenticated"))
}

/// The user a request names in `field`, in the caller's tenant; `me` is the caller.
pub fn target(caller: &Caller, field: &str, raw: &str) -> Result<UserId> {
    if raw != ME {
        return UserId::parse_in(&caller.tenant, field, raw);
    }
    caller.user.clone().ok_or_else(|| {
        Error::invalid(
            field,
            reason::FIELD_INVALID,
            format!("`{ME}` names the caller, and without authentication (--auth none) the caller is nobody"),
        )
    })
}

/// Changing a user's image, or listing their media: the user themself or an admin.
pub fn may_change(caller: &Caller, target: &UserId) -> Result<()> {
    if caller.admin || caller.user.as_ref() == Some(target) {
        return Ok(());
    }
    Err(Error::PermissionDenied {
        reason: reason::NOT_OWNER,
        message: format!(
            "only {target} or an admin of the tenant may change {target}'s profile image or list their media"
        ),
    })
}

/// Watching every user of the tenant: admins only.
pub fn may_watch_all(caller: &Caller) -> Result<()> {
    if caller.admin {
        return Ok(());
    }
    Err(Error::PermissionDenied {
        reason: reason::ADMIN_REQUIRED,
        message: "watching every user needs the admin role; watch one user by user_id".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;

    fn caller(tenant: &str, user: &str, admin: bool) -> Caller {
        let tenant = TenantId::parse("tenant", tenant).unwrap();
        Caller {
            user: Some(UserId::parse_in(&tenant, "sub", user).unwrap()),
            tenant,
            admin,
        }
    }

    #[test]
    fn me_is_the_caller_and_other_ids_are_in_the_callers_tenant() {
        let alice = caller("acme", "alice", false);
        assert_eq!(
            target(&alice, "user_id", "me").unwrap(),
            alice.user.clone().unwrap()
        );
        let bob = target(&alice, "user_id", "bob").unwrap();
        assert_eq!(bob.tenant().as_str(), "acme");
        assert!(target(&Caller::unauthenticated_admin(), "user_id", "me").is_err());
    }

    #[test]
    fn only_the_user_or_an_admin_may_change() {
        let alice = caller("acme", "alice", false);
        let bob = target(&alice, "user_id", "bob").unwrap();
        assert!(may_change(&alice, alice.user.as_ref().unwrap()).is_ok());
        assert!(matches!(
            may_change(&alice, &bob),
            Err(Error::PermissionDenied {
                reason: reason::NOT_OWNER,
                ..
            })
        ));
        assert!(may_change(&caller("acme", "root", true), &bob).is_ok());
        assert!(matches!(
            may_watch_all(&alice),
            Err(Error::PermissionDenied {
                reason: reason::ADMIN_REQUIRED,
                ..
            })
        ));
    }
}
