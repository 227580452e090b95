//! What the service refuses to run with: a configuration error names the setting.

use std::time::Duration;

use super::{Config, ConfigError, HttpConfig};

impl Config {
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
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
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
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
