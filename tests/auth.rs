//! Who may call, and what: bearer JWTs (HS256, RS256, ES256, EdDSA, JWKS), the
//! UNAUTHENTICATED reasons, "me", owners and admins, per-caller rate limits and stream
//! caps, the zero-set-up secret, `--auth none`, and the audit trail. Through the real
//! server with real tokens; the test keys are in tests/fixtures/keys.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use profile_image::pb;
use profile_image::pb::upload_profile_image_request::Payload;
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

const PHOTO: &str = "photos/rocket.jpg";

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn key_arg(name: &str) -> String {
    key_file(name).display().to_string()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims of a token for `sub`, valid for an hour.
fn claims(sub: &str) -> serde_json::Value {
    json!({ "sub": sub, "exp": now() + 3600 })
}

/// `claims` signed with the PEM private key `key` (tests/fixtures/keys) as `algorithm`.
fn sign_with(
    key: &str,
    algorithm: Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    profile_image::auth::token::install_crypto_provider();
    let pem = std::fs::read(key_file(key)).expect("test key");
    let encoding = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("no test key for {other:?}"),
    }
    .expect("test key parses");
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding).expect("sign")
}

/// `claims` signed with an HS256 `secret`.
fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    profile_image::auth::token::install_crypto_provider();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).expect("secret"),
    )
    .expect("sign")
}

/// The harness secret, as a test would sign with it.
fn harness_secret() -> Vec<u8> {
    let mut bytes = std::fs::read(harness_secret_file()).expect("harness secret");
    bytes.pop();
    bytes
}

fn get_request(user: &str) -> pb::GetProfileImageRequest {
    pb::GetProfileImageRequest {
        user_id: user.into(),
        size: 64,
        format: pb::ImageFormat::Unspecified as i32,
        metadata_only: true,
        ..Default::default()
    }
}

/// The ErrorInfo reason of a status.
fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| {
            assert_eq!(info.domain, "profileimage.v1");
            info.reason.clone()
        })
        .unwrap_or_default()
}

/// Asserts a call failed with `code` and ErrorInfo `wanted`.
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    wanted: &str,
) -> tonic::Status {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), wanted, "{status:?}");
    status
}

/// GetProfileImage (metadata only) with `token`.
async fn get_with(
    server: &Server,
    token: Option<&str>,
    user: &str,
) -> Result<pb::ProfileImage, tonic::Status> {
    let mut client = server.client_with(token).await;
    Ok(client
        .get_profile_image(get_request(user))
        .await?
        .into_inner()
        .profile_image
        .expect("profile_image"))
}

/// Sets `user`'s image as the harness admin; the new state.
async fn seed(server: &Server, user: &str) -> pb::ProfileImage {
    set_inline(&mut server.client().await, user, corpus_bytes(PHOTO))
        .await
        .expect("seed an image")
}

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated_token_missing() {
    let server = Server::start().await;
    let status = assert_refused(
        get_with(&server, None, "alice").await,
        Code::Unauthenticated,
        "token-missing",
    );
    assert!(status.message().contains("authorization"), "{status:?}");
}

