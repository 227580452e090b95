//! Image bytes in S3-compatible object storage (`--blobs s3://BUCKET/PREFIX`), through
//! the `object_store` crate: one object per blob at `PREFIX/ab/cd/<BLAKE3 hex>`.
//!
//! A blob's name is the hash of its bytes, so an object never changes meaning and
//! replicas can cache renditions without invalidation ([`BlobCache`], bounded by
//! `--cache-bytes`). Bytes are written before the commit that references them. An
//! object no media item references is deleted by [`S3Blobs::sweep`] only once it is
//! older than [`SWEEP_GRACE`]: writing a blob again (a new request with the same bytes)
//! refreshes its age, so a sweep never deletes an object a pending write may still
//! commit.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use tokio_stream::StreamExt;

use super::cache::BlobCache;
use super::{BlobStore, StagedBlob};
use crate::error::{Error, Result};
use crate::model::BlobRef;

/// An object no record references is deleted once it is this old: far longer than a
/// request takes from writing its blobs to its commit (processing is bounded by
/// `--processing-timeout-ms`, 30 s by default).
pub const SWEEP_GRACE: Duration = Duration::from_secs(3600);

/// Where blobs go: a bucket and a key prefix (`s3://BUCKET/PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl FromStr for S3Location {
    type Err = String;

    fn from_str(raw: &str) -> std::result::Result<Self, String> {
        let rest = raw
            .strip_prefix("s3://")
            .ok_or_else(|| format!("blobs location {raw:?} must be s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("blobs location {raw:?} names no bucket"));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }
}

impl TryFrom<String> for S3Location {
    type Error = String;

    fn try_from(raw: String) -> std::result::Result<Self, String> {
        raw.parse()
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// How to reach the bucket. What is not given here comes from the standard AWS
/// environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, ...).
#[derive(Debug, Clone)]
pub struct S3Options {
    pub location: S3Location,
    /// An S3-compatible server's URL (MinIO, Ceph, moto); None = AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style requests (`ENDPOINT/BUCKET/KEY`), which most S3-compatible servers
    /// want; virtual-hosted style otherwise.
    pub path_style: bool,
    /// An access key id and the file holding its secret key; None = the AWS
    /// environment variables.
    pub credentials: Option<(String, std::path::PathBuf)>,
    /// Bytes of renditions kept in memory.
    pub cache_bytes: usize,
}

/// The bucket's blobs. Cheap to clone.
#[derive(Clone)]
pub struct S3Blobs {
    inner: Arc<Inner>,
}

struct Inner {
    bucket: Box<dyn ObjectStore>,
    prefix: String,
    cache: BlobCache,
}

impl S3Blobs {
    pub fn open(options: &S3Options) -> Result<S3Blobs> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&options.location.bucket)
            .with_virtual_hosted_style_request(!options.path_style)
            // A storage outage fails a call within seconds, not minutes.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(30)),
            );
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some((key_id, secret_file)) = &options.credentials {
            let secret = std::fs::read_to_string(secret_file).map_err(|e| {
                Error::internal(format!(
                    "reading the S3 secret key file {}: {e}",
                    secret_file.display()
                ))
            })?;
            builder = builder
                .with_access_key_id(key_id)
                .with_secret_access_key(secret.trim_end_matches(['\n', '\r']));
        }
        let bucket = builder
            .build()
            .map_err(|e| Error::internal(format!("S3 configuration: {e}")))?;
        Ok(S3Blobs {
            inner: Arc::new(Inner {
                bucket: Box::new(bucket),
                prefix: options.location.prefix.clone(),
                cache: BlobCache::new(options.cache_bytes),
            }),
        })
    }

    fn path(&self, hash: &[u8; 32]) -> Path {
        let hex = blake3::Hash::from_bytes(*hash).to_hex();
        let name = format!("{}/{}/{}", &hex[..2], &hex[2..4], hex);
        if self.inner.prefix.is_empty() {
            Path::from(name)
        } else {
            Path::from(format!("{}/{name}", self.inner.prefix))
        }
    }

    /// Writes `bytes` as a blob (a blob that is there already is written again, which
    /// renews its age for the sweep).
    async fn write(&self, bytes: Bytes) -> Result<StagedBlob> {
        let blob = BlobRef::of(&bytes);
        self.inner
            .bucket
            .put(&self.path(&blob.hash), PutPayload::from(bytes))
            .await
            .map_err(unavailable)?;
        // Nothing to pin: the sweep's grace period covers the time until the commit.
        Ok(StagedBlob::new(blob, Box::new(())))
    }

    /// Whether the bucket has the blob (`migrate` skips it then).
    pub async fn contains(&self, blob: &BlobRef) -> Result<bool> {
        match self.inner.bucket.head(&self.path(&blob.hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Deletes the blobs older than [`SWEEP_GRACE`] that `referenced` says no record
    /// references; how many it deleted.
    pub async fn sweep<F>(&self, referenced: impl Fn(Vec<[u8; 32]>) -> F) -> Result<usize>
    where
        F: Future<Output = Result<Vec<[u8; 32]>>>,
    {
        let prefix =
            (!self.inner.prefix.is_empty()).then(|| Path::from(self.inner.prefix.as_str()));
        let cutoff = chrono_cutoff();
        let mut old = Vec::new();
        let mut listing = self.inner.bucket.list(prefix.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(unavailable)?;
            if meta.last_modified.timestamp() > cutoff {
                continue;
            }
            let name = meta.location.filename().unwrap_or_default();
            if let Ok(hash) = blake3::Hash::from_hex(name) {
                old.push(*hash.as_bytes());
            }
        }
        drop(listing);
        let mut deleted = 0;
        for batch in old.chunks(500) {
            let keep = referenced(batch.to_vec()).await?;
            for hash in batch.iter().filter(|h| !keep.contains(h)) {
                self.inner.cache.remove(hash);
                match self.inner.bucket.delete(&self.path(hash)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                    Err(error) => return Err(unavailable(error)),
                }
            }
        }
        Ok(deleted)
    }
}

/// The Unix time (seconds) before which an object is old enough to sweep.
fn chrono_cutoff() -> i64 {
    crate::model::now_millis() / 1000 - i64::try_from(SWEEP_GRACE.as_secs()).unwrap_or(0)
}

fn unavailable(error: object_store::Error) -> Error {
    Error::Unavailable(format!("object storage: {error}"))
}

#[async_trait]
impl BlobStore for S3Blobs {
    /// Object storage does not fill up the way a disk does.
    fn ensure_space(&self) -> Result<()> {
        Ok(())
    }

    async fn put(&self, bytes: Bytes) -> Result<StagedBlob> {
        self.write(bytes).await
    }

    /// Writes the blobs concurrently.
    async fn put_all(&self, blobs: Vec<Bytes>) -> Result<Vec<StagedBlob>> {
        let writes: Vec<_> = blobs
            .into_iter()
            .map(|bytes| {
                let this = self.clone();
                tokio::spawn(async move { this.write(bytes).await })
            })
            .collect();
        let mut staged = Vec::with_capacity(writes.len());
        for write in writes {
            staged.push(write.await.map_err(Error::internal)??);
        }
        Ok(staged)
    }

    async fn get(&self, blob: &BlobRef) -> Result<Bytes> {
        if let Some(bytes) = self.inner.cache.get(&blob.hash) {
            return Ok(bytes);
        }
        let bytes = match self.inner.bucket.get(&self.path(&blob.hash)).await {
            Ok(object) => object.bytes().await.map_err(unavailable)?,
            Err(object_store::Error::NotFound { .. }) => return Err(Error::BlobMissing),
            Err(error) => return Err(unavailable(error)),
        };
        self.inner.cache.insert(blob.hash, bytes.clone());
        Ok(bytes)
    }
}
