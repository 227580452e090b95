//! Verifying a bearer token: its signature with a configured key, `exp` (required),
//! `nbf`, and `iss`/`aud` when configured, with 30 s of clock skew; then its claims
//! become a [`Caller`]. Verified tokens are cached until they expire.

use std::sync::{Arc, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use tokio_util::sync::CancellationToken;

use super::cache::TokenCache;
use super::keys::{KeySet, VerifyingKey};
use super::token::Claims;
use super::{ADMIN_ROLE, Caller, LEEWAY_SECS, jwks, secret, unauthenticated};
use crate::config::Config;
use crate::error::{Error, Result, reason};
use crate::model::{TenantId, UserId};

pub struct Verifier {
    /// Replaced whole when a JWKS URL is re-read.
    keys: Arc<RwLock<Arc<KeySet>>>,
    issuer: Option<String>,
    audience: Option<String>,
    cache: TokenCache,
}

impl Verifier {
    /// Loads the configured keys (the data dir's secret when none is configured) and,
    /// for a JWKS URL, keeps it fresh until `shutdown`.
    pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<Self> {
        let mut keys = Vec::new();
        if let Some(path) = &config.jwt_hs256_secret_file {
            keys.push(VerifyingKey::hs256(&secret::read(path)?)?);
        }
        for path in &config.jwt_public_keys {
            keys.push(VerifyingKey::public_key_file(path)?);
        }
        let jwks = config
            .jwt_jwks
            .as_deref()
            .map(jwks::Source::parse)
            .transpose()?;
        if keys.is_empty() && jwks.is_none() {
            keys.push(VerifyingKey::hs256(&secret::read_or_create(
                &config.data_dir,
            )?)?);
        }
        let keys = Arc::new(RwLock::new(Arc::new(KeySet::new(keys))));
        if let Some(source) = jwks {
            start_jwks(source, config, &keys, shutdown).await?;
        }
        Ok(Verifier {
            keys,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            cache: TokenCache::new(),
        })
    }

    /// A verifier of exactly these keys (tests).
    pub fn with_keys(keys: Vec<VerifyingKey>) -> Self {
        Verifier {
            keys: Arc::new(RwLock::new(Arc::new(KeySet::new(keys)))),
            issuer: None,
            audience: None,
            cache: TokenCache::new(),
        }
    }

    /// The caller `token` names, if it verifies.
    pub fn verify(&self, token: &str) -> Result<Arc<Caller>> {
        let now = jsonwebtoken::get_current_timestamp();
        let hash = TokenCache::hash(token);
        if let Some(caller) = self.cache.get(&hash, now) {
            return Ok(caller);
        }
        let claims = self.verify_signed(token)?;
        let expires_at = claims.exp.unwrap_or(0);
        let caller = Arc::new(caller_of(claims)?);
        self.cache.insert(hash, caller.clone(), expires_at, now);
        Ok(caller)
    }

    fn verify_signed(&self, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the token is not a well-formed JWT"))?;
        let keys = self
            .keys
            .read()
            .map(|keys| keys.clone())
            .map_err(|_| Error::internal("key set lock poisoned"))?;
        let candidates = keys.candidates(&header);
        if candidates.is_empty() {
            return Err(invalid(format!(
                "no configured key verifies {:?} tokens{}",
                header.alg,
                header
                    .kid
                    .as_deref()
                    .map(|_| " with this key id")
                    .unwrap_or_default()
            )));
        }
        let validation = self.validation(&header);
        let mut failure = None;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                // Another key of the same algorithm may have signed it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    failure.get_or_insert(e);
                }
                Err(e) => return Err(rejection(e.kind())),
            }
        }
        Err(failure.map_or_else(
            || invalid("the token's signature does not verify"),
            |e| rejection(e.kind()),
        ))
    }

    fn validation(&self, header: &Header) -> Validation {
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        validation
    }
}

/// Loads the JWKS once at start; a URL is then re-read in the background. A URL that
/// cannot be read at start is retried (its tokens fail until it is read); a file that
/// cannot be read stops the start.
async fn start_jwks(
    source: jwks::Source,
    config: &Config,
    keys: &Arc<RwLock<Arc<KeySet>>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let fetcher = jwks::fetcher();
    let first = jwks::load(&source, &fetcher).await;
    let failing = match (&source, first) {
        (_, Ok(loaded)) => {
            tracing::info!(keys = loaded.len(), "read the JWKS");
            if let Ok(mut current) = keys.write() {
                *current = Arc::new(current.with_jwks(loaded));
            }
            false
        }
        (jwks::Source::File(_), Err(error)) => return Err(error),
        (jwks::Source::Url(_), Err(error)) => {
            tracing::error!(%error, "cannot read the JWKS yet; retrying in the background");
            true
        }
    };
    if matches!(source, jwks::Source::Url(_)) {
        jwks::keep_fresh(
            source,
            fetcher,
            keys.clone(),
            config.jwt_jwks_refresh,
            failing,
            shutdown,
        );
    }
    Ok(())
}

/// The caller a verified token's claims name.
fn caller_of(claims: Claims) -> Result<Caller> {
    let tenant = match claims.tenant.as_deref() {
        None => TenantId::default_tenant(),
        Some(raw) => TenantId::parse("tenant", raw)
            .map_err(|_| invalid("the token's `tenant` claim is not a valid tenant"))?,
    };
    let sub = claims
        .sub
        .as_deref()
        .ok_or_else(|| invalid("the token has no `sub` claim"))?;
    let user = UserId::parse_in(&tenant, "sub", sub)
        .map_err(|_| invalid("the token's `sub` claim is not a valid user id"))?;
    Ok(Caller {
        tenant,
        user: Some(user),
        admin: claims.roles.iter().any(|role| role == ADMIN_ROLE),
    })
}

fn invalid(message: impl Into<String>) -> Error {
    unauthenticated(reason::TOKEN_INVALID, message)
}

/// Why jsonwebtoken refused a token, as the client is told (never with the token).
fn rejection(kind: &ErrorKind) -> Error {
    let message = match kind {
        ErrorKind::ExpiredSignature => {
            return unauthenticated(reason::TOKEN_EXPIRED, "the token has expired (exp)");
        }
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not the one required",
        ErrorKind::InvalidAudience => "the token's audience (aud) is not the one required",
        ErrorKind::MissingRequiredClaim(claim) => {
            return invalid(format!("the token has no `{claim}` claim"));
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "the token's algorithm does not match the key's"
        }
        ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => "the token's claims are malformed",
        _ => "the token is not a well-formed JWT",
    };
    invalid(message)
}
