//! Assembles the gRPC server: the service, health, reflection, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod grpc_web;
mod health;
mod image_urls;
mod metrics;

use crate::api::ProfileImageApi;
use crate::api::limits::Limits;
use crate::auth::{AuthInterceptor, Authenticator};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::jobs::Downloads;
use crate::pb::profile_image_service_server::ProfileImageServiceServer;
use crate::profiles::{EventRelay, ProfileImages};
use crate::store::local::{LocalStore, StoreOptions};
use crate::store::postgres::PostgresStore;
use crate::store::s3::S3Blobs;
use crate::store::{BlobStore, EventLog, MetadataStore};
use crate::telemetry;
use crate::watch::Hub;

/// How long in-flight calls may take to finish after a shutdown signal before the
/// server stops anyway (a client that never closes its connection must not hold it up).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Concurrent HTTP/2 streams one connection may carry.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// Largest gRPC message sent, and the least that is accepted whatever the upload limit:
/// an inline image at the default 10 MiB limit, with room.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Room beside an inline image for the rest of a SetProfileImage request (user id,
/// content type, crop, version) and its protobuf framing.
const MESSAGE_HEADROOM_BYTES: usize = 64 * 1024;

/// Largest gRPC message accepted: an inline image up to the configured upload limit must
/// reach the service, and one a little over it is refused there as `file-too-large` with
/// a field violation, not by the transport (OUT_OF_RANGE, no details).
fn max_decoding_message_bytes(max_upload_bytes: u64) -> usize {
    usize::try_from(max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MESSAGE_HEADROOM_BYTES)
        .max(MAX_MESSAGE_BYTES)
}

/// Runs the service on `listener` until `shutdown` is cancelled, then stops accepting,
/// ends open streams, lets in-flight calls finish, flushes the store and returns.
/// With `config.shared_store()` it runs as one replica over PostgreSQL and a bucket.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    if let Some(address) = config.metrics_listen {
        metrics::install(address)?;
    }
    let storage = Storage::open(&config).await?;
    let (meta, blobs): (Arc<dyn MetadataStore>, Arc<dyn BlobStore>) = match &storage {
        Storage::Local(store) => (store.clone(), store.clone()),
        Storage::Shared(store, bucket) => (store.clone(), bucket.clone()),
    };
    let events = Arc::new(match &storage {
        Storage::Local(store) => Hub::new(store.next_id().await?, config.watch_retention),
        Storage::Shared(store, _) => {
            // Watchers here may resume after any of the last `watch_retention` events,
            // whichever replica committed them.
            let last = store.last_sequence().await?;
            let retention = u64::try_from(config.watch_retention).unwrap_or(u64::MAX);
            Hub::following(last.saturating_sub(retention), config.watch_retention)
        }
    });
    let profiles = ProfileImages::new(&config, meta, blobs, events.clone());
    if let Storage::Shared(store, bucket) = &storage {
        store.listen();
        let mut relay = EventRelay::new(store.clone(), profiles.clone(), events.clone());
        relay.catch_up().await?;
        tokio::spawn(relay.run(shutdown.clone()));
        tokio::spawn(sweep_shared(
            store.clone(),
            bucket.clone(),
            config.watch_retention,
            shutdown.clone(),
        ));
    }
    let downloads = Downloads::start_worker(&config, profiles.clone(), shutdown.clone()).await?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ProfileImageServiceServer<ProfileImageApi>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    if let Storage::Shared(store, _) = &storage {
        tokio::spawn(health::report_database(
            store.clone(),
            health.clone(),
            config.store_stall_timeout,
            shutdown.clone(),
        ));
    }

    // The local store's own upkeep; PostgreSQL and the bucket keep up themselves.
    let local_tasks = match &storage {
        Storage::Local(store) => vec![
            tokio::spawn(health::report_store_stalls(
                store.clone(),
                health.clone(),
                config.store_stall_timeout,
                shutdown.clone(),
            )),
            tokio::spawn(keep_up_store(
                store.clone(),
                config.metrics_listen.is_some(),
                shutdown.clone(),
            )),
        ],
        Storage::Shared(..) => Vec::new(),
    };

    let authenticator = Arc::new(Authenticator::start(&config, shutdown.clone()).await?);
    let limits = Arc::new(Limits::new(&config));
    limits.forget_idle_callers(shutdown.clone());
    // Logged before the HTTP listener's line: tools that take the first "listening on"
    // line get the gRPC address.
    let address = listener.local_addr().map_err(Error::internal)?;
    tracing::info!("listening on {address}");
    let image_urls = image_urls::start(&config, &profiles, shutdown.clone()).await?;

    let api = ProfileImageApi::new(
        profiles,
        downloads.clone(),
        events.clone(),
        limits,
        config.upload_idle_timeout,
    )
    .with_image_urls(image_urls.urls.clone());
    // Every call of the service is authenticated; health and reflection are not.
    let service = tonic::service::interceptor::InterceptedService::new(
        ProfileImageServiceServer::new(api)
            .max_decoding_message_size(max_decoding_message_bytes(config.max_upload_bytes))
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        AuthInterceptor::new(authenticator),
    );

    let stopping = shutdown.clone();
    let serving = tonic::transport::Server::builder()
        // gRPC-Web over HTTP/1.1 too, for browsers.
        .accept_http1(true)
        .layer(grpc_web::cors(&config.grpc_web_cors_origins))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(metrics::GrpcMetricsLayer {
            enabled: config.metrics_listen.is_some(),
        })
        // HTTP/2 limits, set deliberately: a client may multiplex many WatchStatus
        // streams on one connection (1,024 at most); a connection that stops answering
        // pings for 20 s (dead peer, silent network drop) is closed; request headers
        // beyond 16 KiB are refused.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .http2_max_header_list_size(Some(16 * 1024))
        .add_service(health_service)
        .add_service(reflection_v1()?)
        .add_service(reflection_v1alpha()?)
        .add_service(service)
        .serve_with_incoming_shutdown(accept(listener), async move {
            stopping.cancelled().await;
            tracing::info!("shutting down: no new calls, finishing in-flight ones");
            events.close();
            health
                .set_not_serving::<ProfileImageServiceServer<ProfileImageApi>>()
                .await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        });
    let result = tokio::select! {
        result = serving => result.map_err(Error::internal),
        () = grace_expired(shutdown.clone()) => {
            tracing::warn!("in-flight calls did not finish within {SHUTDOWN_GRACE:?}; stopping anyway");
            Ok(())
        }
    };
    for task in local_tasks {
        task.abort();
    }
    image_urls.stopped().await;
    downloads.stopped().await;
    if let Storage::Local(store) = &storage {
        // A stalled store must not keep the process from ending: bounded like the calls.
        match tokio::time::timeout(SHUTDOWN_GRACE, store.durable()).await {
            Ok(flushed) => flushed?,
            Err(_) => tracing::error!(
                "the store did not flush within {SHUTDOWN_GRACE:?}; stopping anyway"
            ),
        }
    }
    tracing::info!("stopped");
    result
}

