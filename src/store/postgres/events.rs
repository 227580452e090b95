//! The event log: `events` rows written in the change's transaction, numbered by
//! `event_counter`, announced with `NOTIFY profile_image_events, '<sequence>'`. The
//! notification is only a wake-up: readers read the rows after the last sequence they
//! have, so a lost notification (a dropped LISTEN connection) delays, never loses.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::{PostgresStore, bigint, db, unsigned, user_from_key, user_key};
use crate::error::{Error, Result};
use crate::model::{EventKind, Media, Profile, UserId, now_millis};
use crate::store::records::{MediaRecord, ProfileRecord};
use crate::store::{ChangeEvent, EventLog, LoggedEvent};

const CHANNEL: &str = "profile_image_events";
/// Wait before connecting again after the LISTEN connection was lost.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Event kinds as stored (text, readable in psql). Snapshots are never stored.
pub(super) fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Snapshot => "snapshot",
        EventKind::Set => "set",
        EventKind::StatusChanged => "status_changed",
        EventKind::Cropped => "cropped",
        EventKind::Deleted => "deleted",
    }
}

fn kind_from_name(name: &str) -> Result<EventKind> {
    match name {
        "snapshot" => Ok(EventKind::Snapshot),
        "set" => Ok(EventKind::Set),
        "status_changed" => Ok(EventKind::StatusChanged),
        "cropped" => Ok(EventKind::Cropped),
        "deleted" => Ok(EventKind::Deleted),
        other => Err(Error::internal(format!(
            "unknown stored event kind {other}"
        ))),
    }
}

/// Numbers and writes `event` inside the change's transaction, and queues its
/// notification (sent by PostgreSQL at commit). The counter row stays locked until the
/// commit, so events commit in sequence order. Returns the sequence.
pub(super) async fn insert_event(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &UserId,
    kind: &str,
    event: &ChangeEvent,
) -> Result<u64> {
    let (tenant, user_id) = user_key(user);
    let sequence: i64 = tx
        .query_one(
            "UPDATE event_counter SET last = last + 1 RETURNING last",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    let (profile, media) = match &event.after {
        Some((profile, media)) => (
            Some(ProfileRecord::from(profile).encode_to_vec()),
            media.as_ref().map(|m| MediaRecord::from(m).encode_to_vec()),
        ),
        None => (None, None),
    };
    tx.execute(
        "INSERT INTO events (sequence, tenant, user_id, kind, profile, media, time_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &sequence,
            &tenant,
            &user_id,
            &kind,
            &profile,
            &media,
            &now_millis(),
        ],
    )
    .await
    .map_err(db)?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &sequence.to_string()],
    )
    .await
    .map_err(db)?;
    Ok(unsigned(sequence))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::internal(format!("corrupt event in the database: {e}")))
}

fn logged(row: &tokio_postgres::Row) -> Result<LoggedEvent> {
    let profile: Option<Vec<u8>> = row.get(4);
    let media: Option<Vec<u8>> = row.get(5);
    let after = match profile {
        Some(bytes) => {
            let profile = Profile::try_from(decode::<ProfileRecord>(&bytes)?)?;
            let media = media
                .map(|m| Media::try_from(decode::<MediaRecord>(&m)?))
                .transpose()?;
            Some((profile, media))
        }
        None => None,
    };
    Ok(LoggedEvent {
        sequence: unsigned(row.get(0)),
        user: user_from_key(row.get(1), row.get(2))?,
        event: ChangeEvent {
            kind: kind_from_name(row.get(3))?,
            after,
        },
        time_ms: row.get(6),
    })
}

#[async_trait]
impl EventLog for PostgresStore {
    async fn last_sequence(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT last FROM event_counter", &[])
            .await
            .map_err(db)?;
        Ok(unsigned(row.get(0)))
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT sequence, tenant, user_id, kind, profile, media, time_ms
                 FROM events WHERE sequence > $1 ORDER BY sequence LIMIT $2",
            )
            .await
            .map_err(db)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .query(&statement, &[&bigint(after), &limit])
            .await
            .map_err(db)?
            .iter()
            .map(logged)
            .collect()
    }

    fn announcements(&self) -> watch::Receiver<u64> {
        self.announced.subscribe()
    }
}

impl PostgresStore {
    /// Starts listening for other replicas' events (a connection of its own, connected
    /// again when lost) until the process ends.
    pub fn listen(&self) {
        let config = self.config.clone();
        let announced = self.announced.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = listen_once(&config, &announced).await {
                    tracing::warn!(%error, "lost the PostgreSQL LISTEN connection; reconnecting");
                }
                if announced.is_closed() {
                    return;
                }
                tokio::time::sleep(RELISTEN_DELAY).await;
            }
        });
    }
}

/// One LISTEN connection's life: announces every notified sequence.
async fn listen_once(
    config: &tokio_postgres::Config,
    announced: &Arc<watch::Sender<u64>>,
) -> Result<()> {
    let (client, mut connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
    let (ready_tx, ready) = tokio::sync::oneshot::channel::<()>();
    let driver = async move {
        let _ready = ready_tx;
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    if let Ok(sequence) = note.payload().parse::<u64>() {
                        announced.send_if_modified(|last| {
                            let newer = sequence > *last;
                            *last = (*last).max(sequence);
                            newer
                        });
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(db(error)),
                None => return Ok(()),
            }
        }
    };
    let listen = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(db)?;
        // Anything committed while not listening is found by the readers' poll.
        let _ = ready.await;
        Ok::<(), Error>(())
    };
    let (driven, listened) = tokio::join!(driver, listen);
    listened?;
    driven
}
