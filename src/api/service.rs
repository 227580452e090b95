//! `ProfileImageService`: each handler turns the request into domain values, calls the
//! domain, and turns the result back. No logic of its own.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use std::sync::Arc;
use std::time::Duration;

use crate::api::convert;
use crate::api::upload::UploadBuffer;
use crate::api::watch_codec::{EncodedEvents, EncodedWatchEvent};
use crate::error::Error;
use crate::http::ImageUrls;
use crate::jobs::Downloads;
use crate::pb::{self, profile_image_service_server::ProfileImageService};
use crate::profiles::{ImageRequest, ProfileImages};
use crate::watch::{self, Hub, WatchRequest};

pub struct ProfileImageApi {
    pub(super) profiles: ProfileImages,
    downloads: Downloads,
    events: Arc<Hub>,
    encoded: Arc<EncodedEvents>,
    upload_idle_timeout: Duration,
    /// Builds ProfileImage.url; None while image URLs are off.
    pub(super) image_urls: Option<Arc<ImageUrls>>,
}

impl ProfileImageApi {
    pub fn new(
        profiles: ProfileImages,
        downloads: Downloads,
        events: Arc<Hub>,
        upload_idle_timeout: Duration,
    ) -> Self {
        ProfileImageApi {
            profiles,
            downloads,
            events,
            encoded: Arc::default(),
            upload_idle_timeout,
            image_urls: None,
        }
    }

    /// Replies carry image URLs built by `urls` (None: none).
    pub fn with_image_urls(self, urls: Option<Arc<ImageUrls>>) -> Self {
        ProfileImageApi {
            image_urls: urls,
            ..self
        }
    }
}

