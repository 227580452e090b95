//! The worker threads of the HTTP listener: each runs a current-thread runtime that
//! serves the connections handed to it, so a connection's requests never leave its
//! thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{ImageResponder, connection_builder, finish, serve_connection};

/// One worker thread, as the accepting task sees it.
pub(super) struct Worker {
    streams: mpsc::UnboundedSender<std::net::TcpStream>,
    /// Connections handed to it and not yet closed.
    open: Arc<AtomicUsize>,
    /// Fires (or is dropped) when the thread has finished.
    stopped: oneshot::Receiver<()>,
}

impl Worker {
    /// Starts worker thread `index`; None (logged) when the thread or its runtime
    /// cannot be made.
    pub(super) fn start(
        index: usize,
        responder: Arc<ImageResponder>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Option<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .inspect_err(
                |error| tracing::error!(%error, "http: cannot make worker {index}'s runtime"),
            )
            .ok()?;
        let (streams, incoming) = mpsc::unbounded_channel();
        let (done, stopped) = oneshot::channel();
        let open = Arc::new(AtomicUsize::new(0));
        let counter = open.clone();
        std::thread::Builder::new()
            .name(format!("http-{index}"))
            .spawn(move || {
                runtime.block_on(run(incoming, counter, responder, shutdown, grace));
                let _ = done.send(());
            })
            .inspect_err(|error| tracing::error!(%error, "http: cannot start worker {index}"))
            .ok()?;
        Some(Worker {
            streams,
            open,
            stopped,
        })
    }

    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Gives the worker a connection to serve.
    pub(super) fn hand(&self, stream: TcpStream) {
        // tokio's std stream stays non-blocking, as the worker's runtime needs it.
        let Ok(stream) = stream.into_std() else {
            return;
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        if self.streams.send(stream).is_err() {
            // The worker has stopped (shutdown): the connection closes here.
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Waits until the worker's connections have finished (after `shutdown`).
    pub(super) async fn stopped(self) {
        drop(self.streams);
        // An error means the thread ended without saying so (it panicked): stopped too.
        let _ = self.stopped.await;
    }
}

/// Counts a connection as open until dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker's event loop: serves each connection it is handed until `shutdown`, then
/// lets requests in flight finish, for at most `grace`.
async fn run(
    mut incoming: mpsc::UnboundedReceiver<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
    responder: Arc<ImageResponder>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let http = connection_builder();
    let connections = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            stream = incoming.recv() => match stream {
                Some(stream) => stream,
                None => break,
            },
        };
        let counted = OpenConnection(open.clone());
        match TcpStream::from_std(stream) {
            Ok(stream) => serve_connection(&http, &connections, stream, &responder, counted),
            Err(error) => tracing::warn!(%error, "http: a worker cannot take a connection"),
        }
    }
    finish(connections, grace).await;
}