#[tokio::test]
async fn a_malformed_token_is_unauthenticated_token_invalid_and_not_echoed() {
    let server = Server::start().await;
    let garbage = "not-a-jwt-garbage-1234";
    let status = assert_refused(
        get_with(&server, Some(garbage), "alice").await,
        Code::Unauthenticated,
        "token-invalid",
    );
    assert!(!status.message().contains(garbage), "{status:?}");
    assert!(status.message().contains("well-formed"), "{status:?}");
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_token_invalid() {
    let server = Server::start().await;
    let forged = sign_hs256(b"some other secret", &claims("alice"));
    let status = assert_refused(
        get_with(&server, Some(&forged), "alice").await,
        Code::Unauthenticated,
        "token-invalid",
    );
    assert!(status.message().contains("signature"), "{status:?}");
    assert!(!status.message().contains(&forged), "{status:?}");
    assert!(
        server.logs().iter().all(|line| !line.contains(&forged)),
        "no log line holds the token"
    );
}

#[tokio::test]
async fn an_expired_token_is_token_expired_past_the_clock_skew_and_fine_within_it() {
    let server = Server::start().await;
    let expired = sign_hs256(
        &harness_secret(),
        &json!({"sub": "alice", "exp": now() - 120}),
    );
    let status = assert_refused(
        get_with(&server, Some(&expired), "alice").await,
        Code::Unauthenticated,
        "token-expired",
    );
    assert!(status.message().contains("expired"), "{status:?}");

    seed(&server, "alice").await;
    let within_skew = sign_hs256(
        &harness_secret(),
        &json!({"sub": "alice", "exp": now() - 10}),
    );
    get_with(&server, Some(&within_skew), "alice")
        .await
        .expect("30 s of clock skew are allowed");
}

#[tokio::test]
async fn a_token_without_exp_or_not_yet_valid_is_token_invalid() {
    let server = Server::start().await;
    let no_exp = sign_hs256(&harness_secret(), &json!({"sub": "alice"}));
    let status = assert_refused(
        get_with(&server, Some(&no_exp), "alice").await,
        Code::Unauthenticated,
        "token-invalid",
    );
    assert!(status.message().contains("exp"), "{status:?}");
    let later = sign_hs256(
        &harness_secret(),
        &json!({"sub": "alice", "exp": now() + 7200, "nbf": now() + 600}),
    );
    let status = assert_refused(
        get_with(&server, Some(&later), "alice").await,
        Code::Unauthenticated,
        "token-invalid",
    );
    assert!(status.message().contains("nbf"), "{status:?}");
}

#[tokio::test]
async fn the_issuer_and_audience_are_checked_when_configured() {
    let server = Server::start_with(&[
        "--jwt-issuer",
        "https://id.example",
        "--jwt-audience",
        "profile-image",
    ])
    .await;
    let token = |iss: &str, aud: &str| {
        sign_hs256(
            &harness_secret(),
            &json!({"sub": "alice", "exp": now() + 3600, "iss": iss, "aud": aud}),
        )
    };
    let mut alice = server
        .client_with(Some(&token("https://id.example", "profile-image")))
        .await;
    set_inline(&mut alice, "me", corpus_bytes(PHOTO))
        .await
        .expect("set with the right issuer and audience");
    get_with(
        &server,
        Some(&token("https://id.example", "profile-image")),
        "alice",
    )
    .await
    .expect("the right issuer and audience");
    let status = assert_refused(
        get_with(
            &server,
            Some(&token("https://evil.example", "profile-image")),
            "alice",
        )
        .await,
        Code::Unauthenticated,
        "token-invalid",
    );
    assert!(status.message().contains("issuer"), "{status:?}");
    let status = assert_refused(
        get_with(
            &server,
            Some(&token("https://id.example", "another-service")),
            "alice",
        )
        .await,
        Code::Unauthenticated,
        "token-invalid",
    );
    assert!(status.message().contains("audience"), "{status:?}");
    let without = sign_hs256(&harness_secret(), &claims("alice"));
    assert_refused(
        get_with(&server, Some(&without), "alice").await,
        Code::Unauthenticated,
        "token-invalid",
    );
}

#[tokio::test]
async fn hs256_rs256_es256_and_eddsa_tokens_verify_with_their_configured_keys() {
    let (rsa, ec, ed) = (
        key_arg("rsa.pub"),
        key_arg("ec.pub"),
        key_arg("ed25519.pub"),
    );
    let server = Server::start_with(&[
        "--jwt-public-key",
        &rsa,
        "--jwt-public-key",
        &ec,
        "--jwt-public-key",
        &ed,
    ])
    .await;
    seed(&server, "alice").await;
    let tokens = [
        ("HS256", sign_hs256(&harness_secret(), &claims("alice"))),
        (
            "RS256",
            sign_with("rsa.key", Algorithm::RS256, None, &claims("alice")),
        ),
        (
            "ES256",
            sign_with("ec.key", Algorithm::ES256, None, &claims("alice")),
        ),
        (
            "EdDSA",
            sign_with("ed25519.key", Algorithm::EdDSA, None, &claims("alice")),
        ),
    ];
    for (algorithm, token) in &tokens {
        let image = get_with(&server, Some(token), "me")
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e:?}"));
        assert_eq!(image.user_id, "alice", "{algorithm}");
    }
    let unknown_key = sign_with("other-rsa.key", Algorithm::RS256, None, &claims("alice"));
    let status = assert_refused(
        get_with(&server, Some(&unknown_key), "alice").await,
        Code::Unauthenticated,
        "token-invalid",
    );
    assert!(status.message().contains("signature"), "{status:?}");
}

