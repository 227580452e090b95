//! WatchStatus: snapshot, ordering, until_complete, the all-users feed, resume, cancel.

mod common;

use std::time::Duration;

use common::*;
use profile_image::pb;
use tokio_stream::StreamExt;

type Events = tonic::Streaming<pb::WatchStatusResponse>;

async fn watch(
    client: &mut Client,
    user: &str,
    until_complete: bool,
    after_sequence: u64,
) -> Events {
    let request = pb::WatchStatusRequest {
        user_id: user.into(),
        until_complete,
        after_sequence,
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

async fn ended(events: &mut Events) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), events.next()).await,
        Ok(None)
    )
}

fn kind(event: &pb::WatchStatusResponse) -> pb::EventType {
    pb::EventType::try_from(event.r#type).unwrap()
}

#[tokio::test]
async fn snapshot_first_then_every_change_in_order() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let mut events = watch(&mut client, "una", false, 0).await;
    let snapshot = next(&mut events).await;
    assert_eq!(kind(&snapshot), pb::EventType::Snapshot);
    assert!(
        snapshot.profile_image.is_none(),
        "no image: the state is absent"
    );

    let set = set_inline(&mut client, "una", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let crop = pb::CropRect {
        x: 0,
        y: 0,
        size: 100,
    };
    let request = pb::CropProfileImageRequest {
        user_id: "una".into(),
        crop: Some(crop),
        expected_version: None,
    };
    client.crop_profile_image(request).await.unwrap();
    delete_profile(&mut client, "una").await.unwrap();

    let received = [
        next(&mut events).await,
        next(&mut events).await,
        next(&mut events).await,
    ];
    let kinds: Vec<_> = received.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            pb::EventType::Set,
            pb::EventType::Cropped,
            pb::EventType::Deleted
        ]
    );
    assert_eq!(
        received[0].profile_image.as_ref().map(|p| p.version),
        Some(set.version)
    );
    assert_eq!(
        received[1].profile_image.as_ref().and_then(|p| p.crop),
        Some(crop)
    );
    assert!(received[2].profile_image.is_none());
    let mut sequence = snapshot.sequence;
    for event in &received {
        assert!(event.sequence > sequence, "strictly increasing");
        sequence = event.sequence;
        assert_eq!(event.user_id, "una");
        assert!(event.time.is_some());
    }
}

#[tokio::test]
async fn until_complete_ends_at_once_when_already_complete() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let mut absent = watch(&mut client, "vic", true, 0).await;
    assert_eq!(kind(&next(&mut absent).await), pb::EventType::Snapshot);
    assert!(ended(&mut absent).await, "absent is complete");

    set_inline(&mut client, "vic", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let mut ready = watch(&mut client, "vic", true, 0).await;
    let snapshot = next(&mut ready).await;
    assert_eq!(
        snapshot.profile_image.map(|p| p.status),
        Some(pb::Status::Ready as i32)
    );
    assert!(ended(&mut ready).await, "ready is complete");
}

#[tokio::test]
async fn the_all_users_feed_sees_everyone() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let mut feed = watch(&mut client, "", false, 0).await;
    assert_eq!(kind(&next(&mut feed).await), pb::EventType::Snapshot);
    for user in ["w1", "w2", "w3"] {
        set_inline(&mut client, user, corpus_bytes("photos/rocket.jpg"))
            .await
            .unwrap();
    }
    let users: Vec<_> = [
        next(&mut feed).await,
        next(&mut feed).await,
        next(&mut feed).await,
    ]
    .into_iter()
    .map(|e| e.user_id)
    .collect();
    assert_eq!(users, ["w1", "w2", "w3"]);
}

#[tokio::test]
async fn after_sequence_replays_what_was_missed() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let mut first = watch(&mut client, "xan", false, 0).await;
    let snapshot = next(&mut first).await;
    set_inline(&mut client, "xan", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let seen = next(&mut first).await;
    drop(first); // the client disconnects
    delete_profile(&mut client, "xan").await.unwrap();
    set_inline(&mut client, "xan", corpus_bytes("photos/astronaut.png"))
        .await
        .unwrap();

    let mut resumed = watch(&mut client, "xan", false, seen.sequence).await;
    let replay = [next(&mut resumed).await, next(&mut resumed).await];
    assert_eq!(
        replay.iter().map(kind).collect::<Vec<_>>(),
        [pb::EventType::Deleted, pb::EventType::Set]
    );
    assert!(replay[0].sequence > seen.sequence && replay[1].sequence > replay[0].sequence);
    assert!(seen.sequence > snapshot.sequence);
}

#[tokio::test]
async fn resuming_past_the_retention_window_gets_a_fresh_snapshot() {
    let server = Server::start_with(&["--watch-retention", "2"]).await;
    let mut client = server.client().await;
    let mut first = watch(&mut client, "yan", false, 0).await;
    next(&mut first).await;
    set_inline(&mut client, "yan", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let seen = next(&mut first).await;
    drop(first);
    for _ in 0..3 {
        set_inline(&mut client, "yan", corpus_bytes("photos/astronaut.png"))
            .await
            .unwrap();
    }
    let mut resumed = watch(&mut client, "yan", false, seen.sequence).await;
    let fresh = next(&mut resumed).await;
    assert_eq!(
        kind(&fresh),
        pb::EventType::Snapshot,
        "the missed events are gone"
    );
    let state = fresh.profile_image.expect("current state");
    assert_eq!((state.version, state.status), (4, pb::Status::Ready as i32));
}

#[tokio::test]
async fn cancelled_watchers_do_not_disturb_writers_or_others() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let mut kept = watch(&mut client, "yul", false, 0).await;
    next(&mut kept).await;
    for _ in 0..50 {
        let mut dropped = watch(&mut client, "yul", false, 0).await;
        next(&mut dropped).await;
    }
    // A watcher that never reads does not block writers.
    let _stuck = watch(&mut client, "yul", false, 0).await;
    for _ in 0..20 {
        set_inline(&mut client, "yul", corpus_bytes("photos/chelsea.png"))
            .await
            .unwrap();
    }
    for _ in 0..20 {
        assert_eq!(kind(&next(&mut kept).await), pb::EventType::Set);
    }
}
