//! Image URLs over HTTP/1.1 keep-alive: the service next to nginx serving the same bytes
//! from a file, on this machine, measured side by side in one run.
//!
//!     scripts/install-deps --bench     # nginx (nginx-light) and wrk, from Debian
//!     cargo bench --bench http
//!
//! The release binary runs as its own process (`--http-listen 127.0.0.1:0`) with one
//! user's photo set; its 256 px rendition's versioned URL (what ProfileImage.url hands
//! out) is fetched once, and the same bytes are written to a file that nginx (started
//! here, on a free loopback port, `worker_processes auto`, `sendfile`, `etag`, open file
//! cache, keep-alive without a request limit) serves. wrk loads each server in turn for
//! every concurrency; within a round the order alternates (nginx first, then the
//! service, then the service first...), so that a drift in the machine's speed is shared.
//! Both servers and wrk share the machine's cores.
//!
//! The service runs twice: as configured by default (image URLs on their own
//! per-core event loops) and with `--http-threads 0` (on the gRPC runtime's workers),
//! so the switch's effect is measured in the same run.
//!
//! Environment:
//!   HTTP_BENCH_SECONDS      seconds per wrk run                    [10]
//!   HTTP_BENCH_ROUNDS       rounds (each runs every pair once)     [3]
//!   HTTP_BENCH_CONCURRENCY  comma-separated wrk connections        [16,64]
//!   HTTP_BENCH_THREADS      wrk threads                            [2]
//!   HTTP_BENCH_PHOTO        corpus file uploaded                   [photos/rocket.jpg]

#[path = "support/server.rs"]
mod server;
#[path = "support/mod.rs"]
mod support;
use support::{connect, env_or};

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use profile_image::pb::profile_image_service_client::ProfileImageServiceClient;
use profile_image::pb::{self, set_profile_image_request::Source};

fn main() {
    support::run_unless_filtered_out("http", run);
}

/// A child process stopped with SIGTERM when dropped (also when the bench panics):
/// SIGKILL would leave nginx's workers running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Nginx,
    /// The service as configured by default.
    Service,
    /// The service with `--http-threads 0`.
    SharedRuntime,
}

impl Target {
    const ALL: [Target; 3] = [Target::Nginx, Target::Service, Target::SharedRuntime];

    fn name(self) -> &'static str {
        match self {
            Target::Nginx => "nginx (file)",
            Target::Service => "profile-image",
            Target::SharedRuntime => "--http-threads 0",
        }
    }
}

async fn run() {
    let seconds: u64 = env_or("HTTP_BENCH_SECONDS", 10);
    let rounds: usize = env_or("HTTP_BENCH_ROUNDS", 3usize).max(1);
    let threads: usize = env_or("HTTP_BENCH_THREADS", 2usize).max(1);
    let photo: String = env_or("HTTP_BENCH_PHOTO", "photos/rocket.jpg".to_string());
    let concurrencies: Vec<usize> = std::env::var("HTTP_BENCH_CONCURRENCY")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 64]);
    for tool in ["nginx", "wrk"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            eprintln!("http bench: {tool} is missing; run scripts/install-deps --bench");
            return;
        }
    }

    let temp = tempfile::tempdir().expect("temp dir");
    let (service, grpc, http) = start_service(&temp.path().join("data"), None);
    let (shared, shared_grpc, shared_http) =
        start_service(&temp.path().join("data-shared"), Some("0"));
    let photo_bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus")
            .join(&photo),
    )
    .expect("photo");
    let image = set_and_get(grpc, &photo_bytes).await;
    let service_url = image.url.clone();
    assert!(service_url.contains(&http.to_string()), "{service_url}");
    let shared_url = set_and_get(shared_grpc, &photo_bytes).await.url;
    assert!(
        shared_url.contains(&shared_http.to_string()),
        "{shared_url}"
    );

    let root = temp.path().join("nginx");
    std::fs::create_dir_all(root.join("html")).expect("nginx dir");
    std::fs::write(root.join("html/256.jpg"), &image.data).expect("image file");
    let nginx_port = free_port();
    let nginx = start_nginx(&root, nginx_port);
    let nginx_url = format!("http://127.0.0.1:{nginx_port}/256.jpg");
    for url in [&service_url, &shared_url, &nginx_url] {
        let (status, length) = probe(url);
        assert_eq!(status, 200, "{url}");
        assert_eq!(length, image.data.len(), "{url} serves the same bytes");
    }

    println!(
        "{} bytes ({}, {}x{}) per request; wrk -t{threads} -d{seconds}s per run; {rounds} rounds; \
         nproc {}",
        image.data.len(),
        image.content_type,
        image.width,
        image.height,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("service: {service_url}\nshared:  {shared_url}\nnginx:   {nginx_url}\n");
    let mut results: Vec<(usize, Target, f64, String)> = Vec::new();
    for round in 0..rounds {
        for (index, &concurrency) in concurrencies.iter().enumerate() {
            let mut order = Target::ALL;
            order.rotate_left((round + index) % Target::ALL.len());
            for target in order {
                let url = match target {
                    Target::Nginx => &nginx_url,
                    Target::Service => &service_url,
                    Target::SharedRuntime => &shared_url,
                };
                let (rps, latency) = wrk(url, threads, concurrency, seconds);
                println!(
                    "round {} c={concurrency:>3} {:<14} {rps:>9.0} req/s  {latency}",
                    round + 1,
                    target.name()
                );
                results.push((concurrency, target, rps, latency));
            }
        }
    }

    println!(
        "\n| connections | nginx req/s (median) | profile-image req/s (median) | ratio \
         | `--http-threads 0` req/s (median) | ratio | runs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &concurrency in &concurrencies {
        let median = |target: Target| {
            let mut rps: Vec<f64> = results
                .iter()
                .filter(|(c, t, _, _)| *c == concurrency && *t == target)
                .map(|(_, _, r, _)| *r)
                .collect();
            rps.sort_by(f64::total_cmp);
            rps[rps.len() / 2]
        };
        let nginx_rps = median(Target::Nginx);
        let service_rps = median(Target::Service);
        let shared_rps = median(Target::SharedRuntime);
        println!(
            "| {concurrency} | {nginx_rps:.0} | {service_rps:.0} | {:.0}% | {shared_rps:.0} \
             | {:.0}% | {rounds} each |",
            100.0 * service_rps / nginx_rps,
            100.0 * shared_rps / nginx_rps
        );
    }

    drop(nginx);
    drop(service);
    drop(shared);
}

