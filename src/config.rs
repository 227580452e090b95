//! One `Config` for the whole service: defaults <- TOML file <- `PROFILE_IMAGE_*` env vars
//! <- command-line flags. The service runs with none of them.

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

/// Settings as given by one source. The same struct is read from the TOML file (keys in
/// snake_case) and from flags/env vars (`--max-upload-bytes`, `PROFILE_IMAGE_MAX_UPLOAD_BYTES`).
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "PROFILE_IMAGE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the sled database.
    #[arg(long, env = "PROFILE_IMAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "PROFILE_IMAGE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest accepted image file, in bytes.
    #[arg(long, env = "PROFILE_IMAGE_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Largest accepted width or height, in pixels.
    #[arg(long, env = "PROFILE_IMAGE_MAX_IMAGE_SIDE")]
    pub max_image_side: Option<u32>,
    /// Largest accepted width x height.
    #[arg(long, env = "PROFILE_IMAGE_MAX_IMAGE_PIXELS")]
    pub max_image_pixels: Option<u64>,
    /// Upper bound on one decoder's allocations, in bytes.
    #[arg(long, env = "PROFILE_IMAGE_MAX_DECODE_ALLOC_BYTES")]
    pub max_decode_alloc_bytes: Option<u64>,
    /// Rendition edges in pixels, comma separated.
    #[arg(long, env = "PROFILE_IMAGE_RENDITION_SIZES", value_delimiter = ',')]
    pub rendition_sizes: Option<Vec<u32>>,
    /// Longest edge of the full-size rendition.
    #[arg(long, env = "PROFILE_IMAGE_FULL_MAX_EDGE")]
    pub full_max_edge: Option<u32>,
    /// JPEG quality, 1-100.
    #[arg(long, env = "PROFILE_IMAGE_JPEG_QUALITY")]
    pub jpeg_quality: Option<u8>,
    /// Concurrent image-processing jobs.
    #[arg(long, env = "PROFILE_IMAGE_PROCESSING_THREADS")]
    pub processing_threads: Option<usize>,
    /// Allow URL downloads from this range (repeatable), e.g. 127.0.0.0/8.
    #[arg(
        long = "fetch-allow-cidr",
        env = "PROFILE_IMAGE_FETCH_ALLOW_CIDR",
        value_delimiter = ','
    )]
    pub fetch_allow_cidr: Option<Vec<ipnet::IpNet>>,
    /// Connect timeout of URL downloads, in milliseconds.
    #[arg(long, env = "PROFILE_IMAGE_FETCH_CONNECT_TIMEOUT_MS")]
    pub fetch_connect_timeout_ms: Option<u64>,
    /// Whole-download timeout, in milliseconds.
    #[arg(long, env = "PROFILE_IMAGE_FETCH_TIMEOUT_MS")]
    pub fetch_timeout_ms: Option<u64>,
    /// Downloads running at once.
    #[arg(long, env = "PROFILE_IMAGE_DOWNLOAD_CONCURRENCY")]
    pub download_concurrency: Option<usize>,
    /// Attempts for a transiently failing download.
    #[arg(long, env = "PROFILE_IMAGE_DOWNLOAD_MAX_ATTEMPTS")]
    pub download_max_attempts: Option<u32>,
    /// First retry delay of a download, in milliseconds.
    #[arg(long, env = "PROFILE_IMAGE_DOWNLOAD_RETRY_BASE_MS")]
    pub download_retry_base_ms: Option<u64>,
    /// WatchStatus events kept for resume.
    #[arg(long, env = "PROFILE_IMAGE_WATCH_RETENTION")]
    pub watch_retention: Option<usize>,
    /// A store flush running longer than this turns health NOT_SERVING, in milliseconds.
    #[arg(long, env = "PROFILE_IMAGE_STORE_STALL_TIMEOUT_MS")]
    pub store_stall_timeout_ms: Option<u64>,
    /// Refuse changes while the data dir's filesystem has less free space, in bytes
    /// [default: 256 MiB, or 5% of the filesystem when that is smaller].
    #[arg(long, env = "PROFILE_IMAGE_MIN_FREE_BYTES")]
    pub min_free_bytes: Option<u64>,
    /// Refuse new images while this many wait for a processing slot
    /// [default, or 0: 4 x processing threads].
    #[arg(long, env = "PROFILE_IMAGE_MAX_QUEUED_PROCESSING")]
    pub max_queued_processing: Option<usize>,
    /// Longest processing of one image, in milliseconds.
    #[arg(long, env = "PROFILE_IMAGE_PROCESSING_TIMEOUT_MS")]
    pub processing_timeout_ms: Option<u64>,
    /// End an upload stream that sends nothing for this long, in milliseconds.
    #[arg(long, env = "PROFILE_IMAGE_UPLOAD_IDLE_TIMEOUT_MS")]
    pub upload_idle_timeout_ms: Option<u64>,
    /// Serve Prometheus metrics on this address (path /metrics) [default: off].
    #[arg(long, env = "PROFILE_IMAGE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Authentication: `jwt` (a bearer token on every call) or `none` (every caller is
    /// an admin of the `default` tenant) [default: jwt].
    #[arg(long, env = "PROFILE_IMAGE_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// File holding the HS256 secret [default, when no key is configured: a secret
    /// created in the data dir].
    #[arg(long, env = "PROFILE_IMAGE_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// PEM public key verifying RS256, ES256 or EdDSA tokens (repeatable).
    #[arg(
        long = "jwt-public-key",
        env = "PROFILE_IMAGE_JWT_PUBLIC_KEY",
        value_delimiter = ','
    )]
    pub jwt_public_key: Option<Vec<PathBuf>>,
    /// JWKS file or http(s) URL (a URL is re-read in the background).
    #[arg(long, env = "PROFILE_IMAGE_JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// How often a JWKS URL is re-read, in milliseconds [default: 300000].
    #[arg(long, env = "PROFILE_IMAGE_JWT_JWKS_REFRESH_MS")]
    pub jwt_jwks_refresh_ms: Option<u64>,
    /// Required token issuer (`iss`) [default: not checked].
    #[arg(long, env = "PROFILE_IMAGE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required token audience (`aud`) [default: not checked].
    #[arg(long, env = "PROFILE_IMAGE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Changes per minute per (tenant, user); 0 = unlimited [default: 10].
    #[arg(long, env = "PROFILE_IMAGE_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Changes a caller may make in a burst [default: 5].
    #[arg(long, env = "PROFILE_IMAGE_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Concurrent WatchStatus streams per caller; 0 = unlimited [default: 16].
    #[arg(long, env = "PROFILE_IMAGE_MAX_WATCHES_PER_CALLER")]
    pub max_watches_per_caller: Option<u32>,
    /// Concurrent uploads per caller; 0 = unlimited [default: 4].
    #[arg(long, env = "PROFILE_IMAGE_MAX_UPLOADS_PER_CALLER")]
    pub max_uploads_per_caller: Option<u32>,
    /// Concurrent WatchStatus streams per admin [default: as for everyone].
    #[arg(long, env = "PROFILE_IMAGE_ADMIN_MAX_WATCHES_PER_CALLER")]
    pub admin_max_watches_per_caller: Option<u32>,
    /// Concurrent uploads per admin [default: as for everyone].
    #[arg(long, env = "PROFILE_IMAGE_ADMIN_MAX_UPLOADS_PER_CALLER")]
    pub admin_max_uploads_per_caller: Option<u32>,
    /// Serve image URLs over HTTP on this address; empty = off [default: 127.0.0.1:8080].
    #[arg(long, env = "PROFILE_IMAGE_HTTP_LISTEN")]
    pub http_listen: Option<OptionalAddr>,
    /// Scheme, host and path prefix of the image URLs handed out
    /// [default: http:// + the HTTP listen address].
    #[arg(long, env = "PROFILE_IMAGE_HTTP_PUBLIC_BASE")]
    pub http_public_base: Option<String>,
    /// max-age of the current (unversioned) image URL, in seconds [default: 60].
    #[arg(long, env = "PROFILE_IMAGE_HTTP_CURRENT_MAX_AGE_SECS")]
    pub http_current_max_age_secs: Option<u32>,
    /// Image URLs must carry a valid exp and sig (HMAC-SHA256) [default: off].
    #[arg(long, env = "PROFILE_IMAGE_HTTP_SIGNED_URLS", num_args = 0..=1, default_missing_value = "true")]
    pub http_signed_urls: Option<bool>,
    /// The key of signed image URLs (the file's bytes, exactly; the same file on every
    /// replica) [default: http-url-key in the data dir, created when missing].
    #[arg(long, env = "PROFILE_IMAGE_HTTP_URL_KEY_FILE")]
    pub http_url_key_file: Option<PathBuf>,
    /// Signed image URLs handed out stay valid between one and two of this, in seconds
    /// [default: 86400].
    #[arg(long, env = "PROFILE_IMAGE_HTTP_SIGNED_URL_TTL_SECS")]
    pub http_signed_url_ttl_secs: Option<u64>,
    /// Allow browsers on this origin to call gRPC-Web (repeatable; * = any) [default: none].
    #[arg(
        long = "grpc-web-cors-origin",
        env = "PROFILE_IMAGE_GRPC_WEB_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub grpc_web_cors_origin: Option<Vec<String>>,
    /// Keep metadata in PostgreSQL (postgres://USER@HOST:PORT/DB), shared by replicas
    /// [default: sled in the data dir]. Needs --blobs.
    #[arg(long, env = "PROFILE_IMAGE_STORE")]
    pub store: Option<String>,
    /// Keep image bytes in S3-compatible storage (s3://BUCKET/PREFIX); credentials from
    /// --s3-access-key-id and --s3-secret-access-key-file, or the AWS environment
    /// variables [default: files in the data dir]. Needs --store.
    #[arg(long, env = "PROFILE_IMAGE_BLOBS")]
    pub blobs: Option<S3Location>,
    /// URL of an S3-compatible server (MinIO, Ceph, ...) [default: AWS].
    #[arg(long, env = "PROFILE_IMAGE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "PROFILE_IMAGE_S3_REGION")]
    pub s3_region: Option<String>,
    /// Path-style bucket addressing [default: on with --s3-endpoint, else off].
    #[arg(long, env = "PROFILE_IMAGE_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// S3 access key id, with --s3-secret-access-key-file [default: AWS_ACCESS_KEY_ID].
    #[arg(long, env = "PROFILE_IMAGE_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// File holding the S3 secret access key (a trailing newline stripped), with
    /// --s3-access-key-id [default: AWS_SECRET_ACCESS_KEY].
    #[arg(long, env = "PROFILE_IMAGE_S3_SECRET_ACCESS_KEY_FILE")]
    pub s3_secret_access_key_file: Option<PathBuf>,
    /// Bytes of renditions each replica caches in memory with --blobs [default: 256 MiB].
    #[arg(long, env = "PROFILE_IMAGE_CACHE_BYTES")]
    pub cache_bytes: Option<u64>,
    /// A download job whose replica stops renewing its lease for this long is taken
    /// over by another replica, in milliseconds [default: 30000].
    #[arg(long, env = "PROFILE_IMAGE_DOWNLOAD_LEASE_MS")]
    pub download_lease_ms: Option<u64>,
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

    fn apply(&mut self, o: Overrides) {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *slot = v;
            }
        }
        self.http.apply(&o);
        set(
            &mut self.grpc_web_cors_origins,
            o.grpc_web_cors_origin.clone(),
        );
        set(&mut self.listen, o.listen);
        set(&mut self.data_dir, o.data_dir);
        set(&mut self.log_format, o.log_format);
        set(&mut self.max_upload_bytes, o.max_upload_bytes);
        set(&mut self.max_image_side, o.max_image_side);
        set(&mut self.max_image_pixels, o.max_image_pixels);
        set(&mut self.max_decode_alloc_bytes, o.max_decode_alloc_bytes);
        set(&mut self.rendition_sizes, o.rendition_sizes);
        set(&mut self.full_max_edge, o.full_max_edge);
        set(&mut self.jpeg_quality, o.jpeg_quality);
        set(&mut self.processing_threads, o.processing_threads);
        set(&mut self.fetch_allow_cidrs, o.fetch_allow_cidr);
        set(
            &mut self.fetch_connect_timeout,
            o.fetch_connect_timeout_ms.map(Duration::from_millis),
        );
        set(
            &mut self.fetch_timeout,
            o.fetch_timeout_ms.map(Duration::from_millis),
        );
        set(&mut self.download_concurrency, o.download_concurrency);
        set(&mut self.download_max_attempts, o.download_max_attempts);
        set(
            &mut self.download_retry_base,
            o.download_retry_base_ms.map(Duration::from_millis),
        );
        set(&mut self.watch_retention, o.watch_retention);
        set(
            &mut self.store_stall_timeout,
            o.store_stall_timeout_ms.map(Duration::from_millis),
        );
        if o.min_free_bytes.is_some() {
            self.min_free_bytes = o.min_free_bytes;
        }
        set(&mut self.max_queued_processing, o.max_queued_processing);
        if o.metrics_listen.is_some() {
            self.metrics_listen = o.metrics_listen;
        }
        set(
            &mut self.processing_timeout,
            o.processing_timeout_ms.map(Duration::from_millis),
        );
        set(
            &mut self.upload_idle_timeout,
            o.upload_idle_timeout_ms.map(Duration::from_millis),
        );
        set(&mut self.auth, o.auth);
        if o.jwt_hs256_secret_file.is_some() {
            self.jwt_hs256_secret_file = o.jwt_hs256_secret_file;
        }
        set(&mut self.jwt_public_keys, o.jwt_public_key);
        if o.jwt_jwks.is_some() {
            self.jwt_jwks = o.jwt_jwks;
        }
        set(
            &mut self.jwt_jwks_refresh,
            o.jwt_jwks_refresh_ms.map(Duration::from_millis),
        );
        if o.jwt_issuer.is_some() {
            self.jwt_issuer = o.jwt_issuer;
        }
        if o.jwt_audience.is_some() {
            self.jwt_audience = o.jwt_audience;
        }
        set(&mut self.rate_limit_per_minute, o.rate_limit_per_minute);
        set(&mut self.rate_limit_burst, o.rate_limit_burst);
        set(&mut self.max_watches_per_caller, o.max_watches_per_caller);
        set(&mut self.max_uploads_per_caller, o.max_uploads_per_caller);
        if o.admin_max_watches_per_caller.is_some() {
            self.admin_max_watches_per_caller = o.admin_max_watches_per_caller;
        }
        if o.admin_max_uploads_per_caller.is_some() {
            self.admin_max_uploads_per_caller = o.admin_max_uploads_per_caller;
        }
        if o.store.is_some() {
            self.store = o.store;
        }
        if o.blobs.is_some() {
            self.blobs = o.blobs;
        }
        if o.s3_endpoint.is_some() {
            self.s3_endpoint = o.s3_endpoint;
        }
        if o.s3_region.is_some() {
            self.s3_region = o.s3_region;
        }
        if o.s3_path_style.is_some() {
            self.s3_path_style = o.s3_path_style;
        }
        if o.s3_access_key_id.is_some() {
            self.s3_access_key_id = o.s3_access_key_id;
        }
        if o.s3_secret_access_key_file.is_some() {
            self.s3_secret_access_key_file = o.s3_secret_access_key_file;
        }
        set(&mut self.cache_bytes, o.cache_bytes);
        set(
            &mut self.download_lease,
            o.download_lease_ms.map(Duration::from_millis),
        );
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

    fn validate(&mut self) -> Result<(), ConfigError> {
        self.rendition_sizes.retain(|&s| s > 0);
        self.rendition_sizes.sort_unstable();
        self.rendition_sizes.dedup();
        if self.max_queued_processing == 0 {
            self.max_queued_processing = 4 * self.processing_threads;
        }
        let problems = [
            (
                self.rendition_sizes.is_empty(),
                "rendition_sizes must list at least one size",
            ),
            (self.full_max_edge == 0, "full_max_edge must be positive"),
            (
                !(1..=100).contains(&self.jpeg_quality),
                "jpeg_quality must be 1-100",
            ),
            (
                self.processing_threads == 0,
                "processing_threads must be positive",
            ),
            (
                self.download_concurrency == 0,
                "download_concurrency must be positive",
            ),
            (
                self.download_max_attempts == 0,
                "download_max_attempts must be positive",
            ),
            (
                self.max_upload_bytes == 0,
                "max_upload_bytes must be positive",
            ),
            (
                self.rate_limit_per_minute > 0 && self.rate_limit_burst == 0,
                "rate_limit_burst must be positive when rate_limit_per_minute is",
            ),
            (
                self.jwt_jwks_refresh.is_zero(),
                "jwt_jwks_refresh_ms must be positive",
            ),
            (
                self.store.is_some() != self.blobs.is_some(),
                "store and blobs go together: PostgreSQL metadata with S3 blobs, or neither",
            ),
            (
                self.store.as_ref().is_some_and(|url| {
                    !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
                }),
                "store must be a postgres:// URL",
            ),
            (
                self.s3_access_key_id.is_some() != self.s3_secret_access_key_file.is_some(),
                "s3_access_key_id and s3_secret_access_key_file go together",
            ),
            (
                self.download_lease < Duration::from_millis(300),
                "download_lease_ms must be at least 300",
            ),
        ];
        match problems.iter().find(|(bad, _)| *bad) {
            Some((_, message)) => Err(ConfigError((*message).to_owned())),
            None => self.http.validate(),
        }
    }
}

