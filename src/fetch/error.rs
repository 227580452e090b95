//! What can go wrong while downloading, in words for the end user.

use std::time::Duration;

use hyper::StatusCode;

use crate::fetch::policy::BlockedAddress;
use crate::fetch::url::InvalidUrl;

/// Underlying cause kept for logs; never part of the user-facing message.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A failed download. `Display` is safe to show to the user who supplied the URL:
/// it names the host, address or status involved, never internal error text.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    InvalidUrl(#[from] InvalidUrl),
    #[error("the server redirected to an unusable address: {0}")]
    InvalidRedirect(InvalidUrl),
    #[error("the server sent a redirect without a usable location")]
    MissingLocation,
    #[error("gave up after {limit} redirects")]
    TooManyRedirects { limit: u32 },
    #[error("could not find the address of {host}")]
    Resolve {
        host: String,
        #[source]
        cause: Option<std::io::Error>,
    },
    #[error("{0}")]
    Blocked(#[from] BlockedAddress),
    #[error("could not connect to {host}")]
    Connect {
        host: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("could not establish a secure connection to {host}")]
    Tls {
        host: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("the connection to {host} failed during the download")]
    Transport {
        host: String,
        #[source]
        cause: Cause,
    },
    #[error("the server answered {}", status_line(*.status))]
    Status { status: StatusCode },
    #[error("the file is larger than the limit of {}", size_text(*.limit_bytes))]
    TooLarge { limit_bytes: u64 },
    #[error("the download did not finish within {}", duration_text(*.after))]
    Timeout { after: Duration },
}

impl FetchError {
    /// Stable machine-readable category: one of "download-failed",
    /// "blocked-destination", "file-too-large", "timeout".
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Blocked(_) => "blocked-destination",
            Self::TooLarge { .. } => "file-too-large",
            Self::Timeout { .. } => "timeout",
            Self::InvalidUrl(_)
            | Self::InvalidRedirect(_)
            | Self::MissingLocation
            | Self::TooManyRedirects { .. }
            | Self::Resolve { .. }
            | Self::Connect { .. }
            | Self::Tls { .. }
            | Self::Transport { .. }
            | Self::Status { .. } => "download-failed",
        }
    }

    /// Whether retrying the same URL later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            // DNS hiccups, refused or dropped connections and slow servers come and go.
            Self::Resolve { .. } | Self::Connect { .. } | Self::Transport { .. } => true,
            Self::Timeout { .. } => true,
            Self::Status { status } => {
                status.is_server_error()
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
            }
            // A bad certificate or a policy decision will not change by itself.
            Self::Tls { .. }
            | Self::Blocked(_)
            | Self::TooLarge { .. }
            | Self::InvalidUrl(_)
            | Self::InvalidRedirect(_)
            | Self::MissingLocation
            | Self::TooManyRedirects { .. } => false,
        }
    }
}

fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const KIB: u64 = 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn duration_text(duration: Duration) -> String {
    if duration.as_millis() < 1000 {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} s", duration.as_secs())
    }
}