#[tokio::test]
async fn a_token_cannot_pick_an_algorithm_its_key_is_not_for() {
    // The RSA public key's PEM as an HS256 secret: the classic confusion attack.
    let rsa = key_arg("rsa.pub");
    let server = Server::start_with(&["--jwt-public-key", &rsa]).await;
    let pem = std::fs::read(key_file("rsa.pub")).expect("key");
    let confused = sign_hs256(&pem, &claims("alice"));
    assert_refused(
        get_with(&server, Some(&confused), "alice").await,
        Code::Unauthenticated,
        "token-invalid",
    );
}

/// A JWKS of the RSA test key (kid `rsa-1`) and the EC one (kid `ec-1`).
fn jwks() -> String {
    profile_image::auth::token::install_crypto_provider();
    let jwk = |key: &str, algorithm: Algorithm, kid: &str| {
        let pem = std::fs::read(key_file(key)).expect("key");
        let encoding = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        }
        .expect("key");
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, algorithm).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    };
    serde_json::to_string(&jsonwebtoken::jwk::JwkSet {
        keys: vec![
            jwk("rsa.key", Algorithm::RS256, "rsa-1"),
            jwk("ec.key", Algorithm::ES256, "ec-1"),
        ],
    })
    .expect("json")
}

#[tokio::test]
async fn a_jwks_file_verifies_tokens_by_key_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks()).expect("write jwks");
    let server = Server::start_with(&["--jwt-jwks", file.to_str().unwrap()]).await;
    seed(&server, "alice").await;
    for token in [
        sign_with("rsa.key", Algorithm::RS256, Some("rsa-1"), &claims("alice")),
        sign_with("ec.key", Algorithm::ES256, Some("ec-1"), &claims("alice")),
    ] {
        get_with(&server, Some(&token), "alice")
            .await
            .expect("a JWKS key verifies");
    }
    let wrong_kid = sign_with(
        "other-rsa.key",
        Algorithm::RS256,
        Some("rsa-1"),
        &claims("alice"),
    );
    assert_refused(
        get_with(&server, Some(&wrong_kid), "alice").await,
        Code::Unauthenticated,
        "token-invalid",
    );
}

/// Serves `body` as JSON to every request on 127.0.0.1; its URL.
async fn serve_json(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = socket.read(&mut head).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

// Multi-threaded: the harness blocks its thread while the server starts, and the JWKS
// is served from this runtime meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_read_at_start() {
    let url = serve_json(jwks()).await;
    let server = Server::start_with(&["--jwt-jwks", &url]).await;
    seed(&server, "alice").await;
    let token = sign_with("rsa.key", Algorithm::RS256, Some("rsa-1"), &claims("alice"));
    let read = get_with(&server, Some(&token), "alice").await;
    assert!(read.is_ok(), "{read:?}\n{:#?}", server.logs());
}

#[tokio::test]
async fn me_is_the_caller_in_every_request() {
    let server = Server::start().await;
    let alice = token_for("alice", None, false);
    let mut client = server.client_with(Some(&alice)).await;
    let set = set_inline(&mut client, "me", corpus_bytes(PHOTO))
        .await
        .expect("set as me");
    assert_eq!(set.user_id, "alice");
    let read = get_with(&server, Some(&token_for("bob", None, false)), "alice")
        .await
        .expect("bob reads alice");
    assert_eq!(read.version, set.version);
    assert_eq!(list_media(&mut client, "me").await.len(), 1);
    delete_profile(&mut client, "me")
        .await
        .expect("delete as me");
    assert_no_image(&mut server.client().await, "alice").await;
}

