//! The image URL scheme, both ways, in one place:
//!
//! - `/v1/images/{tenant}/{user}/{version}/{size}.{ext}`: the image a profile version
//!   showed (immutable);
//! - `/v1/images/{tenant}/{user}/{size}.{ext}`: the current image.
//!
//! `user` is percent-encoded (a user id may hold `/`, spaces, any UTF-8), `size` is as in
//! GetProfileImage (0 = the full crop), `ext` is `jpg`, `png` or `webp`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::model::ImageFormat;

pub const PREFIX: &str = "/v1/images/";

/// Largest size a URL may ask for: no image is larger (the default largest side
/// accepted), and a bound keeps the URL space of one image small.
pub const MAX_SIZE: u32 = 8192;

/// Everything but RFC 3986's unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed image path (not yet checked against the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePath {
    pub tenant: String,
    /// Decoded; not yet a validated user id.
    pub user: String,
    /// None: the current image.
    pub version: Option<u64>,
    pub size: u32,
    pub format: ImageFormat,
}

impl ImagePath {
    /// Whether the path names a fixed version (cacheable forever).
    pub fn is_versioned(&self) -> bool {
        self.version.is_some()
    }
}

/// Why a path is not an image path: answered as 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

/// Parses a request path (as sent: percent-encoded).
pub fn parse(path: &str) -> Result<ImagePath, BadPath> {
    let rest = path
        .strip_prefix(PREFIX)
        .ok_or(BadPath("image paths start with /v1/images/"))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (tenant, user, version, file) = match segments.as_slice() {
        [tenant, user, file] => (tenant, user, None, file),
        [tenant, user, version, file] => (tenant, user, Some(version), file),
        _ => {
            return Err(BadPath(
                "expected /v1/images/{tenant}/{user}[/{version}]/{size}.{ext}",
            ));
        }
    };
    let (size, ext) = file
        .rsplit_once('.')
        .ok_or(BadPath("the file name is {size}.{ext}"))?;
    Ok(ImagePath {
        tenant: decode(tenant)?,
        user: decode(user)?,
        version: version
            .map(|v| number(v).ok_or(BadPath("the version is a positive integer")))
            .transpose()?,
        size: number(size)
            .and_then(|s| u32::try_from(s).ok())
            .filter(|&s| s <= MAX_SIZE)
            .ok_or(BadPath("the size is an integer from 0 to 8192"))?,
        format: format_of(ext).ok_or(BadPath("the extension is jpg, png or webp"))?,
    })
}

/// The path of an image URL (percent-encoded).
pub fn build(
    tenant: &str,
    user: &str,
    version: Option<u64>,
    size: u32,
    format: ImageFormat,
) -> String {
    let mut path = String::with_capacity(PREFIX.len() + tenant.len() + user.len() + 32);
    path.push_str(PREFIX);
    path.extend(utf8_percent_encode(tenant, SEGMENT));
    path.push('/');
    path.extend(utf8_percent_encode(user, SEGMENT));
    path.push('/');
    if let Some(version) = version {
        path.push_str(&version.to_string());
        path.push('/');
    }
    path.push_str(&size.to_string());
    path.push('.');
    path.push_str(extension(format));
    path
}

pub fn extension(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Png => "png",
        ImageFormat::Webp => "webp",
    }
}

fn format_of(ext: &str) -> Option<ImageFormat> {
    match ext {
        "jpg" => Some(ImageFormat::Jpeg),
        "png" => Some(ImageFormat::Png),
        "webp" => Some(ImageFormat::Webp),
        _ => None,
    }
}

/// Decimal digits only (no sign, no spaces), at most 20 of them.
fn number(raw: &str) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

fn decode(segment: &str) -> Result<String, BadPath> {
    if segment.is_empty() {
        return Err(BadPath("a path segment is empty"));
    }
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| BadPath("a path segment is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_path_parses_back() {
        let path = build("default", "a/b c é", Some(7), 256, ImageFormat::Webp);
        assert_eq!(path, "/v1/images/default/a%2Fb%20c%20%C3%A9/7/256.webp");
        let parsed = parse(&path).unwrap();
        assert_eq!(parsed.user, "a/b c é");
        assert_eq!(parsed.version, Some(7));
        assert_eq!(parsed.size, 256);
        assert_eq!(parsed.format, ImageFormat::Webp);
        let current = parse(&build("default", "alice", None, 0, ImageFormat::Jpeg)).unwrap();
        assert_eq!(current.version, None);
        assert_eq!(current.size, 0);
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in [
            "/",
            "/v1/images/default/alice",
            "/v1/images/default/alice/256",
            "/v1/images/default/alice/256.gif",
            "/v1/images/default/alice/-1.jpg",
            "/v1/images/default/alice/+1.jpg",
            "/v1/images/default/alice/9000.jpg",
            "/v1/images/default/alice/99999999999999999999999.jpg",
            "/v1/images/default/alice/x/256.jpg",
            "/v1/images/default/alice/1/2/256.jpg",
            "/v1/images/default//256.jpg",
            "/v1/images/default/%FF/256.jpg",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
