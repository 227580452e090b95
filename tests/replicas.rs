//! Several `profile-image serve` processes on one PostgreSQL database and one bucket
//! (issue 14): they are interchangeable. These tests always run on the shared backends
//! (tests/common/backend.rs starts a throwaway PostgreSQL and moto), whatever
//! PROFILE_IMAGE_TEST_BACKEND says: replicas of a sled data dir do not exist.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::backend::{AWS_ENV, BUCKET, Backends};
use common::origin::Origin;
use common::*;
use profile_image::pb::{self, ImageFormat};
use tokio_stream::StreamExt;

type Events = tonic::Streaming<pb::WatchStatusResponse>;

/// Two replicas on a fresh database and bucket prefix.
async fn two_replicas(args: &[&str]) -> (tempfile::TempDir, Server, Server) {
    let state = tempfile::tempdir().expect("temp dir");
    let a = Server::start_shared(state.path(), args).await;
    let b = a.start_replica(args).await;
    (state, a, b)
}

async fn watch(client: &mut Client, user: &str, until_complete: bool, after: u64) -> Events {
    let request = pb::WatchStatusRequest {
        user_id: user.into(),
        until_complete,
        after_sequence: after,
    };
    client.watch_status(request).await.unwrap().into_inner()
}

async fn next(events: &mut Events) -> pb::WatchStatusResponse {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .unwrap()
}

