//! BatchGetProfileImages, GetProfileImage's if_none_match, and ThumbHash placeholders,
//! through the real server.

mod common;

use std::collections::HashMap;

use common::{Server, corpus_bytes, get, set_inline};
use profile_image::pb::{self, batch_get_profile_images_entry::Result as Entry};

fn batch(user_ids: &[&str], metadata_only: bool) -> pb::BatchGetProfileImagesRequest {
    pb::BatchGetProfileImagesRequest {
        user_ids: user_ids.iter().map(|id| id.to_string()).collect(),
        size: 128,
        format: pb::ImageFormat::Unspecified as i32,
        metadata_only,
        known_versions: HashMap::new(),
    }
}

/// A metadata-only batch of `user` alone: its one entry, which must be an image.
async fn metadata_of(client: &mut common::Client, user: &str) -> pb::ProfileImage {
    let mut entries = client
        .batch_get_profile_images(batch(&[user], true))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 1);
    match entries.remove(0).result {
        Some(Entry::ProfileImage(image)) => image,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_batch_answers_every_kind_of_entry_in_request_order() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let ann = set_inline(&mut client, "ann", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    set_inline(&mut client, "ben", corpus_bytes("photos/chelsea.png"))
        .await
        .unwrap();
    let mut request = batch(&["ben", "ghost", "ann", "bad\u{7}id", "ben"], false);
    request.known_versions.insert("ann".into(), ann.version);
    request.known_versions.insert("ben".into(), 999);
    let entries = client
        .batch_get_profile_images(request)
        .await
        .expect("a batch with a bad id succeeds")
        .into_inner()
        .entries;
    let ids: Vec<_> = entries.iter().map(|e| e.user_id.as_str()).collect();
    assert_eq!(ids, ["ben", "ghost", "ann", "bad\u{7}id", "ben"]);

    let ben = get(&mut client, "ben", 128, pb::ImageFormat::Unspecified)
        .await
        .unwrap();
    for index in [0, 4] {
        let Some(Entry::ProfileImage(image)) = &entries[index].result else {
            panic!("entry {index}: {:?}", entries[index].result);
        };
        assert_eq!(image.data, ben.data, "bytes, as Get answers them");
        assert_eq!(image.etag, ben.etag);
        assert_eq!(image.url, ben.url);
    }
    assert_eq!(entries[1].result, Some(Entry::NotFound(true)));
    assert_eq!(entries[2].result, Some(Entry::Unchanged(true)));
    let Some(Entry::Error(status)) = &entries[3].result else {
        panic!("entry 3: {:?}", entries[3].result);
    };
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(
        !status.details.is_empty(),
        "with the details Get would give"
    );
}

#[tokio::test]
async fn a_metadata_only_batch_carries_no_bytes() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "cy", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let image = metadata_of(&mut client, "cy").await;
    assert!(image.data.is_empty());
    assert!(image.size_bytes > 0);
    assert!(!image.url.is_empty());
}

#[tokio::test]
async fn more_than_100_ids_are_refused() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let ids: Vec<String> = (0..101).map(|i| format!("user{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let status = client
        .batch_get_profile_images(batch(&ids, true))
        .await
        .expect_err("101 ids");
    common::assert_violation(&status, "user_ids", "field-invalid");
    let entries = client
        .batch_get_profile_images(batch(&ids[..100], true))
        .await
        .expect("100 ids")
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 100);
}

async fn get_if_none_match(
    client: &mut common::Client,
    user: &str,
    etag: &str,
) -> pb::GetProfileImageResponse {
    client
        .get_profile_image(pb::GetProfileImageRequest {
            user_id: user.into(),
            size: 256,
            format: pb::ImageFormat::Jpeg as i32,
            metadata_only: false,
            if_none_match: etag.into(),
        })
        .await
        .expect("get")
        .into_inner()
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_answers_not_modified_without_data() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "di", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let image = get(&mut client, "di", 256, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    let same = get_if_none_match(&mut client, "di", &image.etag).await;
    assert!(same.not_modified);
    let metadata = same.profile_image.expect("metadata");
    assert!(metadata.data.is_empty());
    assert_eq!(metadata.etag, image.etag);
    assert_eq!(metadata.version, image.version);
    let stale = get_if_none_match(&mut client, "di", "an old etag").await;
    assert!(!stale.not_modified);
    assert_eq!(stale.profile_image.expect("image").data, image.data);
}

/// The average colour of an image, 0-1 per channel.
fn average_rgb(image: &image::DynamicImage) -> [f32; 3] {
    let rgb = image.to_rgb8();
    let mut sum = [0f64; 3];
    for pixel in rgb.pixels() {
        for (s, &c) in sum.iter_mut().zip(&pixel.0) {
            *s += f64::from(c);
        }
    }
    let count = (rgb.width() * rgb.height()) as f64;
    sum.map(|s| (s / count / 255.0) as f32)
}

#[tokio::test]
async fn the_thumbhash_decodes_to_the_images_aspect_and_average_colour() {
    let server = Server::start().await;
    let mut client = server.client().await;
    for (user, file) in [("eve", "photos/rocket.jpg"), ("fin", "photos/chelsea.png")] {
        set_inline(&mut client, user, corpus_bytes(file))
            .await
            .unwrap();
        let image = get(&mut client, user, 0, pb::ImageFormat::Png)
            .await
            .unwrap();
        let hash = image.thumbhash.to_vec();
        assert!(
            (5..=40).contains(&hash.len()),
            "about 25 bytes: {}",
            hash.len()
        );
        let aspect = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).expect("valid");
        assert!((aspect - 1.0).abs() < 0.05, "square crop: {aspect}");
        let (r, g, b, a) = thumbhash::thumb_hash_to_average_rgba(&hash).expect("valid");
        let expected = average_rgb(&common::decode(&image));
        for (got, want) in [r, g, b].into_iter().zip(expected) {
            assert!(
                (got - want).abs() < 0.06,
                "{file}: average {:?} vs {expected:?}",
                (r, g, b)
            );
        }
        assert!(a > 0.99, "opaque");
    }
}

#[tokio::test]
async fn batch_and_watch_events_carry_the_thumbhash() {
    use tokio_stream::StreamExt;
    let server = Server::start().await;
    let mut client = server.client().await;
    let mut events = client
        .watch_status(pb::WatchStatusRequest {
            user_id: "gil".into(),
            until_complete: false,
            after_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let _snapshot = events.next().await.expect("snapshot").unwrap();
    let set = set_inline(&mut client, "gil", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    assert!(!set.thumbhash.is_empty(), "in the Set reply too");
    let event = events.next().await.expect("set event").unwrap();
    assert_eq!(event.profile_image.expect("state").thumbhash, set.thumbhash);
    let image = metadata_of(&mut client, "gil").await;
    assert_eq!(image.thumbhash, set.thumbhash);
}
