//! GetProfileImage throughput and latency: the real service with authentication (a
//! bearer JWT on every call, `--auth jwt`), the same service without (`--auth none`), and
//! a bare tonic server that answers the same bytes from memory (the transport's ceiling
//! on this machine). "auth cost" is how much slower the authenticated Get is.
//!
//!     cargo bench --bench get
//!
//! Both servers and the load generator run in this one process, on one tokio runtime
//! (so they share the machine's cores, as a co-located load generator would). For each
//! concurrency, N tasks loop GetProfileImage{size: 256} over `ceil(N / per_channel)`
//! HTTP/2 channels for a warm-up then a measured period; every response is checked
//! (data length equals the 256 px rendition's) so errors cannot be measured as speed.
//! The measured time of a row is cut into slices that rotate between the targets
//! (J N B, N B J, B J N, ...): on a VM whose speed drifts by a third from one minute to the
//! next, back-to-back runs of a few seconds each compared the phases, not the servers.
//!
//! Environment:
//!   GET_BENCH_SECONDS            measured seconds per (concurrency, target)   [3]
//!   GET_BENCH_SLICES             alternating slices those seconds are cut in  [6]
//!   GET_BENCH_WARMUP_SECONDS     warm-up seconds before each slice            [0.25]
//!   GET_BENCH_CONCURRENCY        comma-separated concurrencies                [1,4,16,64]
//!   GET_BENCH_TASKS_PER_CHANNEL  tasks sharing one HTTP/2 connection          [8]
//!   GET_BENCH_ROUNDS             repeat the whole table                       [1]
//!   GET_BENCH_PHOTO              corpus file uploaded   [camera/Reconyx_HC500_Hyperfire.jpg]
//!   GET_BENCH_SOCKETS            listener kinds, comma-separated              [nodelay]
//!   GET_BENCH_BATCH_SECONDS      BatchGet (100 users, metadata only) seconds  [3]
//!
//! After the table: BatchGetProfileImages of 100 users, metadata only, one call at a
//! time on one connection, against the service (users set from a small photo).
//!
//! Socket modes: `nodelay` (the default) sets TCP_NODELAY on the listening socket, which
//! Linux copies to accepted sockets, for the bare server; the service sets it on accepted
//! connections itself. `plain` leaves Nagle on for the bare server, to show what the
//! ~40 ms delayed-ACK stall looks like. "% of bare" compares within a mode.

#[path = "support/mod.rs"]
mod support;
use support::{connect, env_or};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use profile_image::pb::profile_image_service_client::ProfileImageServiceClient;
use profile_image::pb::profile_image_service_server::{
    ProfileImageService, ProfileImageServiceServer,
};
use profile_image::pb::{self, set_profile_image_request::Source};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// The service's allocator (see src/main.rs), so the numbers are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USERS: usize = 8;
const SIZE: u32 = 256;
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

fn main() {
    support::run_unless_filtered_out("get", run);
}

/// The bare server: every Get answers the same prebuilt response from memory.
struct Bare {
    response: pb::GetProfileImageResponse,
}

/// Never produced: the bare server does not implement WatchStatus.
type WatchStream =
    tokio_stream::Empty<Result<profile_image::api::watch_codec::EncodedWatchEvent, Status>>;