fn kind(event: &pb::WatchStatusResponse) -> pb::EventType {
    pb::EventType::try_from(event.r#type).unwrap()
}

#[tokio::test]
async fn a_change_through_one_replica_reaches_a_watcher_on_the_other() {
    let (_state, a, b) = two_replicas(&[]).await;
    let mut on_b = b.client().await;
    let mut events = watch(&mut on_b, "ada", false, 0).await;
    assert_eq!(kind(&next(&mut events).await), pb::EventType::Snapshot);

    let mut on_a = a.client().await;
    let sent = Instant::now();
    let set = set_inline(&mut on_a, "ada", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let event = next(&mut events).await;
    eprintln!("cross-replica watch latency: {:?}", sent.elapsed());
    assert_eq!(kind(&event), pb::EventType::Set);
    let state = event.profile_image.expect("the new state");
    assert_eq!((state.version, &state.etag), (set.version, &set.etag));

    // And B serves it: the same bytes, read from the shared bucket.
    let served = get(&mut on_b, "ada", 128, ImageFormat::Unspecified)
        .await
        .unwrap();
    let from_a = get(&mut on_a, "ada", 128, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(served.data, from_a.data);
}

#[tokio::test]
async fn concurrent_expected_version_writes_through_two_replicas_exactly_one_wins() {
    let (_state, a, b) = two_replicas(&[]).await;
    let (mut on_a, mut on_b) = (a.client().await, b.client().await);
    let first = set_inline(&mut on_a, "bo", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let mut version = first.version;
    for round in 0..4 {
        let (through_a, through_b) = tokio::join!(
            set_inline_with(
                &mut on_a,
                "bo",
                corpus_bytes("photos/rocket.jpg"),
                None,
                Some(version)
            ),
            set_inline_with(
                &mut on_b,
                "bo",
                corpus_bytes("photos/coffee.png"),
                None,
                Some(version)
            ),
        );
        let outcomes = [&through_a, &through_b];
        let won: Vec<_> = outcomes.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: exactly one wins: {outcomes:?}"
        );
        let lost = outcomes
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("one lost");
        assert_eq!(lost.code(), tonic::Code::Aborted, "{lost:?}");
        assert_eq!(won[0].version, version + 1, "versions strictly increase");
        version = won[0].version;
    }
    let now = get(&mut on_b, "bo", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(now.version, version);
}

/// Flags for replicas that download from the local origin and give up a dead replica's
/// download after a short lease.
const DOWNLOADS: &[&str] = &[
    "--fetch-allow-cidr",
    "127.0.0.0/8",
    "--fetch-timeout-ms",
    "20000",
    "--download-lease-ms",
    "1500",
];

#[tokio::test]
async fn a_download_of_a_killed_replica_is_finished_by_the_other() {
    let origin = Origin::start().await;
    let (_state, mut a, b) = two_replicas(DOWNLOADS).await;
    let mut on_a = a.client().await;
    let gated = "/gate/photos/rocket.jpg";
    let request = pb::SetProfileImageRequest {
        user_id: "cy".into(),
        source: Some(pb::set_profile_image_request::Source::Url(
            origin.url(gated),
        )),
        ..Default::default()
    };
    let accepted = set_profile(&mut on_a, request).await.unwrap();
    assert_eq!(accepted.status, pb::Status::Downloading as i32);
    // A holds the download, stalled on the origin; then it dies.
    origin.reached(gated).await;
    a.kill();
    origin.open_gate();

    let mut on_b = b.client().await;
    let mut events = watch(&mut on_b, "cy", true, 0).await;
    let mut last = None;
    let collect = async {
        while let Some(event) = events.next().await {
            last = event.unwrap().profile_image;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .expect("B finishes the download");
    let done = last.expect("a final state");
    assert_eq!(
        (done.status, done.version),
        (pb::Status::Ready as i32, accepted.version)
    );
    assert!(origin.hits(gated) >= 2, "B fetched the image again");
    let image = get(&mut on_b, "cy", 64, ImageFormat::Unspecified)
        .await
        .unwrap();
    decode(&image);
}

#[tokio::test]
async fn a_client_resumes_with_after_sequence_on_the_other_replica_after_a_restart() {
    let (state, mut a, b) = two_replicas(&[]).await;
    let mut on_a = a.client().await;
    let mut events = watch(&mut on_a, "di", false, 0).await;
    next(&mut events).await;
    set_inline(&mut on_a, "di", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let seen = next(&mut events).await.sequence;

    // A restarts mid-stream; meanwhile changes go through B.
    a.terminate().await;
    drop(events);
    let mut on_b = b.client().await;
    let crop = pb::CropProfileImageRequest {
        user_id: "di".into(),
        crop: Some(pb::CropRect {
            x: 0,
            y: 0,
            size: 100,
        }),
        expected_version: None,
    };
    on_b.crop_profile_image(crop).await.unwrap();
    delete_profile(&mut on_b, "di").await.unwrap();
    let _a = Server::start_shared(state.path(), &[]).await;

    let mut resumed = watch(&mut on_b, "di", false, seen).await;
    let missed = [next(&mut resumed).await, next(&mut resumed).await];
    assert_eq!(
        missed.iter().map(kind).collect::<Vec<_>>(),
        [pb::EventType::Cropped, pb::EventType::Deleted]
    );
    assert!(seen < missed[0].sequence && missed[0].sequence < missed[1].sequence);
}

#[tokio::test]
async fn replicas_starting_together_on_a_new_database_both_serve() {
    let state = tempfile::tempdir().expect("temp dir");
    let (a, b) = tokio::join!(
        Server::start_shared(state.path(), &[]),
        Server::start_shared(state.path(), &[])
    );
    let mut on_a = a.client().await;
    set_inline(&mut on_a, "eve", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let mut on_b = b.client().await;
    get(&mut on_b, "eve", 64, ImageFormat::Unspecified)
        .await
        .unwrap();
}

/// `profile-image migrate` from `data_dir` to the database and prefix named after it.
fn migrate(data_dir: &std::path::Path) -> (bool, String) {
    let backends = Backends::get();
    let output = Command::new(env!("CARGO_BIN_EXE_profile-image"))
        .arg("migrate")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--to-store")
        .arg(backends.database_for(data_dir))
        .arg("--to-blobs")
        .arg(format!("s3://{BUCKET}/{}", Backends::name_for(data_dir)))
        .arg("--s3-endpoint")
        .arg(&backends.s3_endpoint)
        .envs(AWS_ENV)
        .output()
        .expect("run migrate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn migrate_copies_a_sled_data_dir_and_a_replica_serves_every_image() {
    let mut local = Server::start_local(&[]).await;
    let data_dir = local.data_dir.clone();
    let mut client = local.client().await;
    let photos = [
        ("fa", "photos/rocket.jpg"),
        ("ga", "photos/coffee.png"),
        ("ha", "photos/rocket.jpg"),
    ];
    for (user, photo) in photos {
        set_inline(&mut client, user, corpus_bytes(photo))
            .await
            .unwrap();
    }
    // A second media item for one user, and one user without a profile image now.
    set_inline(&mut client, "fa", corpus_bytes("photos/coffee.png"))
        .await
        .unwrap();
    delete_profile(&mut client, "ha").await.unwrap();
    let mut before = Vec::new();
    for user in ["fa", "ga"] {
        let image = get(&mut client, user, 128, ImageFormat::Webp)
            .await
            .unwrap();
        before.push((
            user,
            image.version,
            image.etag,
            image.data,
            list_media(&mut client, user).await.len(),
        ));
    }
    let ha_media = list_media(&mut client, "ha").await.len();
    assert_eq!(local.terminate().await, Some(0));

    let (ok, stderr) = migrate(&data_dir);
    assert!(ok, "migrate failed: {stderr}");
    assert!(stderr.contains("4 media items copied"), "{stderr}");
    // Again: nothing to copy, nothing lost (idempotent, so an interrupted run resumes).
    let (ok, stderr) = migrate(&data_dir);
    assert!(ok, "migrate again failed: {stderr}");
    assert!(
        stderr.contains("0 media items copied, 4 already there"),
        "{stderr}"
    );

    let replica = Server::start_shared(&data_dir, &[]).await;
    let mut client = replica.client().await;
    for (user, version, etag, data, media) in before {
        let image = get(&mut client, user, 128, ImageFormat::Webp)
            .await
            .unwrap();
        assert_eq!((image.version, &image.etag), (version, &etag), "{user}");
        assert_eq!(image.data, data, "{user}: the same bytes");
        let listed = list_media(&mut client, user).await;
        assert_eq!(listed.len(), media, "{user}");
        // Every media item's image reads back, not only the active one.
        for item in listed {
            let request = pb::SetProfileImageRequest {
                user_id: user.into(),
                source: Some(pb::set_profile_image_request::Source::MediaId(
                    item.media_id,
                )),
                ..Default::default()
            };
            set_profile(&mut client, request).await.unwrap();
            let image = get(&mut client, user, 0, ImageFormat::Unspecified)
                .await
                .unwrap();
            decode(&image);
        }
    }
    assert_no_image(&mut client, "ha").await;
    assert_eq!(list_media(&mut client, "ha").await.len(), ha_media);
    let next = set_inline(&mut client, "ha", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    // Set (1) and delete (2) were in the local store.
    assert_eq!(next.version, 3, "versions go on from the local store's");
}

#[tokio::test]
async fn s3_credentials_may_come_from_flags() {
    let temp = tempfile::tempdir().expect("temp dir");
    let secret = temp.path().join("s3-secret");
    std::fs::write(&secret, "test\n").expect("write the secret");
    let data_dir = temp.path().join("data");
    let secret_arg = secret.to_str().expect("utf-8 path");
    let server = Server::start_shared(
        &data_dir,
        &[
            "--s3-access-key-id",
            "test",
            "--s3-secret-access-key-file",
            secret_arg,
        ],
    )
    .await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "keyed", corpus_bytes("photos/rocket.jpg"))
        .await
        .expect("a set through the flags' credentials");
    let read = get(&mut client, "keyed", 64, ImageFormat::Jpeg)
        .await
        .expect("read back");
    assert_eq!(read.version, set.version);

    // The flags are read, not ignored: a key id without its secret file is refused,
    // and so is a secret file that is not there.
    let shared = Backends::get().serve_args(&temp.path().join("refused"));
    let shared: Vec<&str> = shared.iter().map(String::as_str).collect();
    let (code, stderr) = serve_refused(&[&shared[..], &["--s3-access-key-id", "test"]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("s3_secret_access_key_file"), "{stderr}");
    let missing = temp.path().join("no-such-file");
    let (code, stderr) = serve_refused(
        &[
            &shared[..],
            &[
                "--s3-access-key-id",
                "test",
                "--s3-secret-access-key-file",
                missing.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("S3 secret key file"), "{stderr}");
}

/// A TCP proxy in front of the test cluster that a test can cut (every connection
/// closed, new ones refused) and restore on the same port: PostgreSQL going away.
struct Proxy {
    port: u16,
    target: u16,
    forwarding: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        Proxy {
            port,
            target,
            forwarding: Some(tokio::spawn(forward(listener, target))),
        }
    }

    fn cut(&mut self) {
        if let Some(task) = self.forwarding.take() {
            task.abort();
        }
    }

    async fn restore(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("proxy: rebinding {}: {error}", self.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("proxy: cannot listen on {} again: {error}", self.port),
            }
        };
        self.forwarding = Some(tokio::spawn(forward(listener, self.target)));
    }
}

/// Forwards every connection to `target`; dropping this future (aborting its task)
/// drops the connection tasks with it, closing both ends.
async fn forward(listener: tokio::net::TcpListener, target: u16) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        connections.spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Polls health ("", the whole server) until it is `wanted`, for at most 15 s.
async fn wait_for_health(server: &Server, wanted: i32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = health(server, "").await;
        if status == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {status}, expected {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// The proxy runs on the test's runtime, which the harness blocks while the server
// starts: it needs a worker of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_postgresql_does_not_answer_and_serving_once_it_does() {
    const SERVING: i32 = 1;
    const NOT_SERVING: i32 = 2;
    let state = tempfile::tempdir().expect("temp dir");
    let backends = Backends::get();
    let mut proxy = Proxy::start(backends.pg_port).await;
    let url = backends.database_for(state.path()).replace(
        &format!("127.0.0.1:{}/", backends.pg_port),
        &format!("127.0.0.1:{}/", proxy.port),
    );
    let server = Server::start_shared_at(state.path(), &url, &[]).await;
    let mut client = server.client().await;
    set_inline(&mut client, "pat", corpus_bytes("photos/rocket.jpg"))
        .await
        .expect("a set while PostgreSQL answers");
    assert_eq!(health(&server, "").await, SERVING);

    proxy.cut();
    wait_for_health(&server, NOT_SERVING).await;
    assert_eq!(
        health(&server, "profileimage.v1.ProfileImageService").await,
        NOT_SERVING
    );
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        set_inline(&mut client, "pat", corpus_bytes("photos/chelsea.png")),
    )
    .await
    .expect("a change answers while PostgreSQL is away")
    .expect_err("no change without the database");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    proxy.restore().await;
    wait_for_health(&server, SERVING).await;
    let set = set_inline(&mut client, "pat", corpus_bytes("photos/chelsea.png"))
        .await
        .expect("changes go on once PostgreSQL is back");
    let read = get(&mut client, "pat", 64, ImageFormat::Jpeg)
        .await
        .unwrap();
    assert_eq!(read.version, set.version);
}
