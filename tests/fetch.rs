//! Contract of the outbound fetcher, exercised against the tests' HTTP/1.1 origin on
//! 127.0.0.1 (tests/common/origin.rs). No test ever connects anywhere but loopback:
//! redirects to other addresses must be refused before any connection is attempted.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::corpus_bytes;
use common::origin::Origin;
use profile_image::fetch::{
    BlockedRange, FetchConfig, FetchError, Fetcher, InvalidUrl, MAX_URL_LEN, blocked_range,
    check_address, validate_url,
};

/// `max_bytes` used by the size-limit tests; the origin's oversized bodies exceed it.
const SMALL_LIMIT: u64 = 64 * 1024;

/// The photo the origin serves.
const ROCKET: &str = "/image/photos/rocket.jpg";

fn loopback_allowed() -> FetchConfig {
    FetchConfig {
        connect_timeout: Duration::from_secs(1),
        total_timeout: Duration::from_secs(3),
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("valid CIDR")],
        ..FetchConfig::default()
    }
}

fn no_allowlist() -> FetchConfig {
    FetchConfig {
        allow_cidrs: Vec::new(),
        ..loopback_allowed()
    }
}

fn url(raw: &str) -> url::Url {
    url::Url::parse(raw).expect("test URL is valid")
}

/// The URL of `path` on the origin.
fn at(origin: &Origin, path: &str) -> url::Url {
    url(&origin.url(path))
}

async fn fetch_err(config: FetchConfig, target: &url::Url) -> FetchError {
    match Fetcher::new(config).fetch(target).await {
        Ok(fetched) => panic!("expected an error, got {} bytes", fetched.bytes.len()),
        Err(error) => error,
    }
}

// --- successful downloads -------------------------------------------------------

