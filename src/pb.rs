//! Code generated from proto/ by build.rs.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("profileimage.v1");

/// Encoded descriptor set of the contract (with its imports), served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/profileimage_descriptor.bin"));
