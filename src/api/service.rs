//! `ProfileImageService`: each handler turns the request into domain values, calls the
//! domain, and turns the result back. No logic of its own.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::api::convert;
use crate::api::watch_codec::EncodedWatchEvent;
use crate::error::Error;
use crate::pb::{self, profile_image_service_server::ProfileImageService};
use crate::profiles::{ImageRequest, NewImage, ProfileImages};
use crate::watch::{self, WatchRequest};

pub struct ProfileImageApi {
    profiles: ProfileImages,
    downloads: Option<crate::jobs::Downloads>,
    upload_idle_timeout: std::time::Duration,
}

impl ProfileImageApi {
    pub fn new(
        profiles: ProfileImages,
        downloads: Option<crate::jobs::Downloads>,
        upload_idle_timeout: std::time::Duration,
    ) -> Self {
        ProfileImageApi {
            profiles,
            downloads,
            upload_idle_timeout,
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
        let view = self.profiles.get(&user, wanted).await?;
        Ok(Response::new(pb::GetProfileImageResponse {
            profile_image: Some(convert::profile_image(&view)),
        }))
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
            Some(Source::Image(image)) => {
                let bytes = image.data.to_vec().into();
                let image = NewImage {
                    bytes,
                    field: "image.data",
                    crop,
                    expected,
                };
                self.profiles.set_image(&user, image).await?
            }
            Some(Source::MediaId(media_id)) => {
                self.profiles
                    .set_media(&user, &media_id, crop, expected)
                    .await?
            }
            Some(Source::Url(url)) => match &self.downloads {
                Some(downloads) => downloads.start(&user, &url, crop, expected).await?,
                None => {
                    return Err(
                        Error::FailedPrecondition("URL downloads are disabled".into()).into(),
                    );
                }
            },
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
        let mut buffer = self.profiles.upload_buffer(metadata.size_bytes)?;
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
        let image = NewImage {
            bytes: buffer.finish()?,
            field: "chunk",
            crop: convert::crop(metadata.crop),
            expected: convert::expected(metadata.expected_version),
        };
        let view = self.profiles.set_image(&user, image).await?;
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
        let (media, next_page_token) = self
            .profiles
            .list_media(&user, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListMediaResponse {
            media: media.into_iter().map(convert::media).collect(),
            next_page_token,
        }))
    }

    async fn delete_media(
        &self,
        request: Request<pb::DeleteMediaRequest>,
    ) -> Result<Response<pb::DeleteMediaResponse>, Status> {
        let request = request.into_inner();
        let user = convert::user_id(&request.user_id)?;
        self.profiles.delete_media(&user, &request.media_id).await?;
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
        let events = watch::watch(self.profiles.clone(), watch_request)?;
        let stream = events.map(|event| Ok(EncodedWatchEvent::of(&event)));
        Ok(Response::new(Box::pin(stream)))
    }
}
