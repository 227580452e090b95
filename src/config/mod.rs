//! One `Config` for the whole service: defaults <- TOML file <- `PROFILE_IMAGE_*` env vars
//! <- command-line flags. The service runs with none of them.
//!
//! - this file: the resolved settings and their defaults;
//! - `overrides`: the settings one source gives (flags, env vars, the TOML file), and how
//!   they apply;
//! - `validate`: what the service refuses to run with.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::store::s3::S3Location;

/// A setting the service cannot run with (an unreadable or invalid config file, a value
/// out of range). The service does not start; it is the operator's to fix, not a bug.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every call carries `authorization: Bearer <JWT>`.
    Jwt,
    /// No authentication: every caller is an admin of the `default` tenant (a trusted
    /// mesh only; a warning is logged at start).
    None,
}

/// Every setting of the service, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    /// Largest accepted image file (upload, inline or download).
    pub max_upload_bytes: u64,
    pub max_image_side: u32,
    pub max_image_pixels: u64,
    /// Upper bound on what one decoder may allocate.
    pub max_decode_alloc_bytes: u64,
    /// Rendition edges made when an image is set; Get snaps sizes up to these.
    pub rendition_sizes: Vec<u32>,
    /// Longest edge of the "full" (size 0) rendition.
    pub full_max_edge: u32,
    pub jpeg_quality: u8,
    /// Concurrent decode/resize/encode jobs; defaults to the number of cores.
    pub processing_threads: usize,
    /// Operator-allowed destination ranges for URL downloads (normally blocked ones).
    pub fetch_allow_cidrs: Vec<ipnet::IpNet>,
    pub fetch_connect_timeout: Duration,
    pub fetch_timeout: Duration,
    pub download_concurrency: usize,
    /// Attempts for a download that keeps failing transiently (first try included).
    pub download_max_attempts: u32,
    /// First retry delay; doubled on each further attempt.
    pub download_retry_base: Duration,
    /// Events kept in memory for WatchStatus resume (`after_sequence`).
    pub watch_retention: usize,
    /// A store flush that runs longer than this marks the service NOT_SERVING (so an
    /// orchestrator restarts it) until a flush completes again.
    pub store_stall_timeout: Duration,
    /// Changes are refused (storage-full) while the data dir's filesystem has less free
    /// space; None = 256 MiB, or 5% of the filesystem when that is smaller.
    pub min_free_bytes: Option<u64>,
    /// New images are refused (UNAVAILABLE, RetryInfo) while this many wait for a
    /// processing slot already; defaults to 4 x processing_threads.
    pub max_queued_processing: usize,
    /// Processing one image longer than this ends with DEADLINE_EXCEEDED.
    pub processing_timeout: Duration,
    /// An upload stream that sends nothing for this long ends with DEADLINE_EXCEEDED.
    pub upload_idle_timeout: Duration,
    /// Where Prometheus metrics are served (`/metrics`); None = off.
    pub metrics_listen: Option<SocketAddr>,
    pub auth: AuthMode,
    /// HS256 secret (the file's bytes, a trailing newline stripped). With none of the
    /// key settings, a secret is created in the data dir on first start.
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// PEM public keys (RS256, ES256 or EdDSA, by key type).
    pub jwt_public_keys: Vec<PathBuf>,
    /// A JWKS file, or an http(s) URL re-read every `jwt_jwks_refresh`.
    pub jwt_jwks: Option<String>,
    pub jwt_jwks_refresh: Duration,
    /// Required `iss`, when set.
    pub jwt_issuer: Option<String>,
    /// Required `aud`, when set.
    pub jwt_audience: Option<String>,
    /// Changes per minute per (tenant, user); 0 = unlimited.
    pub rate_limit_per_minute: u32,
    /// Changes a caller may make at once before the per-minute rate applies.
    pub rate_limit_burst: u32,
    /// Concurrent WatchStatus streams per caller; 0 = unlimited.
    pub max_watches_per_caller: u32,
    /// Concurrent uploads per caller; 0 = unlimited.
    pub max_uploads_per_caller: u32,
    /// The same two for admins; None = as for everyone.
    pub admin_max_watches_per_caller: Option<u32>,
    pub admin_max_uploads_per_caller: Option<u32>,
    /// Image URLs over HTTP (see [`HttpConfig`]).
    pub http: HttpConfig,
    /// Origins allowed to call gRPC-Web from a browser (`*` = any); none by default.
    pub grpc_web_cors_origins: Vec<String>,
    /// PostgreSQL for metadata (postgres://USER@HOST:PORT/DB); None = sled in the data dir.
    pub store: Option<String>,
    /// Object storage for image bytes; None = files in the data dir.
    pub blobs: Option<S3Location>,
    /// An S3-compatible server's URL; None = AWS (or AWS_ENDPOINT).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Path-style bucket addressing; None = path style when an endpoint is given.
    pub s3_path_style: Option<bool>,
    /// S3 credentials from flags (the key id, and a file holding the secret key); None =
    /// the standard AWS environment variables.
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key_file: Option<PathBuf>,
    /// Bytes of renditions each replica keeps in memory (shared blobs only).
    pub cache_bytes: u64,
    /// How long a download job stays claimed by a replica that stopped renewing it.
    pub download_lease: Duration,
}

