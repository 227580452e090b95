//! Domain values to and from the generated protobuf types: every enum is mapped
//! explicitly, and domain errors get the request field paths they are about.

use prost_types::Timestamp;

use crate::error::{Error, Result, reason};
use crate::model::{
    CropRequest, Event, EventKind, ExpectedVersion, Failure, ImageFormat, Media, MediaView,
    OutputFormat, ProfileView, ServedImage, Source, Status,
};
use crate::pb;

/// A required id field of a request.
pub fn required<'a>(field: &str, raw: &'a str) -> Result<&'a str> {
    if raw.is_empty() {
        return Err(Error::missing(field));
    }
    Ok(raw)
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
            reason::FIELD_INVALID,
            format!("unknown image format {raw}"),
        )),
    }
}

/// A page token as this service hands them out: the hex position of the last item.
pub fn page_token(raw: &str) -> Result<Option<u64>> {
    match raw {
        "" => Ok(None),
        token => u64::from_str_radix(token, 16).map(Some).map_err(|_| {
            Error::invalid(
                "page_token",
                reason::FIELD_INVALID,
                "page_token is not one this service returned",
            )
        }),
    }
}

pub fn next_page_token(next: Option<u64>) -> String {
    next.map(|seq| format!("{seq:016x}")).unwrap_or_default()
}

/// Names the request field whose bytes an image error is about.
pub fn image_field(field: &'static str) -> impl Fn(Error) -> Error {
    move |error| match error {
        Error::BadImage { reason, message } => Error::invalid(field, reason, message),
        other => other,
    }
}

fn status(status: Status) -> pb::Status {
    match status {
        Status::Downloading => pb::Status::Downloading,
        Status::Processing => pb::Status::Processing,
        Status::Ready => pb::Status::Ready,
        Status::Failed => pb::Status::Failed,
    }
}

fn source(source: Source) -> pb::Source {
    match source {
        Source::Upload => pb::Source::Upload,
        Source::Url => pb::Source::Url,
        Source::Media => pb::Source::Media,
    }
}

fn content_type(format: ImageFormat) -> String {
    format.content_type().to_owned()
}

pub fn profile_image(view: &ProfileView) -> pb::ProfileImage {
    let ProfileView {
        user,
        profile,
        media,
        image,
    } = view;
    let mut out = pb::ProfileImage {
        user_id: user.as_str().to_owned(),
        media_id: profile.media_id.clone().unwrap_or_default(),
        version: profile.version,
        status: status(profile.status) as i32,
        source: source(profile.source) as i32,
        source_url: profile.source_url.clone(),
        create_time: timestamp(profile.create_time_ms),
        update_time: timestamp(profile.update_time_ms),
        failure: profile.failure.as_ref().map(failure),
        ..Default::default()
    };
    if let Some(media) = media {
        out.crop = Some(crop_rect(media));
        out.original_width = media.width;
        out.original_height = media.height;
        out.thumbhash = media.thumbhash.clone().unwrap_or_default().into();
    }
    if let Some(image) = image {
        fill_image(&mut out, image);
    }
    out
}

fn fill_image(out: &mut pb::ProfileImage, image: &ServedImage) {
    out.content_type = content_type(image.format);
    out.width = image.edge;
    out.height = image.edge;
    out.size_bytes = image.size_bytes;
    out.etag = image.etag.clone();
    out.placeholder = image.placeholder;
    // Bytes is reference counted: this does not copy the image.
    out.data = image.data.clone().unwrap_or_default();
}

fn failure(failure: &Failure) -> pb::Failure {
    pb::Failure {
        reason: failure.reason.clone(),
        message: failure.message.clone(),
    }
}

fn crop_rect(media: &Media) -> pb::CropRect {
    pb::CropRect {
        x: media.crop.x,
        y: media.crop.y,
        size: media.crop.size,
    }
}

pub fn media(view: MediaView) -> pb::Media {
    let MediaView {
        media,
        active,
        full,
    } = view;
    let (content_type, etag) =
        full.map_or_else(Default::default, |f| (content_type(f.format), f.etag));
    pb::Media {
        user_id: media.user.as_str().to_owned(),
        content_type,
        width: media.width,
        height: media.height,
        size_bytes: media.original.len,
        etag,
        source: source(media.source) as i32,
        source_url: media.source_url.clone(),
        active,
        create_time: timestamp(media.create_time_ms),
        crop: Some(crop_rect(&media)),
        media_id: media.id,
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
        user_id: event
            .user
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default(),
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
