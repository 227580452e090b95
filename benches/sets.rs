//! Concurrent writes at scale, against the real server binary: sets per second, what the
//! data dir costs per stored image byte, the slowest health check during the load, and
//! how long a restart and a kill -9 recovery take.
//!
//!     cargo bench --bench sets
//!
//! SETS_BENCH_USERS users each get one distinct 160 px photo-like JPEG (made before the
//! clock starts) through SetProfileImage inline, from SETS_BENCH_WRITERS writers on
//! their own HTTP/2 connections. A prober calls health every 200 ms throughout. Then:
//! - data dir: bytes the files take on disk (allocated blocks) and their apparent size,
//!   over the bytes of the images the server stores (originals plus renditions: the
//!   apparent size of the blob files);
//! - restart: SIGTERM, start on the same data dir, until a Get answers;
//! - kill -9 recovery: SIGKILL, start again, until a Get answers, and a check that the
//!   last acknowledged image of a sample of users is there.
//!
//! Environment:
//!   SETS_BENCH_USERS     users (one set each)          [20000]
//!   SETS_BENCH_WRITERS   concurrent writers            [8]
//!   SETS_BENCH_SERVER    server binary to run          [this build's profile-image]

#[path = "support/server.rs"]
mod server;
#[path = "support/mod.rs"]
mod support;
use support::{connect, env_or};

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use profile_image::pb::profile_image_service_client::ProfileImageServiceClient;
use profile_image::pb::{self, set_profile_image_request::Source};

fn main() {
    support::run_unless_filtered_out("sets", run);
}

