//! Prometheus metrics: the exporter on `--metrics-listen`, and a tower layer that
//! counts and times every gRPC call with go-grpc-prometheus's names, so existing
//! dashboards work:
//!
//! - `grpc_server_started_total{grpc_type,grpc_service,grpc_method}`
//! - `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`
//! - `grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}` (histogram)
//!
//! The code is read where gRPC puts it: the response headers of a trailers-only answer,
//! else the trailers at the end of the body, so streams are counted when they end, with
//! their real status. A stream the client abandons counts as `Canceled`.
//!
//! The service's own metrics are recorded where they happen (names in
//! [`crate::telemetry`]). Without `--metrics-listen` no recorder is installed and the
//! layer does no work: every macro is a no-op.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http_body::{Body, Frame};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::{Error, Result};

const HANDLING_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the global recorder and serves `/metrics` on `address`. Needs a runtime.
pub fn install(address: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), HANDLING_BUCKETS)
        .map_err(|e| Error::internal(format!("metrics buckets: {e}")))?
        .install()
        .map_err(|e| Error::internal(format!("metrics listener on {address}: {e}")))?;
    tracing::info!("serving Prometheus metrics at http://{address}/metrics");
    Ok(())
}

/// The tower layer that meters every call (when `enabled`).
#[derive(Debug, Clone, Copy)]
pub struct GrpcMetricsLayer {
    pub enabled: bool,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            enabled: self.enabled,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    enabled: bool,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    ResponseBody: Body + Unpin,
{
    type Response = http::Response<MeteredBody<ResponseBody>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let call = self.enabled.then(|| Call::new(request.uri().path()));
        if let Some(call) = &call {
            metrics::counter!("grpc_server_started_total", &call.labels()).increment(1);
        }
        MeteredFuture {
            inner: self.inner.call(request),
            call,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future; hands the call on to the response body.
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let call = this.call.take();
        // A trailers-only answer (errors) carries the status in its headers.
        let early = call.as_ref().and_then(|_| {
            response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        });
        Poll::Ready(Ok(response.map(|body| MeteredBody {
            inner: body,
            call,
            early,
        })))
    }
}

/// What is known of one call until it ends.
pub struct Call {
    grpc_type: &'static str,
    service: String,
    method: String,
    started: Instant,
}

impl Call {
    fn new(path: &str) -> Self {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let service = parts.next().unwrap_or_default().to_owned();
        let method = parts.next().unwrap_or_default().to_owned();
        Call {
            grpc_type: grpc_type(&method),
            service,
            method,
            started: Instant::now(),
        }
    }

    fn labels(&self) -> [(&'static str, String); 3] {
        [
            ("grpc_type", self.grpc_type.to_owned()),
            ("grpc_service", self.service.clone()),
            ("grpc_method", self.method.clone()),
        ]
    }

    fn finish(self, code: i32) {
        let elapsed: Duration = self.started.elapsed();
        let [kind, service, method] = self.labels();
        metrics::histogram!(
            "grpc_server_handling_seconds",
            &[kind.clone(), service.clone(), method.clone()]
        )
        .record(elapsed.as_secs_f64());
        metrics::counter!(
            "grpc_server_handled_total",
            &[
                kind,
                service,
                method,
                ("grpc_code", code_name(code).to_owned())
            ]
        )
        .increment(1);
    }
}

/// The response body, which reports the call when its status is known.
pub struct MeteredBody<B> {
    inner: B,
    call: Option<Call>,
    /// The status from a trailers-only answer's headers.
    early: Option<i32>,
}

impl<B> MeteredBody<B> {
    fn finish(&mut self, code: i32) {
        if let Some(call) = self.call.take() {
            call.finish(code);
        }
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if self.call.is_none() {
            return Poll::Ready(frame);
        }
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame
                    .trailers_ref()
                    .and_then(|t| t.get("grpc-status"))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                {
                    self.finish(code);
                }
            }
            Some(Err(_)) => self.finish(tonic::Code::Internal as i32),
            None => {
                let code = self.early.unwrap_or(tonic::Code::Unknown as i32);
                self.finish(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away (or a trailers-only answer whose
        // empty body was never polled).
        let code = self.early.unwrap_or(tonic::Code::Cancelled as i32);
        self.finish(code);
    }
}

fn grpc_type(method: &str) -> &'static str {
    match method {
        "UploadProfileImage" => "client_stream",
        "WatchStatus" | "Watch" => "server_stream",
        "ServerReflectionInfo" => "bidi_stream",
        _ => "unary",
    }
}

/// go-grpc-prometheus's code names (Go's `codes.Code.String()`).
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}
