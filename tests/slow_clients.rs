//! Idle connections and stalled uploads hold no resource that others need: while 2,000
//! connections sit idle and 200 uploads are stuck half way, other clients' uploads and
//! reads complete, and the server's memory stays bounded.

mod common;

use std::time::Duration;

use common::{Server, admin_token, client_on, corpus_bytes, get, set_inline, upload};
use profile_image::pb::{self, upload_profile_image_request::Payload};

const RAW_IDLE: usize = 1000;
const HTTP2_IDLE: usize = 1000;
const STALLED_UPLOADS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_stalled_uploads_do_not_starve_other_clients() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let photo = corpus_bytes("photos/rocket.jpg");
    set_inline(&mut client, "steady", photo.clone())
        .await
        .expect("first set");
    let rss_before = server.rss_bytes();

    // Raw TCP connections that never say anything.
    let mut raw = Vec::with_capacity(RAW_IDLE);
    for _ in 0..RAW_IDLE {
        raw.push(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("raw connection"),
        );
    }
    // HTTP/2 connections that finish the handshake and then make no call.
    let mut idle = Vec::with_capacity(HTTP2_IDLE);
    for _ in 0..HTTP2_IDLE {
        idle.push(server.channel().await);
    }
    // Uploads that send their metadata and a first chunk, then stall with the stream
    // open (each on its own HTTP/2 stream of a few shared connections).
    let mut stalled = Vec::with_capacity(STALLED_UPLOADS);
    for i in 0..STALLED_UPLOADS {
        let mut uploader = client_on(idle[i % 50].clone(), Some(&admin_token()));
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        sender
            .send(pb::UploadProfileImageRequest {
                payload: Some(Payload::Metadata(pb::UploadMetadata {
                    user_id: format!("stalled-{i}"),
                    size_bytes: photo.len() as u64,
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
        sender
            .send(pb::UploadProfileImageRequest {
                payload: Some(Payload::Chunk(photo[..4096].to_vec().into())),
            })
            .await
            .unwrap();
        let call = tokio::spawn(async move {
            uploader
                .upload_profile_image(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
        });
        stalled.push((sender, call));
    }
    // Let the server take them all in.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Everyone else is served.
    for i in 0..10 {
        let user = format!("busy-{i}");
        tokio::time::timeout(
            Duration::from_secs(20),
            upload(&mut client, &user, &photo, 64 * 1024, None),
        )
        .await
        .unwrap_or_else(|_| panic!("upload {i} starved"))
        .unwrap_or_else(|s| panic!("upload {i}: {s:?}"));
    }
    for size in [64, 128, 256, 0].into_iter().cycle().take(100) {
        tokio::time::timeout(
            Duration::from_secs(5),
            get(&mut client, "steady", size, pb::ImageFormat::Jpeg),
        )
        .await
        .expect("read starved")
        .expect("read");
    }
    let rss_during = server.rss_bytes();
    assert!(
        rss_during < rss_before + 256 * 1024 * 1024,
        "memory grew from {rss_before} to {rss_during} bytes"
    );

    // The stalled uploads changed nothing.
    common::assert_no_image(&mut client, "stalled-0").await;
    drop((stalled, raw, idle));
}
