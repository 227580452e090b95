//! Tenants in image URLs. Until authentication brings tenants, there is one:
//! `default`. The tenant is passed down as a value so that a tenant-scoped user id can
//! replace [`Tenant::user`] without changing the URL scheme.

use crate::model::UserId;

pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(String);

impl Tenant {
    /// The tenant every user belongs to while authentication is off.
    pub fn default_tenant() -> Self {
        Tenant(DEFAULT_TENANT.to_owned())
    }

    /// A tenant named in a URL, if it exists (404 otherwise).
    pub fn lookup(name: &str) -> Option<Self> {
        (name == DEFAULT_TENANT).then(Self::default_tenant)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `user` of this tenant, as the domain names it. (One tenant for now: the id as
    /// it is; with tenants in user ids, this is where they are joined.)
    pub fn scope(&self, user: &UserId) -> UserId {
        user.clone()
    }
}
