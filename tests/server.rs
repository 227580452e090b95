//! The process: configuration, health, reflection, graceful shutdown, durability across
//! restarts.

mod common;

use common::*;
use profile_image::pb::{self, ImageFormat};
use tokio_stream::StreamExt;

const SERVING: i32 = 1;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    let server = Server::start().await;
    assert_eq!(health(&server, "").await, SERVING);
    assert_eq!(
        health(&server, "profileimage.v1.ProfileImageService").await,
        SERVING
    );
}

#[tokio::test]
async fn reflection_lists_the_services_in_both_versions() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = Server::start().await;
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "profileimage.v1.ProfileImageService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "profileimage.v1.ProfileImageService".into(),
            ),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

#[tokio::test]
async fn acknowledged_writes_survive_a_clean_restart() {
    let mut server = Server::start().await;
    let data_dir = server.data_dir.clone();
    let mut client = server.client().await;
    let rocket = set_inline(&mut client, "alice", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let astronaut = set_inline(&mut client, "alice", corpus_bytes("photos/astronaut.png"))
        .await
        .unwrap();
    set_inline(&mut client, "bob", corpus_bytes("photos/chelsea.png"))
        .await
        .unwrap();
    delete_profile(&mut client, "bob").await.unwrap();
    let before = get(&mut client, "alice", 128, ImageFormat::Unspecified)
        .await
        .unwrap();
    drop(client);
    assert_eq!(server.terminate().await, Some(0), "SIGTERM exits 0");

    let _keep_dir = server; // owns the temp dir
    let restarted = Server::start_on(&data_dir, &[]).await;
    let mut client = restarted.client().await;
    let after = get(&mut client, "alice", 128, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(
        (after.version, &after.media_id, &after.etag, &after.data),
        (
            astronaut.version,
            &before.media_id,
            &before.etag,
            &before.data
        )
    );
    let listed = client
        .list_media(pb::ListMediaRequest {
            user_id: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = listed
        .into_inner()
        .media
        .into_iter()
        .map(|m| m.media_id)
        .collect();
    assert_eq!(ids, [astronaut.media_id, rocket.media_id]);
    assert_no_image(&mut client, "bob").await;
    let next = set_inline(&mut client, "bob", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    assert_eq!(
        next.version, 3,
        "versions continue after a restart, never reused"
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut server = Server::start().await;
    let data_dir = server.data_dir.clone();
    let mut client = server.client().await;
    let mut acknowledged = Vec::new();
    for (i, file) in [
        "photos/rocket.jpg",
        "photos/coffee.png",
        "photos/astronaut_circle.png",
    ]
    .iter()
    .enumerate()
    {
        let user = format!("crash-{i}");
        acknowledged.push((
            user.clone(),
            set_inline(&mut client, &user, corpus_bytes(file))
                .await
                .unwrap(),
        ));
    }
    server.kill();

    let restarted = Server::start_on(&data_dir, &[]).await;
    let mut client = restarted.client().await;
    for (user, set) in acknowledged {
        let got = get(&mut client, &user, 0, ImageFormat::Unspecified)
            .await
            .unwrap();
        decode(&got);
        assert_eq!(
            (got.version, got.media_id, got.etag),
            (set.version, set.media_id, set.etag),
            "{user}"
        );
    }
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_zero() {
    let mut server = Server::start().await;
    let mut client = server.client().await;
    let request = pb::WatchStatusRequest {
        user_id: "watched".into(),
        until_complete: false,
        after_sequence: 0,
    };
    let mut stream = client.watch_status(request).await.unwrap().into_inner();
    let snapshot = stream.next().await.unwrap().unwrap();
    assert_eq!(snapshot.r#type, pb::EventType::Snapshot as i32);
    let exit = tokio::spawn(async move {
        let code = server.terminate().await;
        (server, code)
    });
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(item) = stream.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends when the server shuts down");
    let (_server, code) = exit.await.unwrap();
    assert_eq!(code, Some(0));
}

/// rocket.jpg (112,525 bytes) fits, astronaut.png (791,555 bytes) does not.
const UPLOAD_LIMIT: &str = "200000";

/// Asserts the limit in force is [`UPLOAD_LIMIT`]: neither smaller nor the default.
async fn assert_upload_limit_is_200000(server: &Server) {
    let mut client = server.client().await;
    set_inline(&mut client, "fits", corpus_bytes("photos/rocket.jpg"))
        .await
        .expect("112,525 bytes are within the limit");
    let status = set_inline(&mut client, "too-big", corpus_bytes("photos/astronaut.png"))
        .await
        .expect_err("791,555 bytes are over the limit");
    assert_violation(&status, "image.data", "file-too-large");
}

#[tokio::test]
async fn an_environment_variable_overrides_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "max_upload_bytes = 1000\n").unwrap();
    let server = Server::start_with_env(
        &["--config", file.to_str().unwrap()],
        &[("PROFILE_IMAGE_MAX_UPLOAD_BYTES", UPLOAD_LIMIT)],
    )
    .await;
    assert_upload_limit_is_200000(&server).await;
}

#[tokio::test]
async fn a_flag_overrides_the_environment_variable() {
    let server = Server::start_with_env(
        &["--max-upload-bytes", UPLOAD_LIMIT],
        &[("PROFILE_IMAGE_MAX_UPLOAD_BYTES", "1000")],
    )
    .await;
    assert_upload_limit_is_200000(&server).await;
}

#[test]
fn configuration_errors_are_reported_as_such_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let misspelt = dir.path().join("misspelt.toml");
    std::fs::write(&misspelt, "max_upload_byte = 1000\n").unwrap();
    let cases = [
        (
            vec!["--jpeg-quality", "0"],
            "configuration error: jpeg_quality must be 1-100".to_owned(),
        ),
        (
            vec!["--config", missing.to_str().unwrap()],
            format!("configuration error: cannot read {}", missing.display()),
        ),
        (
            vec!["--config", misspelt.to_str().unwrap()],
            format!("configuration error: invalid file {}", misspelt.display()),
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = serve_refused(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("internal"), "{args:?}: {stderr}");
    }
}
