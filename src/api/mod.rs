//! The gRPC layer: thin translation between protobuf and the domain.

mod convert;
mod service;

pub use service::ProfileImageApi;
