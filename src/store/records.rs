//! What the stores keep, as protobuf messages (sled values; PostgreSQL `bytea` columns): compact, and old records stay
//! readable when fields are added. Mapped to and from the domain's types here, and
//! nowhere else: the integers below never leave this file.

use prost::Message;

use crate::error::{Error, Result};
use crate::model::{self, Crop, CropRequest, ImageFormat, Source, Status, TenantId, UserId};

/// A content-addressed blob: its BLAKE3 hash and length, and the pack that holds it.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct BlobRef {
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub len: u64,
    /// The pack file's name; empty = stored on its own, under `hash`.
    #[prost(bytes = "vec", tag = "3")]
    pub pack: Vec<u8>,
    /// Byte offset in the pack.
    #[prost(uint64, tag = "4")]
    pub offset: u64,
}

impl BlobRef {
    /// The key of the file that holds the bytes: what reference counts count.
    pub fn storage_key(&self) -> &[u8] {
        if self.pack.is_empty() {
            &self.hash
        } else {
            &self.pack
        }
    }
}

/// One encoded square rendition of a media item.
#[derive(Clone, PartialEq, Message)]
pub struct RenditionRecord {
    /// Side of the square, pixels.
    #[prost(uint32, tag = "1")]
    pub edge: u32,
    /// `FORMAT_*` below.
    #[prost(int32, tag = "2")]
    pub format: i32,
    #[prost(message, required, tag = "3")]
    pub blob: BlobRef,
}

pub const FORMAT_JPEG: i32 = 1;
pub const FORMAT_PNG: i32 = 2;
pub const FORMAT_WEBP: i32 = 3;

pub const SOURCE_UPLOAD: i32 = 1;
pub const SOURCE_URL: i32 = 2;
pub const SOURCE_MEDIA: i32 = 3;

pub const STATUS_DOWNLOADING: i32 = 1;
pub const STATUS_PROCESSING: i32 = 2;
pub const STATUS_READY: i32 = 3;
pub const STATUS_FAILED: i32 = 4;

/// A media item: an original the user sent (or the server downloaded) and its renditions.
#[derive(Clone, PartialEq, Message)]
pub struct MediaRecord {
    #[prost(string, tag = "1")]
    pub media_id: String,
    #[prost(string, tag = "2")]
    pub user_id: String,
    /// Store-wide increasing number; orders a user's media newest first.
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    /// Upright original width.
    #[prost(uint32, tag = "4")]
    pub width: u32,
    /// Upright original height.
    #[prost(uint32, tag = "5")]
    pub height: u32,
    #[prost(int32, tag = "6")]
    pub source: i32,
    #[prost(string, tag = "7")]
    pub source_url: String,
    #[prost(int64, tag = "8")]
    pub create_time_ms: i64,
    #[prost(uint32, tag = "9")]
    pub crop_x: u32,
    #[prost(uint32, tag = "10")]
    pub crop_y: u32,
    #[prost(uint32, tag = "11")]
    pub crop_size: u32,
    /// Whether the image has real transparency (default format PNG rather than JPEG).
    #[prost(bool, tag = "12")]
    pub has_alpha: bool,
    /// The file as received; kept to crop again, never served.
    #[prost(message, required, tag = "13")]
    pub original: BlobRef,
    #[prost(message, repeated, tag = "14")]
    pub renditions: Vec<RenditionRecord>,
    /// The owner's tenant; empty = `default` (records written before tenants existed).
    #[prost(string, tag = "15")]
    pub tenant: String,
    /// ThumbHash of the cropped image; empty for records written before it existed.
    #[prost(bytes = "vec", tag = "16")]
    pub thumbhash: Vec<u8>,
}

impl MediaRecord {
    /// Every blob this record holds a reference on.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        std::iter::once(&self.original).chain(self.renditions.iter().map(|r| &r.blob))
    }
}

/// A user's current profile image state. Absent when the user has none.
#[derive(Clone, PartialEq, Message)]
pub struct ProfileRecord {
    #[prost(uint64, tag = "1")]
    pub version: u64,
    #[prost(int32, tag = "2")]
    pub status: i32,
    /// The active media item; empty while a download has not produced one.
    #[prost(string, tag = "3")]
    pub media_id: String,
    #[prost(int32, tag = "4")]
    pub source: i32,
    #[prost(string, tag = "5")]
    pub source_url: String,
    #[prost(string, tag = "6")]
    pub failure_reason: String,
    #[prost(string, tag = "7")]
    pub failure_message: String,
    #[prost(int64, tag = "8")]
    pub create_time_ms: i64,
    #[prost(int64, tag = "9")]
    pub update_time_ms: i64,
}

