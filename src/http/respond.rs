//! Answers one image request: method, path, signature, tenant and user checks, then
//! the image (or 304, or a placeholder) with its caching headers.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::paths::{self, ImagePath};
use super::signing::UrlSigner;
use crate::error::Error;
use crate::model::{ImageFormat, OutputFormat, ServedImage, TenantId, UserId};
use crate::profiles::{ImageRequest, ProfileImages};

/// A versioned URL always shows the same bytes.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

pub type Body = Full<Bytes>;

pub struct ImageResponder {
    profiles: ProfileImages,
    signer: Option<Arc<UrlSigner>>,
    /// Cache-Control of the current image: `public, max-age=N`.
    current: HeaderValue,
    /// Cache-Control of a placeholder answered for a missing image: `max-age=N`.
    placeholder: HeaderValue,
}

/// How long a response may be cached.
#[derive(Clone, Copy)]
enum Caching {
    Immutable,
    Current,
    Placeholder,
}

/// The query parameters image URLs use.
#[derive(Default)]
struct Query {
    placeholder: bool,
    exp: Option<String>,
    sig: Option<String>,
}

impl ImageResponder {
    pub fn new(
        profiles: ProfileImages,
        signer: Option<Arc<UrlSigner>>,
        current_max_age_secs: u32,
    ) -> Self {
        let value = |text: String| {
            HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("max-age=60"))
        };
        ImageResponder {
            profiles,
            signer,
            current: value(format!("public, max-age={current_max_age_secs}")),
            placeholder: value(format!("max-age={current_max_age_secs}")),
        }
    }

    pub async fn respond<B>(&self, request: Request<B>) -> Response<Body> {
        let head = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return method_not_allowed(),
        };
        let uri = request.uri();
        let path = match paths::parse(uri.path()) {
            Ok(path) => path,
            Err(bad) => return plain(StatusCode::BAD_REQUEST, bad.0),
        };
        let query = match Query::parse(uri.query()) {
            Ok(query) => query,
            Err(message) => return plain(StatusCode::BAD_REQUEST, message),
        };
        if let Some(signer) = &self.signer {
            let verified = signer.verify(
                uri.path(),
                query.exp.as_deref(),
                query.sig.as_deref(),
                SystemTime::now(),
            );
            if let Err(refused) = verified {
                return plain(StatusCode::FORBIDDEN, refused.message());
            }
        }
        let Ok(tenant) = TenantId::parse("tenant", &path.tenant) else {
            return plain(StatusCode::BAD_REQUEST, "the tenant is not valid");
        };
        let Ok(user) = UserId::parse_in(&tenant, "user", &path.user) else {
            return plain(StatusCode::BAD_REQUEST, "the user id is not valid");
        };
        let lookup = Lookup {
            user: &user,
            path: &path,
            placeholder: query.placeholder,
        };
        let if_none_match = request.headers().get(header::IF_NONE_MATCH);
        // Bytes are read only when they will be sent.
        let metadata_first = head || if_none_match.is_some();
        let (mut image, caching) = match self.fetch(lookup, metadata_first).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        if if_none_match.is_some_and(|tags| etag_matches(tags, &image.etag)) {
            return self.answer(StatusCode::NOT_MODIFIED, &image, caching, None);
        }
        if head {
            return self.answer(StatusCode::OK, &image, caching, None);
        }
        if image.data.is_none() {
            (image, _) = match self.fetch(lookup, false).await {
                Ok(found) => found,
                Err(response) => return response,
            };
        }
        let data = image.data.clone().unwrap_or_default();
        self.answer(StatusCode::OK, &image, caching, Some(data))
    }

    /// The image the path names, or the placeholder when it is missing and one was
    /// asked for; the error response otherwise.
    async fn fetch(
        &self,
        lookup: Lookup<'_>,
        metadata_only: bool,
    ) -> Result<(ServedImage, Caching), Response<Body>> {
        let request = ImageRequest {
            size: lookup.path.size,
            format: match lookup.path.format {
                ImageFormat::Jpeg => OutputFormat::Jpeg,
                ImageFormat::Png => OutputFormat::Png,
                ImageFormat::Webp => OutputFormat::Webp,
            },
            metadata_only,
        };
        let found = self.image(lookup.user, lookup.path, request).await;
        let caching = match lookup.path.is_versioned() {
            true => Caching::Immutable,
            false => Caching::Current,
        };
        match found {
            Ok(image) => Ok((image, caching)),
            Err(Error::NotFound(_)) if lookup.placeholder => {
                match self.profiles.placeholder_image(lookup.user, request).await {
                    Ok(image) => Ok((image, Caching::Placeholder)),
                    Err(error) => Err(error_response(error)),
                }
            }
            Err(error) => Err(error_response(error)),
        }
    }

    async fn image(
        &self,
        user: &UserId,
        path: &ImagePath,
        request: ImageRequest,
    ) -> crate::error::Result<ServedImage> {
        match path.version {
            Some(version) => self.profiles.get_version(user, version, request).await,
            None => self
                .profiles
                .get(user, request)
                .await?
                .image
                .ok_or_else(|| Error::internal("a read answered no image")),
        }
    }

    fn answer(
        &self,
        status: StatusCode,
        image: &ServedImage,
        caching: Caching,
        data: Option<Bytes>,
    ) -> Response<Body> {
        let mut response = Response::new(Full::new(data.unwrap_or_default()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, self.cache_control(caching));
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", image.etag)) {
            headers.insert(header::ETAG, etag);
        }
        if status == StatusCode::OK {
            describe_body(headers, image);
        }
        response
    }

    fn cache_control(&self, caching: Caching) -> HeaderValue {
        match caching {
            Caching::Immutable => IMMUTABLE,
            Caching::Current => self.current.clone(),
            Caching::Placeholder => self.placeholder.clone(),
        }
    }
}

