//! The core RPCs, as a client sees them: get, set, upload, crop, delete, media, versions.

mod common;

use std::collections::HashSet;

use common::*;
use profile_image::pb::{self, ImageFormat};
use tonic::Code;

const ROCKET: &str = "photos/rocket.jpg"; // 640x427
const ASTRONAUT: &str = "photos/astronaut.png"; // 512x512

#[tokio::test]
async fn get_without_image_is_not_found() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let status = get(&mut client, "nobody", 0, ImageFormat::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn inline_set_is_ready_and_get_serves_the_centred_square() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "alice", corpus_bytes(ROCKET))
        .await
        .unwrap();
    assert_eq!(set.status, pb::Status::Ready as i32);
    assert_eq!(set.source, pb::Source::Upload as i32);
    assert_eq!(set.version, 1);
    assert!(set.data.is_empty(), "write replies carry no bytes");
    assert_eq!(
        set.crop,
        Some(pb::CropRect {
            x: (640 - 427) / 2,
            y: 0,
            size: 427
        })
    );
    assert_eq!((set.original_width, set.original_height), (640, 427));

    let got = get(&mut client, "alice", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(got.content_type, "image/jpeg");
    assert_eq!(
        (got.width, got.height),
        (427, 427),
        "full size is the crop, not upscaled to 1024"
    );
    let decoded = decode(&got);
    assert_eq!((decoded.width(), decoded.height()), (427, 427));
    assert_eq!(got.size_bytes, got.data.len() as u64);
    assert_eq!(
        got.etag, set.etag,
        "the write reply describes the full-size rendition"
    );
    assert_eq!(got.media_id, set.media_id);
}

#[tokio::test]
async fn sizes_snap_up_to_renditions_and_never_upscale() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "bob", corpus_bytes(ROCKET))
        .await
        .unwrap();
    for (asked, served) in [
        (1, 64),
        (64, 64),
        (65, 128),
        (200, 256),
        (256, 256),
        (300, 427),
        (512, 427),
        (5000, 427),
    ] {
        let got = get(&mut client, "bob", asked, ImageFormat::Unspecified)
            .await
            .unwrap();
        assert_eq!((got.width, got.height), (served, served), "size {asked}");
        let decoded = decode(&got);
        assert_eq!(
            (decoded.width(), decoded.height()),
            (served, served),
            "size {asked}"
        );
    }
}

#[tokio::test]
async fn every_format_is_served_and_etags_follow_the_bytes() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "carol", corpus_bytes(ASTRONAUT))
        .await
        .unwrap();
    let mut etags = HashSet::new();
    for (format, content_type) in [
        (ImageFormat::Jpeg, "image/jpeg"),
        (ImageFormat::Png, "image/png"),
        (ImageFormat::Webp, "image/webp"),
    ] {
        let got = get(&mut client, "carol", 128, format).await.unwrap();
        assert_eq!(got.content_type, content_type);
        let decoded = decode(&got);
        assert_eq!((decoded.width(), decoded.height()), (128, 128));
        assert_eq!(
            got.etag,
            blake3::hash(&got.data).to_hex().to_string(),
            "etag is the hash of the bytes"
        );
        let again = get(&mut client, "carol", 128, format).await.unwrap();
        assert_eq!(again.data, got.data, "same rendition, same bytes");
        assert_eq!(again.etag, got.etag);
        etags.insert(got.etag);
    }
    assert_eq!(etags.len(), 3, "different bytes, different etags");
}

#[tokio::test]
async fn metadata_only_leaves_data_empty() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "dan", corpus_bytes(ROCKET))
        .await
        .unwrap();
    let full = get(&mut client, "dan", 256, ImageFormat::Unspecified)
        .await
        .unwrap();
    let request = pb::GetProfileImageRequest {
        user_id: "dan".into(),
        size: 256,
        format: 0,
        metadata_only: true,
        if_none_match: String::new(),
    };
    let meta = client
        .get_profile_image(request)
        .await
        .unwrap()
        .into_inner()
        .profile_image
        .unwrap();
    assert!(meta.data.is_empty());
    assert_eq!(
        (meta.width, meta.size_bytes, meta.etag),
        (256, full.size_bytes, full.etag)
    );
}

