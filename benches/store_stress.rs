//! Drives the store layer alone (no gRPC, no imaging) with many threads, to tell a
//! sled-internal deadlock apart from one of ours.
//!
//!     cargo bench --bench store_stress
//!
//! THREADS threads each loop, through the storage traits: put a distinct ~12 KiB blob,
//! commit a media item and a profile as one change (which returns once the group-commit
//! flush made it durable; decided again when another thread changed the user first);
//! every fourth operation removes an older media item instead (releasing blobs, so the
//! sweeper runs) and every thread also reads. A watchdog prints progress every
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

use bytes::Bytes;
use profile_image::error::Error;
use profile_image::model::{
    Crop, ImageFormat, Media, Profile, Rendition, Source, Status, UserId, now_millis,
};
use profile_image::store::local::LocalStore;
use profile_image::store::{BlobStore, Change, MediaWrite, MetadataStore, Write};

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
    let store = LocalStore::open(dir.path()).expect("open store");
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, done, stop) = (store.clone(), done.clone(), stop.clone());
            let handle = runtime.handle().clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                let mut mine: Vec<Media> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let user = UserId::parse("user_id", &format!("u{}", (t * 7 + i) % 64))
                        .expect("user id");
                    if i % 4 == 3 && !mine.is_empty() {
                        let old = mine.remove(0);
                        handle.block_on(remove(&store, &old));
                    } else {
                        let media = handle.block_on(stage_and_commit(&store, &user, t, i));
                        mine.push(media);
                    }
                    let _ = handle.block_on(store.user_state(&user)).expect("read");
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

/// Commits `change(state)` on the user's current state, deciding again on conflicts
/// (other threads change the same users).
async fn commit(store: &LocalStore, user: &UserId, change: impl Fn(Change) -> Change) {
    loop {
        let state = store.user_state(user).await.expect("read state");
        match store.commit(change(Change::on(user, &state))).await {
            Ok(_) => return,
            Err(Error::Conflict) => continue,
            Err(error) => panic!("commit failed: {error}"),
        }
    }
}

/// Removes a media item if it is still there (the last user may have replaced it).
async fn remove(store: &LocalStore, media: &Media) {
    if store.media(&media.id).await.expect("read media").is_none() {
        return;
    }
    let id = media.id.clone();
    commit(store, &media.user, |mut change| {
        let active = change
            .base
            .profile
            .as_ref()
            .is_some_and(|p| p.media_id.as_deref() == Some(id.as_str()));
        change.media.push(MediaWrite::Remove(id.clone()));
        if active {
            change.version = Some(change.base.version + 1);
            change.profile = Write::Remove;
        }
        change
    })
    .await;
}

/// Puts a distinct blob and commits it as the user's active media item.
async fn stage_and_commit(store: &LocalStore, user: &UserId, thread: u64, i: u64) -> Media {
    let bytes: Vec<u8> = (0..12_288u64)
        .map(|n| (n.wrapping_mul(thread + 3) ^ i.wrapping_mul(2_654_435_761) >> (n % 13)) as u8)
        .collect();
    let staged = store.put(Bytes::from(bytes)).await.expect("put blob");
    let seq = store.next_id().await.expect("id");
    let media = Media {
        id: format!("m{seq:016x}"),
        user: user.clone(),
        seq,
        width: 64,
        height: 64,
        source: Source::Upload,
        source_url: String::new(),
        create_time_ms: now_millis(),
        crop: Crop::default(),
        has_alpha: false,
        original: *staged.blob(),
        renditions: vec![Rendition {
            edge: 64,
            format: ImageFormat::Jpeg,
            blob: *staged.blob(),
        }],
        thumbhash: None,
    };
    commit(store, user, |mut change| {
        let version = change.base.version + 1;
        change.version = Some(version);
        change.media.push(MediaWrite::Insert(media.clone()));
        change.profile = Write::Put(Profile {
            version,
            status: Status::Ready,
            media_id: Some(media.id.clone()),
            source: Source::Upload,
            source_url: String::new(),
            failure: None,
            create_time_ms: media.create_time_ms,
            update_time_ms: media.create_time_ms,
        });
        change
    })
    .await;
    drop(staged);
    media
}