#[tonic::async_trait]
impl ProfileImageService for Bare {
    async fn get_profile_image(
        &self,
        _request: Request<pb::GetProfileImageRequest>,
    ) -> Result<Response<pb::GetProfileImageResponse>, Status> {
        // `data` is `bytes::Bytes`: this clone shares the buffer.
        Ok(Response::new(self.response.clone()))
    }
    async fn set_profile_image(
        &self,
        _: Request<pb::SetProfileImageRequest>,
    ) -> Result<Response<pb::SetProfileImageResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn upload_profile_image(
        &self,
        _: Request<Streaming<pb::UploadProfileImageRequest>>,
    ) -> Result<Response<pb::UploadProfileImageResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn crop_profile_image(
        &self,
        _: Request<pb::CropProfileImageRequest>,
    ) -> Result<Response<pb::CropProfileImageResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn delete_profile_image(
        &self,
        _: Request<pb::DeleteProfileImageRequest>,
    ) -> Result<Response<pb::DeleteProfileImageResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn list_media(
        &self,
        _: Request<pb::ListMediaRequest>,
    ) -> Result<Response<pb::ListMediaResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn delete_media(
        &self,
        _: Request<pb::DeleteMediaRequest>,
    ) -> Result<Response<pb::DeleteMediaResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    type WatchStatusStream = WatchStream;
    async fn watch_status(
        &self,
        _: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn batch_get_profile_images(
        &self,
        _: Request<pb::BatchGetProfileImagesRequest>,
    ) -> Result<Response<pb::BatchGetProfileImagesResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
}

/// Sends `authorization: Bearer TOKEN` with every call (nothing when None).
#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Client = ProfileImageServiceClient<InterceptedService<Channel, Bearer>>;

fn client(channel: Channel, token: Option<&str>) -> Client {
    let bearer = Bearer(token.map(|t| format!("Bearer {t}").parse().expect("ascii token")));
    ProfileImageServiceClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn request(user: usize) -> pb::GetProfileImageRequest {
    pb::GetProfileImageRequest {
        user_id: format!("bench-user-{user}"),
        size: SIZE,
        format: pb::ImageFormat::Unspecified as i32,
        metadata_only: false,
        if_none_match: String::new(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    /// The service, every call with a bearer JWT.
    Jwt,
    /// The service with `--auth none`.
    NoAuth,
    Bare,
}

const TARGETS: [Target; 3] = [Target::Jwt, Target::NoAuth, Target::Bare];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Jwt => "service, jwt",
            Target::NoAuth => "service, auth none",
            Target::Bare => "bare tonic",
        }
    }
}

struct Measured {
    requests: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Measured {
    fn new(mut latencies: Vec<Duration>, seconds: f64) -> Self {
        latencies.sort_unstable();
        let pick = |q: f64| {
            latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        Measured {
            requests: latencies.len(),
            seconds,
            p50: pick(0.50),
            p99: pick(0.99),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }
}

/// How the listening sockets are made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sockets {
    /// A plain `TcpListener`, as `profile-image serve` and the tests pass to `serve`.
    /// tonic ignores `Server::tcp_nodelay(true)` for a caller-provided incoming stream
    /// (`serve_with_incoming_shutdown`), so accepted sockets keep Nagle's algorithm on.
    Plain,
    /// `TCP_NODELAY` set on the listening socket; Linux copies it to accepted sockets.
    /// This is what the server would get if src/server.rs set it on each accepted stream.
    NoDelay,
}

impl Sockets {
    fn name(self) -> &'static str {
        match self {
            Sockets::Plain => "plain",
            Sockets::NoDelay => "nodelay",
        }
    }

    fn listener(self) -> TcpListener {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        if self == Sockets::NoDelay {
            socket.set_nodelay(true).expect("TCP_NODELAY");
        }
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        socket.listen(1024).expect("listen")
    }
}

/// The services (with and without authentication) and a bare server, all listening with
/// one socket mode.
struct Pair {
    sockets: Sockets,
    jwt: SocketAddr,
    no_auth: SocketAddr,
    bare: SocketAddr,
    /// An admin's token the `jwt` service accepts.
    token: String,
    expected_len: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _temp: tempfile::TempDir,
}

impl Pair {
    fn target(&self, target: Target) -> (SocketAddr, Option<&str>) {
        match target {
            Target::Jwt => (self.jwt, Some(&self.token)),
            Target::NoAuth => (self.no_auth, None),
            Target::Bare => (self.bare, None),
        }
    }
}

/// The real service, in-process, on a data dir under `temp`, with `auth`; its address,
/// its task, and a token it accepts.
async fn start_service(
    sockets: Sockets,
    auth: profile_image::config::AuthMode,
    temp: &Path,
    shutdown: &CancellationToken,
) -> (SocketAddr, tokio::task::JoinHandle<()>, Option<String>) {
    let name = match auth {
        profile_image::config::AuthMode::Jwt => "jwt",
        profile_image::config::AuthMode::None => "none",
    };
    let secret_file = temp.join(format!("{name}.secret"));
    std::fs::write(&secret_file, "get bench secret\n").expect("write secret");
    let config = profile_image::Config {
        data_dir: temp.join(name),
        auth,
        jwt_hs256_secret_file: Some(secret_file),
        // Set up takes more changes than a client may make in a burst.
        rate_limit_per_minute: 0,
        ..Default::default()
    };
    let token = (auth == profile_image::config::AuthMode::Jwt).then(|| {
        profile_image::auth::token::NewToken::new("bench", None, true, Duration::from_secs(86_400))
            .sign_hs256(b"get bench secret")
            .expect("sign token")
    });
    let listener = sockets.listener();
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            if let Err(error) = profile_image::serve(config, listener, shutdown).await {
                eprintln!("service failed: {error}");
            }
        }
    });
    (addr, task, token)
}

