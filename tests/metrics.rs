//! Prometheus metrics on --metrics-listen: gRPC calls counted with go-grpc-prometheus's
//! names and codes (streams included), and the service's own metrics.

mod common;

use std::time::Duration;

use common::metrics::{free_port, sample, scrape};
use common::{Server, corpus_bytes, get, set_inline};
use profile_image::pb;
use tokio_stream::StreamExt;

#[tokio::test]
async fn calls_and_the_service_are_measured_in_prometheus_format() {
    let port = free_port();
    let server = Server::start_with(&["--metrics-listen", &format!("127.0.0.1:{port}")]).await;
    let mut client = server.client().await;

    let missing = get(&mut client, "nobody", 64, pb::ImageFormat::Jpeg).await;
    let missing = missing.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    set_inline(&mut client, "metered", corpus_bytes("photos/rocket.jpg"))
        .await
        .expect("set");
    get(&mut client, "metered", 64, pb::ImageFormat::Jpeg)
        .await
        .expect("get");
    let mut watch = client
        .watch_status(pb::WatchStatusRequest {
            user_id: "metered".into(),
            until_complete: true,
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    while tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the stream ends on a complete state")
        .is_some()
    {}

    // A stream's status is counted when its trailers are sent: poll until it shows.
    let mut text = String::new();
    for _ in 0..50 {
        text = scrape(port).await;
        let watched = sample(
            &text,
            "grpc_server_handled_total",
            &[r#"grpc_method="WatchStatus""#, r#"grpc_code="OK""#],
        );
        if watched == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let service = r#"grpc_service="profileimage.v1.ProfileImageService""#;
    let handled = |method: &str, code: &str| {
        sample(
            &text,
            "grpc_server_handled_total",
            &[
                service,
                &format!(r#"grpc_method="{method}""#),
                &format!(r#"grpc_code="{code}""#),
            ],
        )
    };
    assert_eq!(handled("GetProfileImage", "NotFound"), Some(1.0), "{text}");
    assert_eq!(handled("GetProfileImage", "OK"), Some(1.0), "{text}");
    assert_eq!(handled("SetProfileImage", "OK"), Some(1.0), "{text}");
    assert_eq!(handled("WatchStatus", "OK"), Some(1.0), "{text}");
    assert!(
        sample(
            &text,
            "grpc_server_handled_total",
            &[r#"grpc_type="server_stream""#]
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_handling_seconds_count",
            &[service, r#"grpc_method="SetProfileImage""#]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "grpc_server_started_total",
            &[r#"grpc_method="GetProfileImage""#]
        ) >= Some(2.0)
    );
    for stage in ["process", "store", "commit"] {
        let count = sample(
            &text,
            "profile_image_pipeline_seconds_count",
            &[&format!(r#"stage="{stage}""#)],
        );
        assert!(count >= Some(1.0), "stage {stage}: {count:?}\n{text}");
    }
    // A data dir's watermark exists only with the local store (sled in the data dir).
    if !common::backend::suite_is_shared() {
        assert!(sample(&text, "profile_image_data_dir_min_free_bytes", &[]) > Some(0.0));
    }
}
