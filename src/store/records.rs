//! What the store keeps, as protobuf messages: compact, and old records stay readable
//! when fields are added.

use prost::Message;

/// A content-addressed blob: its BLAKE3 hash and length.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct BlobRef {
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub len: u64,
}

impl BlobRef {
    /// The strong etag clients see: the hex BLAKE3 hash of the bytes.
    pub fn etag(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
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
}

impl MediaRecord {
    /// The format renditions are made in when the client does not choose.
    pub fn default_format(&self) -> i32 {
        if self.has_alpha {
            FORMAT_PNG
        } else {
            FORMAT_JPEG
        }
    }

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
}
