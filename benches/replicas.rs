//! sled mode next to PostgreSQL + S3 mode (issue 14): Get requests/s for a hot working
//! set, Set p50, and how long a change through replica A takes to reach a watcher on
//! replica B.
//!
//!     cargo bench --bench replicas
//!
//! Runs the real binary, as the tests do (tests/common): one sled server on a temp data
//! dir, and two replicas on a throwaway PostgreSQL cluster and moto's S3 server
//! (tests/common/backend.rs starts both; needs what the tests need). moto is a Python
//! server, far slower than S3 or MinIO: Set numbers in S3 mode are moto's more than ours.
//! Get reads renditions from each replica's cache once warm, so it measures the metadata
//! read in PostgreSQL against sled's.
//!
//! Environment:
//!   REPLICAS_BENCH_SECONDS      measured seconds per Get slice                [2]
//!   REPLICAS_BENCH_SLICES       alternating Get slices per mode               [3]
//!   REPLICAS_BENCH_CONCURRENCY  concurrent Get loops                          [16]
//!   REPLICAS_BENCH_SETS         Sets per mode (sequential) for the p50        [20]
//!   REPLICAS_BENCH_WATCHES      cross-replica watch samples                   [20]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{Client, Server, corpus_bytes, get, set_inline};
use profile_image::pb;
use support::env_or;
use tokio_stream::StreamExt;

const USERS: usize = 8;
const PHOTO: &str = "photos/rocket.jpg";

fn main() {
    support::run_unless_filtered_out("replicas", run);
}

async fn run() {
    let seconds: f64 = env_or("REPLICAS_BENCH_SECONDS", 2.0);
    let slices: usize = env_or("REPLICAS_BENCH_SLICES", 3);
    let concurrency: usize = env_or("REPLICAS_BENCH_CONCURRENCY", 16);
    let sets: usize = env_or("REPLICAS_BENCH_SETS", 20);
    let watches: usize = env_or("REPLICAS_BENCH_WATCHES", 20);

    let sled = Server::start_local(&[]).await;
    let state = tempfile::tempdir().expect("temp dir");
    let a = Server::start_shared(state.path(), &[]).await;
    let b = a.start_replica(&[]).await;
    let photo = corpus_bytes(PHOTO);

    let sled_set = set_latencies(&mut sled.client().await, &photo, sets).await;
    let shared_set = set_latencies(&mut a.client().await, &photo, sets).await;
    println!("| Set (inline {PHOTO}), {sets} sequential | p50 | max |");
    println!("|---|---|---|");
    println!("| sled | {:.1?} | {:.1?} |", sled_set.0, sled_set.1);
    println!(
        "| PostgreSQL + S3 (moto) | {:.1?} | {:.1?} |",
        shared_set.0, shared_set.1
    );

    let mut totals = [(0usize, 0.0f64); 2];
    for _ in 0..slices {
        for (i, server) in [&sled, &a].into_iter().enumerate() {
            let (count, elapsed) = get_load(server, concurrency, seconds).await;
            totals[i].0 += count;
            totals[i].1 += elapsed;
        }
    }
    let rate = |(count, secs): (usize, f64)| count as f64 / secs;
    let (sled_rate, shared_rate) = (rate(totals[0]), rate(totals[1]));
    println!();
    println!(
        "| Get 256 px, {USERS} users, {concurrency} concurrent, {slices} x {seconds} s per mode, alternating | requests/s |"
    );
    println!("|---|---|");
    println!("| sled | {sled_rate:.0} |");
    println!(
        "| PostgreSQL + S3 (one replica) | {shared_rate:.0} ({:.0}% of sled) |",
        100.0 * shared_rate / sled_rate
    );

    let [event, reply] = watch_latencies(&a, &b, &photo, watches).await;
    println!();
    println!("| a Set through A, {watches} samples | p50 | max |");
    println!("|---|---|---|");
    println!(
        "| call -> event on a watcher on B | {:.1?} | {:.1?} |",
        event.0, event.1
    );
    println!(
        "| call -> reply from A | {:.1?} | {:.1?} |",
        reply.0, reply.1
    );
}

fn p50_and_max(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

async fn set_latencies(client: &mut Client, photo: &[u8], sets: usize) -> (Duration, Duration) {
    for user in 0..USERS {
        set_inline(client, &format!("bench-user-{user}"), photo.to_vec())
            .await
            .expect("set");
    }
    let mut samples = Vec::with_capacity(sets);
    for i in 0..sets {
        let started = Instant::now();
        set_inline(client, &format!("bench-set-{}", i % 4), photo.to_vec())
            .await
            .expect("set");
        samples.push(started.elapsed());
    }
    p50_and_max(samples)
}

/// `concurrency` loops of Get over the hot users for `seconds`: (requests, seconds).
async fn get_load(server: &Server, concurrency: usize, seconds: f64) -> (usize, f64) {
    let channels = concurrency.div_ceil(8);
    let mut clients = Vec::new();
    for _ in 0..channels {
        let channel = support::connect(server.addr).await;
        clients.push(common::client_on(channel, Some(&common::admin_token())));
    }
    // Warm the replica's cache and connections first.
    let mut warm = clients[0].clone();
    for user in 0..USERS {
        get(
            &mut warm,
            &format!("bench-user-{user}"),
            256,
            pb::ImageFormat::Unspecified,
        )
        .await
        .expect("get");
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let loops: Vec<_> = (0..concurrency)
        .map(|task| {
            let mut client = clients[task % channels].clone();
            tokio::spawn(async move {
                let mut done = 0;
                while Instant::now() < deadline {
                    let user = format!("bench-user-{}", (task + done) % USERS);
                    let image = get(&mut client, &user, 256, pb::ImageFormat::Unspecified)
                        .await
                        .expect("get");
                    assert!(!image.data.is_empty());
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut count = 0;
    for task in loops {
        count += task.await.expect("loop");
    }
    (count, started.elapsed().as_secs_f64())
}

/// (Set call -> event on B, Set call -> reply on A): p50 and max of each.
async fn watch_latencies(
    a: &Server,
    b: &Server,
    photo: &[u8],
    samples: usize,
) -> [(Duration, Duration); 2] {
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    let request = pb::WatchStatusRequest {
        user_id: "bench-watch".into(),
        until_complete: false,
        after_sequence: 0,
    };
    let mut events = on_b
        .watch_status(request)
        .await
        .expect("watch")
        .into_inner();
    events.next().await.expect("snapshot").expect("snapshot");
    let (mut to_event, mut to_reply) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let started = Instant::now();
        let (set, event) = tokio::join!(
            async {
                let set = set_inline(&mut on_a, "bench-watch", photo.to_vec()).await;
                (set, started.elapsed())
            },
            async {
                let event = tokio::time::timeout(Duration::from_secs(10), events.next()).await;
                (event, started.elapsed())
            }
        );
        set.0.expect("set");
        event
            .0
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        to_reply.push(set.1);
        to_event.push(event.1);
    }
    [p50_and_max(to_event), p50_and_max(to_reply)]
}
