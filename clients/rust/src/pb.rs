//! The messages and the raw tonic client, generated from proto/ by build.rs.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("profileimage.v1");
