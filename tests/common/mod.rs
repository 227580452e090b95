//! Test harness: runs the real `profile-image` binary on 127.0.0.1:0 with a temporary
//! data dir and talks to it through the generated client.
//!
//! Authentication is on (`--auth jwt`, the default): every server the harness starts
//! verifies tokens with the harness's HS256 secret ([`harness_secret_file`], given by
//! env var, so a test's own `--jwt-*` flags still win), and its clients call as an admin
//! of the `default` tenant ([`admin_token`]), since the tests act on many users. The
//! per-caller limits are off by env var too (tests that check them set their own);
//! [`Server::start_plain`] starts a server with none of this.

#![allow(dead_code)]

pub mod backend;
pub mod http;
pub mod metrics;
pub mod origin;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use profile_image::auth::token::NewToken;
use profile_image::pb::profile_image_service_client::ProfileImageServiceClient;
use profile_image::pb::{self, upload_profile_image_request::Payload};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

pub type Client = ProfileImageServiceClient<InterceptedService<Channel, Bearer>>;

/// The harness's HS256 secret.
const HARNESS_SECRET: &str = "profile-image test harness secret";

/// A file holding the harness's HS256 secret (written once per test binary).
pub fn harness_secret_file() -> &'static Path {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join("harness-hs256.secret");
        let temp = dir.join(format!("harness-hs256.secret.{}", std::process::id()));
        std::fs::write(&temp, format!("{HARNESS_SECRET}\n")).expect("write secret");
        std::fs::rename(&temp, &path).expect("place secret");
        path
    })
}

/// A token signed with the harness secret, valid for an hour.
pub fn token_for(user: &str, tenant: Option<&str>, admin: bool) -> String {
    NewToken::new(user, tenant, admin, Duration::from_secs(3600))
        .sign_hs256(HARNESS_SECRET.as_bytes())
        .expect("sign token")
}

/// The token harness clients call with: an admin of the `default` tenant.
pub fn admin_token() -> String {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| token_for("test-harness", None, true))
        .clone()
}

/// Env vars every harness server gets (before the test's own, which win).
fn harness_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "PROFILE_IMAGE_JWT_HS256_SECRET_FILE",
            harness_secret_file().display().to_string(),
        ),
        ("PROFILE_IMAGE_RATE_LIMIT_PER_MINUTE", "0".into()),
        ("PROFILE_IMAGE_MAX_WATCHES_PER_CALLER", "0".into()),
        ("PROFILE_IMAGE_MAX_UPLOADS_PER_CALLER", "0".into()),
    ]
}

/// A token from `profile-image token --data-dir DIR ARGS...` (signed with the secret a
/// server without a configured key created in its data dir).
pub fn token_from_data_dir(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_profile-image"))
        .arg("token")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("PROFILE_IMAGE_JWT_HS256_SECRET_FILE")
        .output()
        .expect("run profile-image token");
    assert!(
        output.status.success(),
        "profile-image token failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 token")
        .trim()
        .to_owned()
}

/// Sends `authorization: Bearer TOKEN` with every call (nothing when None).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Self {
        Bearer(token.map(|t| format!("Bearer {t}").parse().expect("ascii token")))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A client on `channel` calling with `token` (None: no authorization at all).
