//! Image URLs over HTTP, through the real server: ProfileImage.url, caching headers,
//! conditional requests, old versions, placeholders, errors and signed URLs.

mod common;

use common::http::{self as web, HttpResponse};
use common::{Server, corpus_bytes, get, set_inline, set_inline_with};
use hmac::{Hmac, Mac};
use profile_image::pb;
use sha2::Sha256;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Get with metadata only: the URL of `size` px in `format`.
async fn url_of(
    client: &mut common::Client,
    user: &str,
    size: u32,
    format: pb::ImageFormat,
) -> String {
    let request = pb::GetProfileImageRequest {
        user_id: user.into(),
        size,
        format: format as i32,
        metadata_only: true,
        if_none_match: String::new(),
    };
    let image = client
        .get_profile_image(request)
        .await
        .expect("get")
        .into_inner()
        .profile_image
        .expect("profile_image");
    assert!(!image.url.is_empty(), "Get answers a URL");
    image.url
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

#[tokio::test]
async fn the_url_from_get_serves_the_grpc_bytes_cacheable_forever() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "alice", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    for format in [
        pb::ImageFormat::Unspecified,
        pb::ImageFormat::Webp,
        pb::ImageFormat::Png,
    ] {
        let image = get(&mut client, "alice", 256, format).await.unwrap();
        assert!(
            image.url.starts_with(&server.http_base()),
            "{} is on the HTTP listener",
            image.url
        );
        let response = web::get(&image.url).await;
        assert_eq!(response.status, 200, "{}", image.url);
        assert_eq!(
            response.body,
            image.data.to_vec(),
            "same bytes as gRPC ({format:?})"
        );
        assert_eq!(
            response.header("content-type"),
            Some(image.content_type.as_str())
        );
        assert_eq!(
            response.header("content-length"),
            Some(image.data.len().to_string().as_str())
        );
        assert_eq!(response.header("etag"), Some(quoted(&image.etag).as_str()));
        assert_eq!(response.header("cache-control"), Some(IMMUTABLE));
    }
}

#[tokio::test]
async fn the_url_names_version_size_and_format_asked_for() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "bob", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let url = url_of(&mut client, "bob", 128, pb::ImageFormat::Webp).await;
    assert_eq!(
        url,
        format!(
            "{}/v1/images/default/bob/{}/128.webp",
            server.http_base(),
            set.version
        )
    );
    let url = url_of(&mut client, "bob", 0, pb::ImageFormat::Unspecified).await;
    assert!(
        url.ends_with(&format!("/bob/{}/0.jpg", set.version)),
        "{url}"
    );
}

#[tokio::test]
async fn the_current_url_is_cached_briefly_with_the_same_etag() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "carol", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let image = get(&mut client, "carol", 64, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    let response = web::get(&format!(
        "{}/v1/images/default/carol/64.jpg",
        server.http_base()
    ))
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, image.data.to_vec());
    assert_eq!(response.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(response.header("etag"), Some(quoted(&image.etag).as_str()));
}

#[tokio::test]
async fn the_current_urls_max_age_is_configurable() {
    let server = Server::start_with(&["--http-current-max-age-secs", "5"]).await;
    let mut client = server.client().await;
    set_inline(&mut client, "dan", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let response = web::get(&format!(
        "{}/v1/images/default/dan/64.jpg",
        server.http_base()
    ))
    .await;
    assert_eq!(response.header("cache-control"), Some("public, max-age=5"));
}

#[tokio::test]
async fn if_none_match_with_the_etag_answers_304_without_a_body() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "erin", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let image = get(&mut client, "erin", 256, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    let etag = quoted(&image.etag);
    let response = web::request(
        "GET",
        &image.url,
        &[("if-none-match", &etag)],
        Default::default(),
    )
    .await;
    assert_eq!(response.status, 304);
    assert!(response.body.is_empty());
    assert_eq!(response.header("etag"), Some(etag.as_str()));
    assert_eq!(response.header("cache-control"), Some(IMMUTABLE));
    let other = web::request(
        "GET",
        &image.url,
        &[("if-none-match", "\"other\"")],
        Default::default(),
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, image.data.to_vec());
}

#[tokio::test]
async fn head_answers_the_headers_of_get_without_a_body() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "fay", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let image = get(&mut client, "fay", 512, pb::ImageFormat::Png)
        .await
        .unwrap();
    let response = web::request("HEAD", &image.url, &[], Default::default()).await;
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_eq!(response.header("content-type"), Some("image/png"));
    assert_eq!(
        response.header("content-length"),
        Some(image.data.len().to_string().as_str())
    );
    assert_eq!(response.header("etag"), Some(quoted(&image.etag).as_str()));
}