#[tokio::test]
async fn chunked_upload_is_processed_before_the_reply() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let bytes = corpus_bytes("camera/Reconyx_HC500_Hyperfire.jpg");
    let uploaded = upload(&mut client, "erin", &bytes, 64 * 1024, None)
        .await
        .unwrap();
    assert_eq!(uploaded.status, pb::Status::Ready as i32);
    assert_eq!(
        (uploaded.original_width, uploaded.original_height),
        (2048, 1536)
    );
    let got = get(&mut client, "erin", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(
        (got.width, got.height),
        (1024, 1024),
        "full size is capped at 1024"
    );
}

#[tokio::test]
async fn upload_accepts_one_mebibyte_chunks() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let bytes = corpus_bytes("camera/olympus_12mp.jpg");
    assert!(bytes.len() > 1024 * 1024);
    let uploaded = upload(&mut client, "frank", &bytes, 1024 * 1024, None)
        .await
        .unwrap();
    assert_eq!(
        (uploaded.original_width, uploaded.original_height),
        (4032, 3024)
    );
}

/// `photo` (a JPEG) padded to exactly `size` bytes with comment segments after SOI.
fn jpeg_of_size(photo: &[u8], size: usize) -> Vec<u8> {
    const SEGMENT_MAX: usize = 4 + 65_533; // marker, length, the most a length allows
    let mut padding = size - photo.len();
    let mut out = photo[..2].to_vec();
    while padding > 0 {
        let mut segment = padding.min(SEGMENT_MAX);
        if (1..4).contains(&(padding - segment)) {
            segment -= 4; // leave room for one more segment of at least 4 bytes
        }
        let length = u16::try_from(segment - 2).expect("segment length");
        out.extend_from_slice(&[0xff, 0xfe]);
        out.extend_from_slice(&length.to_be_bytes());
        out.resize(out.len() + segment - 4, b' ');
        padding -= segment;
    }
    out.extend_from_slice(&photo[2..]);
    assert_eq!(out.len(), size);
    out
}

#[tokio::test]
async fn inline_images_follow_a_raised_upload_limit() {
    // Over the 16 MiB the server accepts in one message by default.
    const LIMIT: usize = 20 * 1024 * 1024;
    let server = Server::start_with(&["--max-upload-bytes", &LIMIT.to_string()]).await;
    let mut client = server.client().await;
    let photo = corpus_bytes(ROCKET);
    let set = set_inline(&mut client, "hana", jpeg_of_size(&photo, LIMIT))
        .await
        .expect("an inline image of exactly the limit is accepted");
    assert_eq!(set.status, pb::Status::Ready as i32);
    let status = set_inline(&mut client, "hana", jpeg_of_size(&photo, LIMIT + 1))
        .await
        .expect_err("one byte over the limit");
    assert_violation(&status, "image.data", "file-too-large");
}

#[tokio::test]
async fn upload_over_the_limit_is_file_too_large() {
    let server = Server::start_with(&["--max-upload-bytes", "100000"]).await;
    let mut client = server.client().await;
    let bytes = corpus_bytes("camera/Reconyx_HC500_Hyperfire.jpg");
    // Undeclared size: the limit is enforced as chunks arrive.
    let messages = std::iter::once(pb::UploadProfileImageRequest {
        payload: Some(pb::upload_profile_image_request::Payload::Metadata(
            pb::UploadMetadata {
                user_id: "gina".into(),
                ..Default::default()
            },
        )),
    })
    .chain(
        bytes
            .chunks(32 * 1024)
            .map(|c| pb::UploadProfileImageRequest {
                payload: Some(pb::upload_profile_image_request::Payload::Chunk(
                    c.to_vec().into(),
                )),
            }),
    )
    .collect::<Vec<_>>();
    let status = client
        .upload_profile_image(tokio_stream::iter(messages))
        .await
        .unwrap_err();
    assert_violation(&status, "chunk", "file-too-large");
    // Declared size over the limit: refused before reading chunks.
    let status = upload(&mut client, "gina", &bytes, 32 * 1024, None)
        .await
        .unwrap_err();
    assert_violation(&status, "metadata.size_bytes", "file-too-large");
    let status = get(&mut client, "gina", 0, ImageFormat::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "nothing changed");
}

