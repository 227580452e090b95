//! The gRPC layer: thin translation between protobuf and the domain. Wire concerns
//! live here: field paths in errors, upload chunk assembly, encoded-once events.

mod access;
mod convert;
pub mod limits;
mod read;
mod service;
mod upload;
pub mod watch_codec;

pub use read::MAX_BATCH_USERS;
pub use service::ProfileImageApi;
pub use upload::{MAX_CHUNK_BYTES, UploadBuffer};
