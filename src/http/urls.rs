//! The image URLs handed out in ProfileImage.url: versioned, on the public base, signed
//! when signing is on.

use std::sync::Arc;
use std::time::SystemTime;

use super::paths;
use super::signing::UrlSigner;
use crate::model::{ImageFormat, UserId};

pub struct ImageUrls {
    /// Scheme, host and optional path prefix, without a trailing slash.
    base: String,
    signer: Option<Arc<UrlSigner>>,
}

/// What a URL shows.
#[derive(Debug, Clone, Copy)]
pub struct UrlTarget<'a> {
    pub user: &'a UserId,
    pub version: u64,
    pub size: u32,
    pub format: ImageFormat,
    /// A placeholder is served for now: the URL asks for one while the version has no
    /// image (a download in progress), and answers the image once it has.
    pub placeholder: bool,
}

impl ImageUrls {
    pub fn new(base: &str, signer: Option<Arc<UrlSigner>>) -> Self {
        ImageUrls {
            base: base.trim_end_matches('/').to_owned(),
            signer,
        }
    }

    /// The versioned URL of `target`.
    pub fn versioned(&self, target: UrlTarget<'_>) -> String {
        let path = paths::build(
            target.user.tenant().as_str(),
            target.user.as_str(),
            Some(target.version),
            target.size,
            target.format,
        );
        let mut url = String::with_capacity(self.base.len() + path.len() + 100);
        url.push_str(&self.base);
        url.push_str(&path);
        let mut separator = '?';
        if let Some(signer) = &self.signer {
            url.push(separator);
            url.push_str(&signer.query(&path, SystemTime::now()));
            separator = '&';
        }
        if target.placeholder {
            url.push(separator);
            url.push_str("default=placeholder");
        }
        url
    }
}