#[tokio::test]
async fn an_old_versions_url_keeps_its_image_after_a_replace() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "gus", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let old = get(&mut client, "gus", 128, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    set_inline(&mut client, "gus", corpus_bytes("photos/chelsea.png"))
        .await
        .unwrap();
    let new = get(&mut client, "gus", 128, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    assert_ne!(old.url, new.url);
    assert_ne!(old.etag, new.etag);
    let response = web::get(&old.url).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, old.data.to_vec(), "the old version's bytes");
    assert_eq!(response.header("cache-control"), Some(IMMUTABLE));
    let current = web::get(&format!(
        "{}/v1/images/default/gus/128.jpg",
        server.http_base()
    ))
    .await;
    assert_eq!(current.body, new.data.to_vec(), "the current URL moved on");
}

#[tokio::test]
async fn an_old_versions_url_is_gone_once_its_media_item_is_deleted_or_cropped_again() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let first = set_inline(&mut client, "hal", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let cropped_url = get(&mut client, "hal", 64, pb::ImageFormat::Jpeg)
        .await
        .unwrap()
        .url;
    client
        .crop_profile_image(pb::CropProfileImageRequest {
            user_id: "hal".into(),
            crop: Some(pb::CropRect {
                x: 0,
                y: 0,
                size: 100,
            }),
            expected_version: None,
        })
        .await
        .unwrap();
    assert_eq!(web::get(&cropped_url).await.status, 404, "other pixels now");
    let recropped = get(&mut client, "hal", 64, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    assert_eq!(web::get(&recropped.url).await.status, 200);
    set_inline(&mut client, "hal", corpus_bytes("photos/chelsea.png"))
        .await
        .unwrap();
    client
        .delete_media(pb::DeleteMediaRequest {
            user_id: "hal".into(),
            media_id: first.media_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(web::get(&recropped.url).await.status, 404);
}

#[tokio::test]
async fn a_missing_image_is_404_or_with_default_placeholder_a_placeholder() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "ivy", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let base = server.http_base();
    for path in [
        "/v1/images/default/nobody/64.jpg",
        "/v1/images/default/nobody/3/64.jpg",
        "/v1/images/default/ivy/99/64.jpg",
        "/v1/images/other-tenant/ivy/64.jpg",
    ] {
        assert_eq!(
            web::get(&format!("{base}{path}")).await.status,
            404,
            "{path}"
        );
        let placeholder = web::get(&format!("{base}{path}?default=placeholder")).await;
        assert_eq!(placeholder.status, 200, "{path}");
        assert_eq!(placeholder.header("cache-control"), Some("max-age=60"));
        assert_eq!(placeholder.header("content-type"), Some("image/jpeg"));
        let decoded = image::load_from_memory(&placeholder.body).expect("a real image");
        assert_eq!(decoded.width(), 64);
    }
}

#[tokio::test]
async fn bad_paths_and_sizes_are_400_and_other_methods_405() {
    let server = Server::start().await;
    let base = server.http_base();
    for path in [
        "/",
        "/v1/images/default/alice",
        "/v1/images/default/alice/256",
        "/v1/images/default/alice/256.gif",
        "/v1/images/default/alice/big.jpg",
        "/v1/images/default/alice/-5.jpg",
        "/v1/images/default/alice/100000.jpg",
        "/v1/images/default/alice/v2/256.jpg",
        "/v1/images/default/alice/256.jpg?default=mystery",
    ] {
        assert_eq!(
            web::get(&format!("{base}{path}")).await.status,
            400,
            "{path}"
        );
    }
    let url = format!("{base}/v1/images/default/alice/256.jpg");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let response = web::request(method, &url, &[], Default::default()).await;
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test]
async fn the_http_listener_logs_its_address_and_can_be_turned_off() {
    let server = Server::start().await;
    let http = server.http_addr.expect("on");
    assert!(
        server
            .logs()
            .iter()
            .any(|line| line.ends_with(&format!("http listening on {http}"))),
        "{:?}",
        server.logs()
    );
    let off = Server::start_with(&["--http-listen", ""]).await;
    assert_eq!(off.http_addr, None);
    let mut client = off.client().await;
    set_inline(&mut client, "jo", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let image = get(&mut client, "jo", 64, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    assert_eq!(image.url, "", "no URL while HTTP is off");
}

#[tokio::test]
async fn image_urls_are_served_alike_on_their_own_threads_and_on_the_grpc_runtime() {
    for threads in ["0", "3"] {
        let mut server = Server::start_with(&["--http-threads", threads]).await;
        let mut client = server.client().await;
        set_inline(&mut client, "kim", corpus_bytes("photos/rocket.jpg"))
            .await
            .unwrap();
        let image = get(&mut client, "kim", 128, pb::ImageFormat::Jpeg)
            .await
            .unwrap();
        // More connections than threads, all at once (web::get opens one per
        // request): every one is answered in full.
        let fetches: Vec<_> = (0..24)
            .map(|_| {
                let url = image.url.clone();
                tokio::spawn(async move { web::get(&url).await })
            })
            .collect();
        for fetch in fetches {
            let response = fetch.await.unwrap();
            assert_eq!(response.status, 200, "--http-threads {threads}");
            assert_eq!(
                response.body,
                image.data.to_vec(),
                "--http-threads {threads}"
            );
        }
        assert_eq!(
            server.terminate().await,
            Some(0),
            "--http-threads {threads}: SIGTERM ends the process cleanly"
        );
    }
}

#[tokio::test]
async fn urls_are_built_on_the_public_base() {
    let server =
        Server::start_with(&["--http-public-base", "https://img.example.com/avatars/"]).await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "kim", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let url = url_of(&mut client, "kim", 64, pb::ImageFormat::Jpeg).await;
    assert_eq!(
        url,
        format!(
            "https://img.example.com/avatars/v1/images/default/kim/{}/64.jpg",
            set.version
        )
    );
}

fn sign(key: &[u8], path: &str, exp: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{path}?exp={exp}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn status_of(url: String) -> u16 {
    let response: HttpResponse = web::get(&url).await;
    response.status
}

#[tokio::test]
async fn signed_urls_are_accepted_and_tampered_or_expired_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("url-key");
    std::fs::write(&key_file, b"shared secret of every replica").unwrap();
    let key_arg = key_file.to_str().unwrap();
    let server = Server::start_with(&["--http-signed-urls", "--http-url-key-file", key_arg]).await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "lee", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let image = get(&mut client, "lee", 64, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    assert!(image.url.contains("?exp="), "{}", image.url);
    let handed_out = web::get(&image.url).await;
    assert_eq!(handed_out.status, 200);
    assert_eq!(handed_out.body, image.data.to_vec());

    let key = b"shared secret of every replica";
    let base = server.http_base();
    let path = format!("/v1/images/default/lee/{}/64.jpg", set.version);
    let exp = now() + 600;
    let sig = sign(key, &path, exp);
    assert_eq!(
        status_of(format!("{base}{path}?exp={exp}&sig={sig}")).await,
        200
    );
    assert_eq!(status_of(format!("{base}{path}")).await, 403, "unsigned");
    let other = format!("/v1/images/default/lee/{}/128.jpg", set.version);
    assert_eq!(
        status_of(format!("{base}{other}?exp={exp}&sig={sig}")).await,
        403,
        "another path"
    );
    assert_eq!(
        status_of(format!("{base}{path}?exp={}&sig={sig}", exp + 1)).await,
        403,
        "another exp"
    );
    let mut flipped = sig.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert_eq!(
        status_of(format!("{base}{path}?exp={exp}&sig={flipped}")).await,
        403,
        "tampered"
    );
    let past = now() - 10;
    let expired = sign(key, &path, past);
    assert_eq!(
        status_of(format!("{base}{path}?exp={past}&sig={expired}")).await,
        403,
        "expired"
    );
}

#[tokio::test]
async fn without_a_key_file_signing_creates_one_in_the_data_dir_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start_with(&["--http-signed-urls"]).await;
    let key_file = server.data_dir.join("http-url-key");
    let mode = std::fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read(&key_file).unwrap();
    assert!(key.len() >= 32);
    let mut client = server.client().await;
    let set = set_inline_with(
        &mut client,
        "max",
        corpus_bytes("photos/rocket.jpg"),
        None,
        None,
    )
    .await
    .unwrap();
    let path = format!("/v1/images/default/max/{}/64.jpg", set.version);
    let exp = now() + 60;
    let url = format!(
        "{}{path}?exp={exp}&sig={}",
        server.http_base(),
        sign(&key, &path, exp)
    );
    assert_eq!(status_of(url).await, 200, "signed with the file's bytes");
}
