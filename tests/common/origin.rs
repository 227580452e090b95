//! A local HTTP/1.1 origin for download and fetcher tests, on 127.0.0.1:0: one request
//! per connection, routes chosen by path, so each misbehaviour is easy to stage. Routes:
//! `/image/<corpus path>`, `/slow/<corpus path>` (body trickles over ~1.5 s),
//! `/stall` (never answers), `/stall-body` (declares 1000 bytes, sends 100, stalls),
//! `/gate/<corpus path>` (stalls while the gate is closed),
//! `/redirect/<n>/<corpus path>`, `/redirect-to/<url>`, `/endless` (a body without end),
//! `/bytes/<n>` (n bytes, Content-Length n), `/unsized/<n>` (n bytes, no Content-Length),
//! `/declared/<n>` (declares n bytes, sends none), `/echo-headers` (the request head as
//! the body), `/html`, `/status/<code>`, `/flaky/<n>/<corpus path>` (503 for the first
//! n hits). A query string does not change the route.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Origin {
    pub base: String,
    pub port: u16,
    gate_open: Arc<AtomicBool>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    endless_closed: Arc<Notify>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let port = listener.local_addr().expect("addr").port();
        let origin = Origin {
            base: format!("http://127.0.0.1:{port}"),
            port,
            gate_open: Arc::default(),
            hits: Arc::default(),
            endless_closed: Arc::default(),
        };
        let state = origin.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move { state.answer(socket).await });
            }
        });
        origin
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn open_gate(&self) {
        self.gate_open.store(true, Ordering::SeqCst);
    }

    /// How many requests reached `path` (with its query, if any).
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Waits (up to 10 s) until a request has reached `path`.
    pub async fn reached(&self, path: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.hits(path) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no request reached {path} in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How many requests reached the origin at all.
    pub fn requests(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    /// Returns once a client has stopped taking an `/endless` body.
    pub async fn endless_closed(&self) {
        self.endless_closed.notified().await;
    }

    async fn answer(&self, mut socket: TcpStream) {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request).into_owned();
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let hit = {
            let mut hits = self.hits.lock().unwrap();
            let count = hits.entry(path.clone()).or_default();
            *count += 1;
            *count
        };
        let route = path.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = route.trim_start_matches('/').splitn(3, '/').collect();
        match parts.as_slice() {
            ["image", rest @ ..] => self.send_file(&mut socket, &rest.join("/")).await,
            ["slow", rest @ ..] => {
                let body = super::corpus_bytes(&rest.join("/"));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                for piece in body.chunks(body.len().div_ceil(15)) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if socket.write_all(piece).await.is_err() {
                        return;
                    }
                }
            }
            ["stall"] => tokio::time::sleep(Duration::from_secs(3600)).await,
            ["stall-body"] => {
                let head =
                    "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&[0u8; 100]).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            ["gate", rest @ ..] => {
                while !self.gate_open.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.send_file(&mut socket, &rest.join("/")).await;
            }
            ["redirect", n, rest] => {
                let hops: u32 = n.parse().unwrap_or(0);
                let next = if hops <= 1 {
                    format!("/image/{rest}")
                } else {
                    format!("/redirect/{}/{rest}", hops - 1)
                };
                redirect(&mut socket, &next).await;
            }
            ["redirect-to", ..] => {
                let target = path.trim_start_matches("/redirect-to/").to_owned();
                redirect(&mut socket, &target).await;
            }
            ["endless"] => {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n")
                    .await;
                let chunk = vec![0xAB; 64 * 1024];
                while socket.write_all(&chunk).await.is_ok() {}
                self.endless_closed.notify_one();
            }
            ["bytes", n] => {
                let body = vec![0xAB; n.parse().unwrap_or(0)];
                respond(&mut socket, "200 OK", "image/png", &body).await
            }
            ["unsized", n] => {
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                let _ = socket.write_all(&vec![0u8; n.parse().unwrap_or(0)]).await;
                let _ = socket.shutdown().await;
            }
            ["declared", n] => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {n}\r\n\r\n"
                );
                let _ = socket.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            ["echo-headers"] => respond(&mut socket, "200 OK", "text/plain", text.as_bytes()).await,
            ["html"] => {
                respond(
                    &mut socket,
                    "200 OK",
                    "text/html",
                    b"<html><body>not an image</body></html>",
                )
                .await
            }
            ["status", code] => {
                respond(
                    &mut socket,
                    &format!("{code} Status"),
                    "text/plain",
                    b"nope",
                )
                .await
            }
            ["flaky", n, rest] => {
                if hit <= n.parse().unwrap_or(0) {
                    respond(
                        &mut socket,
                        "503 Service Unavailable",
                        "text/plain",
                        b"try later",
                    )
                    .await;
                } else {
                    self.send_file(&mut socket, rest).await;
                }
            }
            _ => respond(&mut socket, "404 Not Found", "text/plain", b"no such route").await,
        }
    }

    async fn send_file(&self, socket: &mut TcpStream, corpus_path: &str) {
        let body = super::corpus_bytes(corpus_path);
        respond(socket, "200 OK", "image/jpeg", &body).await;
    }
}

async fn respond(socket: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body).await;
    let _ = socket.shutdown().await;
}

async fn redirect(socket: &mut TcpStream, location: &str) {
    let head = format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.shutdown().await;
}
