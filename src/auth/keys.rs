//! The keys tokens are verified with: an HS256 secret, PEM public keys and JWKS keys,
//! each tied to the one algorithm it verifies (a token cannot choose a weaker one).

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Header};

use crate::error::{Error, Result};

/// One key and the algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The JWKS `kid`; None for configured files, which any token of the algorithm may
    /// use.
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl VerifyingKey {
    pub fn hs256(secret: &[u8]) -> Result<Self> {
        Ok(VerifyingKey {
            kid: None,
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret)
                .map_err(|e| Error::Config(format!("unusable HS256 secret: {e}")))?,
        })
    }

    /// A PEM public key file: RS256 for an RSA key, ES256 for a P-256 key, EdDSA for an
    /// Ed25519 key.
    pub fn public_key_file(path: &Path) -> Result<Self> {
        let pem = std::fs::read(path).map_err(|e| {
            Error::Config(format!("cannot read public key {}: {e}", path.display()))
        })?;
        let (algorithm, key) = parse_public_key(&pem).ok_or_else(|| {
            Error::Config(format!(
                "{} is not a PEM RSA, P-256 or Ed25519 public key",
                path.display()
            ))
        })?;
        Ok(VerifyingKey {
            kid: None,
            algorithm,
            key,
        })
    }
}

/// A PEM public key and the algorithm its type verifies.
fn parse_public_key(pem: &[u8]) -> Option<(Algorithm, DecodingKey)> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Some((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Some((Algorithm::ES256, key));
    }
    DecodingKey::from_ed_pem(pem)
        .ok()
        .map(|key| (Algorithm::EdDSA, key))
}

/// Every key the verifier knows.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        KeySet { keys }
    }

    /// The keys that may have signed a token with this header: of its algorithm, and
    /// of its `kid` when one of them has that `kid`.
    pub fn candidates(&self, header: &Header) -> Vec<&VerifyingKey> {
        let of_algorithm = self.keys.iter().filter(|k| k.algorithm == header.alg);
        if let Some(kid) = &header.kid {
            let named: Vec<_> = of_algorithm
                .clone()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect();
            if !named.is_empty() {
                return named;
            }
        }
        of_algorithm.collect()
    }

    /// The same set with `keys` in place of the JWKS keys it had.
    pub fn with_jwks(&self, keys: Vec<VerifyingKey>) -> Self {
        let mut out: Vec<_> = self
            .keys
            .iter()
            .filter(|k| k.kid.is_none())
            .cloned()
            .collect();
        out.extend(keys);
        KeySet { keys: out }
    }
}
