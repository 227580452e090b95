//! The release server as its own process, for the benches that load it from outside
//! (http, sets, soak): started on free ports, its addresses read from its log.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A started server: the process and the addresses it logged.
pub struct Started {
    pub child: Child,
    pub grpc: SocketAddr,
    /// The image URL listener, when `--http-listen` was among the arguments.
    #[allow(
        dead_code,
        reason = "each bench is its own crate; only benches/http.rs reads it"
    )]
    pub http: Option<SocketAddr>,
}

/// Starts `binary serve --listen 127.0.0.1:0` with `args` and `env`, without
/// authentication (what these benches measure is not authentication: benches/get.rs
/// measures that, and one caller makes every change), and waits for its
/// `listening on ADDR` lines: the gRPC one, and the HTTP one when `--http-listen` is
/// among `args`.
pub fn start<S: AsRef<OsStr>>(binary: &Path, args: &[S], env: &[(&str, &str)]) -> Started {
    let wants_http = args.iter().any(|a| a.as_ref() == "--http-listen");
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn,profile_image::server=info")
        .env("PROFILE_IMAGE_AUTH", "none")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1)
                && let Ok(addr) = rest.trim().trim_matches('"').parse::<SocketAddr>()
            {
                let _ = tx.send((line.contains("http listening on"), addr));
            }
        }
    });
    let (mut grpc, mut http) = (None, None);
    while grpc.is_none() || (wants_http && http.is_none()) {
        let (is_http, addr) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not start");
        match is_http {
            true => http = Some(addr),
            false => grpc = Some(addr),
        }
    }
    Started {
        child,
        grpc: grpc.expect("grpc address"),
        http: http.filter(|_| wants_http),
    }
}
