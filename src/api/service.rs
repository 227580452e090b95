//! `ProfileImageService`: each handler turns the request into domain values, checks
//! what the caller may do (access.rs, limits.rs), calls the domain, and turns the result
//! back; changes are audited (audit.rs). No logic of its own.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use crate::api::limits::Limits;
use crate::api::upload::UploadBuffer;
use crate::api::watch_codec::{EncodedEvents, EncodedWatchEvent};
use crate::api::{access, convert};
use crate::audit::{self, Action};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::http::ImageUrls;
use crate::jobs::Downloads;
use crate::model::{CropRequest, ExpectedVersion, ProfileView, UserId};
use crate::pb::{self, profile_image_service_server::ProfileImageService};
use crate::profiles::{ImageRequest, ProfileImages};
use crate::watch::{self, Hub, WatchRequest};

pub struct ProfileImageApi {
    pub(super) profiles: ProfileImages,
    downloads: Downloads,
    events: Arc<Hub>,
    encoded: Arc<EncodedEvents>,
    limits: Arc<Limits>,
    upload_idle_timeout: Duration,
    /// Builds ProfileImage.url; None while image URLs are off.
    pub(super) image_urls: Option<Arc<ImageUrls>>,
}

impl ProfileImageApi {
    pub fn new(
        profiles: ProfileImages,
        downloads: Downloads,
        events: Arc<Hub>,
        limits: Arc<Limits>,
        upload_idle_timeout: Duration,
    ) -> Self {
        ProfileImageApi {
            profiles,
            downloads,
            events,
            encoded: Arc::default(),
            limits,
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

/// A change of `target` asked by `caller`: allowed to the user or an admin, counted
/// against the caller's rate, then `work`; audited however it ends.
async fn change<T, E: Into<Status>>(
    limits: &Limits,
    caller: &Caller,
    action: Action,
    target: &UserId,
    version: impl Fn(&T) -> u64,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, Status> {
    let allowed = access::may_change(caller, target).and_then(|()| limits.change(caller));
    let outcome = match allowed {
        Ok(()) => work.await.map_err(Into::into),
        Err(refused) => Err(Status::from(refused)),
    };
    audit::record(caller, action, target, outcome.as_ref().map(&version));
    outcome
}

fn profile_version(view: &ProfileView) -> u64 {
    view.profile.version
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

    /// Sets the image from a SetProfileImage request's source.
    async fn set_from(
        &self,
        user: &UserId,
        source: pb::set_profile_image_request::Source,
        crop: Option<CropRequest>,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        use pb::set_profile_image_request::Source;
        match source {
            Source::Image(image) => self
                .profiles
                .set_image(user, image.data, crop, expected)
                .await
                .map_err(convert::image_field("image.data")),
            Source::MediaId(media_id) => {
                let media_id = convert::required("media_id", &media_id)?;
                self.profiles
                    .set_media(user, media_id, crop, expected)
                    .await
            }
            Source::Url(url) => self.downloads.start(user, &url, crop, expected).await,
        }
    }

    /// Reads an upload's chunks (its metadata already read) and sets the image.
    async fn receive_upload(
        &self,
        user: &UserId,
        metadata: pb::UploadMetadata,
        mut stream: Streaming<pb::UploadProfileImageRequest>,
    ) -> Result<ProfileView, Status> {
        use pb::upload_profile_image_request::Payload;
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
        Ok(self
            .profiles
            .set_image(user, bytes, crop, expected)
            .await
            .map_err(convert::image_field("chunk"))?)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<EncodedWatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ProfileImageService for ProfileImageApi {
    async fn get_profile_image(
        &self,
        request: Request<pb::GetProfileImageRequest>,
    ) -> Result<Response<pb::GetProfileImageResponse>, Status> {
        let caller = access::caller(&request)?;
        let request = request.into_inner();
        let user = access::target(&caller, "user_id", &request.user_id)?;
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
        let caller = access::caller(&request)?;
        self.batch_get(&caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_profile_image(
        &self,
        request: Request<pb::SetProfileImageRequest>,
    ) -> Result<Response<pb::SetProfileImageResponse>, Status> {
        use pb::set_profile_image_request::Source;
        let caller = access::caller(&request)?;
        let request = request.into_inner();
        let user = access::target(&caller, "user_id", &request.user_id)?;
        let crop = convert::crop(request.crop);
        let expected = convert::expected(request.expected_version);
        let (action, source) = match request.source {
            Some(source @ Source::Image(_)) => (Action::SetImage, source),
            Some(source @ Source::MediaId(_)) => (Action::SetMedia, source),
            Some(source @ Source::Url(_)) => (Action::SetUrl, source),
            None => return Err(Error::missing("source").into()),
        };
        let work = self.set_from(&user, source, crop, expected);
        let view = change(&self.limits, &caller, action, &user, profile_version, work).await?;
        Ok(Response::new(pb::SetProfileImageResponse {
            profile_image: Some(convert::profile_image(&view)),
        }))
    }

    async fn upload_profile_image(
        &self,
        request: Request<Streaming<pb::UploadProfileImageRequest>>,
    ) -> Result<Response<pb::UploadProfileImageResponse>, Status> {
        use pb::upload_profile_image_request::Payload;
        let caller = access::caller(&request)?;
        // Held until the upload ends, before any byte is read.
        let _slot = self.limits.upload(&caller)?;
        let mut stream = request.into_inner();
        let metadata = match self.next_upload_message(&mut stream).await? {
            Some(pb::UploadProfileImageRequest {
                payload: Some(Payload::Metadata(metadata)),
            }) => metadata,
            _ => return Err(Error::missing("metadata").into()),
        };
        let user = access::target(&caller, "user_id", &metadata.user_id)?;
        let work = self.receive_upload(&user, metadata, stream);
        let view = change(
            &self.limits,
            &caller,
            Action::Upload,
            &user,
            profile_version,
            work,
        )
        .await?;
        Ok(Response::new(pb::UploadProfileImageResponse {
            profile_image: Some(convert::profile_image(&view)),
        }))
    }

    async fn crop_profile_image(
        &self,
        request: Request<pb::CropProfileImageRequest>,
    ) -> Result<Response<pb::CropProfileImageResponse>, Status> {
        let caller = access::caller(&request)?;
        let request = request.into_inner();
        let user = access::target(&caller, "user_id", &request.user_id)?;
        let crop = convert::crop(request.crop).ok_or_else(|| Error::missing("crop"))?;
        let expected = convert::expected(request.expected_version);
        let work = self.profiles.crop(&user, crop, expected);
        let view = change(
            &self.limits,
            &caller,
            Action::Crop,
            &user,
            profile_version,
            work,
        )
        .await?;
        Ok(Response::new(pb::CropProfileImageResponse {
            profile_image: Some(convert::profile_image(&view)),
        }))
    }

    async fn delete_profile_image(
        &self,
        request: Request<pb::DeleteProfileImageRequest>,
    ) -> Result<Response<pb::DeleteProfileImageResponse>, Status> {
        let caller = access::caller(&request)?;
        let request = request.into_inner();
        let user = access::target(&caller, "user_id", &request.user_id)?;
        let work = self
            .profiles
            .delete(&user, convert::expected(request.expected_version));
        change(&self.limits, &caller, Action::Delete, &user, |v| *v, work).await?;
        Ok(Response::new(pb::DeleteProfileImageResponse {}))
    }

    async fn list_media(
        &self,
        request: Request<pb::ListMediaRequest>,
    ) -> Result<Response<pb::ListMediaResponse>, Status> {
        let caller = access::caller(&request)?;
        let request = request.into_inner();
        let user = access::target(&caller, "user_id", &request.user_id)?;
        access::may_change(&caller, &user)?;
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
        let caller = access::caller(&request)?;
        let request = request.into_inner();
        let user = access::target(&caller, "user_id", &request.user_id)?;
        let media_id = convert::required("media_id", &request.media_id)?;
        let work = self.profiles.delete_media(&user, media_id);
        change(
            &self.limits,
            &caller,
            Action::DeleteMedia,
            &user,
            |v| *v,
            work,
        )
        .await?;
        Ok(Response::new(pb::DeleteMediaResponse {}))
    }

    type WatchStatusStream = WatchStream;

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let caller = access::caller(&request)?;
        let request = request.into_inner();
        let user = match request.user_id.as_str() {
            "" => {
                access::may_watch_all(&caller)?;
                None
            }
            raw => Some(access::target(&caller, "user_id", raw)?),
        };
        // Held while the stream lives (the stream's closure owns it).
        let slot = self.limits.watch(&caller)?;
        let watch_request = WatchRequest {
            user,
            tenant: caller.tenant.clone(),
            until_complete: request.until_complete,
            after_sequence: (request.after_sequence > 0).then_some(request.after_sequence),
        };
        let snapshots = Arc::new(self.profiles.clone());
        let events = watch::watch(self.events.clone(), snapshots, watch_request).await?;
        let encoded = self.encoded.clone();
        let stream = events.map(move |event| {
            let _held = &slot;
            Ok(encoded.encode(&event))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
