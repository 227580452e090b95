//! Who is calling. Every call to the profile-image service carries
//! `authorization: Bearer <JWT>` (`--auth jwt`, the default), verified here against the
//! configured keys ([`keys`]); the caller it names ([`Caller`]) is attached to the
//! request by a tonic interceptor ([`AuthInterceptor`]) for the API layer to authorize.
//! Health and reflection are not behind it.
//!
//! `--auth none` makes every caller an admin of the `default` tenant, for a trusted
//! mesh. With `--auth jwt` and no key configured, an HS256 secret is created in the
//! data dir on first start ([`secret`]), and `profile-image token` signs with it.

mod cache;
mod jwks;
mod keys;
pub mod secret;
pub mod token;
mod verify;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;

use crate::config::{AuthMode, Config};
use crate::error::{Error, Result, reason};
use crate::model::{TenantId, UserId};

pub use verify::Verifier;

/// The metadata key carrying the bearer token.
pub const AUTHORIZATION: &str = "authorization";
/// The role that marks administrators and services.
pub const ADMIN_ROLE: &str = "admin";
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// An authenticated caller: its tenant, who it is, and whether it administers the
/// tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// None only with `--auth none`, where callers are nobody in particular.
    pub user: Option<UserId>,
    pub admin: bool,
}

impl Caller {
    /// The caller of `--auth none`: an admin of `default`, nobody in particular.
    pub fn unauthenticated_admin() -> Self {
        Caller {
            tenant: TenantId::default_tenant(),
            user: None,
            admin: true,
        }
    }

    /// How audit lines name the caller.
    pub fn name(&self) -> &str {
        self.user.as_ref().map_or("anonymous", UserId::as_str)
    }
}

/// Turns a call's metadata into its [`Caller`].
pub enum Authenticator {
    /// `--auth none`: everyone is this caller.
    None(Arc<Caller>),
    Jwt(Verifier),
}

impl Authenticator {
    /// The authenticator `config` asks for. With JWT: loads the keys (creating the data
    /// dir's secret when none is configured) and keeps a JWKS URL fresh until
    /// `shutdown`.
    pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<Self> {
        token::install_crypto_provider();
        match config.auth {
            AuthMode::None => {
                tracing::warn!(
                    "authentication is off (--auth none): every caller is an admin of the \
                     `default` tenant; use this only inside a trusted network"
                );
                Ok(Authenticator::None(Arc::new(
                    Caller::unauthenticated_admin(),
                )))
            }
            AuthMode::Jwt => Ok(Authenticator::Jwt(Verifier::start(config, shutdown).await?)),
        }
    }

    /// The caller the metadata's bearer token names.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Arc<Caller>> {
        match self {
            Authenticator::None(caller) => Ok(caller.clone()),
            Authenticator::Jwt(verifier) => verifier.verify(bearer_token(metadata)?),
        }
    }
}

/// The token of `authorization: Bearer <token>`.
fn bearer_token(metadata: &MetadataMap) -> Result<&str> {
    let Some(value) = metadata.get(AUTHORIZATION) else {
        return Err(unauthenticated(
            reason::TOKEN_MISSING,
            "the call has no `authorization: Bearer <token>` metadata",
        ));
    };
    let value = value.to_str().map_err(|_| {
        unauthenticated(
            reason::TOKEN_INVALID,
            "the authorization metadata is not printable ASCII",
        )
    })?;
    if value.trim().eq_ignore_ascii_case("bearer") {
        return Err(unauthenticated(
            reason::TOKEN_MISSING,
            "the authorization metadata carries an empty bearer token",
        ));
    }
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        Some("") => Err(unauthenticated(
            reason::TOKEN_MISSING,
            "the authorization metadata carries an empty bearer token",
        )),
        Some(token) => Ok(token),
        None => Err(unauthenticated(
            reason::TOKEN_INVALID,
            "the authorization metadata is not of the form `Bearer <token>`",
        )),
    }
}

fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Error {
    Error::Unauthenticated {
        reason,
        message: message.into(),
    }
}

/// Authenticates every call of the service it wraps and attaches its [`Caller`]
/// (as `Arc<Caller>`) to the request's extensions.
#[derive(Clone)]
pub struct AuthInterceptor(Arc<Authenticator>);

impl AuthInterceptor {
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        AuthInterceptor(authenticator)
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let caller = self.0.authenticate(request.metadata())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(AUTHORIZATION, value.parse().unwrap());
        metadata
    }

    fn reason_of(error: Error) -> &'static str {
        match error {
            Error::Unauthenticated { reason, .. } => reason,
            other => panic!("not unauthenticated: {other:?}"),
        }
    }

    #[test]
    fn the_bearer_token_is_read_whatever_the_schemes_case() {
        assert_eq!(bearer_token(&metadata("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&metadata("bearer abc")).unwrap(), "abc");
    }

    #[test]
    fn no_token_and_another_scheme_are_told_apart() {
        let missing = bearer_token(&MetadataMap::new()).unwrap_err();
        assert_eq!(reason_of(missing), reason::TOKEN_MISSING);
        let empty = bearer_token(&metadata("Bearer ")).unwrap_err();
        assert_eq!(reason_of(empty), reason::TOKEN_MISSING);
        let basic = bearer_token(&metadata("Basic dXNlcjpwYXNz")).unwrap_err();
        assert_eq!(reason_of(basic), reason::TOKEN_INVALID);
    }
}
