//! A minimal HTTP/1.1 client for the image URLs: one request per connection, the
//! whole body read.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// GET `url`.
pub async fn get(url: &str) -> HttpResponse {
    request("GET", url, &[], Bytes::new()).await
}

/// `method` on `url` with these headers and body.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> HttpResponse {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("url {url}: {e}"));
    let authority = format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port_or_known_default().expect("port")
    );
    let target = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(target)
        .header("host", &authority);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(body)).expect("request"))
        .await
        .expect("http response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("http body")
        .to_bytes()
        .to_vec();
    HttpResponse {
        status,
        headers,
        body,
    }
}
