//! What Get and BatchGet answer beside the view: the image URL, and a batch of users
//! in request order where one bad id never fails the others.

use prost::Message;
use tonic::Status;

use crate::api::service::ProfileImageApi;
use crate::api::{access, convert};
use crate::auth::Caller;
use crate::error::{Error, reason};
use crate::http::UrlTarget;
use crate::model::{ProfileView, UserId};
use crate::pb::{self, batch_get_profile_images_entry::Result as Entry};
use crate::profiles::ImageRequest;

/// Most user ids one BatchGetProfileImages may name.
pub const MAX_BATCH_USERS: usize = 100;

/// Most image bytes one batch answers: below the 16 MiB message limit with room for
/// the metadata. Entries past it get RESOURCE_EXHAUSTED (fetch those one by one, or
/// by URL); the batch itself succeeds.
const MAX_BATCH_BYTES: usize = 12 * 1024 * 1024;

impl ProfileImageApi {
    /// The reply's ProfileImage for `view`, with the URL of the image in the size
    /// asked for (and the format served) when image URLs are on.
    pub(super) fn answered(&self, view: &ProfileView, size: u32) -> pb::ProfileImage {
        let mut image = convert::profile_image(view);
        if let (Some(urls), Some(served)) = (&self.image_urls, &view.image) {
            image.url = urls.versioned(UrlTarget {
                user: &view.user,
                version: view.profile.version,
                size,
                format: served.format,
                placeholder: served.placeholder,
            });
        }
        image
    }

    pub(super) async fn batch_get(
        &self,
        caller: &Caller,
        request: pb::BatchGetProfileImagesRequest,
    ) -> Result<pb::BatchGetProfileImagesResponse, Status> {
        if request.user_ids.len() > MAX_BATCH_USERS {
            return Err(Error::invalid(
                "user_ids",
                reason::FIELD_INVALID,
                format!(
                    "at most {MAX_BATCH_USERS} user ids per batch, got {}",
                    request.user_ids.len()
                ),
            )
            .into());
        }
        let wanted = ImageRequest {
            size: request.size,
            format: convert::output_format(request.format)?,
            metadata_only: request.metadata_only,
        };
        let mut budget = MAX_BATCH_BYTES;
        let mut entries = Vec::with_capacity(request.user_ids.len());
        for (index, raw) in request.user_ids.iter().enumerate() {
            let known = request.known_versions.get(raw).copied();
            // Each id in the caller's tenant, `me` the caller, as in GetProfileImage.
            let result = match access::target(caller, &format!("user_ids[{index}]"), raw) {
                Ok(user) => self.batch_entry(&user, wanted, known, &mut budget).await,
                Err(error) => Entry::Error(rpc_status(error)),
            };
            entries.push(pb::BatchGetProfileImagesEntry {
                user_id: raw.clone(),
                result: Some(result),
            });
        }
        Ok(pb::BatchGetProfileImagesResponse { entries })
    }

    async fn batch_entry(
        &self,
        user: &UserId,
        wanted: ImageRequest,
        known: Option<u64>,
        budget: &mut usize,
    ) -> Entry {
        if let Some(known) = known {
            match self.profiles.state(user).await {
                Ok(Some(view)) if view.profile.version == known => return Entry::Unchanged(true),
                Ok(Some(_)) => {}
                Ok(None) => return Entry::NotFound(true),
                Err(error) => return Entry::Error(rpc_status(error)),
            }
        }
        let view = match self.profiles.get(user, wanted).await {
            Ok(view) => view,
            Err(Error::NotFound(_)) => return Entry::NotFound(true),
            Err(error) => return Entry::Error(rpc_status(error)),
        };
        let bytes = view
            .image
            .as_ref()
            .and_then(|image| image.data.as_ref())
            .map_or(0, |data| data.len());
        if bytes > *budget {
            return Entry::Error(tonic_types::pb::Status {
                code: tonic::Code::ResourceExhausted as i32,
                message: "the batch's bytes reached its size limit; get this image on its own \
                          or by its URL"
                    .to_owned(),
                details: Vec::new(),
            });
        }
        *budget -= bytes;
        Entry::ProfileImage(self.answered(&view, wanted.size))
    }
}

/// A domain error as the google.rpc.Status a failed call would have carried (with the
/// same details).
fn rpc_status(error: Error) -> tonic_types::pb::Status {
    let status = Status::from(error);
    match status.details() {
        [] => None,
        details => tonic_types::pb::Status::decode(details).ok(),
    }
    .unwrap_or_else(|| tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    })
}
