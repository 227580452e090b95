//! The shared metadata store: profiles, media, download jobs and the event log in
//! PostgreSQL (`--store postgres://USER@HOST:PORT/DB`), so that any number of replicas
//! of the service can serve the same users.
//!
//! - A change is one transaction that locks the user's row (`SELECT ... FOR UPDATE`)
//!   and applies only if the state is still the one it was decided on: per-user order
//!   and `expected_version` hold across replicas ([`commit`]; reads in [`metadata`]).
//! - A change that a watcher should see writes its event in the same transaction,
//!   numbered by the one row of `event_counter`, whose lock orders those commits: the
//!   log has no gaps and a reader never sees a later event before an earlier one.
//!   `NOTIFY` carries only the new number; replicas read the events from the table
//!   ([`events`]).
//! - A download job carries a lease (its replica and until when); a replica that dies
//!   stops renewing it, and another claims the job with `FOR UPDATE SKIP LOCKED`.
//! - The schema is migrated at start-up under an advisory lock ([`migrations`]).

mod commit;
mod events;
mod import;
mod metadata;
mod migrations;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::watch;
use tokio_postgres::NoTls;

use crate::error::{Error, Result};
use crate::model::{TenantId, UserId};

/// Connections one replica keeps to the database at most.
const POOL_SIZE: usize = 16;
/// How long a call waits for a free connection before it fails as unavailable.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// How to open the store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// How long a download job stays claimed by a replica that stops renewing it.
    pub job_lease: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            job_lease: Duration::from_secs(30),
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    /// This process's name in job leases.
    replica: String,
    job_lease: Duration,
    /// The last event sequence announced (by this process's commits or a NOTIFY).
    announced: Arc<watch::Sender<u64>>,
}

impl PostgresStore {
    /// Connects to `url` (postgres://USER@HOST:PORT/DB) and brings the schema up to date.
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<PostgresStore> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::internal(format!("invalid PostgreSQL URL {}: {e}", redact(url))))?;
        let mut client = connect_one(&config).await?;
        let schema = migrations::migrate(&mut client).await?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(Error::internal)?;
        let replica = replica_name();
        tracing::info!(schema, %replica, "connected to PostgreSQL");
        Ok(PostgresStore {
            pool,
            config,
            replica,
            job_lease: options.job_lease,
            announced: Arc::new(watch::channel(0).0),
        })
    }

    /// Whether the database answers a trivial query within `timeout` (what health
    /// reports on).
    pub async fn check(&self, timeout: Duration) -> Result<()> {
        let probe = async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(db)?;
            Ok(())
        };
        tokio::time::timeout(timeout, probe).await.map_err(|_| {
            Error::Unavailable(format!("PostgreSQL did not answer within {timeout:?}"))
        })?
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(format!("no PostgreSQL connection: {e}")))
    }
}

/// One connection of its own (migrations, LISTEN), driven by a task.
async fn connect_one(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// The row key of a user: (tenant, user id). The one place a user becomes columns.
/// The `default` tenant is stored as '' (the column's default), as in the sled layout,
/// so rows copied by `migrate` from a data dir of any schema version agree.
fn user_key(user: &UserId) -> (&str, &str) {
    let tenant = user.tenant();
    let tenant = if tenant.is_default() {
        ""
    } else {
        tenant.as_str()
    };
    (tenant, user.as_str())
}

/// A user read back from its row key.
fn user_from_key(tenant: &str, user_id: &str) -> Result<UserId> {
    let corrupt = |_| Error::internal("corrupt user key in the database");
    let tenant = match tenant {
        "" => TenantId::default_tenant(),
        name => TenantId::parse("tenant", name).map_err(corrupt)?,
    };
    UserId::parse_in(&tenant, "user_id", user_id).map_err(corrupt)
}

/// A database error as the domain sees it: a lost or refused connection is
/// unavailable (retrying may work); anything else is internal.
fn db(error: tokio_postgres::Error) -> Error {
    if error.is_closed() || error.code().is_none() {
        Error::Unavailable(format!("PostgreSQL: {error}"))
    } else {
        Error::internal(format!("PostgreSQL: {error}"))
    }
}

/// u64 counters as PostgreSQL bigint.
fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A name for this process in job leases: host, pid and start time.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}/{}/{}",
        host.trim(),
        std::process::id(),
        crate::model::now_millis()
    )
}

/// A URL for logs, without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
