//! WatchStatus responses encoded once per event, not once per watcher.
//!
//! A change watched by 10,000 streams would otherwise be converted to a
//! `WatchStatusResponse` and prost-encoded 10,000 times. The first watcher to send
//! an event encodes it into the event's `wire` slot; every other watcher sends a
//! clone of those bytes (a reference count), which [`WatchStatusCodec`] copies into
//! the gRPC frame as they are. Requests are decoded by prost as usual.

use bytes::{BufMut, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};

use crate::api::convert;
use crate::pb;
use crate::watch::Event;

/// One `WatchStatusResponse`, already encoded.
#[derive(Debug, Clone)]
pub struct EncodedWatchEvent(Bytes);

impl EncodedWatchEvent {
    /// The event's encoding, made by the first caller and shared with the rest.
    pub fn of(event: &Event) -> Self {
        EncodedWatchEvent(
            event
                .wire
                .get_or_init(|| convert::watch_event(event).encode_to_vec().into())
                .clone(),
        )
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
    use std::sync::Arc;

    use super::*;
    use crate::model::UserId;
    use crate::watch::EventKind;

    #[test]
    fn an_event_is_encoded_once_and_decodes_as_the_response() {
        let event = Arc::new(Event::new(
            42,
            EventKind::Deleted,
            UserId::parse("user_id", "alice").expect("user id"),
            None,
        ));
        let first = EncodedWatchEvent::of(&event);
        let second = EncodedWatchEvent::of(&event);
        assert_eq!(
            first.0.as_ptr(),
            second.0.as_ptr(),
            "shared, not re-encoded"
        );

        let decoded = pb::WatchStatusResponse::decode(first.0).expect("decodes");
        assert_eq!(decoded, convert::watch_event(&event));
        assert_eq!(decoded.sequence, 42);
        assert_eq!(decoded.r#type, pb::EventType::Deleted as i32);
        assert!(decoded.profile_image.is_none());
    }
}
