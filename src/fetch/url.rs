//! Validation of user-supplied download URLs (and of redirect targets).

use ::url::Url;

/// Longest URL accepted, in bytes of the raw and of the normalised form.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL cannot be downloaded from. Messages are meant for the end user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    #[error("the address is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("the address is not an absolute URL")]
    NotAbsolute,
    #[error("the address has no host")]
    MissingHost,
    #[error("the address is not a valid URL")]
    Malformed,
    #[error("only http and https addresses are supported, not {scheme}:")]
    UnsupportedScheme { scheme: String },
    /// Rejected rather than stripped: silently dropping them would fetch something
    /// other than what the user asked for, and they must never reach a server.
    #[error("the address must not contain a user name or password")]
    Credentials,
}

/// Parses `raw` as an absolute http(s) URL with a host and without credentials.
pub fn validate_url(raw: &str) -> Result<Url, InvalidUrl> {
    if raw.len() > MAX_URL_LEN {
        return Err(InvalidUrl::TooLong);
    }
    let url = Url::parse(raw).map_err(|error| match error {
        ::url::ParseError::RelativeUrlWithoutBase => InvalidUrl::NotAbsolute,
        ::url::ParseError::EmptyHost => InvalidUrl::MissingHost,
        _ => InvalidUrl::Malformed,
    })?;
    check_parsed(&url)?;
    Ok(url)
}

fn check_parsed(url: &Url) -> Result<(), InvalidUrl> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InvalidUrl::UnsupportedScheme {
            scheme: url.scheme().to_owned(),
        });
    }
    if url.host().is_none() {
        return Err(InvalidUrl::MissingHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidUrl::Credentials);
    }
    // Percent-encoding and IDNA can grow the URL past the limit the raw text met.
    if url.as_str().len() > MAX_URL_LEN {
        return Err(InvalidUrl::TooLong);
    }
    Ok(())
}
