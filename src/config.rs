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
    /// PostgreSQL for metadata (postgres://USER@HOST:PORT/DB); None = sled in the data dir.
    pub store: Option<String>,
    /// Object storage for image bytes; None = files in the data dir.
    pub blobs: Option<S3Location>,
    /// An S3-compatible server's URL; None = AWS (or AWS_ENDPOINT).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Path-style bucket addressing; None = path style when an endpoint is given.
    pub s3_path_style: Option<bool>,
    /// Bytes of renditions each replica keeps in memory (shared blobs only).
    pub cache_bytes: u64,
    /// How long a download job stays claimed by a replica that stopped renewing it.
    pub download_lease: Duration,
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
            store: None,
            blobs: None,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: None,
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
    /// Keep metadata in PostgreSQL (postgres://USER@HOST:PORT/DB), shared by replicas
    /// [default: sled in the data dir]. Needs --blobs.
    #[arg(long, env = "PROFILE_IMAGE_STORE")]
    pub store: Option<String>,
    /// Keep image bytes in S3-compatible storage (s3://BUCKET/PREFIX); credentials from
    /// the AWS environment variables [default: files in the data dir]. Needs --store.
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
                self.download_lease < Duration::from_millis(300),
                "download_lease_ms must be at least 300",
            ),
        ];
        match problems.iter().find(|(bad, _)| *bad) {
            Some((_, message)) => Err(ConfigError((*message).to_owned())),
            None => Ok(()),
        }
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
}