impl HttpConfig {
    fn apply(&mut self, o: &Overrides) {
        if let Some(OptionalAddr(listen)) = o.http_listen {
            self.listen = listen;
            self.listen_is_default = false;
        }
        if let Some(base) = &o.http_public_base {
            self.public_base = Some(base.clone());
        }
        if let Some(secs) = o.http_current_max_age_secs {
            self.current_max_age_secs = secs;
        }
        if let Some(signed) = o.http_signed_urls {
            self.signed_urls = signed;
        }
        if let Some(path) = &o.http_url_key_file {
            self.url_key_file = Some(path.clone());
        }
        if let Some(secs) = o.http_signed_url_ttl_secs {
            self.signed_url_ttl = Duration::from_secs(secs);
        }
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if let Some(base) = &mut self.public_base {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(ConfigError(
                    "http_public_base must start with http:// or https://".to_owned(),
                ));
            }
            while base.ends_with('/') {
                base.pop();
            }
        }
        if self.signed_url_ttl.is_zero() {
            return Err(ConfigError(
                "http_signed_url_ttl_secs must be positive".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_nothing() {
        let config = Config::resolve(None, Overrides::default()).unwrap();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 50051)));
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.rendition_sizes, [64, 128, 256, 512, 1024]);
        assert_eq!(config.max_upload_bytes, 10 * 1024 * 1024);
    }

    /// Flags and env vars reach `resolve` as one `Overrides` (clap merges them); that an
    /// env var really reaches the server is tested in tests/server.rs.
    #[test]
    fn overrides_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "max_upload_bytes = 1000\njpeg_quality = 70\nfetch_allow_cidr = [\"10.0.0.0/8\"]\nrendition_sizes = [512, 32, 32]\n",
        )
        .unwrap();
        let overrides = Overrides {
            jpeg_quality: Some(90),
            ..Overrides::default()
        };
        let config = Config::resolve(Some(&file), overrides).unwrap();
        assert_eq!(config.max_upload_bytes, 1000, "from the file");
        assert_eq!(config.jpeg_quality, 90, "the override wins");
        assert_eq!(config.rendition_sizes, [32, 512], "sorted and deduplicated");
        assert_eq!(
            config.fetch_allow_cidrs,
            ["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "max_upload_byte = 1000\n").unwrap();
        let error = Config::resolve(Some(&file), Overrides::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("configuration error: invalid file "),
            "{error}"
        );
        let overrides = Overrides {
            jpeg_quality: Some(0),
            ..Overrides::default()
        };
        let error = Config::resolve(None, overrides).unwrap_err();
        assert_eq!(
            error.to_string(),
            "configuration error: jpeg_quality must be 1-100"
        );
    }

    #[test]
    fn http_is_on_at_8080_by_default_and_an_empty_address_turns_it_off() {
        let config = Config::resolve(None, Overrides::default()).unwrap();
        assert_eq!(
            config.http.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        assert!(config.http.listen_is_default);
        let overrides = Overrides {
            http_listen: Some("".parse().unwrap()),
            http_public_base: Some("https://img.example.com/".into()),
            ..Overrides::default()
        };
        let config = Config::resolve(None, overrides).unwrap();
        assert_eq!(config.http.listen, None);
        assert!(!config.http.listen_is_default);
        assert_eq!(
            config.http.public_base.as_deref(),
            Some("https://img.example.com")
        );
    }
}
