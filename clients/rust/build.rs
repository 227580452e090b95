//! Generates the messages and the tonic client (no server) from ../../proto with protox,
//! so the crate needs no system protoc and cannot drift from the contract.

const PROTO_ROOT: &str = "../../proto";
const PROTO_FILE: &str = "../../proto/profileimage/v1/profile_image.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_FILE}");
    let descriptors = protox::compile([PROTO_FILE], [PROTO_ROOT])?;
    tonic_prost_build::configure()
        .bytes(".profileimage.v1")
        // BatchGet's per-entry error: the google.rpc.Status tonic-types already has.
        .extern_path(".google.rpc.Status", "::tonic_types::pb::Status")
        .build_server(false)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