/// What one request looks up.
#[derive(Clone, Copy)]
struct Lookup<'a> {
    user: &'a UserId,
    path: &'a ImagePath,
    /// `default=placeholder`: a missing image is answered with a placeholder.
    placeholder: bool,
}

/// Content-Type and Content-Length (set here for HEAD too, where no body follows).
fn describe_body(headers: &mut HeaderMap, image: &ServedImage) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(image.format.content_type()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(image.size_bytes));
}

impl Query {
    fn parse(raw: Option<&str>) -> Result<Query, &'static str> {
        let mut query = Query::default();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "default" if value == "placeholder" => query.placeholder = true,
                "default" => return Err("default must be placeholder"),
                "exp" => query.exp = Some(value.to_owned()),
                "sig" => query.sig = Some(value.to_owned()),
                // Cache busters and trackers change nothing.
                _ => {}
            }
        }
        Ok(query)
    }
}

/// Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 asks
/// for If-None-Match; `*` matches any image).
fn etag_matches(header: &HeaderValue, etag: &str) -> bool {
    let Ok(text) = header.to_str() else {
        return false;
    };
    text.split(',').map(str::trim).any(|tag| {
        tag == "*" || {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag.strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(tag)
                == etag
        }
    })
}

fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn method_not_allowed() -> Response<Body> {
    let mut response = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "image URLs answer GET and HEAD",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

fn error_response(error: Error) -> Response<Body> {
    match error {
        Error::NotFound(_) => plain(StatusCode::NOT_FOUND, "no such image"),
        Error::Invalid(_) => plain(StatusCode::BAD_REQUEST, &error.to_string()),
        Error::Unavailable(_)
        | Error::StorageFull(_)
        | Error::Overloaded { .. }
        | Error::ShuttingDown => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the image cannot be read right now; retry",
        ),
        Error::DeadlineExceeded(_) => plain(StatusCode::GATEWAY_TIMEOUT, "reading took too long"),
        other => {
            tracing::error!(error = %other, "an image URL failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let matches = |header: &'static str| etag_matches(&HeaderValue::from_static(header), "abc");
        assert!(matches("\"abc\""));
        assert!(matches("W/\"abc\""));
        assert!(matches("\"x\", \"abc\""));
        assert!(matches("*"));
        assert!(!matches("\"abcd\""));
        assert!(!matches("\"x\""));
    }
}
