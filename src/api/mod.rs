//! The gRPC layer: thin translation between protobuf and the domain.

mod convert;
mod service;
pub mod watch_codec;

pub use service::ProfileImageApi;
