//! Server reflection, as a client that has no .proto sees it: grpcio-reflection (a
//! reflection client nobody here wrote) lists the services and calls GetProfileImage
//! with descriptors fetched from the server alone (tests/python/reflection_client.py).
//! Reflection needs no token; the call does.

mod client_tools;
mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_reflection_lists_services_and_calls_get_profile_image() {
    let python = tokio::task::spawn_blocking(client_tools::python)
        .await
        .expect("client tools");
    let server = Server::start().await;
    let mut client = server.client().await;
    let image = upload(
        &mut client,
        "reflected",
        &corpus_bytes("photos/rocket.jpg"),
        1 << 20,
        None,
    )
    .await
    .expect("upload");

    let script = client_tools::repo().join("tests/python/reflection_client.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(server.addr.to_string())
        .arg("reflected")
        .arg(admin_token())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = tokio::task::spawn_blocking(move || {
        client_tools::run("reflection_client.py", &mut command)
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (services, reply) = stdout
        .split_once("---\n")
        .expect("services, then the reply");
    let services: Vec<&str> = services.lines().collect();
    assert!(
        services.contains(&"profileimage.v1.ProfileImageService"),
        "{services:?}"
    );
    assert!(services.contains(&"grpc.health.v1.Health"), "{services:?}");
    assert!(reply.contains(r#""userId": "reflected""#), "{reply}");
    assert!(reply.contains(r#""status": "STATUS_READY""#), "{reply}");
    assert!(
        reply.contains(&format!(r#""mediaId": "{}""#, image.media_id)),
        "{reply}"
    );
}
