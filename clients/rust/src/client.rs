//! `Client`: a connection to the service and one method per thing a caller wants done.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio_stream::StreamExt;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::media::MediaPages;
use crate::pb::profile_image_service_client::ProfileImageServiceClient;
use crate::pb::{self, ImageFormat, ProfileImage, set_profile_image_request::Source};
use crate::upload::{UploadOptions, upload_stream};
use crate::watch::{Watch, WatchTarget};
use crate::{Crop, Error};

/// Where `Client::connect` goes when nothing else is said (the service's default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:50051";

/// Full-size renditions and inline images can exceed tonic's 4 MiB default.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

pub(crate) type Stub = ProfileImageServiceClient<InterceptedService<Channel, BearerToken>>;

/// A connection to a profile-image server. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    stub: Stub,
    chunk_bytes: usize,
}

/// Settings for [`Client`]: `Client::builder(url).bearer_token(t).connect().await`.
#[must_use]
pub struct ClientBuilder {
    url: String,
    bearer_token: Option<String>,
    ca_certificate_pem: Option<Vec<u8>>,
    tls_domain: Option<String>,
    connect_timeout: Duration,
    chunk_bytes: usize,
}

impl ClientBuilder {
    /// Sends `authorization: Bearer TOKEN` with every call.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Trusts this CA (PEM) instead of the webpki roots; turns TLS on.
    pub fn ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate_pem = Some(pem.into());
        self
    }

    /// Verifies the server's certificate for this name instead of the URL's host; turns
    /// TLS on.
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Self {
        self.tls_domain = Some(domain.into());
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Upload chunk size, at most [`crate::MAX_CHUNK_BYTES`] (the server's limit).
    pub fn chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.clamp(1, crate::MAX_CHUNK_BYTES);
        self
    }

    /// Connects now, so that a wrong address fails here rather than at the first call.
    pub async fn connect(self) -> Result<Client, Error> {
        let token = match &self.bearer_token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| {
                        Error::Config("the bearer token is not a valid header value".into())
                    })?,
            ),
            None => None,
        };
        let channel = self
            .endpoint()?
            .connect()
            .await
            .map_err(|source| Error::Connect {
                url: self.url.clone(),
                source,
            })?;
        let stub = ProfileImageServiceClient::with_interceptor(channel, BearerToken(token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Client {
            stub,
            chunk_bytes: self.chunk_bytes,
        })
    }

    fn endpoint(&self) -> Result<Endpoint, Error> {
        let endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| Error::Config(format!("server URL {:?}: {e}", self.url)))?
            .connect_timeout(self.connect_timeout);
        let wants_tls = self.url.starts_with("https://")
            || self.ca_certificate_pem.is_some()
            || self.tls_domain.is_some();
        if !wants_tls {
            return Ok(endpoint);
        }
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca_certificate_pem {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_webpki_roots(),
        };
        if let Some(domain) = &self.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        endpoint
            .tls_config(tls)
            .map_err(|e| Error::Config(format!("TLS: {e}")))
    }
}

/// Adds the bearer token, if any, to every call.
#[derive(Clone)]
pub(crate) struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

