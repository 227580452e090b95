//! What the bench binaries share: their `main` plumbing and env-var knobs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::Channel;

/// The value of env var `name` parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs `bench` on a multi-threaded runtime, unless `cargo bench FILTER` names another
/// bench (`cargo bench` passes `--bench` and the filter to every bench binary).
pub fn run_unless_filtered_out<F: Future<Output = ()>>(name: &str, bench: impl FnOnce() -> F) {
    if filtered_out(name) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

/// Whether `cargo bench FILTER` names another bench than `name`.
pub fn filtered_out(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str()))
}

/// Connects to a server that may still be starting.
pub async fn connect(addr: SocketAddr) -> Channel {
    let mut last = None;
    for _ in 0..100 {
        match Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not connect to {addr}: {last:?}");
}
