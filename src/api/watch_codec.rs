//! WatchStatus responses encoded once per event, not once per watcher.
//!
//! A change watched by 10,000 streams would otherwise be converted to a
//! `WatchStatusResponse` and prost-encoded 10,000 times. [`EncodedEvents`] keeps the
//! encodings of recent events by sequence number: the first watcher to send an event
//! encodes it, every other one sends a clone of those bytes (a reference count), which
//! [`WatchStatusCodec`] copies into the gRPC frame as they are. Requests are decoded by
//! prost as usual.

use std::sync::Mutex;

use bytes::{BufMut, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};

use crate::api::convert;
use crate::model::{Event, EventKind};
use crate::pb;

/// Recent events' encodings kept: enough for every watcher of a burst of changes; a
/// watcher further behind encodes for itself.
const SLOTS: usize = 256;

/// One `WatchStatusResponse`, already encoded.
#[derive(Debug, Clone)]
pub struct EncodedWatchEvent(Bytes);

/// The encodings of recent events, shared by every watcher of the server.
pub struct EncodedEvents {
    /// Slot `sequence % SLOTS` holds that sequence's encoding (or an older one's).
    slots: Vec<Mutex<Option<(u64, Bytes)>>>,
}

impl Default for EncodedEvents {
    fn default() -> Self {
        EncodedEvents {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl EncodedEvents {
    /// The event's encoding, made by the first caller and shared with the rest.
    /// Snapshots are not shared: each is one watcher's, and one may carry the sequence
    /// number of a change.
    pub fn encode(&self, event: &Event) -> EncodedWatchEvent {
        let encode = || Bytes::from(convert::watch_event(event).encode_to_vec());
        if event.kind == EventKind::Snapshot {
            return EncodedWatchEvent(encode());
        }
        let slot = &self.slots[(event.sequence % SLOTS as u64) as usize];
        let Ok(mut slot) = slot.lock() else {
            return EncodedWatchEvent(encode());
        };
        match &*slot {
            Some((sequence, bytes)) if *sequence == event.sequence => {
                EncodedWatchEvent(bytes.clone())
            }
            _ => {
                let bytes = encode();
                *slot = Some((event.sequence, bytes.clone()));
                EncodedWatchEvent(bytes)
            }
        }
    }
}

/// Encodes [`EncodedWatchEvent`]s (by copying them) and decodes requests with prost.
#[derive(Debug, Default)]
pub struct WatchStatusCodec;

impl Codec for WatchStatusCodec {
    type Encode = EncodedWatchEvent;
    type Decode = pb::WatchStatusRequest;
    type Encoder = PreEncoded;
    type Decoder = tonic_prost::ProstDecoder<pb::WatchStatusRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        PreEncoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

#[derive(Debug)]
pub struct PreEncoded;

impl Encoder for PreEncoded {
    type Item = EncodedWatchEvent;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserId;

    fn event(sequence: u64, kind: EventKind) -> Event {
        let user = UserId::parse("user_id", "alice").expect("user id");
        Event::new(sequence, kind, Some(user), None)
    }

    #[test]
    fn an_event_is_encoded_once_and_decodes_as_the_response() {
        let cache = EncodedEvents::default();
        let deleted = event(42, EventKind::Deleted);
        let first = cache.encode(&deleted);
        let second = cache.encode(&deleted);
        assert_eq!(
            first.0.as_ptr(),
            second.0.as_ptr(),
            "shared, not re-encoded"
        );

        let decoded = pb::WatchStatusResponse::decode(first.0).expect("decodes");
        assert_eq!(decoded, convert::watch_event(&deleted));
        assert_eq!(decoded.sequence, 42);
        assert_eq!(decoded.r#type, pb::EventType::Deleted as i32);
        assert!(decoded.profile_image.is_none());
    }

    #[test]
    fn a_snapshot_never_takes_a_changes_encoding() {
        let cache = EncodedEvents::default();
        let change = cache.encode(&event(7, EventKind::Set));
        let snapshot = cache.encode(&event(7, EventKind::Snapshot));
        let decoded = pb::WatchStatusResponse::decode(snapshot.0.clone()).expect("decodes");
        assert_eq!(decoded.r#type, pb::EventType::Snapshot as i32);
        assert_ne!(change.0, snapshot.0);
    }

    #[test]
    fn a_newer_event_in_the_same_slot_is_encoded_afresh() {
        let cache = EncodedEvents::default();
        let old = cache.encode(&event(1, EventKind::Set));
        let new = cache.encode(&event(1 + SLOTS as u64, EventKind::Set));
        let decoded = pb::WatchStatusResponse::decode(new.0.clone()).expect("decodes");
        assert_eq!(decoded.sequence, 1 + SLOTS as u64);
        assert_ne!(old.0, new.0);
    }
}