/// What one profile version showed: its media item, and the crop the item had then
/// (a later crop of the same item makes other pictures). Indexed by user and version so
/// that a version's image URL keeps working after the profile moved on.
#[derive(Clone, PartialEq, Message)]
pub struct VersionRecord {
    #[prost(string, tag = "1")]
    pub media_id: String,
    #[prost(uint32, tag = "2")]
    pub crop_x: u32,
    #[prost(uint32, tag = "3")]
    pub crop_y: u32,
    #[prost(uint32, tag = "4")]
    pub crop_size: u32,
}

impl VersionRecord {
    pub fn of(media_id: &str, crop: Crop) -> Self {
        VersionRecord {
            media_id: media_id.to_owned(),
            crop_x: crop.x,
            crop_y: crop.y,
            crop_size: crop.size,
        }
    }

    pub fn crop(&self) -> Crop {
        Crop {
            x: self.crop_x,
            y: self.crop_y,
            size: self.crop_size,
        }
    }
}

/// A background download, stored with the DOWNLOADING state it belongs to.
#[derive(Clone, PartialEq, Message)]
pub struct DownloadJob {
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// The profile version this download fills; a newer version supersedes it.
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(string, tag = "3")]
    pub url: String,
    /// Attempts already made.
    #[prost(uint32, tag = "4")]
    pub attempts: u32,
    #[prost(uint32, tag = "5")]
    pub crop_x: u32,
    #[prost(uint32, tag = "6")]
    pub crop_y: u32,
    /// 0 = no crop requested (largest centred square).
    #[prost(uint32, tag = "7")]
    pub crop_size: u32,
    /// The user's tenant; empty = `default` (records written before tenants existed).
    #[prost(string, tag = "8")]
    pub tenant: String,
}

fn corrupt(what: &str) -> Error {
    Error::internal(format!("corrupt stored record: {what}"))
}

impl From<&model::BlobRef> for BlobRef {
    fn from(blob: &model::BlobRef) -> Self {
        BlobRef {
            hash: blob.hash.to_vec(),
            len: blob.len,
            pack: blob.packed.map(|p| p.pack.to_vec()).unwrap_or_default(),
            offset: blob.packed.map_or(0, |p| p.offset),
        }
    }
}

impl TryFrom<&BlobRef> for model::BlobRef {
    type Error = Error;
    fn try_from(record: &BlobRef) -> Result<Self> {
        Ok(model::BlobRef {
            hash: record
                .hash
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("blob hash"))?,
            len: record.len,
            packed: if record.pack.is_empty() {
                None
            } else {
                Some(model::Packed {
                    pack: record
                        .pack
                        .as_slice()
                        .try_into()
                        .map_err(|_| corrupt("blob pack"))?,
                    offset: record.offset,
                })
            },
        })
    }
}

fn format_to_record(format: ImageFormat) -> i32 {
    match format {
        ImageFormat::Jpeg => FORMAT_JPEG,
        ImageFormat::Png => FORMAT_PNG,
        ImageFormat::Webp => FORMAT_WEBP,
    }
}

fn format_from_record(format: i32) -> Result<ImageFormat> {
    match format {
        FORMAT_JPEG => Ok(ImageFormat::Jpeg),
        FORMAT_PNG => Ok(ImageFormat::Png),
        FORMAT_WEBP => Ok(ImageFormat::Webp),
        _ => Err(corrupt("image format")),
    }
}

fn source_to_record(source: Source) -> i32 {
    match source {
        Source::Upload => SOURCE_UPLOAD,
        Source::Url => SOURCE_URL,
        Source::Media => SOURCE_MEDIA,
    }
}

fn source_from_record(source: i32) -> Result<Source> {
    match source {
        SOURCE_UPLOAD => Ok(Source::Upload),
        SOURCE_URL => Ok(Source::Url),
        SOURCE_MEDIA => Ok(Source::Media),
        _ => Err(corrupt("source")),
    }
}

fn status_to_record(status: Status) -> i32 {
    match status {
        Status::Downloading => STATUS_DOWNLOADING,
        Status::Processing => STATUS_PROCESSING,
        Status::Ready => STATUS_READY,
        Status::Failed => STATUS_FAILED,
    }
}

fn status_from_record(status: i32) -> Result<Status> {
    match status {
        STATUS_DOWNLOADING => Ok(Status::Downloading),
        STATUS_PROCESSING => Ok(Status::Processing),
        STATUS_READY => Ok(Status::Ready),
        STATUS_FAILED => Ok(Status::Failed),
        _ => Err(corrupt("status")),
    }
}

fn user_from_record(tenant: &str, raw: &str) -> Result<UserId> {
    let tenant = match tenant {
        "" => TenantId::default_tenant(),
        name => TenantId::parse("tenant", name).map_err(|_| corrupt("tenant"))?,
    };
    UserId::parse_in(&tenant, "user_id", raw).map_err(|_| corrupt("user id"))
}

