//! The claims this service reads from a token, and signing tokens with the data dir's
//! HS256 secret (`profile-image token`, and tests).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a token says about its caller. `exp` is required (checked by the verifier);
/// `iss`, `aud` and `nbf` are checked by it when present or configured.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The caller's user id.
    #[serde(default)]
    pub sub: Option<String>,
    /// The caller's tenant; absent = `default`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `admin` marks administrators and services.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry, seconds since the Unix epoch. Optional here so that a token without
    /// it is refused by the verifier's required-claim check, which says so.
    #[serde(default)]
    pub exp: Option<u64>,
}

/// A token to sign.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    pub iat: u64,
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl NewToken {
    /// A token for `user` valid from now for `ttl`.
    pub fn new(user: &str, tenant: Option<&str>, admin: bool, ttl: Duration) -> Self {
        let now = jsonwebtoken::get_current_timestamp();
        NewToken {
            sub: user.to_owned(),
            tenant: tenant.map(str::to_owned),
            roles: if admin {
                vec![super::ADMIN_ROLE.to_owned()]
            } else {
                Vec::new()
            },
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            iss: None,
            aud: None,
        }
    }

    /// Signs the token with an HS256 secret.
    pub fn sign_hs256(&self, secret: &[u8]) -> Result<String> {
        install_crypto_provider();
        let key = EncodingKey::from_secret(secret)
            .map_err(|e| Error::Config(format!("unusable HS256 secret: {e}")))?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), self, &key)
            .map_err(|e| Error::internal(format!("signing a token: {e}")))
    }
}

/// Makes the RustCrypto backend jsonwebtoken's process default (the one backend this
/// build has; installing it says so explicitly, rather than by feature inference).
pub fn install_crypto_provider() {
    // Err = already installed (by an earlier call): nothing to do.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
    );
}

/// Parses a time-to-live such as `90s`, `30m`, `1h` or `7d` (a bare number is seconds).
pub fn parse_ttl(raw: &str) -> std::result::Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration such as 90s, 30m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit `{other}`: use s, m, h or d")),
    };
    if number == 0 {
        return Err("the time-to-live must be positive".to_owned());
    }
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_like_people_write_them() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