/// Where this process keeps its state.
enum Storage {
    /// sled and blob files in the data dir (the default).
    Local(Arc<LocalStore>),
    /// PostgreSQL and a bucket, shared with other replicas.
    Shared(Arc<PostgresStore>, Arc<S3Blobs>),
}

impl Storage {
    async fn open(config: &Config) -> Result<Storage> {
        if let Some(shared) = config.shared_store() {
            let store = PostgresStore::connect(&shared.postgres_url, &shared.postgres).await?;
            let bucket = S3Blobs::open(&shared.s3)?;
            tracing::info!(blobs = %shared.s3.location, "metadata in PostgreSQL, image bytes in object storage");
            return Ok(Storage::Shared(Arc::new(store), Arc::new(bucket)));
        }
        let data_dir = config.data_dir.clone();
        let options = StoreOptions {
            min_free_bytes: config.min_free_bytes,
        };
        let store = tokio::task::spawn_blocking(move || LocalStore::open_with(&data_dir, &options))
            .await
            .map_err(Error::internal)??;
        let space = store.space();
        tracing::info!(
            free_bytes = space.free_bytes(),
            min_free_bytes = space.min_free_bytes(),
            "changes are refused while free space is under the watermark"
        );
        ::metrics::gauge!(telemetry::MIN_FREE_BYTES).set(space.min_free_bytes() as f64);
        Ok(Storage::Local(Arc::new(store)))
    }
}

/// How often a replica sweeps the bucket for objects no media item references. Any
/// replica may sweep (a delete of an unreferenced old object is the same from any).
const BUCKET_SWEEP_PERIOD: Duration = Duration::from_secs(15 * 60);

/// Events kept in the shared log at least (more when `--watch-retention` is larger).
const KEPT_EVENTS: u64 = 100_000;

/// Deletes, now and then, the bucket's objects that no commit referenced (requests that
/// failed after writing their bytes) and those whose last media item was deleted; and
/// events older than any replica replays.
async fn sweep_shared(
    store: Arc<PostgresStore>,
    bucket: Arc<S3Blobs>,
    watch_retention: usize,
    shutdown: CancellationToken,
) {
    let keep = KEPT_EVENTS.max(u64::try_from(watch_retention).unwrap_or(u64::MAX));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(BUCKET_SWEEP_PERIOD) => {}
        }
        let referenced = |hashes: Vec<[u8; 32]>| {
            let store = store.clone();
            async move { store.referenced(&hashes).await }
        };
        match bucket.sweep(referenced).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "swept unreferenced objects from the bucket"),
            Err(error) => tracing::warn!(%error, "bucket sweep failed; trying again later"),
        }
        if let Err(error) = store.prune_events(keep).await {
            tracing::warn!(%error, "could not prune the event log; trying again later");
        }
    }
}

/// Every few seconds: writes the data dir's reserve file again once there is room for
/// it, and, when metrics are on, reports free space and the data dir's size (a walk of
/// the blob files, so only then).
async fn keep_up_store(store: Arc<LocalStore>, metrics: bool, shutdown: CancellationToken) {
    const PERIOD: Duration = Duration::from_secs(5);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PERIOD) => {}
        }
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || {
            store.refill_reserve();
            if metrics {
                ::metrics::gauge!(telemetry::FREE_BYTES).set(store.space().free_bytes() as f64);
                if let Ok(bytes) = store.disk_bytes() {
                    ::metrics::gauge!(telemetry::STORE_BYTES).set(bytes as f64);
                }
            }
        })
        .await;
    }
}

/// Accepted connections with TCP_NODELAY (without it, small responses wait for the
/// client's delayed ACK, ~40 ms; the builder's `tcp_nodelay` does not apply to an
/// incoming stream we pass in ourselves).
fn accept(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        // TCP keepalive too, for peers that vanish without a FIN.
        .with_keepalive(Some(Duration::from_secs(60)))
}

async fn grace_expired(shutdown: CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

fn reflection_v1() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    descriptor_sets(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(Error::internal)
}

fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
> {
    descriptor_sets(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(Error::internal)
}

/// Our contract, health, and google.rpc error details (so grpcurl can print them).
fn descriptor_sets(
    builder: tonic_reflection::server::Builder<'_>,
) -> tonic_reflection::server::Builder<'_> {
    builder
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}
