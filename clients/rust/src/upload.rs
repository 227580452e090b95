//! UploadProfileImage from any `AsyncRead`: metadata first, then chunks of at most
//! `MAX_CHUNK_BYTES`, read while the previous ones are on the wire.

use std::path::Path;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::pb::{self, ProfileImage, upload_profile_image_request::Payload};
use crate::{Client, Crop, Error};

/// Called with the bytes handed to the connection so far and the total, when known.
pub type ProgressCallback = Box<dyn FnMut(u64, Option<u64>) + Send>;

/// What an upload may say besides the user and the bytes.
#[derive(Default)]
#[must_use]
pub struct UploadOptions {
    pub(crate) crop: Option<Crop>,
    pub(crate) expected_version: Option<u64>,
    pub(crate) size_bytes: Option<u64>,
    pub(crate) content_type: String,
    pub(crate) progress: Option<ProgressCallback>,
}

impl UploadOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The square crop (absent: the largest centred square).
    pub fn crop(mut self, crop: Option<Crop>) -> Self {
        self.crop = crop;
        self
    }

    /// Succeed only if the user's current version is this one (ABORTED otherwise).
    pub fn expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// The total size: the server refuses an oversized upload before any chunk is sent,
    /// and checks the received total against it.
    pub fn size_bytes(mut self, size: u64) -> Self {
        self.size_bytes = Some(size);
        self
    }

    /// Declared MIME type (informational: the server recognises the format from the bytes).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// Called after each chunk with (bytes sent, total if known).
    pub fn on_progress(mut self, progress: impl FnMut(u64, Option<u64>) + Send + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }
}

/// Streams `reader` to UploadProfileImage. A read error cancels the call, so the server
/// never takes a truncated file for a whole one.
pub(crate) async fn upload_stream(
    client: &Client,
    user: &str,
    reader: impl AsyncRead + Send + Unpin + 'static,
    source: &Path,
    options: UploadOptions,
) -> Result<ProfileImage, Error> {
    let metadata = pb::UploadProfileImageRequest {
        payload: Some(Payload::Metadata(pb::UploadMetadata {
            user_id: user.to_owned(),
            content_type: options.content_type,
            size_bytes: options.size_bytes.unwrap_or(0),
            crop: options.crop.map(Into::into),
            expected_version: options.expected_version,
        })),
    };
    let (messages, requests) = mpsc::channel(2);
    // Cannot fail: the channel has room and its receiver is right here.
    let _ = messages.try_send(metadata);
    let (read_failed, read_error) = oneshot::channel();
    let feeder = tokio::spawn(send_chunks(
        reader,
        messages,
        client.chunk_bytes(),
        Progress {
            callback: options.progress,
            sent: 0,
            total: options.size_bytes,
        },
        read_failed,
    ));
    let call = async {
        let mut stub = client.stub();
        stub.upload_profile_image(ReceiverStream::new(requests))
            .await
    };
    let outcome = tokio::select! {
        reply = call => Ok(reply),
        Ok(error) = read_error => Err(error),
    };
    feeder.abort();
    match outcome {
        Ok(reply) => reply?
            .into_inner()
            .profile_image
            .ok_or(Error::Protocol("reply without profile_image")),
        Err(error) => Err(Error::Read {
            path: source.to_owned(),
            source: error,
        }),
    }
}

struct Progress {
    callback: Option<ProgressCallback>,
    sent: u64,
    total: Option<u64>,
}

impl Progress {
    fn advance(&mut self, bytes: usize) {
        self.sent += bytes as u64;
        if let Some(callback) = &mut self.callback {
            callback(self.sent, self.total);
        }
    }
}

/// Reads `reader` into chunks of `chunk_bytes` and queues them. On a read error it
/// reports it and holds the queue open, so the call is cancelled rather than ended.
async fn send_chunks(
    mut reader: impl AsyncRead + Send + Unpin,
    messages: mpsc::Sender<pb::UploadProfileImageRequest>,
    chunk_bytes: usize,
    mut progress: Progress,
    read_failed: oneshot::Sender<std::io::Error>,
) {
    loop {
        let chunk = match read_chunk(&mut reader, chunk_bytes).await {
            Ok(chunk) if chunk.is_empty() => return,
            Ok(chunk) => chunk,
            Err(error) => {
                let _ = read_failed.send(error);
                messages.closed().await;
                return;
            }
        };
        let length = chunk.len();
        let message = pb::UploadProfileImageRequest {
            payload: Some(Payload::Chunk(chunk.freeze())),
        };
        if messages.send(message).await.is_err() {
            return; // The call ended (the server answered early, e.g. with an error).
        }
        progress.advance(length);
    }
}

/// Up to `chunk_bytes` bytes: fewer only at the end of the input.
async fn read_chunk(
    reader: &mut (impl AsyncRead + Unpin),
    chunk_bytes: usize,
) -> std::io::Result<BytesMut> {
    let mut chunk = BytesMut::with_capacity(chunk_bytes);
    while chunk.len() < chunk_bytes {
        let mut limited = (&mut *reader).take((chunk_bytes - chunk.len()) as u64);
        if limited.read_buf(&mut chunk).await? == 0 {
            break;
        }
    }
    Ok(chunk)
}