/// Sets every bench user's photo on the service at `addr`; the 256 px Get of user 0.
async fn set_up(
    addr: SocketAddr,
    token: Option<&str>,
    photo_bytes: &[u8],
) -> pb::GetProfileImageResponse {
    let mut setup = client(connect(addr).await, token);
    for user in 0..USERS {
        setup
            .set_profile_image(pb::SetProfileImageRequest {
                user_id: format!("bench-user-{user}"),
                source: Some(Source::Image(pb::InlineImage {
                    content_type: "image/jpeg".into(),
                    data: photo_bytes.to_vec().into(),
                })),
                crop: None,
                expected_version: None,
            })
            .await
            .expect("SetProfileImage");
    }
    setup
        .get_profile_image(request(0))
        .await
        .expect("GetProfileImage")
        .into_inner()
}

async fn start_pair(
    sockets: Sockets,
    photo: &str,
    photo_bytes: &[u8],
    shutdown: &CancellationToken,
) -> Pair {
    use profile_image::config::AuthMode;
    let temp = tempfile::tempdir().expect("temp dir");
    let (jwt, jwt_task, token) = start_service(sockets, AuthMode::Jwt, temp.path(), shutdown).await;
    let token = token.expect("a token for the jwt service");
    let (no_auth, no_auth_task, _) =
        start_service(sockets, AuthMode::None, temp.path(), shutdown).await;
    let reference = set_up(jwt, Some(&token), photo_bytes).await;
    let unauthenticated = set_up(no_auth, None, photo_bytes).await;
    let image = reference.profile_image.as_ref().expect("profile_image");
    assert_eq!(
        unauthenticated.profile_image.expect("profile_image").data,
        image.data,
        "both services serve the same bytes"
    );
    let expected_len = image.data.len();
    assert!(expected_len > 0, "empty rendition");
    let mut setup = client(connect(jwt).await, Some(&token));
    for user in 1..USERS {
        let other = setup
            .get_profile_image(request(user))
            .await
            .expect("GetProfileImage")
            .into_inner();
        assert_eq!(
            other.profile_image.expect("profile_image").data.len(),
            expected_len,
            "every user has the same photo"
        );
    }
    if sockets == Sockets::Plain {
        println!(
            "photo {photo} ({} bytes): 256 px rendition {}x{} {} = {expected_len} bytes",
            photo_bytes.len(),
            image.width,
            image.height,
            image.content_type
        );
    }

    // The bare server: same builder settings as src/server.rs, same kind of listener.
    let bare_listener = sockets.listener();
    let bare_addr = bare_listener.local_addr().expect("addr");
    let bare_service = ProfileImageServiceServer::new(Bare {
        response: reference.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let bare_stop = shutdown.clone();
    let bare = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(bare_service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(bare_listener), async move {
                bare_stop.cancelled().await
            })
            .await;
    });
    Pair {
        sockets,
        jwt,
        no_auth,
        bare: bare_addr,
        token,
        expected_len,
        tasks: vec![jwt_task, no_auth_task, bare],
        _temp: temp,
    }
}