#[tokio::test]
async fn upload_without_metadata_first_is_field_missing() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let messages = vec![pb::UploadProfileImageRequest {
        payload: Some(pb::upload_profile_image_request::Payload::Chunk(
            vec![1, 2, 3].into(),
        )),
    }];
    let status = client
        .upload_profile_image(tokio_stream::iter(messages))
        .await
        .unwrap_err();
    assert_violation(&status, "metadata", "field-missing");
}

#[tokio::test]
async fn missing_fields_are_named() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let status = set_inline(&mut client, "", corpus_bytes(ROCKET))
        .await
        .unwrap_err();
    assert_violation(&status, "user_id", "field-missing");
    let request = pb::SetProfileImageRequest {
        user_id: "hal".into(),
        ..Default::default()
    };
    let status = client.set_profile_image(request).await.unwrap_err();
    assert_violation(&status, "source", "field-missing");
    let request = pb::CropProfileImageRequest {
        user_id: "hal".into(),
        crop: None,
        expected_version: None,
    };
    let status = client.crop_profile_image(request).await.unwrap_err();
    assert_violation(&status, "crop", "field-missing");
}

#[tokio::test]
async fn crop_at_upload_and_later_from_the_original() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let crop = pb::CropRect {
        x: 10,
        y: 20,
        size: 100,
    };
    let set = set_inline_with(&mut client, "ivy", corpus_bytes(ROCKET), Some(crop), None)
        .await
        .unwrap();
    assert_eq!(set.crop, Some(crop));
    let got = get(&mut client, "ivy", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!((got.width, got.height), (100, 100));

    // A larger crop later works because it is taken from the stored original.
    let wide = pb::CropRect {
        x: 200,
        y: 0,
        size: 400,
    };
    let request = pb::CropProfileImageRequest {
        user_id: "ivy".into(),
        crop: Some(wide),
        expected_version: None,
    };
    let cropped = client
        .crop_profile_image(request)
        .await
        .unwrap()
        .into_inner()
        .profile_image
        .unwrap();
    assert_eq!(cropped.crop, Some(wide));
    assert_eq!(cropped.version, set.version + 1);
    assert_eq!(cropped.media_id, set.media_id);
    let got = get(&mut client, "ivy", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!((got.width, got.height), (400, 400));
}

#[tokio::test]
async fn crop_outside_the_image_is_rejected_and_changes_nothing() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "jay", corpus_bytes(ROCKET))
        .await
        .unwrap();
    for crop in [
        pb::CropRect {
            x: 600,
            y: 0,
            size: 100,
        },
        pb::CropRect {
            x: 0,
            y: 0,
            size: 428,
        },
        pb::CropRect {
            x: 0,
            y: 0,
            size: 0,
        },
    ] {
        let request = pb::CropProfileImageRequest {
            user_id: "jay".into(),
            crop: Some(crop),
            expected_version: None,
        };
        let status = client.crop_profile_image(request).await.unwrap_err();
        assert_violation(&status, "crop", "crop-out-of-bounds");
    }
    let status = set_inline_with(
        &mut client,
        "jay",
        corpus_bytes(ROCKET),
        Some(pb::CropRect {
            x: 1,
            y: 1,
            size: 427,
        }),
        None,
    )
    .await
    .unwrap_err();
    assert_violation(&status, "crop", "crop-out-of-bounds");
    let got = get(&mut client, "jay", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(got.version, set.version, "nothing changed");
}