#[tokio::test]
async fn another_users_image_can_be_read_but_not_changed() {
    let server = Server::start().await;
    let before = seed(&server, "alice").await;
    let mut bob = server
        .client_with(Some(&token_for("bob", None, false)))
        .await;

    let read = get(&mut bob, "alice", 64, pb::ImageFormat::Jpeg)
        .await
        .expect("read");
    assert_eq!(read.version, before.version);

    let denied = |result: Result<(), tonic::Status>| {
        assert_refused(result, Code::PermissionDenied, "not-owner");
    };
    denied(
        set_inline(&mut bob, "alice", corpus_bytes(PHOTO))
            .await
            .map(|_| ()),
    );
    denied(
        upload(&mut bob, "alice", &corpus_bytes(PHOTO), 1 << 20, None)
            .await
            .map(|_| ()),
    );
    denied(
        bob.crop_profile_image(pb::CropProfileImageRequest {
            user_id: "alice".into(),
            crop: Some(pb::CropRect {
                x: 0,
                y: 0,
                size: 50,
            }),
            expected_version: None,
        })
        .await
        .map(|_| ()),
    );
    denied(delete_profile(&mut bob, "alice").await);
    denied(
        bob.delete_media(pb::DeleteMediaRequest {
            user_id: "alice".into(),
            media_id: before.media_id.clone(),
        })
        .await
        .map(|_| ()),
    );
    denied(
        bob.list_media(pb::ListMediaRequest {
            user_id: "alice".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .map(|_| ()),
    );

    let after = get(
        &mut server.client().await,
        "alice",
        0,
        pb::ImageFormat::Unspecified,
    )
    .await
    .expect("alice's image is still there");
    assert_eq!(after.version, before.version, "nothing changed");
    assert_eq!(after.media_id, before.media_id);
    assert_eq!(
        list_media(&mut server.client().await, "alice").await.len(),
        1
    );
}

#[tokio::test]
async fn an_admin_of_the_tenant_may_change_any_users_image() {
    let server = Server::start().await;
    let before = seed(&server, "alice").await;
    let mut admin = server
        .client_with(Some(&token_for("carol", None, true)))
        .await;
    assert_eq!(list_media(&mut admin, "alice").await.len(), 1);
    delete_profile(&mut admin, "alice")
        .await
        .expect("an admin deletes alice's image");
    assert_no_image(&mut admin, "alice").await;
    let again = set_inline(&mut admin, "alice", corpus_bytes(PHOTO))
        .await
        .expect("admin sets");
    assert_eq!(again.version, before.version + 2);
}

#[tokio::test]
async fn watching_every_user_needs_an_admin_and_watching_one_does_not() {
    let server = Server::start().await;
    seed(&server, "alice").await;
    let mut bob = server
        .client_with(Some(&token_for("bob", None, false)))
        .await;
    let all = bob
        .watch_status(pb::WatchStatusRequest {
            user_id: String::new(),
            until_complete: false,
            after_sequence: 0,
        })
        .await;
    assert_refused(all.map(|_| ()), Code::PermissionDenied, "admin-required");
    let mut one = bob
        .watch_status(pb::WatchStatusRequest {
            user_id: "alice".into(),
            until_complete: false,
            after_sequence: 0,
        })
        .await
        .expect("any caller of the tenant watches one user")
        .into_inner();
    let snapshot = one.next().await.expect("an event").expect("snapshot");
    assert_eq!(snapshot.user_id, "alice");
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let server = Server::start().await;
    assert_eq!(health(&server, "").await, 1, "SERVING");
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            server.channel().await,
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection without a token")
        .into_inner();
    assert!(answers.next().await.expect("an answer").is_ok());
}

#[tokio::test]
async fn zero_set_up_serve_creates_a_private_secret_and_token_signs_with_it() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start_plain(&[], &[]).await;
    let secret = server.data_dir.join("jwt-hs256.secret");
    let mode = std::fs::metadata(&secret)
        .expect("the secret was created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    assert!(
        server
            .logs()
            .iter()
            .any(|line| line.contains("created an HS256 secret")),
        "the server says it made one"
    );
    let contents = std::fs::read_to_string(&secret).expect("secret");
    assert!(
        server
            .logs()
            .iter()
            .all(|line| !line.contains(contents.trim())),
        "but never logs the secret"
    );

    let alice = token_from_data_dir(&server.data_dir, &["--user", "alice"]);
    let mut client = server.client_with(Some(&alice)).await;
    let set = set_inline(&mut client, "me", corpus_bytes(PHOTO))
        .await
        .expect("a call with it");
    assert_eq!(set.user_id, "alice");
    let other_tenant = token_from_data_dir(
        &server.data_dir,
        &["--user", "alice", "--tenant", "acme", "--ttl", "5m"],
    );
    assert_no_image(&mut server.client_with(Some(&other_tenant)).await, "me").await;
}

#[tokio::test]
async fn token_without_a_secret_says_how_to_get_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_profile-image"))
        .args(["token", "--user", "alice", "--data-dir"])
        .arg(dir.path())
        .env_remove("PROFILE_IMAGE_JWT_HS256_SECRET_FILE")
        .output()
        .expect("run token");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("start the server once"));
}

