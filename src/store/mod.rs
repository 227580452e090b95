//! The sled store: profile state, media records, download jobs and blobs.
//!
//! Metadata changes go through [`Store::transact`], one sled transaction over every
//! metadata tree, and are flushed before the caller acknowledges them.

mod blobs;
pub mod records;

use std::path::Path;

use prost::Message;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

pub use blobs::{BlobStore, MAX_CHUNK_BYTES, StagedBlob};
use records::{BlobRef, DownloadJob, MediaRecord, ProfileRecord};

use crate::error::{Error, Result};
use crate::model::UserId;

/// The result type inside a transaction closure.
pub type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

/// Aborts a transaction with a domain error.
pub fn abort<T>(error: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(error))
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// user -> ProfileRecord
    profiles: sled::Tree,
    /// user -> last version (u64 BE); never removed, so versions are never reused
    versions: sled::Tree,
    /// media id -> MediaRecord
    media: sled::Tree,
    /// user \0 seq (u64 BE) -> media id
    user_media: sled::Tree,
    /// user -> DownloadJob
    jobs: sled::Tree,
    pub blobs: BlobStore,
}

impl Store {
    /// Opens (or creates) the store in `dir` and cleans up blobs left by requests that
    /// were interrupted.
    pub fn open(dir: &Path) -> Result<Store> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let store = Store {
            profiles: db.open_tree("profiles")?,
            versions: db.open_tree("versions")?,
            media: db.open_tree("media")?,
            user_media: db.open_tree("user_media")?,
            jobs: db.open_tree("jobs")?,
            blobs: BlobStore::new(
                db.open_tree("blob_chunks")?,
                db.open_tree("blob_refs")?,
                db.open_tree("blob_pending")?,
            ),
            db,
        };
        let swept = store.blobs.sweep()?;
        if swept > 0 {
            tracing::info!(blobs = swept, "removed blobs left by interrupted writes");
        }
        Ok(store)
    }

    /// Makes every write so far durable. Call before acknowledging a write.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// A store-wide increasing id (sled keeps it increasing across restarts and crashes).
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    pub fn profile(&self, user: &UserId) -> Result<Option<ProfileRecord>> {
        decode_opt(self.profiles.get(user.as_str())?)
    }

    pub fn media(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        decode_opt(self.media.get(media_id)?)
    }

    pub fn current_version(&self, user: &UserId) -> Result<u64> {
        Ok(self.versions.get(user.as_str())?.map_or(0, |v| be_u64(&v)))
    }

    /// A page of the user's media ids, newest first, starting after `after_seq` (exclusive)
    /// when given. Returns up to `limit` records and whether more follow.
    pub fn list_media(
        &self,
        user: &UserId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MediaRecord>, bool)> {
        let prefix = user_media_prefix(user);
        let upper = match after_seq {
            Some(seq) => user_media_key(user, seq),
            None => {
                let mut end = prefix.clone();
                end.extend_from_slice(&[0xff; 9]);
                end
            }
        };
        let mut out = Vec::with_capacity(limit.min(64));
        let mut more = false;
        for entry in self.user_media.range(prefix..upper).rev() {
            let (_, media_id) = entry?;
            if out.len() == limit {
                more = true;
                break;
            }
            let media_id = String::from_utf8_lossy(&media_id);
            if let Some(record) = self.media(&media_id)? {
                out.push(record);
            }
        }
        Ok((out, more))
    }

    /// Every stored download job (to resume them at start-up).
    pub fn jobs(&self) -> Result<Vec<DownloadJob>> {
        self.jobs
            .iter()
            .values()
            .map(|v| DownloadJob::decode(v?.as_ref()).map_err(Error::internal))
            .collect()
    }

    /// Runs `f` as one atomic transaction over all metadata trees. `f` may run more than
    /// once (on conflicts), so it must not have side effects outside the transaction.
    pub fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T> {
        let trees = [
            self.profiles.clone(),
            self.versions.clone(),
            self.media.clone(),
            self.user_media.clone(),
            self.jobs.clone(),
            self.blobs.refs_tree().clone(),
            self.blobs.pending_tree().clone(),
        ];
        Ok(trees.as_slice().transaction(|views| f(&Tx { views }))?)
    }
}

/// The store's trees inside a transaction.
pub struct Tx<'a> {
    views: &'a [TransactionalTree],
}