pub fn client_on(channel: Channel, token: Option<&str>) -> Client {
    ProfileImageServiceClient::with_interceptor(channel, Bearer::new(token))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// A file of the shared corpus.
pub fn corpus(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(relative)
}

pub fn corpus_bytes(relative: &str) -> Vec<u8> {
    std::fs::read(corpus(relative)).unwrap_or_else(|e| panic!("corpus file {relative}: {e}"))
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Where image URLs are served (`http listening on ADDR`), unless HTTP is off.
    pub http_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server on a fresh temporary data dir.
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    pub async fn start_with(args: &[&str]) -> Server {
        Self::start_with_env(args, &[]).await
    }

    /// Starts a server with these flags and these environment variables set.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_fresh(args, env, true).await
    }

    /// Starts a server as an operator would, without the harness's secret or limits:
    /// with no key flag, it creates its own secret in its data dir.
    pub async fn start_plain(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_fresh(args, env, false).await
    }

    async fn start_fresh(args: &[&str], env: &[(&str, &str)], harness: bool) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::spawn(&data_dir, args, env, harness);
        server._temp = Some(temp);
        server.wait_ready().await;
        server
    }

    /// Starts a server on an existing data dir (restart tests).
    pub async fn start_on(data_dir: &Path, args: &[&str]) -> Server {
        let mut server = Self::spawn(data_dir, args, &[], true);
        server.wait_ready().await;
        server
    }

    fn spawn(data_dir: &Path, args: &[&str], env: &[(&str, &str)], harness: bool) -> Server {
        let Some(backends) = backend::for_suite() else {
            return Self::spawn_with(data_dir, &[], args, env, harness);
        };
        // A restart on the same state (kill -9 tests) takes the dead process's downloads
        // over once their lease runs out: a short one, so the tests need not wait 30 s.
        let env: Vec<_> = [("PROFILE_IMAGE_DOWNLOAD_LEASE_MS", "2000")]
            .into_iter()
            .chain(env.iter().copied())
            .collect();
        Self::spawn_with(
            data_dir,
            &backends.serve_args(data_dir),
            args,
            &env,
            harness,
        )
    }

    /// Starts a server on sled in a fresh temporary data dir, whatever the suite's
    /// backend (a source for `migrate`).
    pub async fn start_local(args: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::spawn_with(&data_dir, &[], args, &[], true);
        server._temp = Some(temp);
        server.wait_ready().await;
        server
    }

    /// Starts a server on sled in `data_dir`, whatever the suite's backend (a data dir
    /// made by an earlier layout).
    pub async fn start_local_on(data_dir: &Path, args: &[&str]) -> Server {
        let mut server = Self::spawn_with(data_dir, &[], args, &[], true);
        server.wait_ready().await;
        server
    }

    /// Starts another server (a replica) on the same state as `self`: its data dir, or
    /// its database and bucket prefix when the suite runs on the shared backends.
    pub async fn start_replica(&self, args: &[&str]) -> Server {
        let backends = backend::Backends::get();
        let shared = backends.serve_args(&self.data_dir);
        let mut server = Self::spawn_with(&self.data_dir, &shared, args, &[], true);
        server.wait_ready().await;
        server
    }

    /// Starts a server on the shared backends (whatever the suite's backend), on the
    /// state named after `data_dir`.
    pub async fn start_shared(data_dir: &Path, args: &[&str]) -> Server {
        let shared = backend::Backends::get().serve_args(data_dir);
        let mut server = Self::spawn_with(data_dir, &shared, args, &[], true);
        server.wait_ready().await;
        server
    }

    /// As `start_shared`, with PostgreSQL reached at `store_url` instead (a proxy in
    /// front of the test cluster, say).
    pub async fn start_shared_at(data_dir: &Path, store_url: &str, args: &[&str]) -> Server {
        let mut shared = backend::Backends::get().serve_args(data_dir);
        let store = shared
            .iter()
            .position(|arg| arg == "--store")
            .expect("--store")
            + 1;
        shared[store] = store_url.to_owned();
        let mut server = Self::spawn_with(data_dir, &shared, args, &[], true);
        server.wait_ready().await;
        server
    }

    /// `harness`: with the harness's secret and without per-caller limits.
    fn spawn_with(
        data_dir: &Path,
        shared: &[String],
        args: &[&str],
        env: &[(&str, &str)],
        harness: bool,
    ) -> Server {
        // Image URLs on a port of their own too: tests run servers in parallel.
        let http_listen: &[&str] = if args.contains(&"--http-listen") {
            &[]
        } else {
            &["--http-listen", "127.0.0.1:0"]
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_profile-image"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(shared)
            .args(http_listen)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(backend::AWS_ENV);
        if harness {
            command.envs(harness_env());
        }
        let mut child = command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start profile-image");
        let stderr = child.stderr.take().expect("stderr");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log_sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Kept before the address is handed over: a test that reads the logs once
                // the server started finds the line that said so.
                log_sink.lock().unwrap().push(line.clone());
                // "listening on ADDR" (gRPC) comes first, "http listening on ADDR" after
                // it when image URLs are on.
                let http = line.contains("http listening on ");
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Ok(addr) = rest.trim().trim_matches('"').parse::<SocketAddr>()
                {
                    let _ = addr_tx.send(Some((http, addr)));
                }
                if line.contains("image URLs are off") {
                    let _ = addr_tx.send(None);
                }
            }
        });
        let wait = || {
            addr_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("server did not log 'listening on ADDR'")
        };
        let Some((false, addr)) = wait() else {
            panic!("the gRPC address must be logged first");
        };
        let http_wanted = !args
            .windows(2)
            .any(|pair| pair[0] == "--http-listen" && pair[1].is_empty());
        let http_addr = match http_wanted {
            true => wait().map(|(http, addr)| {
                assert!(http, "a second gRPC address?");
                addr
            }),
            false => None,
        };
        Server {
            child: Some(child),
            addr,
            http_addr,
            data_dir: data_dir.to_owned(),
            _temp: None,
            logs,
        }
    }

    async fn wait_ready(&mut self) {
        for _ in 0..100 {
            if self.try_client().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server at {} never accepted a connection", self.addr);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base of image URLs: `http://` + the HTTP listener's address.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.http_addr.expect("image URLs are on"))
    }

    async fn try_client(&self) -> Result<Client, tonic::transport::Error> {
        let channel = Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await?;
        Ok(client_on(channel, Some(&admin_token())))
    }

    /// A client calling as an admin of the `default` tenant.
    pub async fn client(&self) -> Client {
        self.try_client().await.expect("connect to server")
    }

    /// A client calling with `token` (None: without authorization metadata).
    pub async fn client_with(&self, token: Option<&str>) -> Client {
        client_on(self.channel().await, token)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    /// SIGTERM, then waits for the process; returns its exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        panic!("server did not exit within 10 s of SIGTERM");
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Resident memory of the server process, in bytes (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `profile-image serve` with `args` on a fresh data dir and port 0, expecting it
/// to refuse to start: its exit code and what it printed on stderr.
pub fn serve_refused(args: &[&str]) -> (Option<i32>, String) {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_profile-image"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(temp.path().join("data"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start profile-image");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("profile-image serve {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

/// A client on a connection of its own to `url` (for tasks that outlive a borrow of
/// the server), with room for large messages.
pub async fn connect(url: String) -> Client {
    let channel = Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    client_on(channel, Some(&admin_token()))
}

/// SetProfileImage with an inline image.
pub async fn set_inline(
    client: &mut Client,
    user: &str,
    data: Vec<u8>,
) -> Result<pb::ProfileImage, tonic::Status> {
    set_inline_with(client, user, data, None, None).await
}

pub async fn set_inline_with(
    client: &mut Client,
    user: &str,
    data: Vec<u8>,
    crop: Option<pb::CropRect>,
    expected_version: Option<u64>,
) -> Result<pb::ProfileImage, tonic::Status> {
    let request = pb::SetProfileImageRequest {
        user_id: user.into(),
        source: Some(pb::set_profile_image_request::Source::Image(
            pb::InlineImage {
                content_type: "application/octet-stream".into(),
                data: data.into(),
            },
        )),
        crop,
        expected_version,
    };
    set_profile(client, request).await
}

/// SetProfileImage; the new state.
pub async fn set_profile(
    client: &mut Client,
    request: pb::SetProfileImageRequest,
) -> Result<pb::ProfileImage, tonic::Status> {
    Ok(client
        .set_profile_image(request)
        .await?
        .into_inner()
        .profile_image
        .expect("profile_image"))
}

/// UploadProfileImage in chunks of `chunk_size`.
pub async fn upload(
    client: &mut Client,
    user: &str,
    data: &[u8],
    chunk_size: usize,
    crop: Option<pb::CropRect>,
) -> Result<pb::ProfileImage, tonic::Status> {
    let mut messages = vec![pb::UploadProfileImageRequest {
        payload: Some(Payload::Metadata(pb::UploadMetadata {
            user_id: user.into(),
            content_type: "image/jpeg".into(),
            size_bytes: data.len() as u64,
            crop,
            expected_version: None,
        })),
    }];
    messages.extend(
        data.chunks(chunk_size)
            .map(|chunk| pb::UploadProfileImageRequest {
                payload: Some(Payload::Chunk(chunk.to_vec().into())),
            }),
    );
    let response = client
        .upload_profile_image(tokio_stream::iter(messages))
        .await?;
    Ok(response.into_inner().profile_image.expect("profile_image"))
}

pub async fn get(
    client: &mut Client,
    user: &str,
    size: u32,
    format: pb::ImageFormat,
) -> Result<pb::ProfileImage, tonic::Status> {
    let request = pb::GetProfileImageRequest {
        user_id: user.into(),
        size,
        format: format as i32,
        metadata_only: false,
        if_none_match: String::new(),
    };
    Ok(client
        .get_profile_image(request)
        .await?
        .into_inner()
        .profile_image
        .expect("profile_image"))
}

/// Decodes served bytes, checking they are what `content_type` says.
pub fn decode(image: &pb::ProfileImage) -> image::DynamicImage {
    let format = match image.content_type.as_str() {
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/png" => image::ImageFormat::Png,
        "image/webp" => image::ImageFormat::WebP,
        other => panic!("unexpected content type {other}"),
    };
    assert_eq!(
        image::guess_format(&image.data).expect("recognisable bytes"),
        format,
        "bytes match content_type"
    );
    image::load_from_memory_with_format(&image.data, format).expect("served image decodes")
}

/// The BadRequest field violations (field, reason) and the ErrorInfo reason of a status.
pub fn violations(status: &tonic::Status) -> (Option<String>, Vec<(String, String)>) {
    let details = status.get_error_details();
    let info = details.error_info().map(|i| i.reason.clone());
    let fields = details
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.reason.clone()))
                .collect()
        })
        .unwrap_or_default();
    (info, fields)
}