#[tokio::test]
async fn auth_none_makes_every_caller_an_admin_of_default_and_warns() {
    let server = Server::start_with(&["--auth", "none"]).await;
    let mut anyone = server.client_with(None).await;
    set_inline(&mut anyone, "alice", corpus_bytes(PHOTO))
        .await
        .expect("no token needed");
    let mut feed = anyone
        .watch_status(pb::WatchStatusRequest {
            user_id: String::new(),
            until_complete: false,
            after_sequence: 0,
        })
        .await
        .expect("an admin watches everyone")
        .into_inner();
    assert!(feed.next().await.expect("snapshot").is_ok());
    assert!(
        server
            .logs()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("--auth none")),
        "a warning at start"
    );
}

#[tokio::test]
async fn changes_past_the_rate_are_refused_with_retry_info_and_change_nothing() {
    let server = Server::start_with_env(
        &[],
        &[
            ("PROFILE_IMAGE_RATE_LIMIT_PER_MINUTE", "2"),
            ("PROFILE_IMAGE_RATE_LIMIT_BURST", "2"),
        ],
    )
    .await;
    let origin = common::origin::Origin::start().await;
    let mut alice = server
        .client_with(Some(&token_for("alice", None, false)))
        .await;
    set_inline(&mut alice, "me", corpus_bytes(PHOTO))
        .await
        .expect("first");
    // An accepted URL download counts like any change.
    let download = set_profile(
        &mut alice,
        pb::SetProfileImageRequest {
            user_id: "me".into(),
            source: Some(pb::set_profile_image_request::Source::Url(
                origin.url("/status/404"),
            )),
            crop: None,
            expected_version: None,
        },
    )
    .await;
    download.expect("the download is accepted (it fails later: the origin is not allowed)");
    let version = get_with(&server, Some(&token_for("alice", None, false)), "alice")
        .await
        .map(|image| image.version)
        .unwrap_or_default();

    let status = assert_refused(
        set_inline(&mut alice, "me", corpus_bytes(PHOTO)).await,
        Code::ResourceExhausted,
        "rate-limited",
    );
    let details = status.get_error_details();
    let wait = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(
        wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    let quota = details.quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "default/alice");
    let after = get_with(&server, Some(&token_for("alice", None, false)), "alice")
        .await
        .map(|image| image.version)
        .unwrap_or_default();
    assert_eq!(after, version, "nothing changed");

    let mut bob = server
        .client_with(Some(&token_for("bob", None, false)))
        .await;
    set_inline(&mut bob, "me", corpus_bytes(PHOTO))
        .await
        .expect("another user has a budget of their own");
}

async fn watch_as(
    client: &mut Client,
    user: &str,
) -> Result<tonic::Streaming<pb::WatchStatusResponse>, tonic::Status> {
    Ok(client
        .watch_status(pb::WatchStatusRequest {
            user_id: user.into(),
            until_complete: false,
            after_sequence: 0,
        })
        .await?
        .into_inner())
}