impl Tx<'_> {
    fn profiles(&self) -> &TransactionalTree {
        &self.views[0]
    }
    fn versions(&self) -> &TransactionalTree {
        &self.views[1]
    }
    fn media_tree(&self) -> &TransactionalTree {
        &self.views[2]
    }
    fn user_media(&self) -> &TransactionalTree {
        &self.views[3]
    }
    fn jobs(&self) -> &TransactionalTree {
        &self.views[4]
    }
    fn refs(&self) -> &TransactionalTree {
        &self.views[5]
    }
    fn pending(&self) -> &TransactionalTree {
        &self.views[6]
    }

    pub fn version(&self, user: &UserId) -> TxResult<u64> {
        Ok(self
            .versions()
            .get(user.as_str())?
            .map_or(0, |v| be_u64(&v)))
    }

    /// Takes the next version for `user`.
    pub fn bump_version(&self, user: &UserId) -> TxResult<u64> {
        let next = self.version(user)? + 1;
        self.versions().insert(user.as_str(), &next.to_be_bytes())?;
        Ok(next)
    }

    pub fn profile(&self, user: &UserId) -> TxResult<Option<ProfileRecord>> {
        decode_opt(self.profiles().get(user.as_str())?).or_else(abort)
    }

    pub fn put_profile(&self, user: &UserId, record: &ProfileRecord) -> TxResult<()> {
        self.profiles()
            .insert(user.as_str(), record.encode_to_vec())?;
        Ok(())
    }

    pub fn remove_profile(&self, user: &UserId) -> TxResult<()> {
        self.profiles().remove(user.as_str())?;
        Ok(())
    }

    pub fn media(&self, media_id: &str) -> TxResult<Option<MediaRecord>> {
        decode_opt(self.media_tree().get(media_id)?).or_else(abort)
    }

    /// Stores a new media record, indexes it under its user and takes a reference on
    /// each of its blobs.
    pub fn insert_media(&self, user: &UserId, record: &MediaRecord) -> TxResult<()> {
        self.media_tree()
            .insert(record.media_id.as_str(), record.encode_to_vec())?;
        self.user_media()
            .insert(user_media_key(user, record.seq), record.media_id.as_str())?;
        for blob in record.blobs() {
            self.add_ref(blob)?;
        }
        Ok(())
    }

    /// Replaces a media record, moving blob references from the old blobs to the new.
    pub fn replace_media(&self, old: &MediaRecord, new: &MediaRecord) -> TxResult<()> {
        for blob in new.blobs() {
            self.add_ref(blob)?;
        }
        for blob in old.blobs() {
            self.release_ref(blob)?;
        }
        self.media_tree()
            .insert(new.media_id.as_str(), new.encode_to_vec())?;
        Ok(())
    }

    /// Removes a media record and releases its blobs.
    pub fn remove_media(&self, user: &UserId, record: &MediaRecord) -> TxResult<()> {
        self.media_tree().remove(record.media_id.as_str())?;
        self.user_media().remove(user_media_key(user, record.seq))?;
        for blob in record.blobs() {
            self.release_ref(blob)?;
        }
        Ok(())
    }

    pub fn put_job(&self, job: &DownloadJob) -> TxResult<()> {
        self.jobs()
            .insert(job.user_id.as_str(), job.encode_to_vec())?;
        Ok(())
    }

    pub fn job(&self, user: &UserId) -> TxResult<Option<DownloadJob>> {
        decode_opt(self.jobs().get(user.as_str())?).or_else(abort)
    }

    pub fn remove_job(&self, user: &UserId) -> TxResult<()> {
        self.jobs().remove(user.as_str())?;
        Ok(())
    }

    fn add_ref(&self, blob: &BlobRef) -> TxResult<()> {
        let count = self.refs().get(&blob.hash)?.map_or(0, |v| be_u64(&v));
        self.refs()
            .insert(blob.hash.as_slice(), &(count + 1).to_be_bytes())?;
        Ok(())
    }

    /// Drops one reference; the last one marks the blob pending, for `BlobStore::settle`.
    fn release_ref(&self, blob: &BlobRef) -> TxResult<()> {
        let count = self.refs().get(&blob.hash)?.map_or(0, |v| be_u64(&v));
        if count <= 1 {
            self.refs().remove(blob.hash.as_slice())?;
            self.pending().insert(blob.hash.as_slice(), &[])?;
        } else {
            self.refs()
                .insert(blob.hash.as_slice(), &(count - 1).to_be_bytes())?;
        }
        Ok(())
    }
}

fn user_media_prefix(user: &UserId) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.as_str().len() + 9);
    key.extend_from_slice(user.as_str().as_bytes());
    key.push(0);
    key
}

fn user_media_key(user: &UserId, seq: u64) -> Vec<u8> {
    let mut key = user_media_prefix(user);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
}

