//! Reading a response body without ever holding more than the byte limit.

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::fetch::error::FetchError;

/// Collects `body`, failing as soon as it is known to exceed `max_bytes`: up front
/// from Content-Length, otherwise the moment the received total passes the limit.
/// On failure the caller drops the connection, so the rest is never read.
pub(crate) async fn read_limited(
    mut body: Incoming,
    max_bytes: u64,
    host: &str,
) -> Result<Vec<u8>, FetchError> {
    let too_large = FetchError::TooLarge {
        limit_bytes: max_bytes,
    };
    // Incoming's lower bound is the declared Content-Length when there is one.
    let declared = body.size_hint().lower();
    if declared > max_bytes {
        return Err(too_large);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|cause| FetchError::Transport {
            host: host.to_owned(),
            cause: cause.into(),
        })?;
        // Trailers carry nothing we want.
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let total = bytes.len() as u64 + chunk.len() as u64;
        if total > max_bytes {
            return Err(too_large);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