/// The stored form of a user's tenant: empty for `default`, as records written before
/// tenants existed have it.
fn tenant_to_record(user: &UserId) -> String {
    match user.tenant() {
        tenant if tenant.is_default() => String::new(),
        tenant => tenant.as_str().to_owned(),
    }
}

impl From<&model::Media> for MediaRecord {
    fn from(media: &model::Media) -> Self {
        MediaRecord {
            media_id: media.id.clone(),
            user_id: media.user.as_str().to_owned(),
            tenant: tenant_to_record(&media.user),
            seq: media.seq,
            width: media.width,
            height: media.height,
            source: source_to_record(media.source),
            source_url: media.source_url.clone(),
            create_time_ms: media.create_time_ms,
            crop_x: media.crop.x,
            crop_y: media.crop.y,
            crop_size: media.crop.size,
            has_alpha: media.has_alpha,
            original: (&media.original).into(),
            renditions: media
                .renditions
                .iter()
                .map(|r| RenditionRecord {
                    edge: r.edge,
                    format: format_to_record(r.format),
                    blob: (&r.blob).into(),
                })
                .collect(),
            thumbhash: media.thumbhash.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<MediaRecord> for model::Media {
    type Error = Error;
    fn try_from(record: MediaRecord) -> Result<Self> {
        Ok(model::Media {
            user: user_from_record(&record.tenant, &record.user_id)?,
            id: record.media_id,
            seq: record.seq,
            width: record.width,
            height: record.height,
            source: source_from_record(record.source)?,
            source_url: record.source_url,
            create_time_ms: record.create_time_ms,
            crop: Crop {
                x: record.crop_x,
                y: record.crop_y,
                size: record.crop_size,
            },
            has_alpha: record.has_alpha,
            original: (&record.original).try_into()?,
            renditions: record
                .renditions
                .iter()
                .map(|r| {
                    Ok(model::Rendition {
                        edge: r.edge,
                        format: format_from_record(r.format)?,
                        blob: (&r.blob).try_into()?,
                    })
                })
                .collect::<Result<_>>()?,
            thumbhash: (!record.thumbhash.is_empty()).then_some(record.thumbhash),
        })
    }
}

impl From<&model::Profile> for ProfileRecord {
    fn from(profile: &model::Profile) -> Self {
        let (failure_reason, failure_message) = profile
            .failure
            .as_ref()
            .map_or_else(Default::default, |f| (f.reason.clone(), f.message.clone()));
        ProfileRecord {
            version: profile.version,
            status: status_to_record(profile.status),
            media_id: profile.media_id.clone().unwrap_or_default(),
            source: source_to_record(profile.source),
            source_url: profile.source_url.clone(),
            failure_reason,
            failure_message,
            create_time_ms: profile.create_time_ms,
            update_time_ms: profile.update_time_ms,
        }
    }
}

impl TryFrom<ProfileRecord> for model::Profile {
    type Error = Error;
    fn try_from(record: ProfileRecord) -> Result<Self> {
        Ok(model::Profile {
            version: record.version,
            status: status_from_record(record.status)?,
            media_id: (!record.media_id.is_empty()).then_some(record.media_id),
            source: source_from_record(record.source)?,
            source_url: record.source_url,
            failure: (!record.failure_reason.is_empty()).then_some(model::Failure {
                reason: record.failure_reason,
                message: record.failure_message,
            }),
            create_time_ms: record.create_time_ms,
            update_time_ms: record.update_time_ms,
        })
    }
}

impl From<&model::DownloadJob> for DownloadJob {
    fn from(job: &model::DownloadJob) -> Self {
        let crop = job.crop.unwrap_or(CropRequest {
            x: 0,
            y: 0,
            size: 0,
        });
        DownloadJob {
            user_id: job.user.as_str().to_owned(),
            tenant: tenant_to_record(&job.user),
            version: job.version,
            url: job.url.clone(),
            attempts: job.attempts,
            crop_x: crop.x,
            crop_y: crop.y,
            crop_size: crop.size,
        }
    }
}

impl TryFrom<DownloadJob> for model::DownloadJob {
    type Error = Error;
    fn try_from(record: DownloadJob) -> Result<Self> {
        Ok(model::DownloadJob {
            user: user_from_record(&record.tenant, &record.user_id)?,
            version: record.version,
            url: record.url,
            attempts: record.attempts,
            crop: (record.crop_size > 0).then_some(CropRequest {
                x: record.crop_x,
                y: record.crop_y,
                size: record.crop_size,
            }),
        })
    }
}