impl ProfileImageApi {
    /// The next message of an upload stream; DEADLINE_EXCEEDED when the client sends
    /// nothing for the idle timeout.
    async fn next_upload_message(
        &self,
        stream: &mut Streaming<pb::UploadProfileImageRequest>,
    ) -> Result<Option<pb::UploadProfileImageRequest>, Status> {
        match tokio::time::timeout(self.upload_idle_timeout, stream.message()).await {
            Ok(message) => message,
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "the upload sent nothing for {} ms",
                self.upload_idle_timeout.as_millis()
            ))
            .into()),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<EncodedWatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ProfileImageService for ProfileImageApi {
    async fn get_profile_image(
        &self,
        request: Request<pb::GetProfileImageRequest>,
    ) -> Result<Response<pb::GetProfileImageResponse>, Status> {
        let request = request.into_inner();
        let user = convert::user_id(&request.user_id)?;
        let wanted = ImageRequest {
            size: request.size,
            format: convert::output_format(request.format)?,
            metadata_only: request.metadata_only,
        };
        let (view, not_modified) = match request.if_none_match.as_str() {
            "" => (self.profiles.get(&user, wanted).await?, false),
            etag => self.profiles.get_unless_match(&user, wanted, etag).await?,
        };
        Ok(Response::new(pb::GetProfileImageResponse {
            profile_image: Some(self.answered(&view, wanted.size)),
            not_modified,
        }))
    }

    async fn batch_get_profile_images(
        &self,
        request: Request<pb::BatchGetProfileImagesRequest>,
    ) -> Result<Response<pb::BatchGetProfileImagesResponse>, Status> {
        self.batch_get(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_profile_image(
        &self,
        request: Request<pb::SetProfileImageRequest>,
    ) -> Result<Response<pb::SetProfileImageResponse>, Status> {
        use pb::set_profile_image_request::Source;
        let request = request.into_inner();
        let user = convert::user_id(&request.user_id)?;
        let crop = convert::crop(request.crop);
        let expected = convert::expected(request.expected_version);
        let view = match request.source {
            Some(Source::Image(image)) => self
                .profiles
                .set_image(&user, image.data, crop, expected)
                .await
                .map_err(convert::image_field("image.data"))?,
            Some(Source::MediaId(media_id)) => {
                let media_id = convert::required("media_id", &media_id)?;
                self.profiles
                    .set_media(&user, media_id, crop, expected)
                    .await?
            }
            Some(Source::Url(url)) => self.downloads.start(&user, &url, crop, expected).await?,
            None => return Err(Error::missing("source").into()),
        };
        Ok(Response::new(pb::SetProfileImageResponse {
            profile_image: Some(convert::profile_image(&view)),
        }))
    }

    async fn upload_profile_image(
        &self,
        request: Request<Streaming<pb::UploadProfileImageRequest>>,
    ) -> Result<Response<pb::UploadProfileImageResponse>, Status> {
        use pb::upload_profile_image_request::Payload;
        let mut stream = request.into_inner();
        let metadata = match self.next_upload_message(&mut stream).await? {
            Some(pb::UploadProfileImageRequest {
                payload: Some(Payload::Metadata(metadata)),
            }) => metadata,
            _ => return Err(Error::missing("metadata").into()),
        };
        let user = convert::user_id(&metadata.user_id)?;
        // Refused (storage-full) up front while the disk is full, before any byte is read.
        self.profiles.ensure_space()?;
        let mut buffer = UploadBuffer::new(self.profiles.max_upload_bytes(), metadata.size_bytes)?;
        // Returning early drops the stream: the server stops reading at the first
        // chunk past the limit, or when the client goes quiet (the buffer is freed).
        while let Some(message) = self.next_upload_message(&mut stream).await? {
            match message.payload {
                Some(Payload::Chunk(chunk)) => buffer.push(&chunk)?,
                Some(Payload::Metadata(_)) => {
                    return Err(Error::invalid(
                        "metadata",
                        crate::error::reason::FIELD_INVALID,
                        "metadata may only be sent in the first message",
                    )
                    .into());
                }
                None => {}
            }
        }
        let bytes = buffer.finish()?;
        let crop = convert::crop(metadata.crop);
        let expected = convert::expected(metadata.expected_version);
        let view = self
            .profiles
            .set_image(&user, bytes, crop, expected)
            .await
            .map_err(convert::image_field("chunk"))?;
        Ok(Response::new(pb::UploadProfileImageResponse {
            profile_image: Some(convert::profile_image(&view)),
        }))
    }

    async fn crop_profile_image(
        &self,
        request: Request<pb::CropProfileImageRequest>,
    ) -> Result<Response<pb::CropProfileImageResponse>, Status> {
        let request = request.into_inner();
        let user = convert::user_id(&request.user_id)?;
        let crop = convert::crop(request.crop).ok_or_else(|| Error::missing("crop"))?;
        let view = self
            .profiles
            .crop(&user, crop, convert::expected(request.expected_version))
            .await?;
        Ok(Response::new(pb::CropProfileImageResponse {
            profile_image: Some(convert::profile_image(&view)),
        }))
    }

    async fn delete_profile_image(
        &self,
        request: Request<pb::DeleteProfileImageRequest>,
    ) -> Result<Response<pb::DeleteProfileImageResponse>, Status> {
        let request = request.into_inner();
        let user = convert::user_id(&request.user_id)?;
        self.profiles
            .delete(&user, convert::expected(request.expected_version))
            .await?;
        Ok(Response::new(pb::DeleteProfileImageResponse {}))
    }

    async fn list_media(
        &self,
        request: Request<pb::ListMediaRequest>,
    ) -> Result<Response<pb::ListMediaResponse>, Status> {
        let request = request.into_inner();
        let user = convert::user_id(&request.user_id)?;
        let after = convert::page_token(&request.page_token)?;
        let (media, next) = self
            .profiles
            .list_media(&user, request.page_size, after)
            .await?;
        Ok(Response::new(pb::ListMediaResponse {
            media: media.into_iter().map(convert::media).collect(),
            next_page_token: convert::next_page_token(next),
        }))
    }

    async fn delete_media(
        &self,
        request: Request<pb::DeleteMediaRequest>,
    ) -> Result<Response<pb::DeleteMediaResponse>, Status> {
        let request = request.into_inner();
        let user = convert::user_id(&request.user_id)?;
        let media_id = convert::required("media_id", &request.media_id)?;
        self.profiles.delete_media(&user, media_id).await?;
        Ok(Response::new(pb::DeleteMediaResponse {}))
    }

    type WatchStatusStream = WatchStream;

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let request = request.into_inner();
        let user = match request.user_id.as_str() {
            "" => None,
            raw => Some(convert::user_id(raw)?),
        };
        let watch_request = WatchRequest {
            user,
            until_complete: request.until_complete,
            after_sequence: (request.after_sequence > 0).then_some(request.after_sequence),
        };
        let snapshots = Arc::new(self.profiles.clone());
        let events = watch::watch(self.events.clone(), snapshots, watch_request).await?;
        let encoded = self.encoded.clone();
        let stream = events.map(move |event| Ok(encoded.encode(&event)));
        Ok(Response::new(Box::pin(stream)))
    }
}