#[tokio::test]
async fn a_caller_may_hold_only_so_many_watch_streams() {
    let server = Server::start_with_env(
        &[],
        &[
            ("PROFILE_IMAGE_MAX_WATCHES_PER_CALLER", "2"),
            ("PROFILE_IMAGE_ADMIN_MAX_WATCHES_PER_CALLER", "3"),
        ],
    )
    .await;
    let mut alice = server
        .client_with(Some(&token_for("alice", None, false)))
        .await;
    let mut first = watch_as(&mut alice, "alice").await.expect("first");
    let mut second = watch_as(&mut alice, "bob").await.expect("second");
    first.next().await.expect("snapshot").expect("ok");
    second.next().await.expect("snapshot").expect("ok");
    let status = assert_refused(
        watch_as(&mut alice, "carol").await,
        Code::ResourceExhausted,
        "too-many-watches",
    );
    assert!(
        status.get_error_details().quota_failure().is_some(),
        "{status:?}"
    );
    let mut bob = server
        .client_with(Some(&token_for("bob", None, false)))
        .await;
    watch_as(&mut bob, "alice")
        .await
        .expect("another caller's streams are their own");

    drop(first);
    // The server notices the cancelled stream when its next poll fails: retry briefly.
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(stream) = watch_as(&mut alice, "carol").await {
            reopened = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed stream gives its slot back");

    let mut admin = server
        .client_with(Some(&token_for("root", None, true)))
        .await;
    let _held: Vec<_> = [
        watch_as(&mut admin, "a").await.expect("1"),
        watch_as(&mut admin, "b").await.expect("2"),
        watch_as(&mut admin, "c").await.expect("3"),
    ]
    .into();
    assert_refused(
        watch_as(&mut admin, "d").await,
        Code::ResourceExhausted,
        "too-many-watches",
    );
}

/// An upload as `token` that sent its metadata and waits with its stream open: the
/// sender that ends it, and the call.
async fn open_upload(
    server: &Server,
    token: &str,
) -> (
    tokio::sync::mpsc::Sender<pb::UploadProfileImageRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<pb::UploadProfileImageResponse>, tonic::Status>>,
) {
    let mut client = server.client_with(Some(token)).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender
        .send(pb::UploadProfileImageRequest {
            payload: Some(Payload::Metadata(pb::UploadMetadata {
                user_id: "me".into(),
                content_type: "image/jpeg".into(),
                size_bytes: 0,
                crop: None,
                expected_version: None,
            })),
        })
        .await
        .expect("send metadata");
    let call = tokio::spawn(async move {
        client
            .upload_profile_image(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    (sender, call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_may_run_only_so_many_uploads_at_once() {
    let server =
        Server::start_with_env(&[], &[("PROFILE_IMAGE_MAX_UPLOADS_PER_CALLER", "1")]).await;
    let token = token_for("alice", None, false);
    let mut second = server.client_with(Some(&token)).await;
    let mut refused = None;
    for _ in 0..50 {
        let (open, call) = open_upload(&server, &token).await;
        // Give the open upload time to reach the server and take the caller's slot.
        tokio::time::sleep(Duration::from_millis(50)).await;
        match upload(&mut second, "me", &corpus_bytes(PHOTO), 1 << 20, None).await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                refused = Some((status, open, call));
                break;
            }
            // The second upload got there first (and the open one was refused): again.
            _ => {
                drop(open);
                let _ = call.await;
            }
        }
    }
    let (status, open, call) = refused.expect("a second upload at once is refused");
    assert_eq!(reason(&status), "too-many-uploads");
    assert!(status.get_error_details().quota_failure().is_some());
    drop(open);
    let _ = call.await;
    upload(&mut second, "me", &corpus_bytes(PHOTO), 1 << 20, None)
        .await
        .expect("the slot is back once the first upload ended");
}

#[tokio::test]
async fn every_change_is_audited_without_tokens_or_bytes() {
    let server = Server::start().await;
    let alice = token_for("alice", None, false);
    let mut client = server.client_with(Some(&alice)).await;
    let set = set_inline(&mut client, "me", corpus_bytes(PHOTO))
        .await
        .expect("set");
    let _ = delete_profile(
        &mut server
            .client_with(Some(&token_for("bob", None, false)))
            .await,
        "alice",
    )
    .await;
    // The server's log is read by a thread of the harness: wait for both lines.
    let mut lines = server.logs();
    for _ in 0..200 {
        if lines.iter().filter(|l| l.contains(" audit:")).count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        lines = server.logs();
    }
    let audit: Vec<&String> = lines.iter().filter(|l| l.contains(" audit:")).collect();
    assert!(
        audit.iter().any(|l| l.contains("tenant=default")
            && l.contains("user=alice")
            && l.contains("actor=\"alice\"")
            && l.contains("action=\"set-image\"")
            && l.contains(&format!("version={}", set.version))
            && l.contains("code=\"OK\"")),
        "{audit:#?}"
    );
    assert!(
        audit.iter().any(|l| l.contains("actor=\"bob\"")
            && l.contains("action=\"delete\"")
            && l.contains("code=\"PermissionDenied\"")),
        "{audit:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains(&alice)),
        "no token in any log line"
    );
}
