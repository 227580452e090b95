//! Decoding stored records: the bytes under a sled key are decoded into the store's
//! prost messages whenever a profile, a media item or a download job is read; a record
//! damaged on disk (or written by another version) must be an error or a record, never
//! a panic or a runaway allocation.
//!
//! The invariant the service relies on beyond that: it reads a record, changes it and
//! writes it back (a rendition added to a media item, a download's attempt counted), so
//! whatever decoded must survive re-encoding unchanged: same fields, same blob
//! references (the blob reference counts follow them), and re-encoding is stable.
//!
//! Input: one byte choosing the message, then its encoded bytes.
#![no_main]

// Everything this target takes from the service crate.
use profile_image::store::local::records::{
    BlobRef, DownloadJob, FORMAT_JPEG, FORMAT_PNG, MediaRecord, ProfileRecord, RenditionRecord,
};

use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Decodes `bytes` as `M`; when it decodes, checks that re-encoding loses nothing and
/// that encoding is a fixed point.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let record = M::decode(bytes).ok()?;
    let encoded = record.encode_to_vec();
    assert_eq!(encoded.len(), record.encoded_len());
    let again = M::decode(&encoded[..]).expect("a re-encoded record decodes");
    assert_eq!(again, record, "re-encoding changed the record");
    assert_eq!(again.encode_to_vec(), encoded, "encoding is not stable");
    Some(record)
}

fn check_blob(blob: &BlobRef) {
    let etag = blob.etag();
    assert_eq!(etag.len(), 2 * blob.hash.len());
    assert!(etag.bytes().all(|b| b.is_ascii_hexdigit()));
}

fn check_media(media: &MediaRecord) {
    assert_eq!(media.blobs().count(), 1 + media.renditions.len());
    assert!(matches!(media.default_format(), FORMAT_JPEG | FORMAT_PNG));
    media.blobs().for_each(check_blob);
}

fuzz_target!(|input: &[u8]| {
    let Some((&kind, bytes)) = input.split_first() else {
        return;
    };
    match kind % 5 {
        0 => {
            if let Some(media) = round_trip::<MediaRecord>(bytes) {
                check_media(&media);
            }
        }
        1 => {
            round_trip::<ProfileRecord>(bytes);
        }
        2 => {
            round_trip::<DownloadJob>(bytes);
        }
        3 => {
            if let Some(rendition) = round_trip::<RenditionRecord>(bytes) {
                check_blob(&rendition.blob);
            }
        }
        _ => {
            if let Some(blob) = round_trip::<BlobRef>(bytes) {
                check_blob(&blob);
            }
        }
    }
});
