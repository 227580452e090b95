//! The command-line client (`profile-image get|upload|set-url|crop|delete|watch|media`)
//! against the real server: outputs, exit codes (0 ok, 1 RPC error, 2 usage) and errors.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::origin::Origin;
use common::*;
use serde_json::Value;

fn cli(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_profile-image"))
        .args(args)
        .env("PROFILE_IMAGE_SERVER", server.url())
        .env("PROFILE_IMAGE_TOKEN", admin_token())
        .stdin(Stdio::null())
        .output()
        .expect("run profile-image")
}

async fn cli_async(server: &Server, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_profile-image"));
    command
        .args(args)
        .env("PROFILE_IMAGE_SERVER", server.url())
        .env("PROFILE_IMAGE_TOKEN", admin_token())
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output().expect("run profile-image"))
        .await
        .expect("join")
}

fn stdout_json(output: &Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_get_writes_the_image_asked_for() {
    let server = Server::start().await;
    let photo = corpus("camera/olympus_12mp.jpg");
    let uploaded = stdout_json(
        &cli_async(
            &server,
            &[
                "upload",
                "alice",
                photo.to_str().unwrap(),
                "--crop",
                "0,0,1000",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(uploaded["status"], "STATUS_READY");
    assert_eq!(uploaded["crop"]["size"], 1000);

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("alice.png");
    let got = cli_async(
        &server,
        &[
            "get",
            "alice",
            "-o",
            file.to_str().unwrap(),
            "--size",
            "64",
            "--format",
            "png",
        ],
    )
    .await;
    assert_eq!(
        got.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let text = String::from_utf8_lossy(&got.stdout);
    assert!(
        text.starts_with("wrote ") && text.contains("64x64 image/png"),
        "{text}"
    );
    let png = std::fs::read(&file).expect("written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_error_exits_1_with_the_code_and_every_violation() {
    let server = Server::start().await;
    let photo = corpus("photos/rocket.jpg");
    cli_async(&server, &["upload", "alice", photo.to_str().unwrap()]).await;

    let text = cli_async(&server, &["crop", "alice", "0,0,100000"]).await;
    assert_eq!(text.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
    assert!(stderr.contains("crop: crop-out-of-bounds"), "{stderr}");

    let json = cli_async(&server, &["crop", "alice", "0,0,100000", "--json"]).await;
    assert_eq!(json.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&json.stderr).expect("a JSON error on stderr");
    assert_eq!(error["code"], "INVALID_ARGUMENT");
    assert_eq!(error["reason"], "validation-failure");
    assert_eq!(error["violations"][0]["field"], "crop");
    assert_eq!(error["violations"][0]["reason"], "crop-out-of-bounds");

    let missing = cli_async(&server, &["get", "nobody", "-o", "/dev/null"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_error_exits_2() {
    let server = Server::start().await;
    for args in [
        &["crop", "alice", "1,2"][..],
        &["get", "alice"],
        &["media", "delete", "alice"],
        &["upload"],
    ] {
        let output = cli_async(&server, args).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_1() {
    let output = Command::new(env!("CARGO_BIN_EXE_profile-image"))
        .args(["delete", "alice", "--server", "http://127.0.0.1:9"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("UNAVAILABLE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_list_delete_and_delete() {
    let server = Server::start().await;
    for name in ["photos/rocket.jpg", "photos/logo.png"] {
        let path = corpus(name);
        cli_async(&server, &["upload", "alice", path.to_str().unwrap()]).await;
    }
    let listed = stdout_json(&cli(&server, &["media", "list", "alice", "--json"]));
    let media = listed["media"].as_array().expect("media array");
    assert_eq!(media.len(), 2);
    assert_eq!(media[0]["active"], true);
    let oldest = media[1]["mediaId"].as_str().expect("id").to_owned();

    assert_eq!(
        cli_async(&server, &["media", "delete", "alice", &oldest])
            .await
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        cli_async(&server, &["delete", "alice"]).await.status.code(),
        Some(0)
    );
    let listed = stdout_json(&cli(&server, &["media", "list", "alice", "--json"]));
    assert_eq!(listed["media"].as_array().expect("array").len(), 1);
    assert_eq!(listed["media"][0]["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_url_wait_prints_each_status_until_ready() {
    let server = Server::start_with(&["--fetch-allow-cidr", "127.0.0.0/8"]).await;
    let origin = Origin::start().await;
    let url = origin.url("/slow/photos/rocket.jpg");
    let output = cli_async(&server, &["set-url", "alice", &url, "--wait", "--json"]).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let statuses: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("JSON line")["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("STATUS_DOWNLOADING")
    );
    assert_eq!(statuses.last().map(String::as_str), Some("STATUS_READY"));
    let mut deduplicated = statuses.clone();
    deduplicated.dedup();
    assert_eq!(deduplicated, statuses, "each status once, as it changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_url_wait_exits_1_when_the_download_fails() {
    let server = Server::start_with(&["--fetch-allow-cidr", "127.0.0.0/8"]).await;
    let origin = Origin::start().await;
    let output = cli_async(
        &server,
        &["set-url", "alice", &origin.url("/status/404"), "--wait"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("STATUS_FAILED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_json_prints_one_object_per_event() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "alice", corpus_bytes("photos/rocket.jpg"))
        .await
        .expect("set");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_profile-image"))
        .args(["watch", "alice", "--json", "--server", &server.url()])
        .env("PROFILE_IMAGE_TOKEN", admin_token())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start watch");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first: Value = serde_json::from_str(
        &lines_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a snapshot"),
    )
    .expect("JSON");
    assert_eq!(first["type"], "EVENT_TYPE_SNAPSHOT");
    assert_eq!(first["profileImage"]["status"], "STATUS_READY");

    pb_crop(&mut client).await;
    let second: Value = serde_json::from_str(
        &lines_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("an event"),
    )
    .expect("JSON");
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(second["type"], "EVENT_TYPE_CROPPED");
    assert_eq!(second["userId"], "alice");
    assert!(second["sequence"].as_u64() > first["sequence"].as_u64());
}

async fn pb_crop(client: &mut Client) {
    client
        .crop_profile_image(profile_image::pb::CropProfileImageRequest {
            user_id: "alice".into(),
            crop: Some(profile_image::pb::CropRect {
                x: 0,
                y: 0,
                size: 50,
            }),
            expected_version: None,
        })
        .await
        .expect("crop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_sent_as_a_bearer_authorization_header() {
    let recorded = RecordAuthorization::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(recorded.clone())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let run = |args: Vec<String>, token_env: Option<&'static str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_profile-image"));
        command.args(args).env_remove("PROFILE_IMAGE_TOKEN");
        if let Some(token) = token_env {
            command.env("PROFILE_IMAGE_TOKEN", token);
        }
        tokio::task::spawn_blocking(move || command.output().expect("run"))
    };
    let flag = run(
        vec![
            "delete".into(),
            "alice".into(),
            "--server".into(),
            url.clone(),
            "--token".into(),
            "s3cret".into(),
        ],
        None,
    );
    let flag = flag.await.expect("join");
    let env = run(
        vec![
            "delete".into(),
            "alice".into(),
            "--server".into(),
            url.clone(),
        ],
        Some("from-env"),
    );
    let env = env.await.expect("join");
    let none = run(
        vec!["delete".into(), "alice".into(), "--server".into(), url],
        None,
    );
    let none = none.await.expect("join");
    for output in [&flag, &env, &none] {
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("UNAUTHENTICATED"));
    }
    assert_eq!(
        *recorded.0.lock().unwrap(),
        [
            Some("Bearer s3cret".to_owned()),
            Some("Bearer from-env".to_owned()),
            None
        ]
    );
}

/// A stand-in ProfileImageService that records each call's authorization header and
/// answers UNAUTHENTICATED.
#[derive(Clone, Default)]
struct RecordAuthorization(std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>);

impl tonic::server::NamedService for RecordAuthorization {
    const NAME: &'static str = "profileimage.v1.ProfileImageService";
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>>
    for RecordAuthorization
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        let token = request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        self.0.lock().unwrap().push(token);
        std::future::ready(Ok(tonic::Status::unauthenticated("recorded").into_http()))
    }
}