async fn run() {
    let users: usize = env_or("SETS_BENCH_USERS", 20_000);
    let writers: usize = env_or("SETS_BENCH_WRITERS", 8);
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");

    eprintln!("making {users} distinct photo-like JPEGs...");
    let photos: Arc<Vec<Vec<u8>>> = Arc::new((0..users as u64).map(photo).collect());
    let uploaded: u64 = photos.iter().map(|p| p.len() as u64).sum();

    let (mut server, addr) = start(&data_dir);
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe_health(addr, stop.clone()));

    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let photos = photos.clone();
            tokio::spawn(async move {
                let mut client = ProfileImageServiceClient::new(connect(addr).await)
                    .max_encoding_message_size(16 << 20);
                let mut last = (String::new(), String::new());
                for u in (w..photos.len()).step_by(writers) {
                    let user = format!("user-{u}");
                    let reply = client
                        .set_profile_image(pb::SetProfileImageRequest {
                            user_id: user.clone(),
                            source: Some(Source::Image(pb::InlineImage {
                                content_type: "image/jpeg".into(),
                                data: photos[u].clone().into(),
                            })),
                            ..Default::default()
                        })
                        .await
                        .unwrap_or_else(|s| panic!("set {user}: {s:?}"));
                    let etag = reply.into_inner().profile_image.expect("image").etag;
                    last = (user, etag);
                }
                last
            })
        })
        .collect();
    let mut last_acknowledged = Vec::new();
    for task in tasks {
        last_acknowledged.push(task.await.expect("writer"));
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (slowest_health, checks) = prober.await.expect("prober");

    let (allocated, apparent) = disk_usage(&data_dir);
    let (_, images) = disk_usage(&data_dir.join("objects"));

    let restart_started = Instant::now();
    terminate(&mut server);
    let (mut server, addr) = start(&data_dir);
    first_get(addr, &last_acknowledged[0].0).await;
    let restart = restart_started.elapsed();

    let _ = server.kill();
    let _ = server.wait();
    let recovery_started = Instant::now();
    let (mut server, addr) = start(&data_dir);
    let mut client = ProfileImageServiceClient::new(first_get(addr, &last_acknowledged[0].0).await)
        .max_decoding_message_size(16 << 20);
    let recovery = recovery_started.elapsed();
    for (user, etag) in &last_acknowledged {
        let image = client
            .get_profile_image(pb::GetProfileImageRequest {
                user_id: user.clone(),
                metadata_only: true,
                ..Default::default()
            })
            .await
            .expect("acknowledged image after kill -9")
            .into_inner()
            .profile_image
            .expect("image");
        assert_eq!(&image.etag, etag, "{user} after kill -9");
    }
    terminate(&mut server);

    println!(
        "sets: {users} users, {writers} writers: {:.0} sets/s ({:.1} s)",
        users as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "data dir: {:.1} MiB on disk ({:.1} MiB apparent) for {:.1} MiB of stored images \
         ({:.1} MiB uploaded): {:.2} on disk / stored, {:.2} apparent / stored, \
         {:.2} on disk / uploaded",
        mib(allocated),
        mib(apparent),
        mib(images),
        mib(uploaded),
        allocated as f64 / images as f64,
        apparent as f64 / images as f64,
        allocated as f64 / uploaded as f64
    );
    println!(
        "health during the load: slowest {:.1} ms of {checks} checks",
        slowest_health.as_secs_f64() * 1000.0
    );
    println!(
        "restart (SIGTERM to first Get): {:.2} s; kill -9 recovery (start to first Get): {:.2} s",
        restart.as_secs_f64(),
        recovery.as_secs_f64()
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A distinct 160x160 photo-like JPEG: smooth gradients, texture and a little noise.
fn photo(seed: u64) -> Vec<u8> {
    let mut noise = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let (a, b, c) = (
        (seed * 37 % 255) as f32,
        (seed * 91 % 255) as f32,
        (seed * 53 % 255) as f32,
    );
    let image = image::RgbImage::from_fn(160, 160, |x, y| {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        let grain = (noise % 9) as f32 - 4.0;
        let (x, y) = (x as f32, y as f32);
        let texture = (x * 0.13 + y * 0.07 + seed as f32).sin() * 18.0 + grain;
        let channel = |base: f32, slope: f32| (base + slope + texture).rem_euclid(256.0) as u8;
        image::Rgb([
            channel(a, x * 0.6),
            channel(b, y * 0.7),
            channel(c, (x + y) * 0.3),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&image)
        .expect("encode");
    out
}

/// Starts the release binary on a free port; returns it and its address.
/// The server binary: this build's, or SETS_BENCH_SERVER (to compare two builds).
fn server_binary() -> std::path::PathBuf {
    std::env::var_os("SETS_BENCH_SERVER")
        .map_or_else(|| env!("CARGO_BIN_EXE_profile-image").into(), Into::into)
}

fn start(data_dir: &Path) -> (Child, SocketAddr) {
    let started = server::start(&server_binary(), &[Path::new("--data-dir"), data_dir], &[]);
    (started.child, started.grpc)
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Waits until a Get for `user` answers; returns the channel.
async fn first_get(addr: SocketAddr, user: &str) -> tonic::transport::Channel {
    let channel = connect(addr).await;
    let mut client = ProfileImageServiceClient::new(channel.clone());
    for _ in 0..600 {
        let answer = client
            .get_profile_image(pb::GetProfileImageRequest {
                user_id: user.into(),
                metadata_only: true,
                ..Default::default()
            })
            .await;
        if answer.is_ok() {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no Get answered after restart");
}

async fn probe_health(addr: SocketAddr, stop: Arc<AtomicBool>) -> (Duration, usize) {
    let mut client = tonic_health::pb::health_client::HealthClient::new(connect(addr).await);
    let (mut slowest, mut checks) = (Duration::ZERO, 0);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let answer = client
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health check");
        assert_eq!(answer.into_inner().status, 1, "health not SERVING");
        slowest = slowest.max(started.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (slowest, checks)
}

/// (allocated bytes, apparent bytes) of every file under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .flatten()
        .fold((0, 0), |(allocated, apparent), entry| {
            let Ok(meta) = entry.metadata() else {
                return (allocated, apparent);
            };
            if meta.is_dir() {
                let (a, b) = disk_usage(&entry.path());
                (allocated + a, apparent + b)
            } else {
                (allocated + meta.blocks() * 512, apparent + meta.len())
            }
        })
}
