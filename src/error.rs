//! The one domain error type, and its one mapping to `tonic::Status`.

use tonic::Code;

use crate::telemetry;
use tonic_types::{ErrorDetails, FieldViolation, QuotaViolation, StatusExt};

/// Domain of the google.rpc ErrorInfo this service sends.
pub const ERROR_DOMAIN: &str = "profileimage.v1";

/// Machine-readable reasons carried by BadRequest field violations and `Failure.reason`.
pub mod reason {
    pub const VALIDATION_FAILURE: &str = "validation-failure";
    pub const FIELD_MISSING: &str = "field-missing";
    pub const FIELD_INVALID: &str = "field-invalid";
    pub const FILE_TOO_LARGE: &str = "file-too-large";
    pub const INVALID_FILE_FORMAT: &str = "invalid-file-format";
    pub const CROP_OUT_OF_BOUNDS: &str = "crop-out-of-bounds";
    pub const INVALID_URL: &str = "invalid-url";
    pub const NOT_FOUND: &str = "not-found";
    pub const VERSION_CONFLICT: &str = "version-conflict";
    pub const IMAGE_NOT_READY: &str = "image-not-ready";
    pub const SHUTTING_DOWN: &str = "shutting-down";
    pub const STORAGE_UNAVAILABLE: &str = "storage-unavailable";
    pub const STORAGE_FULL: &str = "storage-full";
    pub const OVERLOADED: &str = "overloaded";
    pub const DEADLINE_EXCEEDED: &str = "deadline-exceeded";
    pub const INTERNAL: &str = "internal";
    pub const TOKEN_MISSING: &str = "token-missing";
    pub const TOKEN_INVALID: &str = "token-invalid";
    pub const TOKEN_EXPIRED: &str = "token-expired";
    pub const NOT_OWNER: &str = "not-owner";
    pub const ADMIN_REQUIRED: &str = "admin-required";
    pub const RATE_LIMITED: &str = "rate-limited";
    pub const TOO_MANY_WATCHES: &str = "too-many-watches";
    pub const TOO_MANY_UPLOADS: &str = "too-many-uploads";
}

/// One problem with one request field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub reason: &'static str,
    pub description: String,
}

/// Everything that can go wrong in the service, as a client should see it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid; nothing was changed.
    #[error("invalid request: {}", describe(.0))]
    Invalid(Vec<Violation>),
    /// The bytes given as an image are not one the service accepts (`reason`:
    /// invalid-file-format or file-too-large). The API layer names the request field.
    #[error("{message}")]
    BadImage {
        reason: &'static str,
        message: String,
    },
    /// The crop asked for does not fit the image. The API layer names the field.
    #[error("{0}")]
    CropOutOfBounds(String),
    #[error("{0}")]
    NotFound(String),
    /// `expected_version` did not match; nothing was changed.
    #[error("version conflict: expected {expected}, current is {current}")]
    VersionConflict { expected: u64, current: u64 },
    /// The call is valid but the state does not allow it (e.g. crop while downloading).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Too much work is queued already: refused at once, the client may retry after
    /// the delay.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The call took longer than the server allows (processing, an idle upload).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The data dir's filesystem is (nearly) full: changes are refused, reads go on.
    #[error("{0}")]
    StorageFull(String),
    /// Storage could not complete the call right now (an I/O failure); retrying may work.
    #[error("{0}")]
    Unavailable(String),
    /// The user's stored state changed between reading it and committing a change
    /// decided on it: the change is decided again. Never reaches a client as such.
    #[error("the stored state changed concurrently")]
    Conflict,
    /// A blob a record referenced is gone: a concurrent change released it. Readers
    /// read the state again; it never reaches a client as such.
    #[error("a stored blob is gone (released by a concurrent change)")]
    BlobMissing,
    /// The caller is not authenticated (`reason`: token-missing, token-invalid or
    /// token-expired). The message says which check failed; it never holds the token.
    #[error("{message}")]
    Unauthenticated {
        reason: &'static str,
        message: String,
    },
    /// The caller may not do this (`reason`: not-owner or admin-required); nothing
    /// was changed.
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    /// The caller made more changes than its rate allows; nothing was changed. `quota`
    /// names whose quota it is (`tenant/user`).
    #[error("{message}")]
    RateLimited {
        message: String,
        quota: String,
        retry_after: std::time::Duration,
    },
    /// The caller has as many streams of a kind open as it may (`reason`:
    /// too-many-watches or too-many-uploads).
    #[error("{message}")]
    TooManyStreams {
        reason: &'static str,
        message: String,
        quota: String,
    },
    /// A setting the service cannot start with (an unreadable or unusable key file).
    /// Only start-up returns it; a client never sees it as such.
    #[error("configuration error: {0}")]
    Config(String),
    /// A bug or a storage failure. The detail is logged, never sent to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// A single-field validation error.
    pub fn invalid(
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Error::Invalid(vec![Violation {
            field: field.into(),
            reason,
            description: description.into(),
        }])
    }

    pub fn missing(field: &str) -> Self {
        Error::invalid(field, reason::FIELD_MISSING, format!("{field} is required"))
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }

    /// A storage I/O failure: a full disk (or quota) is [`Error::StorageFull`], anything
    /// else [`Error::Unavailable`]; neither is a bug.
    pub fn storage_io(error: &std::io::Error, what: &str) -> Self {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        match error.raw_os_error() {
            Some(ENOSPC | EDQUOT) => Error::StorageFull(format!("{what}: {error}")),
            _ if error.kind() == std::io::ErrorKind::StorageFull => {
                Error::StorageFull(format!("{what}: {error}"))
            }
            _ => Error::Unavailable(format!("{what}: {error}")),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match &e {
            sled::Error::Io(io) => Error::storage_io(io, "storage"),
            _ => Error::internal(format!("storage: {e}")),
        }
    }
}

