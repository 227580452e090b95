//! Starts the HTTP listener of image URLs (when configured) and the URL builder the
//! gRPC replies use.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SHUTDOWN_GRACE;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::{self, ImageResponder, ImageUrls, UrlSigner};
use crate::profiles::ProfileImages;

/// The running HTTP listener, if any.
pub struct ImageUrlServer {
    /// None while HTTP is off: replies carry no URL.
    pub urls: Option<Arc<ImageUrls>>,
    task: Option<JoinHandle<()>>,
}

impl ImageUrlServer {
    /// Waits for the listener to stop (after the shutdown token fired).
    pub async fn stopped(self) {
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

pub async fn start(
    config: &Config,
    profiles: &ProfileImages,
    shutdown: CancellationToken,
) -> Result<ImageUrlServer> {
    let off = ImageUrlServer {
        urls: None,
        task: None,
    };
    let settings = &config.http;
    let Some(address) = settings.listen else {
        return Ok(off);
    };
    let Some(listener) = http::bind(address, settings.listen_is_default).await? else {
        return Ok(off);
    };
    let address = listener.local_addr().map_err(Error::internal)?;
    let signer = match settings.signed_urls {
        true => Some(Arc::new(load_signer(config).await?)),
        false => None,
    };
    let base = settings
        .public_base
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let urls = Arc::new(ImageUrls::new(&base, signer.clone()));
    let responder = Arc::new(ImageResponder::new(
        profiles.clone(),
        signer,
        settings.current_max_age_secs,
    ));
    tracing::info!("http listening on {address}");
    let task = tokio::spawn(http::serve(
        listener,
        responder,
        shutdown,
        SHUTDOWN_GRACE,
        settings.threads,
    ));
    Ok(ImageUrlServer {
        urls: Some(urls),
        task: Some(task),
    })
}

async fn load_signer(config: &Config) -> Result<UrlSigner> {
    let key_file = config.http.url_key_file.clone();
    let data_dir = config.data_dir.clone();
    let ttl = config.http.signed_url_ttl;
    tokio::task::spawn_blocking(move || UrlSigner::load(key_file.as_deref(), &data_dir, ttl))
        .await
        .map_err(Error::internal)?
}
