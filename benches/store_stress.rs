//! Drives the store layer alone (no gRPC, no imaging) with many threads, to tell a
//! sled-internal deadlock apart from one of ours.
//!
//!     cargo bench --bench store_stress
//!
//! THREADS threads each loop: stage a distinct ~12 KiB blob on a blocking thread,
//! commit a media record and a profile in one transaction, wait for the group-commit
//! ticket; every fourth operation removes an older media item instead (releasing blobs,
//! so the sweeper runs) and every thread also reads. A watchdog prints progress every
//! second and, if no operation completes for STALL_SECONDS, reports a stall (with the
//! flusher's state) and exits 1: with sled's own threads the only ones touching sled,
//! such a stall would be sled's.
//!
//! Environment:
//!   STORE_STRESS_THREADS   writer threads                         [16]
//!   STORE_STRESS_SECONDS   how long to run                        [20]
//!   STORE_STRESS_STALL     seconds without progress = a stall     [10]

// This bench runs no server: the shared connect/runtime helpers go unused here.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
use support::env_or;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use profile_image::model::UserId;
use profile_image::store::Store;
use profile_image::store::records::{MediaRecord, ProfileRecord, RenditionRecord};

fn main() {
    if support::filtered_out("store_stress") {
        return;
    }
    let threads: u64 = env_or("STORE_STRESS_THREADS", 16);
    let seconds: u64 = env_or("STORE_STRESS_SECONDS", 20);
    let stall: u64 = env_or("STORE_STRESS_STALL", 10);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, done, stop) = (store.clone(), done.clone(), stop.clone());
            let handle = runtime.handle().clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                let mut mine: Vec<MediaRecord> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let user = UserId::parse("user_id", &format!("u{}", (t * 7 + i) % 64))
                        .expect("user id");
                    if i % 4 == 3 && !mine.is_empty() {
                        let old = mine.remove(0);
                        let owner = UserId::parse("user_id", &old.user_id).expect("owner");
                        handle
                            .block_on(store.transact(move |tx| {
                                if tx.media(&old.media_id)?.is_some() {
                                    tx.remove_media(&owner, &old)?;
                                }
                                Ok(())
                            }))
                            .expect("remove media");
                        store.blobs.request_sweep();
                    } else {
                        let media = stage_and_commit(&handle, &store, &user, t, i);
                        mine.push(media);
                    }
                    handle.block_on(store.durable()).expect("durable");
                    let _ = store.profile(&user).expect("read");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();

    let mut last = 0;
    let mut last_progress = Instant::now();
    let mut stalled = false;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "{:>3} s: {:>7} ops ({:>6} ops/s)",
            started.elapsed().as_secs(),
            now,
            now - last
        );
        if now > last {
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= Duration::from_secs(stall) {
            stalled = true;
            break;
        }
        last = now;
    }
    if stalled {
        println!(
            "STALL: no operation completed for {stall} s with {threads} threads \
             (flush in progress for {:?}); the store layer deadlocked",
            store.flushing_for()
        );
        std::process::exit(1);
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("worker");
    }
    let total = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "store_stress: {threads} threads, {total} ops in {elapsed:.1} s = {:.0} ops/s, no stall",
        total as f64 / elapsed
    );
}

/// Stages a distinct blob and commits it as the user's active media item.
fn stage_and_commit(
    handle: &tokio::runtime::Handle,
    store: &Store,
    user: &UserId,
    thread: u64,
    i: u64,
) -> MediaRecord {
    let bytes: Vec<u8> = (0..12_288u64)
        .map(|n| (n.wrapping_mul(thread + 3) ^ i.wrapping_mul(2_654_435_761) >> (n % 13)) as u8)
        .collect();
    let staged = handle
        .block_on(store.blocking(move |store| store.blobs.stage(&bytes)))
        .expect("stage");
    let seq = store.next_id().expect("id");
    let media = MediaRecord {
        media_id: format!("m{seq:016x}"),
        user_id: user.as_str().to_owned(),
        seq,
        original: staged.blob().clone(),
        renditions: vec![RenditionRecord {
            edge: 64,
            format: 1,
            blob: staged.blob().clone(),
        }],
        ..Default::default()
    };
    let (owner, record) = (user.clone(), media.clone());
    handle
        .block_on(store.transact(move |tx| {
            tx.insert_media(&owner, &record)?;
            let profile = ProfileRecord {
                version: tx.bump_version(&owner)?,
                status: 3,
                media_id: record.media_id.clone(),
                ..Default::default()
            };
            tx.put_profile(&owner, &profile)
        }))
        .expect("commit");
    drop(staged);
    media
}
