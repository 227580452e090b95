//! profile-image: a gRPC service that stores, processes and serves users' profile
//! pictures.
//!
//! Layout: `api` (gRPC translation) over `profiles` (domain logic; `Transitions` owns
//! every profile change), which uses `imaging` (decode/orient/crop/resize/encode),
//! `store` (storage traits; `store::local` implements them on sled and files), `watch`
//! (change events) and `model` (the domain's values). `jobs` runs background URL
//! downloads through `profiles`, and `fetch` is the SSRF-safe HTTP client. `auth`
//! verifies bearer tokens; `api` decides from the caller what a call may do. `http`
//! serves image URLs over HTTP/1.1, reading through `profiles` like `api`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod fetch;
pub mod http;
pub mod imaging;
pub mod jobs;
pub mod model;
pub mod pb;
pub mod profiles;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod watch;

pub use config::Config;
pub use server::serve;