fn decode_opt<M: Message + Default>(value: Option<sled::IVec>) -> Result<Option<M>> {
    value
        .map(|v| M::decode(v.as_ref()).map_err(|e| Error::internal(format!("corrupt record: {e}"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use records::RenditionRecord;

    fn user() -> UserId {
        UserId::parse("user_id", "u").unwrap()
    }

    /// Opens the store again; sled's background flusher may hold the file lock for a
    /// moment after the previous handle is dropped.
    fn reopen(dir: &Path) -> Store {
        for _ in 0..100 {
            if let Ok(store) = Store::open(dir) {
                return store;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Store::open(dir).expect("reopen the store")
    }

    fn chunk_count(store: &Store) -> usize {
        store.db.open_tree("blob_chunks").unwrap().len()
    }

    fn media_with(store: &Store, original: &BlobRef, rendition: &BlobRef) -> MediaRecord {
        let seq = store.next_id().unwrap();
        MediaRecord {
            media_id: format!("m{seq}"),
            user_id: "u".into(),
            seq,
            original: original.clone(),
            renditions: vec![RenditionRecord {
                edge: 64,
                format: records::FORMAT_JPEG,
                blob: rendition.clone(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn blobs_round_trip_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..MAX_CHUNK_BYTES * 2 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let staged = store.blobs.stage(&bytes).unwrap();
        assert_eq!(
            store.blobs.read(staged.blob()).unwrap().as_ref(),
            bytes.as_slice()
        );
        assert_eq!(chunk_count(&store), 3, "values stay at or under 128 KiB");
    }

    #[test]
    fn uncommitted_blobs_are_removed_when_the_request_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let staged = store.blobs.stage(b"half-written request").unwrap();
        assert_eq!(chunk_count(&store), 1);
        drop(staged);
        assert_eq!(chunk_count(&store), 0);
    }

    #[test]
    fn committed_blobs_stay_until_their_last_reference_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (original, shared) = (
            store.blobs.stage(b"original").unwrap(),
            store.blobs.stage(b"shared").unwrap(),
        );
        let first = media_with(&store, original.blob(), shared.blob());
        let other = store.blobs.stage(b"other").unwrap();
        let second = media_with(&store, other.blob(), shared.blob());
        store
            .transact(|tx| {
                tx.insert_media(&user(), &first)?;
                tx.insert_media(&user(), &second)
            })
            .unwrap();
        drop((original, shared, other));
        assert_eq!(
            chunk_count(&store),
            3,
            "committed blobs survive their staging guards"
        );

        store
            .transact(|tx| tx.remove_media(&user(), &first))
            .unwrap();
        store.blobs.sweep().unwrap();
        assert_eq!(
            chunk_count(&store),
            2,
            "the shared blob is still referenced"
        );
        store
            .transact(|tx| tx.remove_media(&user(), &second))
            .unwrap();
        store.blobs.sweep().unwrap();
        assert_eq!(chunk_count(&store), 0);
    }

    #[test]
    fn blobs_left_by_a_crash_are_swept_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What a process that died between writing chunks and committing leaves.
            let store = Store::open(dir.path()).unwrap();
            let hash = *blake3::hash(b"interrupted").as_bytes();
            let mut key = hash.to_vec();
            key.extend_from_slice(&0u32.to_be_bytes());
            store
                .db
                .open_tree("blob_pending")
                .unwrap()
                .insert(hash, &[])
                .unwrap();
            store
                .db
                .open_tree("blob_chunks")
                .unwrap()
                .insert(key, &b"interrupted"[..])
                .unwrap();
            store.db.flush().unwrap();
            assert_eq!(chunk_count(&store), 1);
        }
        let store = reopen(dir.path());
        assert_eq!(chunk_count(&store), 0);
    }

    #[test]
    fn media_pages_are_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = store.blobs.stage(b"x").unwrap();
        let records: Vec<_> = (0..5)
            .map(|_| media_with(&store, blob.blob(), blob.blob()))
            .collect();
        store
            .transact(|tx| records.iter().try_for_each(|r| tx.insert_media(&user(), r)))
            .unwrap();
        let (page, more) = store.list_media(&user(), None, 2).unwrap();
        assert!(more);
        assert_eq!(
            page.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [records[4].seq, records[3].seq]
        );
        let (rest, more) = store.list_media(&user(), Some(records[3].seq), 10).unwrap();
        assert!(!more);
        assert_eq!(
            rest.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [records[2].seq, records[1].seq, records[0].seq]
        );
    }
}