/// The HTTP listener of image URLs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// None = off.
    pub listen: Option<SocketAddr>,
    /// Whether `listen` is the default address: when it is in use, HTTP is turned off
    /// with a warning instead of the service refusing to start.
    pub listen_is_default: bool,
    /// Scheme, host and path prefix of the URLs handed out; None = `http://` + the
    /// listen address.
    pub public_base: Option<String>,
    /// `max-age` of the current (unversioned) image URL.
    pub current_max_age_secs: u32,
    /// Whether image URLs must carry a valid `exp` and `sig`.
    pub signed_urls: bool,
    /// The HMAC key of signed URLs; None = `http-url-key` in the data dir, created
    /// when missing.
    pub url_key_file: Option<PathBuf>,
    /// Signed URLs handed out stay valid between one and two of this.
    pub signed_url_ttl: Duration,
    /// Worker threads that serve image URLs, each an event loop of its own; 0 = on the
    /// gRPC runtime's workers.
    pub threads: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            listen_is_default: true,
            public_base: None,
            current_max_age_secs: 60,
            signed_urls: false,
            url_key_file: None,
            signed_url_ttl: Duration::from_secs(24 * 3600),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A listen address that may be empty (= off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalAddr {
    type Err = std::net::AddrParseError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim() {
            "" => Ok(OptionalAddr(None)),
            address => address.parse().map(|a| OptionalAddr(Some(a))),
        }
    }
}

impl TryFrom<String> for OptionalAddr {
    type Error = std::net::AddrParseError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

/// Where the shared backends are, when the service runs as replicas.
#[derive(Debug, Clone)]
pub struct SharedStore {
    pub postgres_url: String,
    pub postgres: crate::store::postgres::PostgresOptions,
    pub s3: crate::store::s3::S3Options,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Text,
            max_upload_bytes: 10 * 1024 * 1024,
            max_image_side: 8192,
            max_image_pixels: 50_000_000,
            max_decode_alloc_bytes: 512 * 1024 * 1024,
            rendition_sizes: vec![64, 128, 256, 512, 1024],
            full_max_edge: 1024,
            // The imaging default (RenditionSpec): see BENCHMARKS.md, "Bytes per picture".
            jpeg_quality: crate::imaging::RenditionSpec::default().jpeg_quality,
            processing_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            fetch_allow_cidrs: Vec::new(),
            fetch_connect_timeout: Duration::from_secs(3),
            fetch_timeout: Duration::from_secs(15),
            download_concurrency: 8,
            download_max_attempts: 4,
            download_retry_base: Duration::from_millis(500),
            watch_retention: 10_000,
            store_stall_timeout: Duration::from_secs(10),
            min_free_bytes: None,
            max_queued_processing: 0,
            processing_timeout: Duration::from_secs(30),
            upload_idle_timeout: Duration::from_secs(30),
            metrics_listen: None,
            auth: AuthMode::Jwt,
            jwt_hs256_secret_file: None,
            jwt_public_keys: Vec::new(),
            jwt_jwks: None,
            jwt_jwks_refresh: Duration::from_secs(300),
            jwt_issuer: None,
            jwt_audience: None,
            rate_limit_per_minute: 10,
            rate_limit_burst: 5,
            max_watches_per_caller: 16,
            max_uploads_per_caller: 4,
            admin_max_watches_per_caller: None,
            admin_max_uploads_per_caller: None,
            http: HttpConfig::default(),
            grpc_web_cors_origins: Vec::new(),
            store: None,
            blobs: None,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: None,
            s3_access_key_id: None,
            s3_secret_access_key_file: None,
            cache_bytes: 256 * 1024 * 1024,
            download_lease: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// The limits an image is checked against, from this configuration.
    pub fn image_limits(&self) -> crate::imaging::Limits {
        crate::imaging::Limits {
            max_bytes: self.max_upload_bytes,
            max_side: self.max_image_side,
            max_pixels: self.max_image_pixels,
            max_alloc_bytes: self.max_decode_alloc_bytes,
        }
    }

    /// The renditions made of every image, from this configuration.
    pub fn rendition_spec(&self) -> crate::imaging::RenditionSpec {
        crate::imaging::RenditionSpec {
            sizes: self.rendition_sizes.clone(),
            full_max_edge: self.full_max_edge,
            jpeg_quality: self.jpeg_quality,
        }
    }

    /// Resolves the configuration: defaults, then `file` (if any), then `overrides`
    /// (flags and env vars, already merged by clap).
    pub fn resolve(
        file: Option<&std::path::Path>,
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            let from_file: Overrides = toml::from_str(&text)
                .map_err(|e| ConfigError(format!("invalid file {}: {e}", path.display())))?;
            config.apply(from_file);
        }
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// The shared backends, when both `store` and `blobs` are set (`validate` refuses
    /// one without the other).
    pub fn shared_store(&self) -> Option<SharedStore> {
        let (url, location) = (self.store.as_ref()?, self.blobs.as_ref()?);
        Some(SharedStore {
            postgres_url: url.clone(),
            postgres: crate::store::postgres::PostgresOptions {
                job_lease: self.download_lease,
            },
            s3: crate::store::s3::S3Options {
                location: location.clone(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                path_style: self.s3_path_style.unwrap_or(self.s3_endpoint.is_some()),
                credentials: self
                    .s3_access_key_id
                    .clone()
                    .zip(self.s3_secret_access_key_file.clone()),
                cache_bytes: usize::try_from(self.cache_bytes).unwrap_or(usize::MAX),
            },
        })
    }
}

mod overrides;
mod validate;

pub use overrides::Overrides;

#[cfg(test)]
mod tests;
