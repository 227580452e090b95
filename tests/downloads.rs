//! SetProfileImage with a URL: background downloads, failures, retries, supersession,
//! the allowlist and restarts.

mod common;

use std::time::Duration;

use common::metrics::{free_port, wait_for_sample};
use common::origin::Origin;
use common::*;
use profile_image::pb::{self, ImageFormat};
use tokio_stream::StreamExt;

/// Flags for a server that may download from the local origin quickly.
const LOCAL: &[&str] = &[
    "--fetch-allow-cidr",
    "127.0.0.0/8",
    "--fetch-timeout-ms",
    "2000",
    "--download-retry-base-ms",
    "50",
    "--download-max-attempts",
    "3",
];

async fn set_url(
    client: &mut Client,
    user: &str,
    url: &str,
) -> Result<pb::ProfileImage, tonic::Status> {
    let request = pb::SetProfileImageRequest {
        user_id: user.into(),
        source: Some(pb::set_profile_image_request::Source::Url(url.into())),
        ..Default::default()
    };
    set_profile(client, request).await
}

/// Watches `user` until the state is complete; returns every message.
async fn watch_to_end(client: &mut Client, user: &str) -> Vec<pb::WatchStatusResponse> {
    let request = pb::WatchStatusRequest {
        user_id: user.into(),
        until_complete: true,
        after_sequence: 0,
    };
    let mut stream = client.watch_status(request).await.unwrap().into_inner();
    let mut events = Vec::new();
    let collect = async {
        while let Some(event) = stream.next().await {
            events.push(event.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(20), collect)
        .await
        .expect("stream completes");
    events
}

fn final_state(events: &[pb::WatchStatusResponse]) -> pb::ProfileImage {
    events
        .last()
        .and_then(|e| e.profile_image.clone())
        .expect("a final state")
}

#[tokio::test]
async fn url_set_replies_at_once_then_becomes_ready() {
    let origin = Origin::start().await;
    let server = Server::start_with(LOCAL).await;
    let mut client = server.client().await;
    let url = origin.url("/slow/photos/rocket.jpg");
    let accepted = set_url(&mut client, "ann", &url).await.unwrap();
    assert_eq!(accepted.status, pb::Status::Downloading as i32);
    assert_eq!(
        (accepted.source, accepted.source_url.as_str()),
        (pb::Source::Url as i32, url.as_str())
    );

    // Meanwhile a placeholder is served, in the size and format asked for.
    let placeholder = get(&mut client, "ann", 128, ImageFormat::Png)
        .await
        .unwrap();
    assert!(placeholder.placeholder);
    assert_eq!(placeholder.version, accepted.version);
    assert_eq!(placeholder.content_type, "image/png");
    let decoded = decode(&placeholder);
    assert_eq!((decoded.width(), decoded.height()), (128, 128));

    let events = watch_to_end(&mut client, "ann").await;
    let statuses: Vec<i32> = events
        .iter()
        .filter_map(|e| e.profile_image.as_ref().map(|p| p.status))
        .collect();
    assert_eq!(statuses.last(), Some(&(pb::Status::Ready as i32)));
    assert!(
        statuses.contains(&(pb::Status::Processing as i32)) || statuses.len() == 1,
        "{statuses:?}"
    );
    let ready = get(&mut client, "ann", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert!(!ready.placeholder);
    assert_eq!(
        (ready.version, ready.width, ready.source),
        (accepted.version, 427, pb::Source::Url as i32)
    );
    let listed = list_media(&mut client, "ann").await;
    assert_eq!(
        (listed.len(), listed[0].source_url.as_str()),
        (1, url.as_str())
    );
}

#[tokio::test]
async fn invalid_urls_are_rejected_before_the_reply() {
    let server = Server::start_with(LOCAL).await;
    let mut client = server.client().await;
    let long = format!("http://example.com/{}", "a".repeat(2100));
    for url in [
        "ftp://example.com/a.jpg",
        "/relative.jpg",
        "http://",
        "file:///etc/passwd",
        "not a url",
        long.as_str(),
    ] {
        let status = set_url(&mut client, "bea", url).await.unwrap_err();
        assert_violation(&status, "url", "invalid-url");
    }
    assert_no_image(&mut client, "bea").await;
}

#[tokio::test]
async fn every_failure_reason_is_reported_and_keeps_the_placeholder() {
    let origin = Origin::start().await;
    let server = Server::start_with(&[LOCAL, &["--max-upload-bytes", "300000"]].concat()).await;
    let mut client = server.client().await;
    let cases = [
        ("/status/404", "download-failed"),
        ("/html", "invalid-file-format"),
        ("/endless", "file-too-large"),
        ("/image/camera/olympus_12mp.jpg", "file-too-large"),
        ("/stall", "timeout"),
        (
            "/redirect-to/http://169.254.169.254/latest/meta-data/",
            "blocked-destination",
        ),
        ("/redirect/5/photos/rocket.jpg", "download-failed"),
    ];
    for (i, (path, reason)) in cases.iter().enumerate() {
        let user = format!("fail-{i}");
        set_url(&mut client, &user, &origin.url(path))
            .await
            .unwrap();
        let done = final_state(&watch_to_end(&mut client, &user).await);
        assert_eq!(done.status, pb::Status::Failed as i32, "{path}");
        let failure = done.failure.expect("failure");
        assert_eq!(failure.reason, *reason, "{path}: {}", failure.message);
        assert!(!failure.message.is_empty());
        let served = get(&mut client, &user, 64, ImageFormat::Unspecified)
            .await
            .unwrap();
        assert!(
            served.placeholder,
            "{path}: a failed version keeps the placeholder"
        );
        assert_eq!(served.status, pb::Status::Failed as i32);
    }
}

#[tokio::test]
async fn loopback_is_blocked_without_the_allowlist() {
    let origin = Origin::start().await;
    let server = Server::start().await;
    let mut client = server.client().await;
    set_url(&mut client, "cy", &origin.url("/image/photos/rocket.jpg"))
        .await
        .unwrap();
    let done = final_state(&watch_to_end(&mut client, "cy").await);
    assert_eq!(
        done.failure.map(|f| f.reason).as_deref(),
        Some("blocked-destination")
    );
    assert_eq!(
        origin.hits("/image/photos/rocket.jpg"),
        0,
        "never connected"
    );
}

#[tokio::test]
async fn redirects_are_followed_up_to_three_hops() {
    let origin = Origin::start().await;
    let server = Server::start_with(LOCAL).await;
    let mut client = server.client().await;
    set_url(
        &mut client,
        "dee",
        &origin.url("/redirect/3/photos/rocket.jpg"),
    )
    .await
    .unwrap();
    let done = final_state(&watch_to_end(&mut client, "dee").await);
    assert_eq!(done.status, pb::Status::Ready as i32, "{:?}", done.failure);
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let origin = Origin::start().await;
    let server = Server::start_with(LOCAL).await;
    let mut client = server.client().await;
    let path = "/flaky/2/photos/rocket.jpg";
    set_url(&mut client, "eve", &origin.url(path))
        .await
        .unwrap();
    let done = final_state(&watch_to_end(&mut client, "eve").await);
    assert_eq!(done.status, pb::Status::Ready as i32, "{:?}", done.failure);
    assert_eq!(origin.hits(path), 3, "two 503s, then success");

    // Permanent failures are not retried; transient ones stop after the attempt limit.
    set_url(&mut client, "eve", &origin.url("/status/404"))
        .await
        .unwrap();
    watch_to_end(&mut client, "eve").await;
    assert_eq!(origin.hits("/status/404"), 1);
    set_url(&mut client, "eve", &origin.url("/status/503"))
        .await
        .unwrap();
    let done = final_state(&watch_to_end(&mut client, "eve").await);
    assert_eq!(
        done.failure.map(|f| f.reason).as_deref(),
        Some("download-failed")
    );
    assert_eq!(origin.hits("/status/503"), 3);
}

/// Waits until `count` downloads in all have ended superseded, as the server counts them.
async fn wait_for_superseded(metrics_port: u16, count: f64) {
    let labels = [r#"outcome="superseded""#];
    wait_for_sample(
        metrics_port,
        "profile_image_downloads_total",
        &labels,
        count,
    )
    .await;
}

#[tokio::test]
async fn a_newer_set_supersedes_a_running_download() {
    let origin = Origin::start().await;
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let server = Server::start_with(&[LOCAL, &["--metrics-listen", &metrics]].concat()).await;
    let mut client = server.client().await;
    let gated = "/gate/photos/rocket.jpg";
    set_url(&mut client, "fay", &origin.url(gated))
        .await
        .unwrap();
    origin.reached(gated).await;
    let newer = set_inline(&mut client, "fay", corpus_bytes("photos/astronaut.png"))
        .await
        .unwrap();
    origin.open_gate();
    wait_for_superseded(metrics_port, 1.0).await;
    let current = get(&mut client, "fay", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(
        (current.version, current.media_id, current.status),
        (newer.version, newer.media_id, pb::Status::Ready as i32)
    );
    let listed = client
        .list_media(pb::ListMediaRequest {
            user_id: "fay".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.into_inner().media.len(),
        1,
        "the superseded download never landed"
    );

    // A delete supersedes too.
    let slow = "/slow/photos/rocket.jpg";
    set_url(&mut client, "fay", &origin.url(slow))
        .await
        .unwrap();
    origin.reached(slow).await;
    delete_profile(&mut client, "fay").await.unwrap();
    wait_for_superseded(metrics_port, 2.0).await;
    assert_no_image(&mut client, "fay").await;
}

#[tokio::test]
async fn a_download_resumes_after_kill_9() {
    let origin = Origin::start().await;
    let mut server = Server::start_with(LOCAL).await;
    let data_dir = server.data_dir.clone();
    let mut client = server.client().await;
    let accepted = set_url(&mut client, "gus", &origin.url("/gate/photos/rocket.jpg"))
        .await
        .unwrap();
    // Wait until the server is blocked on the stalled origin, then crash it.
    origin.reached("/gate/photos/rocket.jpg").await;
    server.kill();
    origin.open_gate();

    let restarted = Server::start_on(&data_dir, LOCAL).await;
    let mut client = restarted.client().await;
    let done = final_state(&watch_to_end(&mut client, "gus").await);
    assert_eq!(
        (done.status, done.version),
        (pb::Status::Ready as i32, accepted.version)
    );
    drop(server);
}

#[tokio::test]
async fn a_downloads_outcome_is_audited_as_the_servers_change() {
    let origin = Origin::start().await;
    let server = Server::start_with(LOCAL).await;
    let mut client = server.client().await;
    let good = set_url(&mut client, "dee", &origin.url("/image/photos/rocket.jpg"))
        .await
        .unwrap();
    let bad = set_url(&mut client, "eve", &origin.url("/status/404"))
        .await
        .unwrap();
    watch_to_end(&mut client, "dee").await;
    watch_to_end(&mut client, "eve").await;

    let wanted = [
        ("dee", "download-complete", good.version),
        ("eve", "download-failed", bad.version),
    ];
    let found = |lines: &[String], (user, action, version): (&str, &str, u64)| {
        lines.iter().any(|l| {
            l.contains(" audit:")
                && l.contains(&format!("user={user} "))
                && l.contains("actor=\"server\"")
                && l.contains(&format!("action=\"{action}\""))
                && l.contains(&format!("version={version} "))
                && l.contains("code=\"OK\"")
        })
    };
    // The log is read by a thread of the harness: give it a moment.
    let mut lines = server.logs();
    for _ in 0..200 {
        if wanted.iter().all(|w| found(&lines, *w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        lines = server.logs();
    }
    for w in wanted {
        let audit: Vec<&String> = lines.iter().filter(|l| l.contains(" audit:")).collect();
        assert!(found(&lines, w), "{w:?} in {audit:#?}");
    }
}
