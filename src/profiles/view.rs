//! What the service answers: a profile state plus, for reads, the image served.

use bytes::Bytes;

use crate::imaging::ImageFormat;
use crate::model::UserId;
use crate::store::records::{
    FORMAT_JPEG, FORMAT_PNG, FORMAT_WEBP, MediaRecord, ProfileRecord, RenditionRecord,
};

/// A user's profile state and what is (or would be) served for it.
#[derive(Debug, Clone)]
pub struct ProfileView {
    pub user_id: UserId,
    pub record: ProfileRecord,
    /// The active media item, when the state has one.
    pub media: Option<MediaRecord>,
    pub image: Option<ServedImage>,
}

/// An encoded image answered to a client.
#[derive(Debug, Clone)]
pub struct ServedImage {
    pub format: ImageFormat,
    /// Width and height: every rendition is square.
    pub edge: u32,
    pub size_bytes: u64,
    pub etag: String,
    /// Empty when only metadata was asked for.
    pub data: Option<Bytes>,
    pub placeholder: bool,
}

impl ServedImage {
    pub fn from_rendition(rendition: &RenditionRecord) -> Self {
        ServedImage {
            format: format_from_record(rendition.format),
            edge: rendition.edge,
            size_bytes: rendition.blob.len,
            etag: rendition.blob.etag(),
            data: None,
            placeholder: false,
        }
    }
}

/// A media item as listed.
#[derive(Debug, Clone)]
pub struct MediaView {
    pub record: MediaRecord,
    pub active: bool,
    /// The default-format full-size rendition, which Media's content type and etag describe.
    pub full: Option<ServedImage>,
}

pub fn format_from_record(format: i32) -> ImageFormat {
    match format {
        FORMAT_PNG => ImageFormat::Png,
        FORMAT_WEBP => ImageFormat::Webp,
        _ => ImageFormat::Jpeg,
    }
}

pub fn format_to_record(format: ImageFormat) -> i32 {
    match format {
        ImageFormat::Jpeg => FORMAT_JPEG,
        ImageFormat::Png => FORMAT_PNG,
        ImageFormat::Webp => FORMAT_WEBP,
    }
}
