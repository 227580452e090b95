//! What a state answers with: the profile, its media item, and the image a plain read
//! would serve (the full-size default rendition's metadata).

use super::renditions;
use crate::model::{Media, Profile, ProfileView, ServedImage, Status, UserId};

/// The view of `profile` (with its active `media`): `full_max_edge` picks the
/// rendition that describes it.
pub fn profile_view(
    user: &UserId,
    profile: Profile,
    media: Option<Media>,
    full_max_edge: u32,
) -> ProfileView {
    let image = media
        .as_ref()
        .filter(|_| profile.status == Status::Ready)
        .and_then(|m| renditions::pick_default(m, full_max_edge))
        .map(ServedImage::from_rendition);
    ProfileView {
        user: user.clone(),
        profile,
        media,
        image,
    }
}
