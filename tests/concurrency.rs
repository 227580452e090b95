//! Concurrent writers, readers and watchers against one server: it stays available,
//! answers only what the contract allows, keeps each user's events in order, and keeps
//! every acknowledged write across kill -9.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Client, Server, get, list_media, set_inline, set_profile};
use profile_image::pb;
use tokio::sync::Mutex;
use tokio_stream::StreamExt;
use tonic::Code;

/// A distinct 160x160 photo-like JPEG for `seed`: smooth gradients plus texture.
fn photo(seed: u64) -> Vec<u8> {
    let (a, b, c) = (
        (seed * 37 % 255) as f32,
        (seed * 91 % 255) as f32,
        (seed * 53 % 255) as f32,
    );
    let image = image::RgbImage::from_fn(160, 160, |x, y| {
        let (x, y) = (x as f32, y as f32);
        let texture = ((x * 0.31 + y * 0.17 + seed as f32).sin() * 24.0) as i32;
        let channel = |base: f32, slope: f32| {
            (base + slope + texture as f32)
                .rem_euclid(256.0)
                .clamp(0.0, 255.0) as u8
        };
        image::Rgb([
            channel(a, x * 0.8),
            channel(b, y * 0.9),
            channel(c, (x + y) * 0.4),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&image)
        .expect("encode test photo");
    out
}

/// Calls health every 200 ms until `stop`; returns the slowest answer and the number of
/// checks that failed or were not SERVING.
async fn probe_health(server_url: String, stop: Arc<AtomicBool>) -> (Duration, usize, usize) {
    let channel = tonic::transport::Channel::from_shared(server_url)
        .unwrap()
        .connect()
        .await
        .expect("connect health prober");
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let (mut slowest, mut bad, mut checks) = (Duration::ZERO, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            client.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await;
        slowest = slowest.max(started.elapsed());
        checks += 1;
        let serving = matches!(&answer, Ok(Ok(r)) if r.get_ref().status == 1);
        if !serving {
            bad += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (slowest, bad, checks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_with_readers_and_a_watcher_stay_available_and_survive_kill_9() {
    const WRITERS: u64 = 16;
    const USERS_PER_WRITER: u64 = 4;
    const SETS_PER_WRITER: u64 = 24;

    // Room for every writer in the processing queue: this test is about the store
    // (load shedding has its own test in tests/overload.rs).
    let mut server = Server::start_with(&["--max-queued-processing", "32"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe_health(server.url(), stop.clone()));

    // A watcher of every user's changes, which must keep receiving.
    let mut watcher = server.client().await;
    let mut feed = watcher
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect("watch all users")
        .into_inner();
    let watched = tokio::spawn(async move {
        let mut events = 0usize;
        while let Some(Ok(_)) = feed.next().await {
            events += 1;
        }
        events
    });

    // Readers of the users being written.
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let url = server.url();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut client = common::connect(url).await;
                let mut unexpected = Vec::new();
                let mut n = r;
                while !stop.load(Ordering::Relaxed) {
                    let user = format!("stress-{}-{}", n % WRITERS, n % USERS_PER_WRITER);
                    n += 7;
                    match get(&mut client, &user, 128, pb::ImageFormat::Jpeg).await {
                        Ok(_) => {}
                        Err(status) if status.code() == Code::NotFound => {}
                        Err(status) => unexpected.push(status),
                    }
                }
                unexpected
            })
        })
        .collect();

    // Writers: each owns its users, so its last acknowledged set is each user's state.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = server.url();
            tokio::spawn(async move {
                let mut client = common::connect(url).await;
                let mut acknowledged = BTreeMap::new();
                for i in 0..SETS_PER_WRITER {
                    let user = format!("stress-{w}-{}", i % USERS_PER_WRITER);
                    let image = photo(w * 1000 + i);
                    let set = tokio::time::timeout(
                        Duration::from_secs(30),
                        set_inline(&mut client, &user, image),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("set {user} #{i} did not complete in 30 s"))
                    .unwrap_or_else(|status| panic!("set {user} #{i}: {status:?}"));
                    acknowledged.insert(user, (set.version, set.etag));
                }
                acknowledged
            })
        })
        .collect();

    let mut acknowledged = BTreeMap::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let unexpected = reader.await.expect("reader");
        assert!(unexpected.is_empty(), "reads failed: {unexpected:?}");
    }
    let (slowest, bad, checks) = prober.await.expect("prober");
    assert!(checks >= 3, "the prober ran {checks} checks");
    assert_eq!(
        bad, 0,
        "{bad} of {checks} health checks failed or were slow"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest health check {slowest:?}"
    );
    assert_eq!(acknowledged.len() as u64, WRITERS * USERS_PER_WRITER);

    // A crash right after the last acknowledgement loses nothing.
    server.kill();
    let events = watched.await.expect("watcher");
    assert!(
        events as u64 >= WRITERS * SETS_PER_WRITER,
        "the watcher saw {events} events"
    );
    let restarted = Server::start_on(&server.data_dir, &[]).await;
    let mut client = restarted.client().await;
    for (user, (version, etag)) in &acknowledged {
        let image = get(&mut client, user, 0, pb::ImageFormat::Unspecified)
            .await
            .unwrap_or_else(|status| panic!("{user} after kill -9: {status:?}"));
        assert_eq!((image.version, &image.etag), (*version, etag), "{user}");
    }
}

/// What a watcher of one user saw: (sequence, type, version or None when deleted).
type Seen = Vec<(u64, i32, Option<pb::ProfileImage>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_sets_crops_deletes_and_reads_answer_only_what_the_contract_allows() {
    const USERS: usize = 4;
    const CLIENTS: usize = 8;
    const RUN_FOR: Duration = Duration::from_secs(15);

    let server = Server::start().await;
    let users: Vec<String> = (0..USERS).map(|u| format!("race-{u}")).collect();

    // One watcher per user, subscribed before any change.
    let mut seen: HashMap<String, Arc<Mutex<Seen>>> = HashMap::new();
    for user in &users {
        let mut client = server.client().await;
        let mut stream = client
            .watch_status(pb::WatchStatusRequest {
                user_id: user.clone(),
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        let log = Arc::new(Mutex::new(Seen::new()));
        seen.insert(user.clone(), log.clone());
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                log.lock()
                    .await
                    .push((event.sequence, event.r#type, event.profile_image));
            }
        });
    }

    let deadline = Instant::now() + RUN_FOR;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = server.url();
            let users = users.clone();
            tokio::spawn(async move {
                let mut client = common::connect(url).await;
                let mut rng = c as u64 * 7919 + 1;
                let mut unexpected = Vec::new();
                let mut calls = 0u64;
                while Instant::now() < deadline {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let pick = (rng >> 33) as usize;
                    let user = &users[pick % users.len()];
                    calls += 1;
                    let outcome = random_call(&mut client, user, pick / 7, rng).await;
                    if let Err(status) = outcome
                        && !matches!(status.code(), Code::NotFound)
                    {
                        unexpected.push(format!("{:?}: {}", status.code(), status.message()));
                    }
                }
                (calls, unexpected)
            })
        })
        .collect();
    let mut calls = 0;
    for task in tasks {
        let (n, unexpected) = task.await.expect("client");
        calls += n;
        assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
    }
    assert!(calls > 100, "only {calls} calls ran");

    // A last, known change per user, so each watcher has an end to wait for.
    let mut client = server.client().await;
    for (i, user) in users.iter().enumerate() {
        let last = set_inline(&mut client, user, photo(900_000 + i as u64))
            .await
            .expect("final set");
        let log = seen[user].clone();
        let waited = Instant::now();
        loop {
            let caught_up = log
                .lock()
                .await
                .iter()
                .any(|(_, _, state)| state.as_ref().is_some_and(|s| s.version == last.version));
            if caught_up {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "watcher of {user} never saw version {}",
                last.version
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let events = log.lock().await.clone();
        assert_in_order(user, &events);
        let final_event = events
            .last()
            .and_then(|(_, _, s)| s.clone())
            .expect("state");
        let now = get(&mut client, user, 0, pb::ImageFormat::Unspecified)
            .await
            .expect("final get");
        assert_eq!(
            (now.version, &now.etag, &now.media_id),
            (
                final_event.version,
                &final_event.etag,
                &final_event.media_id
            ),
            "{user}: the final Get equals the last event"
        );
    }

    // Every media item that remains is whole: readable at every size and format.
    for user in &users {
        for media in list_media(&mut client, user).await {
            set_profile(
                &mut client,
                pb::SetProfileImageRequest {
                    user_id: user.clone(),
                    source: Some(pb::set_profile_image_request::Source::MediaId(
                        media.media_id.clone(),
                    )),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|s| panic!("re-activate {}: {s:?}", media.media_id));
            for size in [64, 128, 0] {
                for format in [
                    pb::ImageFormat::Jpeg,
                    pb::ImageFormat::Png,
                    pb::ImageFormat::Webp,
                ] {
                    let image = get(&mut client, user, size, format)
                        .await
                        .unwrap_or_else(|s| {
                            panic!("{} at {size} {format:?}: {s:?}", media.media_id)
                        });
                    common::decode(&image);
                }
            }
        }
    }
}

/// One random call; Ok or the status it answered.
async fn random_call(
    client: &mut Client,
    user: &str,
    pick: usize,
    seed: u64,
) -> Result<(), tonic::Status> {
    match pick % 10 {
        0..=2 => set_inline(client, user, photo(seed % 100_000))
            .await
            .map(|_| ()),
        3 | 4 => {
            let crop = pb::CropRect {
                x: (seed % 40) as u32,
                y: (seed % 30) as u32,
                size: 60 + (seed % 60) as u32,
            };
            client
                .crop_profile_image(pb::CropProfileImageRequest {
                    user_id: user.into(),
                    crop: Some(crop),
                    expected_version: None,
                })
                .await
                .map(|_| ())
        }
        5 => common::delete_profile(client, user).await,
        6 | 7 => {
            let media = list_media(client, user).await;
            let Some(item) = media.get(seed as usize % media.len().max(1)) else {
                return Ok(());
            };
            let request = pb::SetProfileImageRequest {
                user_id: user.into(),
                source: Some(pb::set_profile_image_request::Source::MediaId(
                    item.media_id.clone(),
                )),
                ..Default::default()
            };
            if pick.is_multiple_of(2) {
                set_profile(client, request).await.map(|_| ())
            } else {
                client
                    .delete_media(pb::DeleteMediaRequest {
                        user_id: user.into(),
                        media_id: item.media_id.clone(),
                    })
                    .await
                    .map(|_| ())
            }
        }
        _ => {
            let format = [
                pb::ImageFormat::Jpeg,
                pb::ImageFormat::Png,
                pb::ImageFormat::Webp,
            ][seed as usize % 3];
            get(client, user, [0, 64, 128, 256][pick % 4], format)
                .await
                .map(|_| ())
        }
    }
}

/// Events of one user come in sequence order, and states in version order.
fn assert_in_order(user: &str, events: &Seen) {
    assert!(!events.is_empty(), "{user}: no events");
    let snapshot = pb::EventType::Snapshot as i32;
    let mut last_sequence = 0;
    let mut last_version = 0;
    for (sequence, kind, state) in events {
        let version = state.as_ref().map(|s| s.version);
        if *kind == snapshot {
            assert!(
                *sequence >= last_sequence,
                "{user}: a snapshot went back in sequence"
            );
            assert!(
                version.unwrap_or(last_version) >= last_version,
                "{user}: snapshot went back"
            );
        } else {
            assert!(
                *sequence > last_sequence,
                "{user}: sequence {sequence} after {last_sequence}"
            );
            if let Some(version) = version {
                assert!(
                    version > last_version,
                    "{user}: version {version} after {last_version}"
                );
            }
        }
        last_sequence = *sequence;
        last_version = version.unwrap_or(last_version);
    }
}
