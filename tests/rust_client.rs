//! The Rust client crate (clients/rust) against the real server: every call, the typed
//! errors, a watch that survives a dropped connection, and a dependency tree free of the
//! server's heavy parts.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::origin::Origin;
use common::{Server, admin_token, corpus, corpus_bytes};
use profile_image_client::{
    Client, Code, Crop, Error, EventType, ImageFormat, Source, Status, UploadOptions, WatchTarget,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
use tokio_stream::StreamExt;

const BIG_PHOTO: &str = "camera/olympus_12mp.jpg"; // 2.9 MB: three 1 MiB chunks

/// A client calling as an admin (the tests act on many users).
async fn client(server: &Server) -> Client {
    Client::builder(server.url())
        .bearer_token(admin_token())
        .connect()
        .await
        .expect("connect")
}

#[test]
fn client_crate_depends_on_no_server_part() {
    let output = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--locked",
            "-p",
            "profile-image-client",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(tree.contains("tonic v0.14"), "cargo tree printed:\n{tree}");
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
    for forbidden in [
        "sled",
        "turbojpeg-sys",
        "turbojpeg",
        "image",
        "mimalloc",
        "libmimalloc-sys",
    ] {
        assert!(
            !crates.contains(&forbidden),
            "profile-image-client depends on {forbidden}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_file_sends_one_mib_chunks_and_reports_progress() {
    let server = Server::start().await;
    let client = client(&server).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let options = UploadOptions::new()
        .on_progress(move |sent, total| sink.lock().unwrap().push((sent, total)));
    let image = client
        .upload_file_with("alice", corpus(BIG_PHOTO), options)
        .await
        .expect("upload");
    let size = std::fs::metadata(corpus(BIG_PHOTO)).unwrap().len();
    assert_eq!(image.status(), Status::Ready);
    assert_eq!(image.source(), Source::Upload);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (1 << 20, Some(size)),
            (2 << 20, Some(size)),
            (size, Some(size))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_from_a_reader_applies_the_crop() {
    let server = Server::start().await;
    let client = client(&server).await;
    let reader = std::io::Cursor::new(corpus_bytes("photos/rocket.jpg"));
    let image = client
        .upload("alice", reader, Some(Crop::new(10, 20, 200)))
        .await
        .expect("upload");
    let crop = image.crop.expect("crop");
    assert_eq!((crop.x, crop.y, crop.size), (10, 20, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_file_of_a_missing_file_is_a_read_error() {
    let server = Server::start().await;
    let error = client(&server)
        .await
        .upload_file("alice", "/no/such/photo.jpg", None)
        .await
        .expect_err("missing file");
    assert!(matches!(error, Error::Read { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_returns_the_size_and_format_asked_for() {
    let server = Server::start().await;
    let client = client(&server).await;
    client
        .upload_file("alice", corpus("photos/rocket.jpg"), None)
        .await
        .expect("upload");
    let webp = client
        .get("alice", 256, ImageFormat::Webp)
        .await
        .expect("get");
    assert!(webp.data.starts_with(b"RIFF") && &webp.data[8..12] == b"WEBP");
    assert_eq!(webp.width.max(webp.height), 256);
    let metadata = client.get_metadata("alice").await.expect("metadata");
    assert!(metadata.data.is_empty());
    assert_eq!(metadata.version, webp.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crop_out_of_bounds_is_a_typed_invalid_argument() {
    let server = Server::start().await;
    let client = client(&server).await;
    client
        .upload_file("alice", corpus("photos/rocket.jpg"), None)
        .await
        .expect("upload");
    let error = client
        .crop("alice", Crop::new(0, 0, 100_000))
        .await
        .expect_err("too big");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(error.reason(), Some("validation-failure"));
    let violations: Vec<(&str, &str)> = error
        .violations()
        .iter()
        .map(|v| (v.field.as_str(), v.reason.as_str()))
        .collect();
    assert_eq!(violations, [("crop", "crop-out-of-bounds")]);
    assert_eq!(error.retry_delay(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_from_url_then_wait_until_complete_returns_the_ready_state() {
    let server = Server::start_with(&["--fetch-allow-cidr", "127.0.0.0/8"]).await;
    let origin = Origin::start().await;
    let client = client(&server).await;
    let accepted = client
        .set_from_url("alice", &origin.url("/image/photos/rocket.jpg"))
        .await
        .expect("set from url");
    assert_eq!(accepted.status(), Status::Downloading);
    let done = client
        .wait_until_complete("alice", Duration::from_secs(30))
        .await
        .expect("wait")
        .expect("an image");
    assert_eq!(done.status(), Status::Ready);
    assert_eq!(done.source(), Source::Url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_inline_crop_and_set_from_media_make_new_versions() {
    let server = Server::start().await;
    let client = client(&server).await;
    let first = client
        .set_inline("alice", corpus_bytes("photos/rocket.jpg"), None)
        .await
        .expect("first");
    let second = client
        .set_inline("alice", corpus_bytes("photos/logo.png"), None)
        .await
        .expect("second");
    let cropped = client
        .crop("alice", Crop::new(0, 0, 100))
        .await
        .expect("crop");
    let back = client
        .set_from_media("alice", &first.media_id)
        .await
        .expect("media");
    assert!(first.version < second.version && second.version < cropped.version);
    assert!(cropped.version < back.version);
    assert_eq!(back.media_id, first.media_id);
    assert_eq!(back.source(), Source::Media);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_media_pages_newest_first_then_delete_media_and_delete() {
    let server = Server::start().await;
    let client = client(&server).await;
    let mut ids = Vec::new();
    for name in ["photos/rocket.jpg", "photos/logo.png", "photos/chelsea.png"] {
        ids.push(
            client
                .set_inline("alice", corpus_bytes(name), None)
                .await
                .expect("set")
                .media_id,
        );
    }
    let mut pages = client.list_media("alice").page_size(2);
    let first = pages.next_page().await.expect("a page").expect("list");
    let second = pages.next_page().await.expect("a page").expect("list");
    assert!(pages.next_page().await.is_none(), "two pages only");
    let listed: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|m| m.media_id.clone())
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);

    client
        .delete_media("alice", &ids[2])
        .await
        .expect("delete media");
    client.delete("alice").await.expect("delete");
    let error = client
        .get("alice", 0, ImageFormat::Unspecified)
        .await
        .expect_err("deleted");
    assert_eq!(error.code(), Code::NotFound);
    let left = client.list_media("alice").all().await.expect("list");
    assert_eq!(left.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_all_reports_every_users_changes() {
    let server = Server::start().await;
    let client = client(&server).await;
    let mut events = client.watch(WatchTarget::All);
    // Keep setting until the feed, which may not be open yet, reports both users.
    let mut users = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while users.len() < 2 && tokio::time::Instant::now() < deadline {
        for user in ["ann", "bob"] {
            client
                .set_inline(user, corpus_bytes("photos/rocket.jpg"), None)
                .await
                .expect("set");
        }
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(300), events.next()).await
        {
            let event = event.expect("event");
            if event.r#type() == EventType::Set {
                users.insert(event.user_id);
            }
        }
    }
    assert_eq!(users.into_iter().collect::<Vec<_>>(), ["ann", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_a_dropped_connection_without_losing_events() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    let direct = client(&server).await;
    let through_proxy = Client::builder(format!("http://{}", proxy.addr))
        .bearer_token(admin_token())
        .connect()
        .await
        .expect("connect");
    direct
        .set_inline("alice", corpus_bytes("photos/rocket.jpg"), None)
        .await
        .expect("set");

    let mut events = through_proxy.watch(WatchTarget::User("alice".into()));
    let snapshot = next(&mut events).await;
    assert_eq!(snapshot.r#type(), EventType::Snapshot);

    proxy.cut();
    let missed = direct
        .crop("alice", Crop::new(0, 0, 50))
        .await
        .expect("crop while cut off");
    proxy.resume();

    let replayed = next(&mut events).await;
    assert_eq!(
        replayed.r#type(),
        EventType::Cropped,
        "replayed, not a new snapshot"
    );
    assert!(replayed.sequence > snapshot.sequence);
    assert_eq!(
        replayed.profile_image.expect("state").version,
        missed.version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_url_speaks_tls_and_checks_the_certificate() {
    let server = Server::start().await;
    let proxy = tls_proxy(server.addr).await;
    let url = format!("https://{proxy}");
    let ca = std::fs::read(tls_file("ca.crt")).expect("test CA");

    let client = Client::builder(url.clone())
        .ca_certificate_pem(ca)
        .tls_domain("localhost")
        .bearer_token(admin_token())
        .connect()
        .await
        .expect("TLS connection trusting the test CA");
    let image = client
        .upload_file("alice", corpus("photos/rocket.jpg"), None)
        .await
        .expect("upload over TLS");
    let served = client.get_metadata("alice").await.expect("get over TLS");
    assert_eq!(served.version, image.version);

    // The webpki roots do not know the test CA: the handshake must fail.
    let untrusted = Client::builder(url).tls_domain("localhost").connect().await;
    assert!(
        matches!(untrusted, Err(Error::Connect { .. })),
        "{:?}",
        untrusted.err()
    );
}

fn tls_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// Terminates TLS (tests/tls/localhost.crt, ALPN h2) and forwards to the plaintext server.
async fn tls_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    let certificates = rustls::pki_types::CertificateDer::pem_file_iter(tls_file("localhost.crt"))
        .expect("certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(tls_file("localhost.key")).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(inbound).await else {
                    return; // a refused handshake
                };
                if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                }
            });
        }
    });
    addr
}

async fn next(events: &mut profile_image_client::Watch) -> profile_image_client::WatchEvent {
    tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("an event within 20 s")
        .expect("the watch goes on")
        .expect("an event, not an error")
}

/// A TCP proxy to the server whose connections can be cut: `cut` drops them all and
/// refuses new ones until `resume`.
struct Proxy {
    addr: std::net::SocketAddr,
    refusing: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Proxy {
            addr: listener.local_addr().expect("addr"),
            refusing: Arc::default(),
            connections: Arc::default(),
        };
        let (refusing, connections) = (proxy.refusing.clone(), proxy.connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(task.abort_handle());
            }
        });
        proxy
    }

    fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn resume(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }
}
