//! What the replicas' periodic upkeep asks of the database: which blobs are still
//! referenced (the bucket sweep keeps those), and pruning the event log.

use super::{PostgresStore, bigint, db};
use crate::error::Result;

impl PostgresStore {
    /// Which of `hashes` some media item references (the bucket sweep keeps those).
    pub async fn referenced(&self, hashes: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
        let wanted: Vec<Vec<u8>> = hashes.iter().map(|h| h.to_vec()).collect();
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT hash FROM media_blobs WHERE hash = ANY($1)",
                &[&wanted],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .filter_map(|row| row.get::<_, Vec<u8>>(0).try_into().ok())
            .collect())
    }

    /// Deletes events more than `keep` sequence numbers behind the last one: replicas
    /// replay at most their `--watch-retention`, so older ones are never read again.
    pub async fn prune_events(&self, keep: u64) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM events WHERE sequence < (SELECT last FROM event_counter) - $1",
                &[&bigint(keep)],
            )
            .await
            .map_err(db)
    }
}
