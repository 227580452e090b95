//! Code generated from proto/ by build.rs.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("profileimage.v1");
// The server, generated from the same contract (see build.rs for why separately).
include!(concat!(
    env!("OUT_DIR"),
    "/profileimage.v1.ProfileImageService.rs"
));

/// Encoded descriptor set of the contract (with its imports), served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/profileimage_descriptor.bin"));
