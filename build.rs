//! Compiles the contract in proto/ with protox (no system protoc needed) into prost
//! messages, tonic client/server code and an encoded descriptor set for reflection.

use std::{env, path::PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["proto/profileimage/v1/profile_image.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("profileimage_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Image bytes travel as `Bytes` so serving a stored rendition does not copy it again.
        .bytes(".profileimage.v1")
        .compile_fds(descriptors)?;
    Ok(())
}
