//! gRPC-Web on the gRPC port (HTTP/1.1, as browsers send it): unary and server
//! streaming calls, and CORS for the configured origins only.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::http::{self as web, HttpResponse};
use common::{Server, corpus_bytes, set_inline};
use profile_image::pb;
use prost::Message;

const SERVICE: &str = "profileimage.v1.ProfileImageService";

/// One gRPC-Web call as an admin: the request message framed, POSTed over HTTP/1.1.
async fn call(server: &Server, method: &str, message: &impl Message) -> HttpResponse {
    let bearer = format!("Bearer {}", common::admin_token());
    call_with(server, method, message, Some(&bearer)).await
}

async fn call_with(
    server: &Server,
    method: &str,
    message: &impl Message,
    authorization: Option<&str>,
) -> HttpResponse {
    let encoded = message.encode_to_vec();
    let mut body = BytesMut::with_capacity(5 + encoded.len());
    body.put_u8(0);
    body.put_u32(encoded.len() as u32);
    body.put_slice(&encoded);
    web::request(
        "POST",
        &format!("{}/{SERVICE}/{method}", server.url()),
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
        ]
        .into_iter()
        .chain(authorization.map(|value| ("authorization", value)))
        .collect::<Vec<_>>(),
        body.freeze(),
    )
    .await
}

/// The messages of a gRPC-Web response body, and its trailers as text.
fn frames(body: &[u8]) -> (Vec<Bytes>, String) {
    let mut messages = Vec::new();
    let mut trailers = String::new();
    let mut rest = body;
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(payload));
        } else {
            messages.push(Bytes::copy_from_slice(payload));
        }
        rest = &rest[5 + len..];
    }
    (messages, trailers)
}

#[tokio::test]
async fn a_unary_call_over_grpc_web_answers_what_grpc_does() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "web", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let request = pb::GetProfileImageRequest {
        user_id: "web".into(),
        size: 64,
        format: pb::ImageFormat::Jpeg as i32,
        metadata_only: false,
        if_none_match: String::new(),
    };
    let response = call(&server, "GetProfileImage", &request).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/grpc-web")),
        "{:?}",
        response.headers
    );
    let (messages, trailers) = frames(&response.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let answer = pb::GetProfileImageResponse::decode(messages[0].clone()).unwrap();
    let expected = common::get(&mut client, "web", 64, pb::ImageFormat::Jpeg)
        .await
        .unwrap();
    assert_eq!(answer.profile_image.unwrap().data, expected.data);
}

#[tokio::test]
async fn a_failed_grpc_web_call_carries_its_status_in_the_trailers() {
    let server = Server::start().await;
    let request = pb::GetProfileImageRequest {
        user_id: "nobody".into(),
        ..Default::default()
    };
    let response = call(&server, "GetProfileImage", &request).await;
    assert_eq!(grpc_status(&response).as_deref(), Some("5"), "NOT_FOUND");
    let anonymous = call_with(&server, "GetProfileImage", &request, None).await;
    assert_eq!(
        grpc_status(&anonymous).as_deref(),
        Some("16"),
        "UNAUTHENTICATED: gRPC-Web needs a bearer token like gRPC"
    );
}

/// A gRPC-Web response's grpc-status: a header (trailers-only) or in the trailer frame.
fn grpc_status(response: &HttpResponse) -> Option<String> {
    response
        .header("grpc-status")
        .map(str::to_owned)
        .or_else(|| {
            let (_, trailers) = frames(&response.body);
            trailers
                .lines()
                .find_map(|l| l.strip_prefix("grpc-status:").map(|s| s.trim().to_owned()))
        })
}

#[tokio::test]
async fn a_server_stream_over_grpc_web_delivers_its_messages() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(&mut client, "streamer", corpus_bytes("photos/rocket.jpg"))
        .await
        .unwrap();
    let request = pb::WatchStatusRequest {
        user_id: "streamer".into(),
        until_complete: true,
        after_sequence: 0,
    };
    let response = call(&server, "WatchStatus", &request).await;
    assert_eq!(response.status, 200);
    let (messages, trailers) = frames(&response.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let snapshot = pb::WatchStatusResponse::decode(messages[0].clone()).unwrap();
    assert_eq!(snapshot.r#type, pb::EventType::Snapshot as i32);
    assert_eq!(
        snapshot.profile_image.unwrap().status,
        pb::Status::Ready as i32
    );
}

async fn preflight(server: &Server, origin: &str) -> HttpResponse {
    web::request(
        "OPTIONS",
        &format!("{}/{SERVICE}/GetProfileImage", server.url()),
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-grpc-web"),
        ],
        Bytes::new(),
    )
    .await
}

#[tokio::test]
async fn browsers_on_other_origins_may_call_only_when_allowed() {
    let closed = Server::start().await;
    let response = preflight(&closed, "https://app.example.com").await;
    assert_eq!(
        response.header("access-control-allow-origin"),
        None,
        "none by default"
    );

    let open = Server::start_with(&["--grpc-web-cors-origin", "https://app.example.com"]).await;
    let allowed = preflight(&open, "https://app.example.com").await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let other = preflight(&open, "https://evil.example.net").await;
    assert_eq!(other.header("access-control-allow-origin"), None);
}
