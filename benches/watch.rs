//! WatchStatus fan-out: W concurrent watchers of one user on one server process; how
//! long from a change until every watcher has it, and the server's memory per watcher.
//!
//!     cargo bench --bench watch
//!
//! The server is the real `profile-image` binary in its own process (so its RSS is not
//! mixed with the load generator's), started with `serve --listen 127.0.0.1:0`. This
//! process opens W `WatchStatus{user_id: "bench-user"}` streams over
//! `ceil(W / streams_per_channel)` HTTP/2 connections, reads each one's SNAPSHOT, reads the
//! server's VmRSS, then makes K changes (CropProfileImage of a small PNG) spaced apart and
//! times each event's arrival on every stream. Changes are matched to events by
//! `profile_image.version`.
//!
//! Environment:
//!   WATCH_BENCH_WATCHERS             concurrent watchers                       [10000]
//!   WATCH_BENCH_STREAMS_PER_CHANNEL  watchers sharing one HTTP/2 connection    [100]
//!   WATCH_BENCH_CHANGES              changes made                              [20]
//!   WATCH_BENCH_SPACING_MS           time between the starts of two changes    [200]
//!   WATCH_BENCH_SERVER               server binary to run, e.g. an older build to
//!                                    compare with         [this build's profile-image]
//!
//! The server inherits this process's environment, so its `PROFILE_IMAGE_*` settings
//! apply too (e.g. PROFILE_IMAGE_WATCH_RETENTION).
//!
//! The measured phase is announced on stderr ("measuring: ..., server pid N"), so a
//! profiler can be attached to the server for exactly that phase.

#[path = "support/mod.rs"]
mod support;
use support::{connect, env_or};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use profile_image::pb::profile_image_service_client::ProfileImageServiceClient;
use profile_image::pb::{self, set_profile_image_request::Source};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const USER: &str = "bench-user";
const PHOTO: &str = "photos/chelsea.png"; // 451 x 300

type Client = ProfileImageServiceClient<Channel>;

fn main() {
    support::run_unless_filtered_out("watch", run);
}

fn server_binary() -> String {
    std::env::var("WATCH_BENCH_SERVER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_profile-image").to_owned())
}