/// Asserts a validation failure with a violation of `reason` on `field`.
pub fn assert_violation(status: &tonic::Status, field: &str, reason: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let (info, fields) = violations(status);
    assert_eq!(info.as_deref(), Some("validation-failure"), "{status:?}");
    assert!(
        fields.iter().any(|(f, r)| f == field && r == reason),
        "expected violation {field}/{reason}, got {fields:?}"
    );
}

/// Health check for a service name ("" = the whole server).
pub async fn health(server: &Server, service: &str) -> i32 {
    let mut client = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

/// Asserts that Get answers NOT_FOUND: the user has no profile image.
pub async fn assert_no_image(client: &mut Client, user: &str) {
    let status = get(client, user, 0, pb::ImageFormat::Unspecified)
        .await
        .expect_err("no image");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

/// The first page (up to 1000) of the user's media, newest first.
pub async fn list_media(client: &mut Client, user: &str) -> Vec<pb::Media> {
    let request = pb::ListMediaRequest {
        user_id: user.into(),
        page_size: 1000,
        page_token: String::new(),
    };
    client
        .list_media(request)
        .await
        .expect("list media")
        .into_inner()
        .media
}

/// DeleteProfileImage without a version precondition.
pub async fn delete_profile(client: &mut Client, user: &str) -> Result<(), tonic::Status> {
    let request = pb::DeleteProfileImageRequest {
        user_id: user.into(),
        expected_version: None,
    };
    client.delete_profile_image(request).await.map(|_| ())
}