/// The release binary with image URLs on a free port (and `--http-threads` when given):
/// the process, gRPC and HTTP addresses.
fn start_service(data_dir: &Path, http_threads: Option<&str>) -> (Running, SocketAddr, SocketAddr) {
    let env: Vec<(&str, &str)> = http_threads
        .map(|threads| ("PROFILE_IMAGE_HTTP_THREADS", threads))
        .into_iter()
        .collect();
    let started = server::start(
        Path::new(env!("CARGO_BIN_EXE_profile-image")),
        &[
            "--http-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ],
        &env,
    );
    let http = started.http.expect("http address");
    (Running(started.child), started.grpc, http)
}

/// Sets the photo for one user; the 256 px image (default format) with its URL.
async fn set_and_get(grpc: SocketAddr, photo: &[u8]) -> pb::ProfileImage {
    let mut client = ProfileImageServiceClient::new(connect(grpc).await)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    client
        .set_profile_image(pb::SetProfileImageRequest {
            user_id: "bench".into(),
            source: Some(Source::Image(pb::InlineImage {
                content_type: "image/jpeg".into(),
                data: photo.to_vec().into(),
            })),
            crop: None,
            expected_version: None,
        })
        .await
        .expect("SetProfileImage");
    client
        .get_profile_image(pb::GetProfileImageRequest {
            user_id: "bench".into(),
            size: 256,
            ..Default::default()
        })
        .await
        .expect("GetProfileImage")
        .into_inner()
        .profile_image
        .expect("profile_image")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// nginx in the foreground on 127.0.0.1:`port`, everything under `root`.
fn start_nginx(root: &Path, port: u16) -> Running {
    let root = root.display();
    let config = format!(
        "worker_processes auto;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    etag on;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    types {{ image/jpeg jpg; }}
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root}/html;
        location / {{
            add_header Cache-Control \"public, max-age=31536000, immutable\";
        }}
    }}
}}
"
    );
    let path = format!("{root}/nginx.conf");
    std::fs::write(&path, config).expect("nginx.conf");
    let child = Running(
        Command::new("nginx")
            .args(["-c", &path, "-p", &root.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nginx did not start on port {port}");
}

/// One GET with curl-less std: the status and body length.
fn probe(url: &str) -> (u16, usize) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response.len() - split - 4)
}

/// Runs wrk; requests/s and its latency line.
fn wrk(url: &str, threads: usize, connections: usize, seconds: u64) -> (f64, String) {
    let output = Command::new("wrk")
        .args([
            &format!("-t{}", threads.min(connections)),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            url,
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors:\n{text}"
    );
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let latency = text
        .lines()
        .find(|l| l.trim_start().starts_with("Latency"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    (rps, latency)
}
