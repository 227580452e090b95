//! Soak: mixed load for a long time against the release binary, watching for leaks.
//!
//!     cargo bench --bench soak            # SOAK_MINUTES=30 by default
//!
//! 1,000 WatchStatus streams stay open (10 connections, every user's changes); 8 workers
//! loop: 90% GetProfileImage, 8% SetProfileImage / UploadProfileImage of real corpus
//! photos, 2% URL sets from a local origin (an HTTP/1.1 server in this process on
//! 127.0.0.1). Every minute it records the server's RSS, its open file descriptors, the
//! data dir's size and the Get p99 of that minute, and counts errors other than the
//! expected ones (overload refusals, UNAVAILABLE with RetryInfo, are the contract: they
//! are counted and retried after the delay).
//! Pass: RSS and fds grow under 10% over the last 20 minutes (scaled down for shorter
//! runs: the last two thirds), measured along the least-squares line through that
//! window's samples, and no unexpected error.

#[path = "support/server.rs"]
mod server;
#[path = "support/mod.rs"]
mod support;
use support::{connect, env_or};

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use profile_image::pb::profile_image_service_client::ProfileImageServiceClient;
use profile_image::pb::{self, set_profile_image_request::Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic_types::StatusExt;

const PHOTOS: &[&str] = &[
    "photos/rocket.jpg",
    "photos/chelsea.png",
    "camera/Reconyx_HC500_Hyperfire.jpg",
    "orientation/Landscape_3.jpg",
    "photos/hubble_deep_field.jpg",
];
const USERS: u64 = 200;
const WORKERS: usize = 8;
const WATCHERS: usize = 1000;

fn main() {
    support::run_unless_filtered_out("soak", run);
}

async fn run() {
    let minutes: u64 = env_or("SOAK_MINUTES", 30);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let photos: Arc<Vec<Vec<u8>>> = Arc::new(
        PHOTOS
            .iter()
            .map(|p| std::fs::read(corpus.join(p)).expect("corpus photo"))
            .collect(),
    );
    let origin = start_origin(photos.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let started = server::start(
        Path::new(env!("CARGO_BIN_EXE_profile-image")),
        &[
            "--fetch-allow-cidr".as_ref(),
            "127.0.0.0/8".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ],
        &[],
    );
    let (mut child, addr) = (started.child, started.grpc);
    let pid = child.id();

    // Every user has an image before the clock starts.
    let mut client = ProfileImageServiceClient::new(connect(addr).await)
        .max_encoding_message_size(16 << 20)
        .max_decoding_message_size(16 << 20);
    for user in 0..USERS {
        set(&mut client, user, &photos[(user % 5) as usize])
            .await
            .expect("seed");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let watched = Arc::new(AtomicU64::new(0));
    for c in 0..10 {
        let channel = connect(addr).await;
        for _ in 0..WATCHERS / 10 {
            let mut watcher = ProfileImageServiceClient::new(channel.clone());
            let (stop, watched) = (stop.clone(), watched.clone());
            tokio::spawn(async move {
                let mut stream = watcher
                    .watch_status(pb::WatchStatusRequest::default())
                    .await
                    .expect("watch")
                    .into_inner();
                while !stop.load(Ordering::Relaxed) {
                    match stream.next().await {
                        Some(Ok(_)) => watched.fetch_add(1, Ordering::Relaxed),
                        _ => break,
                    };
                }
            });
        }
        let _ = c;
    }

    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let ops = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    for w in 0..WORKERS {
        let (stop, latencies, errors, ops, refused) = (
            stop.clone(),
            latencies.clone(),
            errors.clone(),
            ops.clone(),
            refused.clone(),
        );
        let (photos, origin) = (photos.clone(), origin.clone());
        let mut client = ProfileImageServiceClient::new(connect(addr).await)
            .max_encoding_message_size(16 << 20)
            .max_decoding_message_size(16 << 20);
        tokio::spawn(async move {
            let mut rng = w as u64 * 7919 + 17;
            while !stop.load(Ordering::Relaxed) {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let pick = (rng >> 33) % 100;
                let user = (rng >> 13) % USERS;
                let result = match pick {
                    0..=89 => {
                        let started = Instant::now();
                        let got = client
                            .get_profile_image(pb::GetProfileImageRequest {
                                user_id: format!("soak-{user}"),
                                size: [64, 128, 256, 0][(rng % 4) as usize],
                                ..Default::default()
                            })
                            .await
                            .map(|_| ());
                        latencies.lock().unwrap().push(started.elapsed());
                        got
                    }
                    90..=97 => set(&mut client, user, &photos[(rng % 5) as usize]).await,
                    _ => client
                        .set_profile_image(pb::SetProfileImageRequest {
                            user_id: format!("soak-{user}"),
                            source: Some(Source::Url(format!(
                                "{origin}/photo/{}",
                                rng % photos.len() as u64
                            ))),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                };
                ops.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(()) => {}
                    // The contract under load: refused with RetryInfo; wait and go on.
                    Err(status) if status.code() == tonic::Code::Unavailable => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        let delay = status
                            .get_details_retry_info()
                            .and_then(|r| r.retry_delay)
                            .unwrap_or(Duration::from_secs(1));
                        tokio::time::sleep(delay).await;
                    }
                    Err(status) => errors.lock().unwrap().push(format!(
                        "{:?}: {}",
                        status.code(),
                        status.message()
                    )),
                }
            }
        });
    }

    println!("minute  rss_mib  fds  data_dir_mib  get_p99_ms  gets  ops  events");
    let mut samples = Vec::new();
    let started = Instant::now();
    for minute in 1..=minutes {
        let next = started + Duration::from_secs(60 * minute);
        tokio::time::sleep_until(next.into()).await;
        let mut minute_latencies = std::mem::take(&mut *latencies.lock().unwrap());
        minute_latencies.sort_unstable();
        let p99 = minute_latencies
            .get(minute_latencies.len().saturating_sub(1) * 99 / 100)
            .copied()
            .unwrap_or_default();
        let (rss, fds, data) = (rss_bytes(pid), open_fds(pid), dir_bytes(&data_dir));
        println!(
            "{minute:>6}  {:>7.1}  {fds:>3}  {:>12.1}  {:>10.2}  {:>4}  {:>3}  {}",
            rss as f64 / 1048576.0,
            data as f64 / 1048576.0,
            p99.as_secs_f64() * 1000.0,
            minute_latencies.len(),
            ops.swap(0, Ordering::Relaxed),
            watched.swap(0, Ordering::Relaxed),
        );
        samples.push((rss, fds));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();

    let errors = errors.lock().unwrap().clone();
    let from = samples.len() / 3;
    let window = &samples[from..];
    let rss: Vec<f64> = window.iter().map(|s| s.0 as f64).collect();
    let fds: Vec<f64> = window.iter().map(|s| s.1 as f64).collect();
    let (rss_growth, fd_growth) = (trend_growth(&rss), trend_growth(&fds));
    let (first, last) = (window[0], window[window.len() - 1]);
    println!(
        "soak: {minutes} min; from minute {} to the end, along the least-squares line: RSS \
         {:+.1}%, fds {:+.1}% (first to last sample: RSS {:+.1}%, fds {:+.1}%); {} overload \
         refusals (retried after their RetryInfo); {} unexpected errors{}",
        from + 1,
        rss_growth * 100.0,
        fd_growth * 100.0,
        (last.0 as f64 / first.0 as f64 - 1.0) * 100.0,
        (last.1 as f64 / first.1 as f64 - 1.0) * 100.0,
        refused.load(Ordering::Relaxed),
        errors.len(),
        errors
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    let pass = rss_growth < 0.10 && fd_growth < 0.10 && errors.is_empty();
    println!("soak: {}", if pass { "PASS" } else { "FAIL" });
}

async fn set(
    client: &mut ProfileImageServiceClient<tonic::transport::Channel>,
    user: u64,
    photo: &[u8],
) -> Result<(), tonic::Status> {
    client
        .set_profile_image(pb::SetProfileImageRequest {
            user_id: format!("soak-{user}"),
            source: Some(Source::Image(pb::InlineImage {
                content_type: String::new(),
                data: photo.to_vec().into(),
            })),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// A minimal HTTP/1.1 origin: `GET /photo/N` answers corpus photo N.
async fn start_origin(photos: Arc<Vec<Vec<u8>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("origin");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let photos = photos.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let index: usize = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|path| path.strip_prefix("/photo/"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let body = &photos[index % photos.len()];
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body).await;
            });
        }
    });
    base
}

/// Growth over `samples` (one a minute) along their least-squares line: the line's value
/// at the last minute over its value at the first, minus one. RSS moves by 10% from one
/// minute to the next as the allocator returns memory and takes it again; comparing two
/// single samples measures that noise, while a leak shows as the line's slope.
fn trend_growth(samples: &[f64]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = samples.iter().sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (x, y) in samples.iter().enumerate() {
        let dx = x as f64 - mean_x;
        covariance += dx * (y - mean_y);
        variance += dx * dx;
    }
    let slope = covariance / variance;
    let start = mean_y - slope * mean_x;
    let end = start + slope * (n - 1.0);
    end / start - 1.0
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
