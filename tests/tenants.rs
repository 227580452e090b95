//! Tenants are kept apart: the same user id in two tenants is two users, and no call,
//! stream, event, media id or download reaches across. And a data dir written before
//! tenants existed opens, its users in `default`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::origin::Origin;
use common::*;
use profile_image::pb;
use tokio_stream::StreamExt;
use tonic::Code;

const PHOTO: &str = "photos/rocket.jpg";

/// A client acting as `user` of `tenant` (admin when asked).
async fn as_user(server: &Server, tenant: &str, user: &str, admin: bool) -> Client {
    server
        .client_with(Some(&token_for(user, Some(tenant), admin)))
        .await
}

async fn watch(client: &mut Client, user: &str) -> tonic::Streaming<pb::WatchStatusResponse> {
    client
        .watch_status(pb::WatchStatusRequest {
            user_id: user.into(),
            until_complete: false,
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner()
}

/// The next event of a stream, or None if none comes within `wait`.
async fn next_within(
    stream: &mut tonic::Streaming<pb::WatchStatusResponse>,
    wait: Duration,
) -> Option<pb::WatchStatusResponse> {
    tokio::time::timeout(wait, stream.next())
        .await
        .ok()
        .flatten()
        .map(|event| event.expect("event"))
}

#[tokio::test]
async fn the_same_user_id_in_two_tenants_is_two_users() {
    let server = Server::start().await;
    let mut acme = as_user(&server, "acme", "alice", false).await;
    let mut globex = as_user(&server, "globex", "alice", false).await;

    let acme_image = set_inline(&mut acme, "alice", corpus_bytes(PHOTO))
        .await
        .expect("acme's alice sets");
    assert_no_image(&mut globex, "alice").await;
    assert!(list_media(&mut globex, "alice").await.is_empty());
    assert_no_image(&mut server.client().await, "alice").await;

    let globex_image = set_inline(&mut globex, "me", corpus_bytes("photos/logo.png"))
        .await
        .expect("globex's alice sets");
    assert_eq!(
        globex_image.version, 1,
        "versions are per user, so per tenant"
    );
    let read = get(&mut acme, "alice", 0, pb::ImageFormat::Unspecified)
        .await
        .expect("acme reads");
    assert_eq!(read.media_id, acme_image.media_id);
    assert_eq!(read.etag, acme_image.etag);
    assert_eq!(list_media(&mut acme, "me").await.len(), 1);
}

#[tokio::test]
async fn an_admin_is_an_admin_of_its_own_tenant_only() {
    let server = Server::start().await;
    let mut acme_alice = as_user(&server, "acme", "alice", false).await;
    set_inline(&mut acme_alice, "me", corpus_bytes(PHOTO))
        .await
        .expect("set");
    let mut globex_admin = as_user(&server, "globex", "root", true).await;
    // "alice" here is globex's alice, who has no image: nothing of acme's is reached.
    let status = delete_profile(&mut globex_admin, "alice")
        .await
        .expect_err("no image");
    assert_eq!(status.code(), Code::NotFound);
    get(&mut acme_alice, "me", 0, pb::ImageFormat::Unspecified)
        .await
        .expect("acme's alice keeps her image");
}

#[tokio::test]
async fn media_ids_do_not_reach_across_tenants() {
    let server = Server::start().await;
    let mut acme = as_user(&server, "acme", "alice", false).await;
    let mut globex = as_user(&server, "globex", "alice", false).await;
    let acme_image = set_inline(&mut acme, "me", corpus_bytes(PHOTO))
        .await
        .expect("set");

    let reuse = set_profile(
        &mut globex,
        pb::SetProfileImageRequest {
            user_id: "me".into(),
            source: Some(pb::set_profile_image_request::Source::MediaId(
                acme_image.media_id.clone(),
            )),
            crop: None,
            expected_version: None,
        },
    )
    .await
    .expect_err("another tenant's media id");
    assert_eq!(reuse.code(), Code::NotFound, "{reuse:?}");
    let delete = globex
        .delete_media(pb::DeleteMediaRequest {
            user_id: "me".into(),
            media_id: acme_image.media_id.clone(),
        })
        .await
        .expect_err("another tenant's media id");
    assert_eq!(delete.code(), Code::NotFound, "{delete:?}");
    let listed = list_media(&mut acme, "me").await;
    assert_eq!(listed.len(), 1, "acme's item is still there");
    assert_eq!(listed[0].media_id, acme_image.media_id);
}

#[tokio::test]
async fn deleting_in_one_tenant_keeps_the_bytes_another_still_uses() {
    let server = Server::start().await;
    let mut acme = as_user(&server, "acme", "alice", false).await;
    let mut globex = as_user(&server, "globex", "alice", false).await;
    let bytes = corpus_bytes(PHOTO);
    let acme_image = set_inline(&mut acme, "me", bytes.clone())
        .await
        .expect("set");
    let globex_image = set_inline(&mut globex, "me", bytes).await.expect("set");
    assert_eq!(
        acme_image.etag, globex_image.etag,
        "the same bytes, stored once"
    );

    acme.delete_media(pb::DeleteMediaRequest {
        user_id: "me".into(),
        media_id: acme_image.media_id.clone(),
    })
    .await
    .expect("acme deletes its item");
    assert_no_image(&mut acme, "me").await;
    for size in [0, 64, 128] {
        let served = get(&mut globex, "me", size, pb::ImageFormat::Unspecified)
            .await
            .expect("globex's image is intact");
        decode(&served);
    }
}

#[tokio::test]
async fn watch_streams_and_the_all_users_feed_see_their_own_tenant_only() {
    let server = Server::start().await;
    let mut acme_alice = as_user(&server, "acme", "alice", false).await;
    let mut globex_bob = as_user(&server, "globex", "bob", false).await;
    let mut acme_feed = watch(&mut as_user(&server, "acme", "root", true).await, "").await;
    let mut globex_alice_watch = watch(&mut globex_bob, "alice").await;
    assert_eq!(
        next_within(&mut acme_feed, Duration::from_secs(5))
            .await
            .expect("snapshot marker")
            .r#type(),
        pb::EventType::Snapshot
    );
    assert_eq!(
        next_within(&mut globex_alice_watch, Duration::from_secs(5))
            .await
            .expect("snapshot")
            .r#type(),
        pb::EventType::Snapshot
    );

    set_inline(&mut acme_alice, "me", corpus_bytes(PHOTO))
        .await
        .expect("acme's alice sets");
    set_inline(&mut globex_bob, "me", corpus_bytes(PHOTO))
        .await
        .expect("globex's bob sets");
    let event = next_within(&mut acme_feed, Duration::from_secs(5))
        .await
        .expect("acme's feed sees acme's change");
    assert_eq!(
        (event.user_id.as_str(), event.r#type()),
        ("alice", pb::EventType::Set)
    );
    assert!(
        next_within(&mut acme_feed, Duration::from_millis(500))
            .await
            .is_none(),
        "globex's change is not in acme's feed"
    );
    assert!(
        next_within(&mut globex_alice_watch, Duration::from_millis(500))
            .await
            .is_none(),
        "globex's alice did not change: acme's alice is someone else"
    );

    // Resuming the feed replays retained events: of the tenant only.
    let mut resumed = as_user(&server, "globex", "root", true)
        .await
        .watch_status(pb::WatchStatusRequest {
            user_id: String::new(),
            until_complete: false,
            // After acme's change: globex's, which came next, is replayed.
            after_sequence: event.sequence,
        })
        .await
        .expect("resume")
        .into_inner();
    let replayed = next_within(&mut resumed, Duration::from_secs(5))
        .await
        .expect("globex's change is replayed");
    assert_eq!(replayed.user_id, "bob", "{replayed:?}");
    assert!(
        next_within(&mut resumed, Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn downloads_do_not_reach_across_tenants() {
    let server = Server::start_with(&["--fetch-allow-cidr", "127.0.0.0/8"]).await;
    let origin = Origin::start().await;
    let mut acme = as_user(&server, "acme", "alice", false).await;
    let mut globex = as_user(&server, "globex", "alice", false).await;
    let mut acme_watch = watch(&mut acme, "me").await;
    let _ = next_within(&mut acme_watch, Duration::from_secs(5)).await;

    let started = set_profile(
        &mut acme,
        pb::SetProfileImageRequest {
            user_id: "me".into(),
            source: Some(pb::set_profile_image_request::Source::Url(
                origin.url(&format!("/gate/{PHOTO}")),
            )),
            crop: None,
            expected_version: None,
        },
    )
    .await
    .expect("acme's alice starts a download");
    assert_eq!(started.status(), pb::Status::Downloading);
    // The same user id elsewhere changes its image while acme's download runs: that
    // must not supersede it.
    set_inline(&mut globex, "me", corpus_bytes("photos/logo.png"))
        .await
        .expect("globex's alice sets");
    let globex_before = get(&mut globex, "me", 0, pb::ImageFormat::Unspecified)
        .await
        .expect("globex reads");
    origin.open_gate();

    let mut ready = None;
    while let Some(event) = next_within(&mut acme_watch, Duration::from_secs(20)).await {
        let state = event.profile_image.expect("state");
        if state.status() != pb::Status::Downloading && state.status() != pb::Status::Processing {
            ready = Some(state);
            break;
        }
    }
    let ready = ready.expect("acme's download finished");
    assert_eq!(ready.status(), pb::Status::Ready, "{ready:?}");
    assert_eq!(ready.version, started.version, "not superseded");
    let globex_after = get(&mut globex, "me", 0, pb::ImageFormat::Unspecified)
        .await
        .expect("globex reads");
    assert_eq!(globex_after.version, globex_before.version);
    assert_eq!(
        globex_after.etag, globex_before.etag,
        "untouched by acme's download"
    );
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn a_data_dir_of_the_previous_layout_opens_and_every_image_reads_back() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-data");
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    copy_dir(&fixture, &data_dir);
    // The fixture is a sled data dir, so this runs on sled in both suites.
    let server = Server::start_local_on(&data_dir, &[]).await;
    let mut client = server.client().await;

    let alice = get(&mut client, "alice", 0, pb::ImageFormat::Unspecified)
        .await
        .expect("alice's image");
    assert_eq!(
        (alice.version, alice.media_id.as_str()),
        (2, "m0000000000000003")
    );
    assert_eq!(
        alice.etag,
        "951abf8cee5689de2d7397b8448c015f76a1d8b8ce029fde3252b3f06f00fdc7"
    );
    decode(&alice);
    let webp = get(&mut client, "alice", 64, pb::ImageFormat::Webp)
        .await
        .expect("the WebP rendition made before");
    assert_eq!(
        webp.etag,
        "ad038b3ca860ecf5c8fb95c478dc4c386bb4ea7504b6f265c706f300d1d7aec1"
    );
    decode(&webp);
    let bob = get(&mut client, "bob", 0, pb::ImageFormat::Unspecified)
        .await
        .expect("bob's image");
    assert_eq!(
        bob.etag,
        "bcf5428a7580eff539cef28d8aab63a823c4413ea325090591907d5a6adc15f3"
    );
    assert_eq!(bob.content_type, "image/png");
    decode(&bob);
    assert_no_image(&mut client, "carol").await;

    let media: Vec<(String, String)> = [
        list_media(&mut client, "alice").await,
        list_media(&mut client, "bob").await,
        list_media(&mut client, "carol").await,
    ]
    .into_iter()
    .flatten()
    .map(|m| (m.user_id, m.media_id))
    .collect();
    assert_eq!(
        media,
        [
            ("alice".to_owned(), "m0000000000000003".to_owned()),
            ("alice".to_owned(), "m0000000000000001".to_owned()),
            ("bob".to_owned(), "m0000000000000005".to_owned()),
            ("carol".to_owned(), "m0000000000000007".to_owned()),
        ]
    );
    // Every stored item's bytes read back: re-activating each one serves it.
    for (user, media_id) in &media {
        let set = set_profile(
            &mut client,
            pb::SetProfileImageRequest {
                user_id: user.clone(),
                source: Some(pb::set_profile_image_request::Source::MediaId(
                    media_id.clone(),
                )),
                crop: None,
                expected_version: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{user}'s {media_id}: {e:?}"));
        assert_eq!(&set.media_id, media_id);
        decode(
            &get(&mut client, user, 64, pb::ImageFormat::Png)
                .await
                .expect("served"),
        );
    }
    let carol = get(&mut client, "carol", 0, pb::ImageFormat::Unspecified)
        .await
        .expect("carol again");
    assert_eq!(carol.version, 3, "versions go on from the stored ones");

    // The old users are the `default` tenant's, and only theirs.
    assert_no_image(&mut as_user(&server, "acme", "alice", false).await, "alice").await;
    drop(client);
    drop(server);
    let mut stored = sled_trees(&data_dir);
    stored.sort();
    assert!(
        stored.contains(&"meta".to_owned()),
        "the schema version was recorded: {stored:?}"
    );
}

/// The names of the sled trees in a data dir, read from the directory the server left
/// (sled holds a lock while the server runs, so this runs after it stopped).
fn sled_trees(data_dir: &Path) -> Vec<String> {
    for _ in 0..100 {
        if let Ok(db) = sled::open(data_dir) {
            return db
                .tree_names()
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the data dir stayed locked");
}

#[tokio::test]
async fn image_urls_and_batches_stay_in_the_callers_tenant() {
    let server = Server::start().await;
    let mut acme = as_user(&server, "acme", "alice", false).await;
    let mut globex = as_user(&server, "globex", "alice", false).await;
    let acme_image = set_inline(&mut acme, "me", corpus_bytes(PHOTO))
        .await
        .expect("acme's alice sets");
    set_inline(&mut globex, "me", corpus_bytes("photos/logo.png"))
        .await
        .expect("globex's alice sets");

    let read = get(&mut acme, "alice", 64, pb::ImageFormat::Jpeg)
        .await
        .expect("acme reads");
    let base = server.http_base();
    assert!(
        read.url
            .starts_with(&format!("{base}/v1/images/acme/alice/{}/", read.version)),
        "the URL names the owner's tenant: {}",
        read.url
    );
    let fetched = common::http::get(&read.url).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, read.data, "the URL serves acme's alice");
    for other in ["globex", "default"] {
        let current = common::http::get(&format!("{base}/v1/images/{other}/alice/64.jpg")).await;
        if other == "globex" {
            assert_eq!(current.status, 200);
            assert_ne!(current.body, read.data, "globex's alice is another picture");
        } else {
            assert_eq!(current.status, 404, "nobody called alice in `default`");
        }
    }

    let entries = globex
        .batch_get_profile_images(pb::BatchGetProfileImagesRequest {
            user_ids: vec!["alice".into(), "me".into()],
            size: 64,
            format: pb::ImageFormat::Jpeg as i32,
            metadata_only: true,
            known_versions: Default::default(),
        })
        .await
        .expect("batch")
        .into_inner()
        .entries;
    for entry in &entries {
        use pb::batch_get_profile_images_entry::Result as Entry;
        let Some(Entry::ProfileImage(image)) = &entry.result else {
            panic!("{}: {:?}", entry.user_id, entry.result);
        };
        assert_ne!(image.etag, acme_image.etag, "globex's alice, not acme's");
        assert!(
            image.url.contains("/v1/images/globex/alice/"),
            "{}",
            image.url
        );
    }
}
