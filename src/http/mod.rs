//! Image URLs over HTTP/1.1: a second listener, served by hyper from the same process
//! and domain as the gRPC service. Reads go through `profiles` like the gRPC layer's.
//!
//! - `paths`: the URL scheme, both ways;
//! - `respond`: one request to one response (status codes, caching headers, 304);
//! - `signing`: HMAC-signed URLs and their key file;
//! - `urls`: the URLs handed out in ProfileImage.url;
//! - `workers`: the threads that serve connections, each with its own event loop.

pub mod paths;
mod respond;
pub mod signing;
pub mod urls;
mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use workers::Worker;

pub use respond::ImageResponder;
pub use signing::UrlSigner;
pub use urls::{ImageUrls, UrlTarget};

/// A client must send its request headers within this time (slow-header clients
/// would otherwise hold connections open for ever).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves image requests on `listener` until `shutdown`; then stops accepting and
/// lets requests in flight finish, for at most `grace`.
///
/// With `threads` > 0 the connections are served by that many worker threads, each a
/// current-thread runtime of its own, as nginx's workers are: a connection lives on one
/// thread, and its requests cost no cross-thread wake-ups or work stealing. This task
/// accepts and hands each connection to the worker with the fewest open ones (workers
/// accepting on a shared socket themselves took connections unevenly, and a loaded
/// worker next to an idle one cost some runs a third of their throughput). With 0,
/// connections are served on the runtime this runs on. `cargo bench --bench http`
/// compares both.
pub async fn serve(
    listener: TcpListener,
    responder: Arc<ImageResponder>,
    shutdown: CancellationToken,
    grace: Duration,
    threads: usize,
) {
    let workers: Vec<Worker> = (0..threads)
        .filter_map(|index| Worker::start(index, responder.clone(), shutdown.clone(), grace))
        .collect();
    if workers.is_empty() {
        return serve_here(listener, responder, shutdown, grace).await;
    }
    while let Some(stream) = accept(&listener, &shutdown).await {
        if let Some(worker) = workers.iter().min_by_key(|worker| worker.open()) {
            worker.hand(stream);
        }
    }
    drop(listener);
    for worker in workers {
        worker.stopped().await;
    }
}

/// Serves every connection on the current runtime.
async fn serve_here(
    listener: TcpListener,
    responder: Arc<ImageResponder>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let http = connection_builder();
    let connections = GracefulShutdown::new();
    while let Some(stream) = accept(&listener, &shutdown).await {
        serve_connection(&http, &connections, stream, &responder, ());
    }
    drop(listener);
    finish(connections, grace).await;
}

/// The next connection, or None once `shutdown` fires.
async fn accept(listener: &TcpListener, shutdown: &CancellationToken) -> Option<TcpStream> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small responses must not wait for the client's delayed ACK.
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
                Err(error) => {
                    // Out of file descriptors, most likely: give connections time to close.
                    tracing::warn!(%error, "http: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// HTTP/1.1 with a header read timeout.
fn connection_builder() -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    http
}

/// Serves one connection on a task of the current runtime; `on_close` is dropped when
/// the connection ends.
fn serve_connection(
    http: &http1::Builder,
    connections: &GracefulShutdown,
    stream: TcpStream,
    responder: &Arc<ImageResponder>,
    on_close: impl Send + 'static,
) {
    let responder = responder.clone();
    let service = service_fn(move |request| {
        let responder = responder.clone();
        async move { Ok::<_, Infallible>(responder.respond(request).await) }
    });
    let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
    tokio::spawn(async move {
        let _on_close = on_close;
        if let Err(error) = connection.await {
            tracing::debug!(%error, "http connection ended with an error");
        }
    });
}

/// Lets the connections' requests in flight finish, for at most `grace`.
async fn finish(connections: GracefulShutdown, grace: Duration) {
    if tokio::time::timeout(grace, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http: requests in flight did not finish within {grace:?}");
    }
}

/// Binds the HTTP listener. An address in use is an error when the address was
/// configured, and turns HTTP off with a warning when it is the default (so that
/// several services on one machine, or tests, do not fight over port 8080).
pub async fn bind(
    address: SocketAddr,
    is_default: bool,
) -> crate::error::Result<Option<TcpListener>> {
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(Some(listener)),
        Err(error) if is_default => {
            tracing::warn!(%error, "image URLs are off: cannot listen on the default http address {address}");
            Ok(None)
        }
        Err(error) => Err(crate::error::Error::Unavailable(format!(
            "cannot listen for http on {address}: {error}"
        ))),
    }
}