impl From<sled::transaction::TransactionError<Error>> for Error {
    fn from(e: sled::transaction::TransactionError<Error>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(inner) => inner,
            sled::transaction::TransactionError::Storage(e) => e.into(),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let info = |reason: &str| {
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new())
        };
        match error {
            Error::Invalid(violations) => {
                let message = format!("invalid request: {}", describe(&violations));
                let mut details = info(reason::VALIDATION_FAILURE);
                details.set_bad_request(
                    violations
                        .into_iter()
                        .map(|v| FieldViolation {
                            reason: v.reason.to_string(),
                            ..FieldViolation::new(v.field, v.description)
                        })
                        .collect::<Vec<_>>(),
                );
                tonic::Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound(message) => {
                tonic::Status::with_error_details(Code::NotFound, message, info(reason::NOT_FOUND))
            }
            e @ Error::VersionConflict { .. } => tonic::Status::with_error_details(
                Code::Aborted,
                e.to_string(),
                info(reason::VERSION_CONFLICT),
            ),
            Error::FailedPrecondition(message) => tonic::Status::with_error_details(
                Code::FailedPrecondition,
                message,
                info(reason::IMAGE_NOT_READY),
            ),
            e @ Error::ShuttingDown => tonic::Status::with_error_details(
                Code::Unavailable,
                e.to_string(),
                info(reason::SHUTTING_DOWN),
            ),
            Error::Overloaded {
                message,
                retry_after,
            } => {
                metrics::counter!(telemetry::CHANGES_REFUSED, "reason" => reason::OVERLOADED)
                    .increment(1);
                let mut details = info(reason::OVERLOADED);
                details.set_retry_info(Some(retry_after));
                tonic::Status::with_error_details(Code::Unavailable, message, details)
            }
            Error::DeadlineExceeded(message) => tonic::Status::with_error_details(
                Code::DeadlineExceeded,
                message,
                info(reason::DEADLINE_EXCEEDED),
            ),
            Error::StorageFull(detail) => {
                tracing::warn!(%detail, "change refused: storage full");
                metrics::counter!(telemetry::CHANGES_REFUSED, "reason" => reason::STORAGE_FULL)
                    .increment(1);
                tonic::Status::with_error_details(
                    Code::ResourceExhausted,
                    "the server's storage is full; changes are refused until space is freed \
                     (reads still work)",
                    info(reason::STORAGE_FULL),
                )
            }
            Error::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                tonic::Status::with_error_details(
                    Code::Unavailable,
                    "storage is temporarily unavailable; retry later",
                    info(reason::STORAGE_UNAVAILABLE),
                )
            }
            Error::BadImage { reason, message } => Error::invalid("image", reason, message).into(),
            Error::CropOutOfBounds(message) => {
                Error::invalid("crop", reason::CROP_OUT_OF_BOUNDS, message).into()
            }
            e @ (Error::BlobMissing | Error::Conflict) => {
                // Both are retried where they arise; reaching here is a bug.
                tracing::error!(error = %e, "a concurrent change was not retried away");
                tonic::Status::with_error_details(
                    Code::Internal,
                    "internal error; the incident is logged",
                    info(reason::INTERNAL),
                )
            }
            Error::Unauthenticated { reason, message } => {
                tonic::Status::with_error_details(Code::Unauthenticated, message, info(reason))
            }
            Error::PermissionDenied { reason, message } => {
                tonic::Status::with_error_details(Code::PermissionDenied, message, info(reason))
            }
            Error::RateLimited {
                message,
                quota,
                retry_after,
            } => {
                metrics::counter!(telemetry::CHANGES_REFUSED, "reason" => reason::RATE_LIMITED)
                    .increment(1);
                let mut details = info(reason::RATE_LIMITED);
                details.set_retry_info(Some(retry_after));
                details.set_quota_failure(vec![QuotaViolation::new(quota, message.clone())]);
                tonic::Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::TooManyStreams {
                reason,
                message,
                quota,
            } => {
                let mut details = info(reason);
                details.set_quota_failure(vec![QuotaViolation::new(quota, message.clone())]);
                tonic::Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::Config(detail) | Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                tonic::Status::with_error_details(
                    Code::Internal,
                    "internal error; the incident is logged",
                    info(reason::INTERNAL),
                )
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
