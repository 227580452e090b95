//! Overload and slow clients: a bounded processing queue that refuses with RetryInfo,
//! uploads that go quiet, and processing that takes too long.

mod common;

use std::time::Duration;

use common::{Server, corpus_bytes, get, set_inline, violations};
use profile_image::pb::{self, upload_profile_image_request::Payload};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_queue_are_refused_at_once_with_retry_info() {
    let server =
        Server::start_with(&["--processing-threads", "1", "--max-queued-processing", "2"]).await;
    let photo = corpus_bytes("camera/olympus_12mp.jpg");
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let (url, photo) = (server.url(), photo.clone());
            tokio::spawn(async move {
                let mut client = common::connect(url).await;
                set_inline(&mut client, &format!("flood-{i}"), photo).await
            })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for call in calls {
        match call.await.expect("call") {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                let (reason, _) = violations(&status);
                assert_eq!(reason.as_deref(), Some("overloaded"), "{status:?}");
                let retry = status.get_details_retry_info().expect("RetryInfo");
                assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "12 uploads at once on 1 slot + 2 queued: none refused"
    );
    assert!(
        accepted >= 3,
        "the slot and the queue were used: {accepted} accepted"
    );

    // Once the flood is over, uploads are accepted again.
    let mut client = server.client().await;
    set_inline(
        &mut client,
        "after-flood",
        corpus_bytes("photos/rocket.jpg"),
    )
    .await
    .expect("accepted after the flood");
}

#[tokio::test]
async fn an_upload_that_goes_quiet_is_ended_with_deadline_exceeded() {
    let server = Server::start_with(&["--upload-idle-timeout-ms", "300"]).await;
    let mut client = server.client().await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(pb::UploadProfileImageRequest {
            payload: Some(Payload::Metadata(pb::UploadMetadata {
                user_id: "quiet".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    sender
        .send(pb::UploadProfileImageRequest {
            payload: Some(Payload::Chunk(vec![0xff, 0xd8].into())),
        })
        .await
        .unwrap();
    // The sender stays open and silent.
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.upload_profile_image(tokio_stream::wrappers::ReceiverStream::new(receiver)),
    )
    .await
    .expect("the server ends the quiet upload");
    let status = answer.expect_err("a quiet upload is ended");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(violations(&status).0.as_deref(), Some("deadline-exceeded"));
    drop(sender);
    common::assert_no_image(&mut client, "quiet").await;

    // An upload that keeps sending is not affected.
    let photo = corpus_bytes("photos/rocket.jpg");
    common::upload(&mut client, "steady", &photo, 32 * 1024, None)
        .await
        .expect("steady upload");
}

#[tokio::test]
async fn processing_longer_than_the_limit_ends_with_deadline_exceeded_and_changes_nothing() {
    let server = Server::start_with(&["--processing-timeout-ms", "1"]).await;
    let mut client = server.client().await.max_encoding_message_size(16 << 20);
    let status = set_inline(&mut client, "slow", corpus_bytes("camera/olympus_12mp.jpg"))
        .await
        .expect_err("a 12 MP photo takes longer than 1 ms");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    common::assert_no_image(&mut client, "slow").await;
    // The server keeps serving.
    assert!(
        get(&mut client, "slow", 64, pb::ImageFormat::Jpeg)
            .await
            .is_err_and(|s| s.code() == Code::NotFound)
    );
}

#[tokio::test]
async fn a_call_whose_grpc_deadline_passes_while_processing_changes_nothing() {
    let server = Server::start().await;
    let mut client = server.client().await.max_encoding_message_size(16 << 20);
    let mut request = tonic::Request::new(pb::SetProfileImageRequest {
        user_id: "hurried".into(),
        source: Some(pb::set_profile_image_request::Source::Image(
            pb::InlineImage {
                content_type: "image/jpeg".into(),
                data: corpus_bytes("camera/olympus_12mp.jpg").into(),
            },
        )),
        ..Default::default()
    });
    // grpc-timeout: 12 MP take longer than this to decode, resize and encode.
    request.set_timeout(Duration::from_millis(50));
    let status = client
        .set_profile_image(request)
        .await
        .expect_err("the deadline passes before the image is processed");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    // The processing thread may still be running: once it is surely done, the
    // abandoned call must have committed nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    common::assert_no_image(&mut client, "hurried").await;
    assert!(common::list_media(&mut client, "hurried").await.is_empty());
    // The same call without a deadline goes through.
    common::set_inline(&mut client, "hurried", corpus_bytes("photos/rocket.jpg"))
        .await
        .expect("a set without a deadline");
}
