//! A user's profile image as the domain sees it: typed, validated values. The stored
//! form (protobuf records) and the wire form (the generated API types) are mapped to
//! and from these in one place each.

use bytes::Bytes;

use super::{CropRequest, ImageFormat, UserId};

/// Processing state of a profile image version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The server is downloading the image from a URL.
    Downloading,
    /// The downloaded bytes are being processed.
    Processing,
    Ready,
    Failed,
}

impl Status {
    /// Whether the state can no longer change by itself: a watcher waiting for
    /// completion can stop.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Ready | Status::Failed)
    }
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Bytes the client sent (inline or streamed).
    Upload,
    /// A URL the server downloaded.
    Url,
    /// One of the user's earlier media items, made active again.
    Media,
}

/// A content-addressed blob: the BLAKE3 hash of its bytes and their length, and where
/// a store that packs blobs together keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub hash: [u8; 32],
    pub len: u64,
    /// Set when the blob shares a file with the other blobs written with it (the local
    /// store packs a media item's original and renditions into one file); None when it
    /// is stored on its own, under `hash`.
    pub packed: Option<Packed>,
}

/// A blob's place inside a pack: the pack's name and the blob's byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packed {
    pub pack: [u8; 32],
    pub offset: u64,
}

impl BlobRef {
    /// The blob that holds `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        BlobRef {
            hash: *blake3::hash(bytes).as_bytes(),
            len: bytes.len() as u64,
            packed: None,
        }
    }

    /// What a store's reference counts and clean-up are keyed by: the file (or object)
    /// that holds the bytes, the pack for a packed blob.
    pub fn storage_key(&self) -> [u8; 32] {
        self.packed.map_or(self.hash, |p| p.pack)
    }

    /// The same blob, stored on its own (what a copy to another store writes).
    pub fn unpacked(self) -> Self {
        BlobRef {
            packed: None,
            ..self
        }
    }

    /// The strong etag clients see: the hex BLAKE3 hash of the bytes.
    pub fn etag(&self) -> String {
        blake3::Hash::from_bytes(self.hash).to_hex().to_string()
    }
}

/// One encoded square rendition of a media item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendition {
    /// Side of the square, pixels.
    pub edge: u32,
    pub format: ImageFormat,
    pub blob: BlobRef,
}

/// The square a media item's renditions show, in upright-original pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub size: u32,
}

/// A media item: an original the user sent (or the server downloaded) and its
/// renditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub id: String,
    pub user: UserId,
    /// Store-wide increasing number; orders a user's media newest first.
    pub seq: u64,
    /// Upright original size.
    pub width: u32,
    pub height: u32,
    pub source: Source,
    /// The URL it was downloaded from (empty unless `source` is [`Source::Url`]).
    pub source_url: String,
    pub create_time_ms: i64,
    pub crop: Crop,
    /// Whether the image has real transparency (default format PNG rather than JPEG).
    pub has_alpha: bool,
    /// The file as received; kept to crop again, never served.
    pub original: BlobRef,
    pub renditions: Vec<Rendition>,
    /// ThumbHash of the cropped image (about 25 bytes: a blurred preview clients paint
    /// before the bytes arrive). None for items made before it existed, until read.
    pub thumbhash: Option<Vec<u8>>,
}

impl Media {
    /// The format renditions are made in when the client does not choose.
    pub fn default_format(&self) -> ImageFormat {
        if self.has_alpha {
            ImageFormat::Png
        } else {
            ImageFormat::Jpeg
        }
    }

    /// The same item with every blob stored on its own: what a copy to a store that
    /// does not pack blobs records.
    pub fn unpacked(mut self) -> Self {
        self.original = self.original.unpacked();
        for rendition in &mut self.renditions {
            rendition.blob = rendition.blob.unpacked();
        }
        self
    }

    /// Every blob the item references.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        std::iter::once(&self.original).chain(self.renditions.iter().map(|r| &r.blob))
    }
}

/// Why a download failed, as clients see it: a stable reason and a message that never
/// carries server internals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
}

/// A user's current profile image state. Absent when the user has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub version: u64,
    pub status: Status,
    /// The active media item; None while a download has not produced one.
    pub media_id: Option<String>,
    pub source: Source,
    /// The URL of a download (empty unless `source` is [`Source::Url`]).
    pub source_url: String,
    pub failure: Option<Failure>,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

/// A background download, stored with the DOWNLOADING state it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadJob {
    pub user: UserId,
    /// The profile version this download fills; a newer version supersedes it.
    pub version: u64,
    pub url: String,
    /// Attempts already made.
    pub attempts: u32,
    pub crop: Option<CropRequest>,
}

/// Everything stored about one user's profile, read at one moment: what a change is
/// decided on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserState {
    /// The last version the user was given (0 = never); versions are never reused,
    /// so this outlives a deleted profile.
    pub version: u64,
    pub profile: Option<Profile>,
    /// The profile's active media item.
    pub media: Option<Media>,
    pub job: Option<DownloadJob>,
}

/// A user's profile state and what is (or would be) served for it.
#[derive(Debug, Clone)]
pub struct ProfileView {
    pub user: UserId,
    pub profile: Profile,
    /// The active media item, when the state has one.
    pub media: Option<Media>,
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
    /// None when only metadata was asked for.
    pub data: Option<Bytes>,
    pub placeholder: bool,
}

impl ServedImage {
    /// A stored rendition's metadata (no bytes yet).
    pub fn from_rendition(rendition: &Rendition) -> Self {
        ServedImage {
            format: rendition.format,
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
    pub media: Media,
    pub active: bool,
    /// The default-format full-size rendition, which Media's content type and etag
    /// describe.
    pub full: Option<ServedImage>,
}