async fn run() {
    let seconds: f64 = env_or("GET_BENCH_SECONDS", 3.0);
    let slices: usize = env_or("GET_BENCH_SLICES", 6usize).max(1);
    let warmup: f64 = env_or("GET_BENCH_WARMUP_SECONDS", 0.25);
    let per_channel: usize = env_or("GET_BENCH_TASKS_PER_CHANNEL", 8usize).max(1);
    let rounds: usize = env_or("GET_BENCH_ROUNDS", 1usize).max(1);
    let photo: String = env_or(
        "GET_BENCH_PHOTO",
        "camera/Reconyx_HC500_Hyperfire.jpg".to_string(),
    );
    let concurrencies: Vec<usize> = std::env::var("GET_BENCH_CONCURRENCY")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16, 64]);
    let modes: Vec<Sockets> = std::env::var("GET_BENCH_SOCKETS")
        .unwrap_or_else(|_| "nodelay".into())
        .split(',')
        .filter_map(|m| match m.trim() {
            "plain" => Some(Sockets::Plain),
            "nodelay" => Some(Sockets::NoDelay),
            _ => None,
        })
        .collect();

    let photo_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(&photo);
    let photo_bytes =
        std::fs::read(&photo_path).unwrap_or_else(|e| panic!("read {}: {e}", photo_path.display()));
    let shutdown = CancellationToken::new();
    let mut pairs = Vec::new();
    for &mode in &modes {
        pairs.push(start_pair(mode, &photo, &photo_bytes, &shutdown).await);
    }

    println!(
        "{seconds} s measured per row, in {slices} slices rotating between the targets, each \
         after {warmup} s warm-up; {per_channel} tasks per HTTP/2 channel; {} tokio workers",
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    for round in 0..rounds {
        if rounds > 1 {
            println!("\nround {}", round + 1);
        }
        println!();
        println!(
            "| concurrency | sockets | target | req/s | p50 ms | p99 ms | max ms | % of bare | auth cost |"
        );
        println!("|---:|---|---|---:|---:|---:|---:|---:|---:|");
        for &concurrency in &concurrencies {
            for pair in &pairs {
                let mut samples = [Vec::new(), Vec::new(), Vec::new()];
                for slice in 0..slices {
                    for step in 0..TARGETS.len() {
                        let index = (slice + step) % TARGETS.len();
                        let (addr, token) = pair.target(TARGETS[index]);
                        let latencies = load(
                            addr,
                            token,
                            concurrency,
                            per_channel,
                            warmup,
                            seconds / slices as f64,
                            pair.expected_len,
                        )
                        .await;
                        samples[index].extend(latencies);
                    }
                }
                let rows: Vec<(Target, Measured)> = TARGETS
                    .into_iter()
                    .zip(samples)
                    .map(|(target, latencies)| (target, Measured::new(latencies, seconds)))
                    .collect();
                let rps_of = |wanted: Target| {
                    rows.iter()
                        .find(|(t, _)| *t == wanted)
                        .map(|(_, m)| m.requests as f64 / m.seconds)
                        .unwrap_or(f64::NAN)
                };
                let (bare_rps, no_auth_rps) = (rps_of(Target::Bare), rps_of(Target::NoAuth));
                for (target, m) in &rows {
                    let rps = m.requests as f64 / m.seconds;
                    let auth_cost = match target {
                        Target::Jwt => format!("{:+.1}%", 100.0 * (no_auth_rps / rps - 1.0)),
                        _ => String::new(),
                    };
                    println!(
                        "| {concurrency} | {} | {} | {:.0} | {:.3} | {:.3} | {:.2} | {:.0}% | {auth_cost} |",
                        pair.sockets.name(),
                        target.name(),
                        rps,
                        ms(m.p50),
                        ms(m.p99),
                        ms(m.max),
                        100.0 * rps / bare_rps
                    );
                }
            }
        }
    }

    if let Some(pair) = pairs.first() {
        let batch_seconds: f64 = env_or("GET_BENCH_BATCH_SECONDS", 3.0);
        batch_metadata(pair.jwt, &pair.token, batch_seconds).await;
    }

    shutdown.cancel();
    for pair in pairs {
        for task in pair.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `concurrency` tasks loop Get against `addr` until the deadline; returns the latencies
/// of the requests that started inside the measured window.
async fn load(
    addr: SocketAddr,
    token: Option<&str>,
    concurrency: usize,
    per_channel: usize,
    warmup: f64,
    seconds: f64,
    expected_len: usize,
) -> Vec<Duration> {
    let channels = concurrency.div_ceil(per_channel);
    let mut clients = Vec::with_capacity(channels);
    for _ in 0..channels {
        clients.push(client(connect(addr).await, token));
    }
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + Duration::from_secs_f64(warmup);
    let measure_to = measure_from + Duration::from_secs_f64(seconds);
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let mut client = clients[task % channels].clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut i = task;
            loop {
                let begin = Instant::now();
                if begin >= measure_to {
                    break;
                }
                let result = client.get_profile_image(request(i % USERS)).await;
                let elapsed = begin.elapsed();
                i += 1;
                let ok = match result {
                    Ok(response) => response
                        .into_inner()
                        .profile_image
                        .is_some_and(|p| p.data.len() == expected_len),
                    Err(status) => {
                        eprintln!("GetProfileImage failed: {status:?}");
                        false
                    }
                };
                if !ok {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Do not spin on errors.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                if begin >= measure_from {
                    latencies.push(elapsed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    let errors = errors.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        errors, 0,
        "{errors} Get calls failed or returned wrong bytes"
    );
    assert!(!all.is_empty(), "no request completed");
    all
}

/// Users in one BatchGet.
const BATCH_USERS: usize = 100;

/// BatchGetProfileImages of 100 users, metadata only, one call at a time (with a bearer
/// token, as a real caller): p50 and p99.
async fn batch_metadata(service: SocketAddr, token: &str, seconds: f64) {
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/photos/rocket.jpg");
    let bytes = std::fs::read(&photo).expect("small photo");
    let mut client = client(connect(service).await, Some(token));
    let users: Vec<String> = (0..BATCH_USERS)
        .map(|i| format!("batch-user-{i}"))
        .collect();
    for user in &users {
        client
            .set_profile_image(pb::SetProfileImageRequest {
                user_id: user.clone(),
                source: Some(Source::Image(pb::InlineImage {
                    content_type: "image/jpeg".into(),
                    data: bytes.clone().into(),
                })),
                crop: None,
                expected_version: None,
            })
            .await
            .expect("SetProfileImage");
    }
    let request = pb::BatchGetProfileImagesRequest {
        user_ids: users,
        size: SIZE,
        format: pb::ImageFormat::Unspecified as i32,
        metadata_only: true,
        known_versions: Default::default(),
    };
    let mut latencies = Vec::new();
    let warm_until = Instant::now() + Duration::from_millis(250);
    let until = warm_until + Duration::from_secs_f64(seconds);
    loop {
        let begin = Instant::now();
        if begin >= until {
            break;
        }
        let entries = client
            .batch_get_profile_images(request.clone())
            .await
            .expect("BatchGetProfileImages")
            .into_inner()
            .entries;
        let elapsed = begin.elapsed();
        assert!(
            entries.len() == BATCH_USERS
                && entries.iter().all(|e| matches!(
                    e.result,
                    Some(pb::batch_get_profile_images_entry::Result::ProfileImage(_))
                )),
            "every entry is an image"
        );
        if begin >= warm_until {
            latencies.push(elapsed);
        }
    }
    let m = Measured::new(latencies, seconds);
    println!(
        "\nBatchGetProfileImages, {BATCH_USERS} users, metadata only, sequential: {} calls, \
         p50 {:.3} ms, p99 {:.3} ms, max {:.2} ms",
        m.requests,
        ms(m.p50),
        ms(m.p99),
        ms(m.max)
    );
}