#[tokio::test]
async fn versions_increase_over_set_crop_and_delete_and_are_never_reused() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let v1 = set_inline(&mut client, "kim", corpus_bytes(ROCKET))
        .await
        .unwrap()
        .version;
    let crop = pb::CropRect {
        x: 0,
        y: 0,
        size: 200,
    };
    let request = pb::CropProfileImageRequest {
        user_id: "kim".into(),
        crop: Some(crop),
        expected_version: None,
    };
    let v2 = client
        .crop_profile_image(request)
        .await
        .unwrap()
        .into_inner()
        .profile_image
        .unwrap()
        .version;
    client
        .delete_profile_image(pb::DeleteProfileImageRequest {
            user_id: "kim".into(),
            expected_version: Some(v2),
        })
        .await
        .unwrap();
    let v4 = set_inline(&mut client, "kim", corpus_bytes(ASTRONAUT))
        .await
        .unwrap()
        .version;
    // set = 1, crop = 2, delete = 3, set = 4: the delete used a version too.
    assert_eq!((v1, v2, v4), (1, 2, 4));
}

#[tokio::test]
async fn expected_version_mismatch_is_aborted_and_changes_nothing() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "lee", corpus_bytes(ROCKET))
        .await
        .unwrap();
    let status = set_inline_with(
        &mut client,
        "lee",
        corpus_bytes(ASTRONAUT),
        None,
        Some(set.version + 5),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let request = pb::CropProfileImageRequest {
        user_id: "lee".into(),
        crop: Some(pb::CropRect {
            x: 0,
            y: 0,
            size: 50,
        }),
        expected_version: Some(0),
    };
    assert_eq!(
        client.crop_profile_image(request).await.unwrap_err().code(),
        Code::Aborted
    );
    let request = pb::DeleteProfileImageRequest {
        user_id: "lee".into(),
        expected_version: Some(99),
    };
    assert_eq!(
        client
            .delete_profile_image(request)
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    let got = get(&mut client, "lee", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!((got.version, got.media_id), (set.version, set.media_id));
    // The matching version goes through; 0 means "has never had one".
    set_inline_with(
        &mut client,
        "lee",
        corpus_bytes(ASTRONAUT),
        None,
        Some(set.version),
    )
    .await
    .unwrap();
    set_inline_with(
        &mut client,
        "newcomer",
        corpus_bytes(ASTRONAUT),
        None,
        Some(0),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn replaced_media_stays_listed_inactive_newest_first_with_pages() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for file in [ROCKET, ASTRONAUT, "photos/chelsea.png"] {
        ids.push(
            set_inline(&mut client, "mia", corpus_bytes(file))
                .await
                .unwrap()
                .media_id,
        );
    }
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListMediaRequest {
            user_id: "mia".into(),
            page_size: 2,
            page_token: token,
        };
        let page = client.list_media(request).await.unwrap().into_inner();
        assert!(page.media.len() <= 2);
        listed.extend(page.media);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let listed_ids: Vec<_> = listed.iter().map(|m| m.media_id.clone()).collect();
    ids.reverse();
    assert_eq!(listed_ids, ids, "newest first, every item once");
    assert_eq!(
        listed.iter().map(|m| m.active).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert_eq!((listed[2].width, listed[2].height), (640, 427));
}

#[tokio::test]
async fn set_media_reactivates_an_earlier_item() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let first = set_inline(&mut client, "ned", corpus_bytes(ROCKET))
        .await
        .unwrap();
    let second = set_inline(&mut client, "ned", corpus_bytes(ASTRONAUT))
        .await
        .unwrap();
    let request = pb::SetProfileImageRequest {
        user_id: "ned".into(),
        source: Some(pb::set_profile_image_request::Source::MediaId(
            first.media_id.clone(),
        )),
        crop: Some(pb::CropRect {
            x: 0,
            y: 0,
            size: 300,
        }),
        expected_version: Some(second.version),
    };
    let again = client
        .set_profile_image(request)
        .await
        .unwrap()
        .into_inner()
        .profile_image
        .unwrap();
    assert_eq!(
        (again.media_id.as_str(), again.source),
        (first.media_id.as_str(), pb::Source::Media as i32)
    );
    assert_eq!(again.status, pb::Status::Ready as i32);
    assert!(again.version > second.version);
    let got = get(&mut client, "ned", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!((got.width, got.media_id), (300, first.media_id.clone()));
    // Another user's media id is not found.
    let request = pb::SetProfileImageRequest {
        user_id: "someone-else".into(),
        source: Some(pb::set_profile_image_request::Source::MediaId(
            first.media_id,
        )),
        ..Default::default()
    };
    assert_eq!(
        client.set_profile_image(request).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn delete_profile_image_keeps_the_media_item() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "olga", corpus_bytes(ROCKET))
        .await
        .unwrap();
    delete_profile(&mut client, "olga").await.unwrap();
    assert_no_image(&mut client, "olga").await;
    let listed = list_media(&mut client, "olga").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].media_id.as_str(), listed[0].active),
        (set.media_id.as_str(), false)
    );
    let again = client
        .delete_profile_image(pb::DeleteProfileImageRequest {
            user_id: "olga".into(),
            expected_version: None,
        })
        .await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn delete_media_removes_it_and_the_profile_image_when_active() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let old = set_inline(&mut client, "pat", corpus_bytes(ROCKET))
        .await
        .unwrap();
    let active = set_inline(&mut client, "pat", corpus_bytes(ASTRONAUT))
        .await
        .unwrap();
    client
        .delete_media(pb::DeleteMediaRequest {
            user_id: "pat".into(),
            media_id: old.media_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&mut client, "pat", 0, ImageFormat::Unspecified)
            .await
            .unwrap()
            .media_id,
        active.media_id
    );
    client
        .delete_media(pb::DeleteMediaRequest {
            user_id: "pat".into(),
            media_id: active.media_id.clone(),
        })
        .await
        .unwrap();
    assert_no_image(&mut client, "pat").await;
    let listed = client
        .list_media(pb::ListMediaRequest {
            user_id: "pat".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.into_inner().media.is_empty());
    let gone = client
        .delete_media(pb::DeleteMediaRequest {
            user_id: "pat".into(),
            media_id: active.media_id,
        })
        .await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn parallel_uploads_all_land() {
    // Room in the processing queue for all 24 (load shedding: tests/overload.rs).
    let server = Server::start_with(&["--max-queued-processing", "32"]).await;
    let files = [
        ROCKET,
        ASTRONAUT,
        "photos/chelsea.png",
        "photos/coffee.png",
        "photos/hubble_deep_field.jpg",
        "photos/logo.png",
    ];
    let mut tasks = Vec::new();
    for (i, file) in files.iter().cycle().take(24).enumerate() {
        let mut client = server.client().await;
        let bytes = corpus_bytes(file);
        tasks.push(tokio::spawn(async move {
            let user = format!("user-{}", i % 8);
            upload(&mut client, &user, &bytes, 16 * 1024, None)
                .await
                .map(|p| (user, p.media_id))
        }));
    }
    let mut per_user = std::collections::HashMap::<String, usize>::new();
    for task in tasks {
        let (user, _) = task.await.unwrap().unwrap();
        *per_user.entry(user).or_default() += 1;
    }
    let mut client = server.client().await;
    for (user, count) in per_user {
        let request = pb::ListMediaRequest {
            user_id: user.clone(),
            page_size: 100,
            page_token: String::new(),
        };
        let listed = client.list_media(request).await.unwrap().into_inner().media;
        assert_eq!(listed.len(), count, "{user}");
        assert_eq!(listed.iter().filter(|m| m.active).count(), 1);
        let current = get(&mut client, &user, 0, ImageFormat::Unspecified)
            .await
            .unwrap();
        assert_eq!(current.version as usize, count, "one version per set");
    }
}
