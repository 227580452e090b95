//! Rust client for the profile-image gRPC service.
//!
//! ```no_run
//! use profile_image_client::{Client, Crop, ImageFormat};
//!
//! # async fn example() -> Result<(), profile_image_client::Error> {
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! client.upload_file("alice", "photo.jpg", Some(Crop::new(100, 0, 400))).await?;
//! let image = client.get("alice", 256, ImageFormat::Webp).await?;
//! std::fs::write("alice.webp", &image.data).expect("write");
//! # Ok(())
//! # }
//! ```
//!
//! Every call returns [`Error`]; a server error carries its status code and the decoded
//! google.rpc details: `error.code()`, `error.violations()`, `error.reason()`,
//! `error.retry_delay()`.

mod client;
mod crop;
mod error;
mod media;
pub mod pb;
mod upload;
mod watch;

pub use client::{Client, ClientBuilder, DEFAULT_URL};
pub use crop::Crop;
pub use error::{Error, FieldViolation, QuotaViolation, StatusError};
pub use media::MediaPages;
pub use pb::{EventType, ImageFormat, Media, ProfileImage, Source, Status};
pub use tonic::Code;
pub use upload::{ProgressCallback, UploadOptions};
pub use watch::{Watch, WatchTarget};

/// The largest upload chunk the server accepts.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// One WatchStatus message: sequence, event type, user, state after the event.
pub type WatchEvent = pb::WatchStatusResponse;
