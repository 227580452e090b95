//! SSRF-safe download of a user-supplied URL.
//!
//! Every hop (the first URL and each redirect target) is validated, its host
//! resolved once, each address checked against [`policy`], and only the surviving
//! addresses are dialled. Redirects are followed by hand so each one goes through
//! the same checks. No proxy, cookie or credential is ever used.

mod body;
mod connect;
mod error;
pub mod policy;
mod resolve;
mod url;

use std::sync::Arc;
use std::time::Duration;

use ::url::{Position, Url};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ipnet::IpNet;

pub use self::error::{Cause, FetchError};
pub use self::policy::{BlockedAddress, BlockedRange, blocked_range, check_address};
pub use self::url::{InvalidUrl, MAX_URL_LEN, validate_url};

use self::connect::{Connection, Connector};
use self::resolve::host_label;

/// Limits and allowances for downloads.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Per address tried, including the TLS handshake.
    pub connect_timeout: Duration,
    /// Whole download: every DNS lookup, connection, redirect and the body.
    pub total_timeout: Duration,
    pub max_bytes: u64,
    pub max_redirects: u32,
    /// Networks the operator allows even though the policy would refuse them
    /// (e.g. 127.0.0.0/8 in tests, or an internal image host).
    pub allow_cidrs: Vec<IpNet>,
    pub user_agent: String,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(15),
            max_bytes: 10 * 1024 * 1024,
            max_redirects: 3,
            allow_cidrs: Vec::new(),
            user_agent: concat!("profile-image/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// A successful download.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The URL after redirects.
    pub final_url: Url,
    /// As the server declared it; the caller sniffs the bytes anyway.
    pub content_type: Option<String>,
}

/// Downloads URLs under a [`FetchConfig`]. One per service; clones share state.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

// By hand: the TLS connector inside has no Debug, and the config is what matters.
impl std::fmt::Debug for Fetcher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Fetcher")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: FetchConfig,
    connector: Connector,
    user_agent: HeaderValue,
}

/// A response plus the connection it arrived on, which must outlive the body.
struct Exchange {
    response: Response<Incoming>,
    _connection: Connection,
}

/// What to do with a response status.
enum Outcome {
    Success,
    Redirect,
    Failure,
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Self {
        let user_agent = HeaderValue::from_str(&config.user_agent).unwrap_or_else(|_| {
            tracing::warn!("configured user agent is not a valid header value; using the default");
            HeaderValue::from_static(concat!("profile-image/", env!("CARGO_PKG_VERSION")))
        });
        let connector = Connector::new(config.connect_timeout);
        Self {
            inner: Arc::new(Inner {
                config,
                connector,
                user_agent,
            }),
        }
    }

    pub fn config(&self) -> &FetchConfig {
        &self.inner.config
    }

    /// Downloads `url`, following redirects, within the configured limits.
    pub async fn fetch(&self, url: &Url) -> Result<Fetched, FetchError> {
        let total_timeout = self.inner.config.total_timeout;
        // Dropping the inner future on timeout drops its connection, which closes it.
        match tokio::time::timeout(total_timeout, self.follow_redirects(url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                after: total_timeout,
            }),
        }
    }

    async fn follow_redirects(&self, url: &Url) -> Result<Fetched, FetchError> {
        // Callers may build a Url by hand; the same rules apply as for user input.
        let mut current = validate_url(url.as_str())?;
        let mut redirects = 0;
        loop {
            let exchange = self.request(&current).await?;
            let status = exchange.response.status();
            match outcome(status) {
                Outcome::Success => return self.read_success(exchange, current).await,
                Outcome::Failure => return Err(FetchError::Status { status }),
                Outcome::Redirect => {
                    if redirects >= self.inner.config.max_redirects {
                        return Err(FetchError::TooManyRedirects {
                            limit: self.inner.config.max_redirects,
                        });
                    }
                    redirects += 1;
                    current = redirect_target(&current, exchange.response.headers())?;
                    tracing::debug!(host = %host_label(&current), redirects, "following redirect");
                }
            }
        }
    }

    /// One GET to `url`: resolve, check, connect, send.
    async fn request(&self, url: &Url) -> Result<Exchange, FetchError> {
        // Built first so a URL hyper cannot express never costs a connection.
        let request = self.build_request(url)?;
        let addresses = resolve::allowed_addresses(url, &self.inner.config.allow_cidrs).await?;
        let mut connection = self.inner.connector.open(url, &addresses).await?;
        let response = connection
            .sender
            .send_request(request)
            .await
            .map_err(|cause| FetchError::Transport {
                host: host_label(url),
                cause: cause.into(),
            })?;
        Ok(Exchange {
            response,
            _connection: connection,
        })
    }

    fn build_request(&self, url: &Url) -> Result<Request<Empty<Bytes>>, FetchError> {
        // Origin-form target: path and query only; the fragment never leaves the client.
        let target = &url[Position::BeforePath..Position::AfterQuery];
        let host = &url[Position::BeforeHost..Position::AfterPort];
        Request::builder()
            .method(Method::GET)
            .uri(target)
            .header(header::HOST, host)
            .header(header::USER_AGENT, self.inner.user_agent.clone())
            .header(header::ACCEPT, "image/*")
            // Bytes are taken as sent; asking for identity keeps servers from compressing.
            .header(header::ACCEPT_ENCODING, "identity")
            .header(header::CONNECTION, "close")
            .body(Empty::new())
            .map_err(|_| FetchError::InvalidUrl(InvalidUrl::Malformed))
    }

    async fn read_success(&self, exchange: Exchange, url: Url) -> Result<Fetched, FetchError> {
        let Exchange {
            response,
            _connection: connection,
        } = exchange;
        let (parts, body) = response.into_parts();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = body::read_limited(body, self.inner.config.max_bytes, &host_label(&url)).await;
        // Explicit: on an over-limit body this is the point the socket closes.
        drop(connection);
        Ok(Fetched {
            bytes: bytes?,
            final_url: url,
            content_type,
        })
    }
}

fn outcome(status: StatusCode) -> Outcome {
    match status {
        StatusCode::MOVED_PERMANENTLY
        | StatusCode::FOUND
        | StatusCode::SEE_OTHER
        | StatusCode::TEMPORARY_REDIRECT
        | StatusCode::PERMANENT_REDIRECT => Outcome::Redirect,
        status if status.is_success() => Outcome::Success,
        _ => Outcome::Failure,
    }
}

/// The validated absolute URL a redirect points to (Location may be relative).
fn redirect_target(current: &Url, headers: &HeaderMap) -> Result<Url, FetchError> {
    let location = headers
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(FetchError::MissingLocation)?;
    let joined = current
        .join(location)
        .map_err(|_| FetchError::InvalidRedirect(InvalidUrl::Malformed))?;
    validate_url(joined.as_str()).map_err(FetchError::InvalidRedirect)
}
