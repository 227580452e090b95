//! Compiles the contract in proto/ with protox (no system protoc needed) into prost
//! messages, the tonic client, the tonic server and an encoded descriptor set for
//! reflection.
//!
//! The server is generated from the same descriptors through tonic-build's `manual`
//! builder, so that one method can have a codec of its own: WatchStatus sends each
//! event as bytes encoded once and shared by every watcher (`crate::api::watch_codec`),
//! where the prost codec would encode the same message again for each of them. Every
//! other method uses the prost codec, exactly as tonic-prost-build would generate it.

use std::{env, path::PathBuf};

use prost_types::{FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto};
use tonic_build::manual;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["proto/profileimage/v1/profile_image.proto"];
const PACKAGE: &str = "profileimage.v1";
const SERVICE: &str = "ProfileImageService";

/// Methods whose responses use a codec other than prost's: (method, response type, codec).
const CUSTOM_CODECS: &[(&str, &str, &str)] = &[(
    "WatchStatus",
    "crate::api::watch_codec::EncodedWatchEvent",
    "crate::api::watch_codec::WatchStatusCodec",
)];

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
        // BatchGet's per-entry error: the google.rpc.Status tonic-types already has.
        .extern_path(".google.rpc.Status", "::tonic_types::pb::Status")
        .build_server(false)
        .compile_fds(descriptors.clone())?;
    manual::Builder::new()
        .build_client(false)
        .compile(&[server_definition(&descriptors)?]);
    Ok(())
}

/// ProfileImageService as the descriptors declare it, for tonic-build's manual builder.
fn server_definition(
    descriptors: &FileDescriptorSet,
) -> Result<manual::Service, Box<dyn std::error::Error>> {
    let (file, index) = descriptors
        .file
        .iter()
        .filter(|file| file.package() == PACKAGE)
        .find_map(|file| {
            let index = file.service.iter().position(|s| s.name() == SERVICE)?;
            Some((file, index))
        })
        .ok_or("ProfileImageService not found in proto/")?;
    let mut service = manual::Service::builder()
        .name(SERVICE)
        .package(PACKAGE)
        .comment(comment(file, &[6, index as i32]));
    for (position, method) in file.service[index].method.iter().enumerate() {
        let path = [6, index as i32, 2, position as i32];
        service = service.method(server_method(method, &comment(file, &path))?);
    }
    Ok(service.build())
}

fn server_method(
    method: &MethodDescriptorProto,
    comment: &str,
) -> Result<manual::Method, Box<dyn std::error::Error>> {
    let custom = CUSTOM_CODECS
        .iter()
        .find(|(name, _, _)| *name == method.name());
    let (output, codec) = match custom {
        Some((_, output, codec)) => (output.to_string(), codec.to_string()),
        None => (
            message_type(method.output_type())?,
            "tonic_prost::ProstCodec".to_owned(),
        ),
    };
    let mut builder = manual::Method::builder()
        .name(snake_case(method.name()))
        .route_name(method.name())
        .comment(comment)
        .input_type(message_type(method.input_type())?)
        .output_type(output)
        .codec_path(codec);
    if method.client_streaming() {
        builder = builder.client_streaming();
    }
    if method.server_streaming() {
        builder = builder.server_streaming();
    }
    Ok(builder.build())
}

/// `.profileimage.v1.GetProfileImageRequest` -> `super::GetProfileImageRequest` (the
/// server module sits next to the messages in `crate::pb`).
fn message_type(full_name: &str) -> Result<String, Box<dyn std::error::Error>> {
    let name = full_name
        .strip_prefix(&format!(".{PACKAGE}."))
        .ok_or_else(|| format!("{full_name} is not a message of {PACKAGE}"))?;
    Ok(format!("super::{name}"))
}

/// The leading comment of the element at `path` in the .proto source.
fn comment(file: &FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .iter()
        .flat_map(|info| &info.location)
        .find(|location| location.path == path)
        .map(|location| location.leading_comments().trim().to_owned())
        .unwrap_or_default()
}

fn snake_case(name: &str) -> String {
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}
