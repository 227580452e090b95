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
    BlobRef, Crop, DownloadJob, Failure, Media, MediaView, Profile, ProfileView, Rendition,
    ServedImage, Source, Status, UserState,
};

use crate::error::{Error, Result, reason};

/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// A validated user id: 1-256 bytes of UTF-8 without control characters (so it can be
/// used inside store keys, which separate parts with a NUL byte).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        if raw.is_empty() {
            return Err(Error::missing(field));
        }
        if raw.len() > MAX_USER_ID_BYTES {
            return Err(Error::invalid(
                field,
                reason::FIELD_INVALID,
                format!("{field} is longer than {MAX_USER_ID_BYTES} bytes"),
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(Error::invalid(
                field,
                reason::FIELD_INVALID,
                format!("{field} contains control characters"),
            ));
        }
        Ok(UserId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