#[tokio::test]
async fn allowlisted_loopback_image_is_downloaded_intact() {
    let origin = Origin::start().await;
    let fetched = Fetcher::new(loopback_allowed())
        .fetch(&at(&origin, ROCKET))
        .await
        .expect("download succeeds");
    let expected = corpus_bytes("photos/rocket.jpg");
    assert_eq!(fetched.bytes, expected);
    assert_eq!(fetched.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(fetched.final_url, at(&origin, ROCKET));
}

#[tokio::test]
async fn request_asks_for_images_without_compression_credentials_or_cookies() {
    let origin = Origin::start().await;
    let config = FetchConfig {
        user_agent: "profile-image-test/1".to_owned(),
        ..loopback_allowed()
    };
    let fetched = Fetcher::new(config)
        .fetch(&at(&origin, "/echo-headers?x=1#fragment"))
        .await
        .expect("download succeeds");
    let head = String::from_utf8(fetched.bytes)
        .expect("echo is text")
        .to_ascii_lowercase();
    assert!(
        head.starts_with("get /echo-headers?x=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("host: 127.0.0.1:{}\r\n", origin.port)),
        "{head}"
    );
    assert!(head.contains("accept: image/*\r\n"), "{head}");
    assert!(
        head.contains("user-agent: profile-image-test/1\r\n"),
        "{head}"
    );
    assert!(!head.contains("gzip"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
    assert!(!head.contains("cookie"), "{head}");
    assert!(!head.contains("fragment"), "{head}");
}

#[tokio::test]
async fn host_header_carries_the_name_not_the_resolved_address() {
    let origin = Origin::start().await;
    let target = url(&format!("http://localhost:{}/echo-headers", origin.port));
    let fetched = Fetcher::new(loopback_allowed())
        .fetch(&target)
        .await
        .expect("localhost resolves to an allowlisted 127.0.0.1");
    let head = String::from_utf8(fetched.bytes)
        .expect("echo is text")
        .to_ascii_lowercase();
    assert!(
        head.contains(&format!("host: localhost:{}\r\n", origin.port)),
        "{head}"
    );
}

#[tokio::test]
async fn body_of_exactly_max_bytes_is_accepted() {
    let origin = Origin::start().await;
    let config = FetchConfig {
        max_bytes: SMALL_LIMIT,
        ..loopback_allowed()
    };
    let fetched = Fetcher::new(config)
        .fetch(&at(&origin, &format!("/bytes/{SMALL_LIMIT}")))
        .await
        .expect("a body at the limit is fine");
    assert_eq!(fetched.bytes.len() as u64, SMALL_LIMIT);
}

// --- redirects ------------------------------------------------------------------

#[tokio::test]
async fn redirect_chains_up_to_the_limit_are_followed() {
    let origin = Origin::start().await;
    let fetcher = Fetcher::new(loopback_allowed());
    for hops in 1..=3 {
        let fetched = fetcher
            .fetch(&at(&origin, &format!("/redirect/{hops}/photos/rocket.jpg")))
            .await
            .unwrap_or_else(|error| panic!("{hops} redirects: {error}"));
        assert_eq!(fetched.final_url, at(&origin, ROCKET));
        assert_eq!(fetched.content_type.as_deref(), Some("image/jpeg"));
    }
}

#[tokio::test]
async fn one_redirect_too_many_is_a_permanent_download_failure() {
    let origin = Origin::start().await;
    let error = fetch_err(
        loopback_allowed(),
        &at(&origin, "/redirect/4/photos/rocket.jpg"),
    )
    .await;
    assert!(
        matches!(error, FetchError::TooManyRedirects { limit: 3 }),
        "{error:?}"
    );
    assert_eq!(error.reason(), "download-failed");
    assert!(!error.is_transient());
    // The first request plus three followed redirects; the fourth target is never asked.
    assert_eq!(origin.requests(), 4);
}

#[tokio::test]
async fn redirects_to_blocked_addresses_are_refused_before_connecting() {
    let origin = Origin::start().await;
    let targets = [
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254",
            BlockedRange::LinkLocal,
        ),
        (
            format!("http://10.0.0.1:{}/rocket.jpg", origin.port),
            "10.0.0.1",
            BlockedRange::Private,
        ),
        (
            format!("http://[::1]:{}/rocket.jpg", origin.port),
            "::1",
            BlockedRange::Loopback,
        ),
    ];
    for (target, address, range) in targets {
        // A connection attempt would hang past total_timeout (10.0.0.1, 169.254.x) or
        // be refused (::1, nothing listens there): only a pre-connect refusal yields
        // blocked-destination, and quickly.
        let config = FetchConfig {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(5),
            ..loopback_allowed()
        };
        let started = Instant::now();
        let error = fetch_err(config, &at(&origin, &format!("/redirect-to/{target}"))).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{target} took too long"
        );
        let expected_ip: IpAddr = address.parse().expect("valid IP");
        match &error {
            FetchError::Blocked(blocked) => {
                assert_eq!(blocked.address, expected_ip);
                assert_eq!(blocked.range, range);
            }
            other => panic!("{target}: expected a blocked destination, got {other:?}"),
        }
        assert_eq!(error.reason(), "blocked-destination");
        assert!(!error.is_transient());
    }
}

#[tokio::test]
async fn redirect_to_a_non_http_scheme_is_refused() {
    let origin = Origin::start().await;
    let error = fetch_err(
        loopback_allowed(),
        &at(&origin, "/redirect-to/file:///etc/passwd"),
    )
    .await;
    assert!(
        matches!(
            error,
            FetchError::InvalidRedirect(InvalidUrl::UnsupportedScheme { .. })
        ),
        "{error:?}"
    );
    assert_eq!(error.reason(), "download-failed");
    assert!(!error.is_transient());
}

// --- destination policy at fetch time -------------------------------------------

#[tokio::test]
async fn loopback_literal_is_blocked_without_allowlist() {
    let origin = Origin::start().await;
    let error = fetch_err(no_allowlist(), &at(&origin, ROCKET)).await;
    assert_eq!(error.reason(), "blocked-destination");
    assert_eq!(
        error.to_string(),
        "destination 127.0.0.1 is a loopback address and not allowed"
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn localhost_is_blocked_because_it_resolves_to_loopback() {
    let origin = Origin::start().await;
    let target = url(&format!("http://localhost:{}/rocket.jpg", origin.port));
    let error = fetch_err(no_allowlist(), &target).await;
    assert_eq!(error.reason(), "blocked-destination", "{error:?}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn ipv4_mapped_loopback_is_blocked() {
    let origin = Origin::start().await;
    let target = url(&format!(
        "http://[::ffff:127.0.0.1]:{}/rocket.jpg",
        origin.port
    ));
    let error = fetch_err(no_allowlist(), &target).await;
    assert_eq!(error.reason(), "blocked-destination", "{error:?}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn private_literal_is_blocked_with_a_readable_message() {
    let error = fetch_err(no_allowlist(), &url("http://10.0.0.1/a.jpg")).await;
    assert_eq!(
        error.to_string(),
        "destination 10.0.0.1 is a private address and not allowed"
    );
}

#[tokio::test]
async fn https_sends_the_hostname_as_sni() {
    // A bare listener that only records the TLS ClientHello; the handshake then fails.
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let hello = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buffer = vec![0u8; 4096];
        let read = stream.read(&mut buffer).await.expect("read ClientHello");
        buffer.truncate(read);
        buffer
    });
    let target = url(&format!("https://localhost:{port}/rocket.jpg"));
    let error = fetch_err(loopback_allowed(), &target).await;
    assert_eq!(error.reason(), "download-failed", "{error:?}");
    let hello = tokio::time::timeout(Duration::from_secs(2), hello)
        .await
        .expect("ClientHello arrives")
        .expect("listener task");
    assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
    assert!(hello.windows(9).any(|window| window == b"localhost"));
}

// --- status codes ---------------------------------------------------------------

#[tokio::test]
async fn not_found_is_a_permanent_failure_with_the_status_in_the_message() {
    let origin = Origin::start().await;
    let error = fetch_err(loopback_allowed(), &at(&origin, "/status/404")).await;
    assert_eq!(error.reason(), "download-failed");
    assert!(!error.is_transient());
    assert_eq!(error.to_string(), "the server answered 404 Not Found");
}

#[tokio::test]
async fn server_errors_and_throttling_are_transient() {
    let origin = Origin::start().await;
    for code in ["503", "429", "408"] {
        let error = fetch_err(loopback_allowed(), &at(&origin, &format!("/status/{code}"))).await;
        assert_eq!(error.reason(), "download-failed", "{code}");
        assert!(error.is_transient(), "{code} should be transient");
        assert!(
            error
                .to_string()
                .starts_with(&format!("the server answered {code} "))
        );
    }
}

#[tokio::test]
async fn refused_connection_is_a_transient_download_failure() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let error = fetch_err(
        loopback_allowed(),
        &url(&format!("http://127.0.0.1:{port}/")),
    )
    .await;
    assert!(matches!(error, FetchError::Connect { .. }), "{error:?}");
    assert_eq!(error.reason(), "download-failed");
    assert!(error.is_transient());
    assert_eq!(error.to_string(), "could not connect to 127.0.0.1");
}

// --- timeouts -------------------------------------------------------------------

fn short_total_timeout() -> FetchConfig {
    FetchConfig {
        total_timeout: Duration::from_millis(500),
        ..loopback_allowed()
    }
}

#[tokio::test]
async fn server_stalling_before_headers_times_out() {
    let origin = Origin::start().await;
    let started = Instant::now();
    let error = fetch_err(short_total_timeout(), &at(&origin, "/stall")).await;
    assert_eq!(error.reason(), "timeout", "{error:?}");
    assert!(error.is_transient());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        error.to_string(),
        "the download did not finish within 500 ms"
    );
}

#[tokio::test]
async fn server_stalling_mid_body_times_out() {
    let origin = Origin::start().await;
    let started = Instant::now();
    let error = fetch_err(short_total_timeout(), &at(&origin, "/stall-body")).await;
    assert_eq!(error.reason(), "timeout", "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

// --- size limit -----------------------------------------------------------------

fn small_limit() -> FetchConfig {
    FetchConfig {
        max_bytes: SMALL_LIMIT,
        ..loopback_allowed()
    }
}

#[tokio::test]
async fn declared_content_length_over_the_limit_is_rejected_up_front() {
    let origin = Origin::start().await;
    let started = Instant::now();
    let error = fetch_err(small_limit(), &at(&origin, "/declared/10737418240")).await;
    assert_eq!(error.reason(), "file-too-large", "{error:?}");
    assert!(!error.is_transient());
    // The origin never sends a body: only a header check can be this quick.
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        error.to_string(),
        "the file is larger than the limit of 64 KiB"
    );
}

#[tokio::test]
async fn undeclared_body_over_the_limit_is_rejected() {
    let origin = Origin::start().await;
    let oversized = format!("/unsized/{}", SMALL_LIMIT + 1);
    let error = fetch_err(small_limit(), &at(&origin, &oversized)).await;
    assert_eq!(error.reason(), "file-too-large", "{error:?}");
}

#[tokio::test]
async fn endless_body_is_cut_off_at_the_limit_and_the_connection_dropped() {
    let origin = Origin::start().await;
    let config = FetchConfig {
        // Long enough that only the byte limit can end this download.
        total_timeout: Duration::from_secs(10),
        ..small_limit()
    };
    let started = Instant::now();
    let error = fetch_err(config, &at(&origin, "/endless")).await;
    assert_eq!(error.reason(), "file-too-large", "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::timeout(Duration::from_secs(2), origin.endless_closed())
        .await
        .expect("the origin sees the connection closed");
}

// --- URL validation -------------------------------------------------------------

#[test]
fn http_and_https_urls_are_valid() {
    for raw in [
        "http://example.com/a.jpg",
        "https://example.com:8443/a.jpg?size=large",
        "https://[2606:4700::1111]/a.png",
    ] {
        assert!(validate_url(raw).is_ok(), "{raw}");
    }
}

#[test]
fn non_http_schemes_are_rejected() {
    for raw in [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "gopher://example.com/",
    ] {
        assert!(
            matches!(validate_url(raw), Err(InvalidUrl::UnsupportedScheme { .. })),
            "{raw}: {:?}",
            validate_url(raw)
        );
    }
}

#[test]
fn relative_urls_are_rejected() {
    assert_eq!(validate_url("/images/a.jpg"), Err(InvalidUrl::NotAbsolute));
    assert_eq!(validate_url("a.jpg"), Err(InvalidUrl::NotAbsolute));
}

#[test]
fn urls_without_host_are_rejected() {
    assert_eq!(validate_url("http://"), Err(InvalidUrl::MissingHost));
    assert_eq!(
        validate_url("https://:443/a.jpg"),
        Err(InvalidUrl::MissingHost)
    );
}

#[test]
fn urls_longer_than_the_limit_are_rejected() {
    let prefix = "https://example.com/";
    let at_limit = format!("{prefix}{}", "a".repeat(MAX_URL_LEN - prefix.len()));
    assert!(validate_url(&at_limit).is_ok());
    let over_limit = format!("{at_limit}a");
    assert_eq!(validate_url(&over_limit), Err(InvalidUrl::TooLong));
}

#[test]
fn urls_with_credentials_are_rejected() {
    assert_eq!(
        validate_url("https://user:secret@example.com/a.jpg"),
        Err(InvalidUrl::Credentials)
    );
    assert_eq!(
        validate_url("https://user@example.com/a.jpg"),
        Err(InvalidUrl::Credentials)
    );
}

#[tokio::test]
async fn fetch_revalidates_urls_built_by_hand() {
    let error = fetch_err(loopback_allowed(), &url("ftp://127.0.0.1/a.jpg")).await;
    assert!(matches!(error, FetchError::InvalidUrl(_)), "{error:?}");
    assert_eq!(error.reason(), "download-failed");
}

// --- address policy (no connections) --------------------------------------------

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test literal is a valid IP address")
}

#[test]
fn every_non_public_range_is_blocked() {
    use BlockedRange::*;
    let cases = [
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Reserved),
        ("10.0.0.1", Private),
        ("10.255.255.255", Private),
        ("100.64.0.1", SharedAddressSpace),
        ("100.127.255.254", SharedAddressSpace),
        ("127.0.0.1", Loopback),
        ("127.255.0.9", Loopback),
        ("169.254.169.254", LinkLocal),
        ("169.254.0.1", LinkLocal),
        ("172.16.0.1", Private),
        ("172.31.255.255", Private),
        ("192.0.0.8", Reserved),
        ("192.0.2.10", Documentation),
        ("192.88.99.1", Reserved),
        ("192.168.1.1", Private),
        ("198.18.0.1", Benchmarking),
        ("198.19.255.255", Benchmarking),
        ("198.51.100.7", Documentation),
        ("203.0.113.9", Documentation),
        ("224.0.0.1", Multicast),
        ("239.255.255.250", Multicast),
        ("240.0.0.1", Reserved),
        ("255.255.255.255", Broadcast),
        ("::", Unspecified),
        ("::1", Loopback),
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:10.1.2.3", Private),
        ("::ffff:169.254.169.254", LinkLocal),
        ("::127.0.0.1", Loopback),
        ("::8.8.8.8", Reserved),
        ("64:ff9b::127.0.0.1", Loopback),
        ("64:ff9b::a9fe:a9fe", LinkLocal),
        ("64:ff9b:1::1", Private),
        ("2002:7f00:1::1", Loopback),
        ("2002:0a00:0001::1", Private),
        // Teredo: server 8.8.8.8, client 10.0.0.1 stored bit-inverted.
        ("2001:0:808:808::f5ff:fffe", Private),
        ("2001:0:7f00:1::f7f7:f7f7", Loopback),
        ("2001:db8::1", Documentation),
        ("2001:2::1", Benchmarking),
        ("2001:10::1", Reserved),
        ("3fff::1", Documentation),
        ("100::1", Reserved),
        ("fc00::1", Private),
        ("fd12:3456::1", Private),
        ("fe80::1", LinkLocal),
        ("febf::1", LinkLocal),
        ("fec0::1", Reserved),
        ("ff02::1", Multicast),
        ("ff0e::1", Multicast),
        ("4000::1", Reserved),
    ];
    for (address, range) in cases {
        assert_eq!(blocked_range(ip(address)), Some(range), "{address}");
        let refused = check_address(ip(address), &[]).expect_err(address);
        assert_eq!(refused.range, range, "{address}");
    }
}

#[test]
fn public_addresses_are_allowed() {
    for address in [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.0",
        "172.32.0.1",
        "198.20.0.1",
        "223.255.255.255",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2001:0:808:808::f7f7:f7f7",
    ] {
        assert_eq!(blocked_range(ip(address)), None, "{address}");
        assert!(check_address(ip(address), &[]).is_ok(), "{address}");
    }
}

#[test]
fn allowlist_overrides_the_policy_including_mapped_forms() {
    let allow = [
        "127.0.0.0/8".parse().expect("CIDR"),
        "10.1.0.0/16".parse().expect("CIDR"),
    ];
    assert!(check_address(ip("127.0.0.1"), &allow).is_ok());
    assert!(check_address(ip("::ffff:127.0.0.1"), &allow).is_ok());
    assert!(check_address(ip("10.1.2.3"), &allow).is_ok());
    assert!(check_address(ip("10.2.0.1"), &allow).is_err());
    assert!(check_address(ip("::1"), &allow).is_err());
    assert!(check_address(ip("169.254.169.254"), &allow).is_err());
}
