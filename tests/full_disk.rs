//! A full disk is a non-event: the data dir on a real small filesystem (a tmpfs the test
//! mounts, which needs root; skipped with a printed reason otherwise), filled by uploads
//! and by another process.
//!
//! sled mode only (scripts/test does not run it on PostgreSQL + S3): a full data-dir
//! filesystem is a local store's condition; the shared backends keep nothing there.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::origin::Origin;
use common::{Client, Server, corpus_bytes, get, set_inline, violations};
use profile_image::pb;
use tonic::Code;

/// A tmpfs of a given size, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(mib: u64) -> Option<SmallFs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status();
        match mounted {
            Ok(status) if status.success() => Some(SmallFs { dir }),
            other => {
                eprintln!(
                    "SKIPPED: cannot mount a {mib} MiB tmpfs ({other:?}); \
                     the full-disk tests need root"
                );
                None
            }
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What another process does: writes a file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            if std::io::Write::write_all(&mut file, &block).is_err() {
                break;
            }
        }
        // Fill the last partial block too.
        while std::io::Write::write_all(&mut file, &[0u8; 512]).is_ok() {}
        path
    }

    fn write_ballast(&self, bytes: usize) -> PathBuf {
        let path = self.dir.path().join("ballast");
        std::fs::write(&path, vec![1u8; bytes]).expect("ballast");
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A distinct JPEG: the corpus photo with a unique comment segment after SOI.
fn photo(n: u64) -> Vec<u8> {
    let original = corpus_bytes("photos/hubble_deep_field.jpg");
    let comment = format!("distinct copy {n}");
    let length = (comment.len() + 2) as u16;
    let mut out = Vec::with_capacity(original.len() + comment.len() + 4);
    out.extend_from_slice(&original[..2]);
    out.extend_from_slice(&[0xff, 0xfe]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&original[2..]);
    out
}

fn assert_storage_full(result: Result<impl std::fmt::Debug, tonic::Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
    let (reason, _) = violations(&status);
    assert_eq!(
        reason.as_deref(),
        Some("storage-full"),
        "{what}: {status:?}"
    );
}

/// Every kind of change is refused with storage-full.
async fn assert_changes_refused(client: &mut Client, user: &str) {
    assert_storage_full(
        set_inline(client, "newcomer", photo(999)).await,
        "set inline",
    );
    assert_storage_full(
        common::upload(client, "newcomer", &photo(998), 256 * 1024, None).await,
        "upload",
    );
    let crop = pb::CropProfileImageRequest {
        user_id: user.into(),
        crop: Some(pb::CropRect {
            x: 0,
            y: 0,
            size: 100,
        }),
        expected_version: None,
    };
    assert_storage_full(client.crop_profile_image(crop).await, "crop");
    assert_storage_full(common::delete_profile(client, user).await, "delete");
    let media = common::list_media(client, user).await;
    let delete_media = pb::DeleteMediaRequest {
        user_id: user.into(),
        media_id: media[0].media_id.clone(),
    };
    assert_storage_full(client.delete_media(delete_media).await, "delete media");
}

/// The stored images read back whole, at a rendition size and at full size.
async fn assert_readable(client: &mut Client, stored: &[(String, String)]) {
    for (user, etag) in stored {
        let full = get(client, user, 0, pb::ImageFormat::Unspecified)
            .await
            .unwrap_or_else(|s| panic!("read {user} on a full disk: {s:?}"));
        assert_eq!(&full.etag, etag, "{user}");
        common::decode(&full);
        let small = get(client, user, 64, pb::ImageFormat::Jpeg)
            .await
            .unwrap_or_else(|s| panic!("read {user} at 64 px: {s:?}"));
        common::decode(&small);
    }
}

/// Retries a set until it is accepted (space came back) or `within` passes.
async fn set_when_space_is_back(
    client: &mut Client,
    user: &str,
    within: Duration,
) -> pb::ProfileImage {
    let started = Instant::now();
    loop {
        match set_inline(client, user, photo(5000)).await {
            Ok(image) => return image,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < within,
                    "changes still refused: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("set after space came back: {status:?}"),
        }
    }
}

async fn store_five(client: &mut Client) -> Vec<(String, String)> {
    let mut stored = Vec::new();
    for i in 0..5 {
        let user = format!("keep-{i}");
        let image = set_inline(client, &user, photo(i)).await.expect("store");
        stored.push((user, image.etag));
    }
    stored
}

#[tokio::test]
async fn uploads_until_the_watermark_are_refused_cleanly_and_accepted_again_when_space_returns() {
    let Some(fs) = SmallFs::mount(24) else { return };
    // Space the operator can free later without touching the data dir.
    let ballast = fs.write_ballast(4 << 20);
    let mut server = Server::start_on(&fs.data_dir(), &[]).await;
    let mut client = server.client().await;
    let stored = store_five(&mut client).await;

    let mut accepted = 0;
    let refusal = loop {
        match set_inline(
            &mut client,
            &format!("filler-{accepted}"),
            photo(100 + accepted),
        )
        .await
        {
            Ok(_) => accepted += 1,
            Err(status) => break status,
        }
        assert!(accepted < 200, "the disk never filled");
    };
    assert!(accepted > 0, "some uploads fit before the watermark");
    assert_storage_full(Err::<(), _>(refusal), "the upload past the watermark");
    assert_changes_refused(&mut client, "keep-0").await;
    assert_readable(&mut client, &stored).await;
    assert!(server.is_running());

    std::fs::remove_file(ballast).expect("free space");
    set_when_space_is_back(&mut client, "after", Duration::from_secs(5)).await;
    assert_readable(&mut client, &stored).await;
}

#[tokio::test]
async fn a_disk_filled_by_another_process_refuses_changes_starts_and_recovers_without_restart() {
    let Some(fs) = SmallFs::mount(32) else { return };
    let mut server = Server::start_on(&fs.data_dir(), &[]).await;
    let mut client = server.client().await;
    let mut stored = store_five(&mut client).await;

    let filler = fs.fill();
    // The cached free-space reading is at most a few hundred milliseconds old.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_changes_refused(&mut client, "keep-1").await;
    assert_readable(&mut client, &stored).await;

    // A crash on the full disk, then a start on it: reads work, changes are refused.
    server.kill();
    let mut server = Server::start_on(&fs.data_dir(), &[]).await;
    let mut client = server.client().await;
    assert_eq!(
        common::health(&server, "").await,
        1,
        "SERVING on a full disk"
    );
    assert_readable(&mut client, &stored).await;
    assert_changes_refused(&mut client, "keep-2").await;

    // Space comes back: changes are accepted with no restart.
    std::fs::remove_file(&filler).expect("free space");
    let after = set_when_space_is_back(&mut client, "after", Duration::from_secs(5)).await;
    stored.push(("after".into(), after.etag));

    // Nothing acknowledged is lost across another kill -9.
    server.kill();
    let server = Server::start_on(&fs.data_dir(), &[]).await;
    let mut client = server.client().await;
    assert_readable(&mut client, &stored).await;
}

#[tokio::test]
async fn a_download_that_meets_a_full_disk_waits_for_space_instead_of_failing() {
    let Some(fs) = SmallFs::mount(24) else { return };
    let origin = Origin::start().await;
    let server = Server::start_on(
        &fs.data_dir(),
        &[
            "--fetch-allow-cidr",
            "127.0.0.0/8",
            "--download-retry-base-ms",
            "50",
        ],
    )
    .await;
    let mut client = server.client().await;
    let path = "/gate/photos/rocket.jpg";
    let accepted = common::set_profile(
        &mut client,
        pb::SetProfileImageRequest {
            user_id: "downloader".into(),
            source: Some(pb::set_profile_image_request::Source::Url(origin.url(path))),
            ..Default::default()
        },
    )
    .await
    .expect("URL accepted");
    assert_eq!(accepted.status, pb::Status::Downloading as i32);

    // The disk fills while the origin holds the download back; then it answers.
    let filler = fs.fill();
    tokio::time::sleep(Duration::from_millis(400)).await;
    origin.open_gate();
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(3) {
        let state = get(&mut client, "downloader", 64, pb::ImageFormat::Jpeg)
            .await
            .expect("placeholder while waiting");
        assert_ne!(
            state.status,
            pb::Status::Failed as i32,
            "{:?}",
            state.failure
        );
        assert_ne!(
            state.status,
            pb::Status::Ready as i32,
            "stored on a full disk?"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(origin.hits(path) > 0, "the download reached the origin");

    std::fs::remove_file(filler).expect("free space");
    let started = Instant::now();
    loop {
        let state = get(&mut client, "downloader", 0, pb::ImageFormat::Unspecified)
            .await
            .expect("state");
        if state.status == pb::Status::Ready as i32 {
            common::decode(&state);
            break;
        }
        assert_ne!(
            state.status,
            pb::Status::Failed as i32,
            "{:?}",
            state.failure
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never became READY"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
