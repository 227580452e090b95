//! Image URLs over HTTP/1.1: a second listener, served by hyper from the same process
//! and domain as the gRPC service. Reads go through `profiles` like the gRPC layer's.
//!
//! - `paths`: the URL scheme, both ways;
//! - `respond`: one request to one response (status codes, caching headers, 304);
//! - `signing`: HMAC-signed URLs and their key file;
//! - `urls`: the URLs handed out in ProfileImage.url.

pub mod paths;
mod respond;
pub mod signing;
pub mod urls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use respond::ImageResponder;
pub use signing::UrlSigner;
pub use urls::{ImageUrls, UrlTarget};

/// A client must send its request headers within this time (slow-header clients
/// would otherwise hold connections open for ever).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves image requests on `listener` until `shutdown`; then stops accepting and
/// lets requests in flight finish, for at most `grace`.
///
/// With `threads` > 0 the requests are served by that many threads, each a
/// current-thread runtime accepting on the same listening socket, as nginx's workers
/// do: a connection lives on one thread, and its requests cost no cross-thread
/// wake-ups or work stealing. With 0 they share the gRPC runtime's workers.
/// `cargo bench --bench http` compares both.
pub async fn serve(
    listener: TcpListener,
    responder: Arc<ImageResponder>,
    shutdown: CancellationToken,
    grace: Duration,
    threads: usize,
) {
    if threads == 0 {
        return accept_loop(listener, responder, shutdown, grace).await;
    }
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "http: cannot hand the listener to its threads");
            return;
        }
    };
    let mut stopped = Vec::with_capacity(threads);
    for index in 0..threads {
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let spawned = listener.try_clone().and_then(|listener| {
            let responder = responder.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("http-{index}"))
                .spawn(move || {
                    event_loop(listener, responder, shutdown, grace);
                    let _ = done.send(());
                })
        });
        match spawned {
            Ok(_) => stopped.push(finished),
            Err(error) => tracing::error!(%error, "http: cannot start serving thread {index}"),
        }
    }
    // The threads hold copies; this one would keep accepting into the backlog after
    // they stopped.
    drop(listener);
    for finished in stopped {
        // An error means the thread ended without saying so (it panicked): stopped too.
        let _ = finished.await;
    }
}

/// One serving thread: a current-thread runtime running the accept loop on its copy of
/// the listening socket.
fn event_loop(
    listener: std::net::TcpListener,
    responder: Arc<ImageResponder>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "http: cannot start a serving thread's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => accept_loop(listener, responder, shutdown, grace).await,
            Err(error) => tracing::error!(%error, "http: cannot register the listener"),
        }
    });
}

/// Accepts connections and serves each on a task of the current runtime.
async fn accept_loop(
    listener: TcpListener,
    responder: Arc<ImageResponder>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: give connections time to close.
                    tracing::warn!(%error, "http: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small responses must not wait for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let responder = responder.clone();
        let service = service_fn(move |request| {
            let responder = responder.clone();
            async move { Ok::<_, Infallible>(responder.respond(request).await) }
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "http connection ended with an error");
            }
        });
    }
    drop(listener);
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