impl Client {
    /// Connects to `url` (`http://host:port`, or `https://` for TLS with the webpki roots).
    pub async fn connect(url: impl Into<String>) -> Result<Client, Error> {
        Client::builder(url).connect().await
    }

    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            bearer_token: None,
            ca_certificate_pem: None,
            tls_domain: None,
            connect_timeout: Duration::from_secs(10),
            chunk_bytes: crate::MAX_CHUNK_BYTES,
        }
    }

    /// The generated tonic client, for what this wrapper does not cover.
    pub(crate) fn stub(&self) -> Stub {
        self.stub.clone()
    }

    /// The user's image, `size` px on its longest edge (0 = full), in `format`
    /// (`Unspecified` = JPEG when opaque, PNG when transparent).
    pub async fn get(
        &self,
        user: &str,
        size: u32,
        format: ImageFormat,
    ) -> Result<ProfileImage, Error> {
        self.get_request(user, size, format, false).await
    }

    /// The user's image metadata, without the bytes.
    pub async fn get_metadata(&self, user: &str) -> Result<ProfileImage, Error> {
        self.get_request(user, 0, ImageFormat::Unspecified, true)
            .await
    }

    async fn get_request(
        &self,
        user: &str,
        size: u32,
        format: ImageFormat,
        metadata_only: bool,
    ) -> Result<ProfileImage, Error> {
        let request = pb::GetProfileImageRequest {
            user_id: user.to_owned(),
            size,
            format: format.into(),
            metadata_only,
            ..Default::default()
        };
        let reply = self.stub().get_profile_image(request).await?;
        required(reply.into_inner().profile_image)
    }

    /// Uploads a file in chunks; the reply is the new, processed state (READY).
    pub async fn upload_file(
        &self,
        user: &str,
        path: impl AsRef<Path>,
        crop: Option<Crop>,
    ) -> Result<ProfileImage, Error> {
        self.upload_file_with(user, path, UploadOptions::new().crop(crop))
            .await
    }

    /// `upload_file` with a progress callback, a concurrency check, ...
    pub async fn upload_file_with(
        &self,
        user: &str,
        path: impl AsRef<Path>,
        mut options: UploadOptions,
    ) -> Result<ProfileImage, Error> {
        let path = path.as_ref();
        let read_error = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(read_error)?;
        let length = file.metadata().await.map_err(read_error)?.len();
        options.size_bytes = options.size_bytes.or(Some(length));
        upload_stream(self, user, file, path, options).await
    }

    /// Uploads whatever `reader` yields, in chunks.
    pub async fn upload(
        &self,
        user: &str,
        reader: impl AsyncRead + Send + Unpin + 'static,
        crop: Option<Crop>,
    ) -> Result<ProfileImage, Error> {
        self.upload_with(user, reader, UploadOptions::new().crop(crop))
            .await
    }

    /// `upload` with a progress callback, a declared size, a concurrency check, ...
    pub async fn upload_with(
        &self,
        user: &str,
        reader: impl AsyncRead + Send + Unpin + 'static,
        options: UploadOptions,
    ) -> Result<ProfileImage, Error> {
        upload_stream(self, user, reader, Path::new("<reader>"), options).await
    }

    pub(crate) fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// Sets the image from bytes sent in one message (small images; see `upload`).
    pub async fn set_inline(
        &self,
        user: &str,
        data: impl Into<Bytes>,
        crop: Option<Crop>,
    ) -> Result<ProfileImage, Error> {
        let image = pb::InlineImage {
            content_type: String::new(),
            data: data.into(),
        };
        self.set(user, Source::Image(image), crop).await
    }

    /// Has the server download the image from `url` in the background; the reply says
    /// STATUS_DOWNLOADING. Follow it with `wait_until_complete` or `watch`.
    pub async fn set_from_url(&self, user: &str, url: &str) -> Result<ProfileImage, Error> {
        self.set(user, Source::Url(url.to_owned()), None).await
    }

    /// Makes one of the user's earlier media items the profile image again.
    pub async fn set_from_media(&self, user: &str, media_id: &str) -> Result<ProfileImage, Error> {
        self.set(user, Source::MediaId(media_id.to_owned()), None)
            .await
    }

    async fn set(
        &self,
        user: &str,
        source: Source,
        crop: Option<Crop>,
    ) -> Result<ProfileImage, Error> {
        let request = pb::SetProfileImageRequest {
            user_id: user.to_owned(),
            source: Some(source),
            crop: crop.map(Into::into),
            expected_version: None,
        };
        let reply = self.stub().set_profile_image(request).await?;
        required(reply.into_inner().profile_image)
    }

    /// Crops the stored original of the active image again: a new version.
    pub async fn crop(&self, user: &str, crop: Crop) -> Result<ProfileImage, Error> {
        let request = pb::CropProfileImageRequest {
            user_id: user.to_owned(),
            crop: Some(crop.into()),
            expected_version: None,
        };
        let reply = self.stub().crop_profile_image(request).await?;
        required(reply.into_inner().profile_image)
    }

    /// Removes the profile image (its media item stays until `delete_media`).
    pub async fn delete(&self, user: &str) -> Result<(), Error> {
        let request = pb::DeleteProfileImageRequest {
            user_id: user.to_owned(),
            expected_version: None,
        };
        self.stub().delete_profile_image(request).await?;
        Ok(())
    }

    /// The user's media items, newest first, one page per `next_page().await`.
    pub fn list_media(&self, user: &str) -> MediaPages {
        MediaPages::new(self.clone(), user)
    }

    /// Deletes a media item and its bytes (and the profile image, if it is the active one).
    pub async fn delete_media(&self, user: &str, media_id: &str) -> Result<(), Error> {
        let request = pb::DeleteMediaRequest {
            user_id: user.to_owned(),
            media_id: media_id.to_owned(),
        };
        self.stub().delete_media(request).await?;
        Ok(())
    }

    /// The user's events until the state is READY, FAILED or absent: the snapshot first,
    /// then each change. One stream, not resumed: it is short-lived.
    pub async fn watch_until_complete(
        &self,
        user: &str,
    ) -> Result<impl tokio_stream::Stream<Item = Result<pb::WatchStatusResponse, Error>>, Error>
    {
        let request = pb::WatchStatusRequest {
            user_id: user.to_owned(),
            until_complete: true,
            after_sequence: 0,
        };
        let events = self.stub().watch_status(request).await?.into_inner();
        Ok(events.map(|event| event.map_err(Error::from)))
    }

    /// Waits until the user's image is READY or FAILED (or absent) and returns that state
    /// (`None`: the user has no image).
    pub async fn wait_until_complete(
        &self,
        user: &str,
        timeout: Duration,
    ) -> Result<Option<ProfileImage>, Error> {
        let wait = async {
            let mut events = std::pin::pin!(self.watch_until_complete(user).await?);
            let mut last = None;
            while let Some(event) = events.next().await {
                last = event?.profile_image;
            }
            Ok(last)
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// Every change of one user's image, or of everyone's, as a stream that reconnects
    /// and resumes (`after_sequence`) when the connection drops.
    pub fn watch(&self, target: WatchTarget) -> Watch {
        Watch::start(self.clone(), target)
    }
}

/// A reply's required message, or a protocol error.
fn required(image: Option<ProfileImage>) -> Result<ProfileImage, Error> {
    image.ok_or(Error::Protocol("reply without profile_image"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_goes_in_the_authorization_header() {
        let token = "Bearer s3cret".parse().expect("ascii");
        let request = BearerToken(Some(token))
            .call(tonic::Request::new(()))
            .expect("intercepted");
        assert_eq!(
            request
                .metadata()
                .get("authorization")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer s3cret")
        );
        let request = BearerToken(None)
            .call(tonic::Request::new(()))
            .expect("intercepted");
        assert!(request.metadata().get("authorization").is_none());
    }

    #[tokio::test]
    async fn a_token_with_a_line_break_is_refused_before_connecting() {
        let result = Client::builder("http://127.0.0.1:9")
            .bearer_token("two\nlines")
            .connect()
            .await;
        assert!(matches!(result, Err(Error::Config(_))));
    }
}
