//! The client's one error type: what went wrong, with the google.rpc details the server
//! attached (ErrorInfo, BadRequest, RetryInfo, QuotaFailure) already decoded.

use std::path::PathBuf;
use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

/// Everything a [`crate::Client`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status.
    #[error("{0}")]
    Status(Box<StatusError>),
    /// The server could not be reached (connect, TLS handshake).
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A setting given to the client is unusable (URL, token, certificate).
    #[error("invalid client setting: {0}")]
    Config(String),
    /// A local file or reader failed during an upload.
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `wait_until_complete` ran out of time.
    #[error("not complete after {0:?}")]
    Timeout(Duration),
    /// The server broke the contract (e.g. a reply without its required message).
    #[error("unexpected reply from the server: {0}")]
    Protocol(&'static str),
}

impl Error {
    /// The gRPC status code: the server's, or for the client's own failures UNAVAILABLE
    /// (connect), INVALID_ARGUMENT (setting), CANCELLED (the upload's source failed, so
    /// the call was cancelled), DEADLINE_EXCEEDED (timeout), INTERNAL (protocol).
    pub fn code(&self) -> Code {
        match self {
            Error::Status(status) => status.code,
            Error::Connect { .. } => Code::Unavailable,
            Error::Config(_) => Code::InvalidArgument,
            Error::Read { .. } => Code::Cancelled,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Protocol(_) => Code::Internal,
        }
    }

    /// The server's error status, when the server answered with one.
    pub fn status(&self) -> Option<&StatusError> {
        match self {
            Error::Status(status) => Some(status),
            _ => None,
        }
    }

    /// The BadRequest field violations (empty when there are none).
    pub fn violations(&self) -> &[FieldViolation] {
        self.status().map_or(&[], |s| &s.violations)
    }

    /// The ErrorInfo reason, e.g. `validation-failure`.
    pub fn reason(&self) -> Option<&str> {
        self.status().and_then(|s| s.reason.as_deref())
    }

    /// How long the server asked the client to wait before retrying (RetryInfo).
    pub fn retry_delay(&self) -> Option<Duration> {
        self.status().and_then(|s| s.retry_delay)
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Status(Box::new(StatusError::from(&status)))
    }
}

/// An error status from the server and its decoded google.rpc details.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusError {
    pub code: Code,
    pub message: String,
    /// ErrorInfo.reason (e.g. `validation-failure`).
    pub reason: Option<String>,
    /// ErrorInfo.domain (`profileimage.v1`).
    pub domain: Option<String>,
    /// BadRequest.field_violations, in the server's order.
    pub violations: Vec<FieldViolation>,
    /// RetryInfo.retry_delay.
    pub retry_delay: Option<Duration>,
    /// QuotaFailure.violations.
    pub quota_violations: Vec<QuotaViolation>,
}

/// One bad field of a request (google.rpc.BadRequest.FieldViolation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `crop.size` or `image.data`.
    pub field: String,
    /// Machine-readable reason, e.g. `crop-out-of-bounds`.
    pub reason: String,
    pub description: String,
}

/// One exceeded quota (google.rpc.QuotaFailure.Violation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaViolation {
    pub subject: String,
    pub description: String,
}

impl From<&tonic::Status> for StatusError {
    fn from(status: &tonic::Status) -> Self {
        let details = status.get_error_details();
        let info = details.error_info();
        StatusError {
            code: status.code(),
            message: status.message().to_owned(),
            reason: info.map(|i| i.reason.clone()),
            domain: info.map(|i| i.domain.clone()),
            violations: details
                .bad_request()
                .map(|b| {
                    b.field_violations
                        .iter()
                        .map(|v| FieldViolation {
                            field: v.field.clone(),
                            reason: v.reason.clone(),
                            description: v.description.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            retry_delay: details.retry_info().and_then(|r| r.retry_delay),
            quota_violations: details
                .quota_failure()
                .map(|q| {
                    q.violations
                        .iter()
                        .map(|v| QuotaViolation {
                            subject: v.subject.clone(),
                            description: v.description.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)?;
        for violation in &self.violations {
            write!(f, "; {}: {}", violation.field, violation.reason)?;
        }
        Ok(())
    }
}
