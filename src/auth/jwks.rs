//! JWKS: a JSON Web Key Set from a file, or from an http(s) URL that is re-read in the
//! background (so the identity provider can rotate keys).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio_util::sync::CancellationToken;

use super::keys::{KeySet, VerifyingKey};
use crate::error::{Error, Result};
use crate::fetch::{FetchConfig, Fetcher};

/// After a failed read of a JWKS URL, the next try comes at most this much later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub enum Source {
    File(std::path::PathBuf),
    Url(url::Url),
}

impl Source {
    /// `http://` or `https://` is a URL; anything else a file path.
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.starts_with("http://") || raw.starts_with("https://") {
            let url = url::Url::parse(raw)
                .map_err(|e| Error::Config(format!("invalid JWKS URL: {e}")))?;
            Ok(Source::Url(url))
        } else {
            Ok(Source::File(raw.into()))
        }
    }
}

/// Reads the key set once.
pub async fn load(source: &Source, fetcher: &Fetcher) -> Result<Vec<VerifyingKey>> {
    let bytes = match source {
        Source::File(path) => std::fs::read(path)
            .map_err(|e| Error::Config(format!("cannot read JWKS {}: {e}", path.display())))?,
        Source::Url(url) => {
            fetcher
                .fetch(url)
                .await
                .map_err(|e| Error::Config(format!("cannot read JWKS {url}: {e}")))?
                .bytes
        }
    };
    parse(&bytes)
}

/// The usable signature keys of a JWKS document; others are skipped with a warning.
pub fn parse(json: &[u8]) -> Result<Vec<VerifyingKey>> {
    let set: JwkSet =
        serde_json::from_slice(json).map_err(|e| Error::Config(format!("invalid JWKS: {e}")))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(algorithm) = algorithm_of(jwk) else {
            tracing::warn!(?kid, "JWKS key skipped: not an RS256, ES256 or EdDSA key");
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => keys.push(VerifyingKey {
                kid,
                algorithm,
                key,
            }),
            Err(error) => tracing::warn!(?kid, %error, "JWKS key skipped: unusable"),
        }
    }
    Ok(keys)
}

/// The algorithm a JWK verifies: its `alg`, or by key type when it has none.
fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
        (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(_)) => {
            Some(Algorithm::ES256)
        }
        (Some(KeyAlgorithm::EdDSA), AlgorithmParameters::OctetKeyPair(_)) => Some(Algorithm::EdDSA),
        (Some(_), _) => None,
        (None, AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
        (None, AlgorithmParameters::EllipticCurve(p)) if p.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        (None, AlgorithmParameters::OctetKeyPair(p)) if p.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        (None, _) => None,
    }
}

/// A fetcher for the operator's JWKS URL. The URL is configuration, not user input, so
/// every network is allowed (the SSRF policy guards user-supplied URLs).
pub fn fetcher() -> Fetcher {
    let everywhere = ["0.0.0.0/0", "::/0"]
        .into_iter()
        .filter_map(|net| net.parse().ok())
        .collect();
    Fetcher::new(FetchConfig {
        max_bytes: MAX_JWKS_BYTES,
        allow_cidrs: everywhere,
        ..FetchConfig::default()
    })
}

/// Re-reads a JWKS URL every `period` (sooner after a failure) until `shutdown`,
/// replacing the JWKS keys of `keys`. A failed read keeps the keys it had.
pub fn keep_fresh(
    url: Source,
    fetcher: Fetcher,
    keys: Arc<RwLock<Arc<KeySet>>>,
    period: Duration,
    mut failing: bool,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let wait = if failing {
                period.min(RETRY_AFTER_FAILURE)
            } else {
                period
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match load(&url, &fetcher).await {
                Ok(fresh) => {
                    failing = false;
                    if let Ok(mut current) = keys.write() {
                        *current = Arc::new(current.with_jwks(fresh));
                    }
                }
                Err(error) => {
                    failing = true;
                    tracing::warn!(%error, "re-reading the JWKS failed; keeping the keys we have");
                }
            }
        }
    });
}
