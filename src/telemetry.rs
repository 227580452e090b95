//! Names of the service's own Prometheus metrics, recorded where things happen with the
//! `metrics` macros (no-ops unless `--metrics-listen` installed a recorder). The gRPC
//! call metrics are the server's (src/server/metrics.rs).

/// Histogram, label `stage`: `process` (decode, orient, crop, resize, encode), `store`
/// (writing the blobs), `commit` (transaction and durability).
pub const PIPELINE_SECONDS: &str = "profile_image_pipeline_seconds";
/// Counter, label `outcome`: `ready`, `failed`, `superseded`.
pub const DOWNLOADS: &str = "profile_image_downloads_total";
/// Gauge: open WatchStatus streams.
pub const WATCHERS: &str = "profile_image_watchers";
/// Gauge: bytes of the data dir (sled files and blob files).
pub const STORE_BYTES: &str = "profile_image_store_bytes";
/// Gauge: free bytes on the data dir's filesystem.
pub const FREE_BYTES: &str = "profile_image_data_dir_free_bytes";
/// Gauge: the free-space watermark under which changes are refused.
pub const MIN_FREE_BYTES: &str = "profile_image_data_dir_min_free_bytes";
/// Counter, label `reason`: changes refused (`storage-full`, `overloaded`, ...).
pub const CHANGES_REFUSED: &str = "profile_image_changes_refused_total";
