//! Settings as one source gives them: flags and env vars (through clap) or the TOML
//! file (through serde), and how they apply over the defaults.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{AuthMode, Config, HttpConfig, LogFormat, OptionalAddr};
use crate::store::s3::S3Location;

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
    /// Threads serving image URLs, each with its own event loop; 0 = share the gRPC
    /// runtime's workers [default: the number of CPUs].
    #[arg(long, env = "PROFILE_IMAGE_HTTP_THREADS")]
    pub http_threads: Option<usize>,
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
    pub(super) fn apply(&mut self, o: Overrides) {
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
}

impl HttpConfig {
    pub(super) fn apply(&mut self, o: &Overrides) {
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
        if let Some(threads) = o.http_threads {
            self.threads = threads;
        }
    }
}
