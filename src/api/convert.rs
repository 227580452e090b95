//! Domain values to and from the generated protobuf types.

use prost_types::Timestamp;

use crate::error::{Error, Result};
use crate::model::{CropRequest, ExpectedVersion, OutputFormat, UserId};
use crate::pb;
use crate::profiles::{MediaView, ProfileView, ServedImage};
use crate::store::records::{MediaRecord, ProfileRecord};
use crate::watch::{Event, EventKind};

pub fn user_id(raw: &str) -> Result<UserId> {
    UserId::parse("user_id", raw)
}

pub fn crop(crop: Option<pb::CropRect>) -> Option<CropRequest> {
    crop.map(|c| CropRequest {
        x: c.x,
        y: c.y,
        size: c.size,
    })
}

pub fn expected(version: Option<u64>) -> ExpectedVersion {
    ExpectedVersion(version)
}

pub fn output_format(raw: i32) -> Result<OutputFormat> {
    match pb::ImageFormat::try_from(raw) {
        Ok(pb::ImageFormat::Unspecified) => Ok(OutputFormat::Default),
        Ok(pb::ImageFormat::Jpeg) => Ok(OutputFormat::Jpeg),
        Ok(pb::ImageFormat::Png) => Ok(OutputFormat::Png),
        Ok(pb::ImageFormat::Webp) => Ok(OutputFormat::Webp),
        Err(_) => Err(Error::invalid(
            "format",
            crate::error::reason::FIELD_INVALID,
            format!("unknown image format {raw}"),
        )),
    }
}

pub fn profile_image(view: &ProfileView) -> pb::ProfileImage {
    let ProfileView {
        user_id,
        record,
        media,
        image,
    } = view;
    let mut out = pb::ProfileImage {
        user_id: user_id.as_str().to_owned(),
        media_id: record.media_id.clone(),
        version: record.version,
        status: record.status,
        source: record.source,
        source_url: record.source_url.clone(),
        create_time: timestamp(record.create_time_ms),
        update_time: timestamp(record.update_time_ms),
        failure: failure(record),
        ..Default::default()
    };
    if let Some(media) = media {
        out.crop = Some(crop_rect(media));
        out.original_width = media.width;
        out.original_height = media.height;
    }
    if let Some(image) = image {
        fill_image(&mut out, image);
    }
    out
}

fn fill_image(out: &mut pb::ProfileImage, image: &ServedImage) {
    out.content_type = image.format.content_type().to_owned();
    out.width = image.edge;
    out.height = image.edge;
    out.size_bytes = image.size_bytes;
    out.etag = image.etag.clone();
    out.placeholder = image.placeholder;
    // Bytes is reference counted: this does not copy the image.
    out.data = image.data.clone().unwrap_or_default();
}

fn failure(record: &ProfileRecord) -> Option<pb::Failure> {
    (!record.failure_reason.is_empty()).then(|| pb::Failure {
        reason: record.failure_reason.clone(),
        message: record.failure_message.clone(),
    })
}

fn crop_rect(media: &MediaRecord) -> pb::CropRect {
    pb::CropRect {
        x: media.crop_x,
        y: media.crop_y,
        size: media.crop_size,
    }
}

pub fn media(view: MediaView) -> pb::Media {
    let MediaView {
        record,
        active,
        full,
    } = view;
    let (content_type, etag) = full.map_or_else(Default::default, |f| {
        (f.format.content_type().to_owned(), f.etag)
    });
    pb::Media {
        media_id: record.media_id.clone(),
        user_id: record.user_id.clone(),
        content_type,
        width: record.width,
        height: record.height,
        size_bytes: record.original.len,
        etag,
        source: record.source,
        source_url: record.source_url.clone(),
        active,
        create_time: timestamp(record.create_time_ms),
        crop: Some(crop_rect(&record)),
    }
}

pub fn watch_event(event: &Event) -> pb::WatchStatusResponse {
    let kind = match event.kind {
        EventKind::Snapshot => pb::EventType::Snapshot,
        EventKind::Set => pb::EventType::Set,
        EventKind::StatusChanged => pb::EventType::StatusChanged,
        EventKind::Cropped => pb::EventType::Cropped,
        EventKind::Deleted => pb::EventType::Deleted,
    };
    pb::WatchStatusResponse {
        sequence: event.sequence,
        r#type: kind as i32,
        user_id: event.user_id.as_str().to_owned(),
        profile_image: event.state.as_ref().map(profile_image),
        time: timestamp(event.time_ms),
    }
}

fn timestamp(millis: i64) -> Option<Timestamp> {
    (millis > 0).then(|| Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    })
}
