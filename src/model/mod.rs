//! Domain types shared by the store, the service and the API layer. A value of these
//! types has been validated: a `UserId` is not any `String`, a status is a [`Status`],
//! not an integer. Mapping to the stored records and to the wire is explicit, in
//! `store::records` and `api::convert`.

mod event;
mod profile;

use std::fmt;

pub use crate::imaging::ImageFormat;
pub use event::{Event, EventKind};
pub use profile::{
    BlobRef, Crop, DownloadJob, Failure, Media, MediaView, Packed, Profile, ProfileView, Rendition,
    ServedImage, Source, Status, UserState,
};

use crate::error::{Error, Result, reason};

/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;
/// Longest accepted tenant name, in bytes.
pub const MAX_TENANT_BYTES: usize = 128;

/// A community of users, kept apart from every other: the same user id in two tenants
/// is two users. 1-128 bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// The tenant of callers whose token names none, and of every user stored before
    /// tenants existed.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        check_name(field, raw, MAX_TENANT_BYTES)?;
        Ok(TenantId(raw.to_owned()))
    }

    pub fn default_tenant() -> Self {
        TenantId(Self::DEFAULT.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::default_tenant()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated user: a tenant and an id of 1-256 bytes of UTF-8 without control
/// characters (so both can be used inside store keys, which separate parts with control
/// bytes). Equal only when both the tenant and the id are: everything keyed by a
/// `UserId` (locks, store keys, event channels, media ownership, downloads) is
/// separated by tenant. Displayed as the bare id, as clients name users.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId {
    tenant: TenantId,
    id: String,
}

impl UserId {
    /// A user of the `default` tenant.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        Self::parse_in(&TenantId::default_tenant(), field, raw)
    }

    /// A user of `tenant`.
    pub fn parse_in(tenant: &TenantId, field: &str, raw: &str) -> Result<Self> {
        check_name(field, raw, MAX_USER_ID_BYTES)?;
        Ok(UserId {
            tenant: tenant.clone(),
            id: raw.to_owned(),
        })
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The id within the tenant.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// 1-`max` bytes, no control characters.
fn check_name(field: &str, raw: &str, max: usize) -> Result<()> {
    if raw.is_empty() {
        return Err(Error::missing(field));
    }
    if raw.len() > max {
        return Err(Error::invalid(
            field,
            reason::FIELD_INVALID,
            format!("{field} is longer than {max} bytes"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            reason::FIELD_INVALID,
            format!("{field} contains control characters"),
        ));
    }
    Ok(())
}

/// Output formats a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// JPEG when opaque, PNG when the image has transparency.
    Default,
    Jpeg,
    Png,
    Webp,
}

/// A crop a client asked for, not yet checked against an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRequest {
    pub x: u32,
    pub y: u32,
    pub size: u32,
}

/// An optimistic-concurrency precondition: the user's current version must equal it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedVersion(pub Option<u64>);

impl ExpectedVersion {
    pub fn check(self, current: u64) -> Result<()> {
        match self.0 {
            Some(expected) if expected != current => {
                Err(Error::VersionConflict { expected, current })
            }
            _ => Ok(()),
        }
    }
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