/// The server process; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _temp: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        // Raise the server's descriptor limit to the hard limit (one descriptor per
        // connection, not per stream, but be generous); `exec` keeps the PID.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#)
            .arg(server_binary())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "info")
            // What is measured here is not authentication (benches/get.rs measures that),
            // and one caller makes every change: no tokens, no per-caller limits.
            .env("PROFILE_IMAGE_AUTH", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start profile-image");
        let stderr = child.stderr.take().expect("stderr");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Ok(addr) = rest.trim().trim_matches('"').parse::<SocketAddr>()
                {
                    let _ = addr_tx.send(addr);
                }
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("server: {line}");
                }
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not log 'listening on ADDR'");
        Server {
            child,
            addr,
            _temp: temp,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Write-type system calls (`write`, `writev`, `sendmsg`, ...) a process made so far,
/// from /proc/PID/io.
fn write_syscalls(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("syscw:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process so far, in ms (from /proc/PID/stat).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let clk_tck = 100.0; // USER_HZ on Linux
    (ticks(11) + ticks(12)) * 1e3 / clk_tck
}

/// Soft RLIMIT_NOFILE of this process, from /proc/self/limits.
fn nofile_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Raises this process's RLIMIT_NOFILE to `wanted` with prlimit(1) when it is lower
/// (best effort: no libc dependency here).
fn ensure_nofile(wanted: u64) {
    let soft = nofile_soft_limit().unwrap_or(0);
    if soft >= wanted {
        return;
    }
    let pid = std::process::id().to_string();
    let ok = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={wanted}:{wanted}")])
        .status()
        .is_ok_and(|s| s.success());
    let now = nofile_soft_limit().unwrap_or(0);
    if !ok || now < wanted {
        eprintln!(
            "warning: RLIMIT_NOFILE is {now} and could not be raised to {wanted}; \
             use fewer channels or raise `ulimit -n`"
        );
    }
}

fn client(channel: Channel) -> Client {
    ProfileImageServiceClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

/// One event as a watcher saw it.
struct Seen {
    version: u64,
    at: Instant,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run() {
    let watchers: usize = env_or("WATCH_BENCH_WATCHERS", 10_000usize).max(1);
    let per_channel: usize = env_or("WATCH_BENCH_STREAMS_PER_CHANNEL", 100usize).max(1);
    let changes: usize = env_or("WATCH_BENCH_CHANGES", 20usize).max(1);
    let spacing = Duration::from_millis(env_or("WATCH_BENCH_SPACING_MS", 200u64));
    let channels = watchers.div_ceil(per_channel);
    ensure_nofile(channels as u64 + 256);

    let mut server = Server::start();
    println!(
        "server pid {} at {}; {watchers} watchers over {channels} HTTP/2 connections \
         ({per_channel} streams each); {changes} changes {spacing:?} apart",
        server.pid(),
        server.addr
    );

    // The watched user gets an image, and one crop to warm the write path up.
    let photo = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus")
            .join(PHOTO),
    )
    .expect("read photo");
    let mut setup = client(connect(server.addr).await);
    setup
        .set_profile_image(pb::SetProfileImageRequest {
            user_id: USER.into(),
            source: Some(Source::Image(pb::InlineImage {
                content_type: "image/png".into(),
                data: photo.into(),
            })),
            crop: None,
            expected_version: None,
        })
        .await
        .expect("SetProfileImage");
    crop(&mut setup, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.rss_kib();

    // Connections first, so their cost can be told apart from the streams'.
    let mut clients = Vec::with_capacity(channels);
    for _ in 0..channels {
        clients.push(client(connect(server.addr).await));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = server.rss_kib();

    // The watchers.
    let stop = CancellationToken::new();
    let opened = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let opening = Instant::now();
    let mut tasks = Vec::with_capacity(watchers);
    for w in 0..watchers {
        let mut client = clients[w % channels].clone();
        let (stop, opened, delivered, failed) = (
            stop.clone(),
            opened.clone(),
            delivered.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seen: Vec<Seen> = Vec::with_capacity(changes + 2);
            let request = pb::WatchStatusRequest {
                user_id: USER.into(),
                until_complete: false,
                after_sequence: 0,
            };
            let mut stream = tokio::select! {
                _ = stop.cancelled() => return seen,
                r = client.watch_status(request) => match r {
                    Ok(r) => r.into_inner(),
                    Err(status) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("WatchStatus failed: {status:?}");
                        }
                        return seen;
                    }
                },
            };
            let mut first = true;
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    m = stream.message() => m,
                };
                let at = Instant::now();
                let event = match message {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(status) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("WatchStatus stream failed: {status:?}");
                        }
                        break;
                    }
                };
                if first {
                    assert_eq!(
                        event.r#type,
                        pb::EventType::Snapshot as i32,
                        "snapshot first"
                    );
                    first = false;
                    opened.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some(image) = event.profile_image {
                    seen.push(Seen {
                        version: image.version,
                        at,
                    });
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            seen
        }));
    }
    let open_deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < watchers
        && Instant::now() < open_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_time = opening.elapsed();
    let open_count = opened.load(Ordering::Relaxed);
    assert_eq!(
        open_count,
        watchers,
        "only {open_count} of {watchers} watchers got their snapshot ({} failed)",
        failed.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_watching = server.rss_kib();
    let fds = server.open_fds();

    // The changes.
    eprintln!(
        "measuring: {changes} changes, {:.1} s, server pid {}",
        (spacing * changes as u32).as_secs_f64(),
        server.pid()
    );
    let cpu_server_start = cpu_ms(server.pid());
    let writes_server_start = write_syscalls(server.pid());
    let cpu_self_start = cpu_ms(std::process::id());
    let mut sent = Vec::with_capacity(changes); // (version, sent at, replied at)
    let mut next = Instant::now();
    for k in 0..changes {
        tokio::time::sleep_until(next.into()).await;
        next += spacing;
        let send_at = Instant::now();
        let version = crop(&mut setup, 1 + k as u32).await;
        let reply_at = Instant::now();
        sent.push((version, send_at, reply_at));
    }
    let expected = watchers * changes;
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_server = cpu_ms(server.pid()) - cpu_server_start;
    let writes_server = write_syscalls(server.pid()).saturating_sub(writes_server_start);
    let cpu_self = cpu_ms(std::process::id()) - cpu_self_start;
    let rss_after_changes = server.rss_kib();
    let hwm = proc_status_kib(server.pid(), "VmHWM:");

    stop.cancel();
    let mut all_seen = Vec::with_capacity(watchers);
    for task in tasks {
        all_seen.push(task.await.expect("watcher task"));
    }
    drop(clients);
    drop(setup);
    server.stop();

    // Latencies.
    let mut missing = 0usize;
    let mut early = 0usize; // delivered before the write's reply reached the client
    let mut per_delivery_reply = Vec::with_capacity(expected);
    let mut per_delivery_send = Vec::with_capacity(expected);
    let mut all_have_reply = Vec::with_capacity(changes);
    let mut all_have_send = Vec::with_capacity(changes);
    let mut write_rtt = Vec::with_capacity(changes);
    for &(version, send_at, reply_at) in &sent {
        write_rtt.push(reply_at - send_at);
        let mut last: Option<Instant> = None;
        for seen in &all_seen {
            match seen.iter().find(|s| s.version == version) {
                Some(s) => {
                    if s.at < reply_at {
                        early += 1;
                    }
                    per_delivery_reply.push(s.at.saturating_duration_since(reply_at));
                    per_delivery_send.push(s.at - send_at);
                    last = Some(last.map_or(s.at, |l| l.max(s.at)));
                }
                None => missing += 1,
            }
        }
        if let Some(last) = last {
            all_have_reply.push(last.saturating_duration_since(reply_at));
            all_have_send.push(last - send_at);
        }
    }
    for v in [
        &mut per_delivery_reply,
        &mut per_delivery_send,
        &mut all_have_reply,
        &mut all_have_send,
        &mut write_rtt,
    ] {
        v.sort_unstable();
    }

    println!(
        "opened {watchers} watchers (snapshot read) in {:.2} s; server has {fds} open fds",
        open_time.as_secs_f64()
    );
    println!();
    println!("| measure | n | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, v: &[Duration]| {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} |",
            v.len(),
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(v.last().copied().unwrap_or_default())
        );
    };
    row(
        "change → every watcher has it (from write reply)",
        &all_have_reply,
    );
    row(
        "change → every watcher has it (from write send)",
        &all_have_send,
    );
    row(
        "change → one watcher has it (from write reply)",
        &per_delivery_reply,
    );
    row(
        "change → one watcher has it (from write send)",
        &per_delivery_send,
    );
    row("write call (CropProfileImage) round trip", &write_rtt);
    println!();
    println!(
        "deliveries: {} of {expected} ({missing} missing; {early} arrived before the write's reply, counted as 0 from reply)",
        per_delivery_reply.len()
    );
    println!(
        "CPU during the changes: server {:.0} ms per change ({:.1} µs per delivery), this load generator {:.0} ms per change",
        cpu_server / changes as f64,
        cpu_server * 1e3 / expected as f64,
        cpu_self / changes as f64
    );
    println!(
        "server write system calls during the changes: {:.0} per change",
        writes_server as f64 / changes as f64
    );
    println!();
    let per = |kib: u64| kib as f64 * 1024.0 / watchers as f64;
    println!("| server memory | VmRSS KiB |");
    println!("|---|---:|");
    println!("| before connections | {rss_before} |");
    println!("| {channels} connections, no streams | {rss_connected} |");
    println!("| {watchers} watchers open (snapshots read) | {rss_watching} |");
    println!("| after {changes} changes delivered | {rss_after_changes} |");
    println!("| peak (VmHWM) | {hwm} |");
    println!();
    println!(
        "memory per watcher: {:.0} bytes ({:.2} KiB) incl. connections; {:.0} bytes ({:.2} KiB) streams only; \
         {:.0} bytes ({:.2} KiB) after the changes",
        per(rss_watching.saturating_sub(rss_before)),
        per(rss_watching.saturating_sub(rss_before)) / 1024.0,
        per(rss_watching.saturating_sub(rss_connected)),
        per(rss_watching.saturating_sub(rss_connected)) / 1024.0,
        per(rss_after_changes.saturating_sub(rss_before)),
        per(rss_after_changes.saturating_sub(rss_before)) / 1024.0,
    );
    assert_eq!(missing, 0, "{missing} deliveries never arrived");
}

/// CropProfileImage of the 451 x 300 photo with a 300 px square moved by `k`; returns the
/// new version.
async fn crop(client: &mut Client, k: u32) -> u64 {
    client
        .crop_profile_image(pb::CropProfileImageRequest {
            user_id: USER.into(),
            crop: Some(pb::CropRect {
                x: k % 150,
                y: 0,
                size: 300,
            }),
            expected_version: None,
        })
        .await
        .expect("CropProfileImage")
        .into_inner()
        .profile_image
        .expect("profile_image")
        .version
}
