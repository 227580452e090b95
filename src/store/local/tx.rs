//! One atomic change of the metadata trees: what a transaction closure can do.

use prost::Message;
use sled::transaction::TransactionalTree;

use super::{TxResult, abort, be_u64, decode_opt, user_key, user_media_key, user_version_key};
use crate::model::UserId;
use crate::store::records::{BlobRef, DownloadJob, MediaRecord, ProfileRecord, VersionRecord};

/// The store's trees inside a transaction.
pub(super) struct Tx<'a> {
    pub(super) views: &'a [TransactionalTree],
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
    fn profile_versions(&self) -> &TransactionalTree {
        &self.views[7]
    }

    pub fn version(&self, user: &UserId) -> TxResult<u64> {
        Ok(self
            .versions()
            .get(user_key(user))?
            .map_or(0, |v| be_u64(&v)))
    }

    /// Records `version` as the user's last one.
    pub fn set_version(&self, user: &UserId, version: u64) -> TxResult<()> {
        self.versions()
            .insert(user_key(user), &version.to_be_bytes())?;
        Ok(())
    }

    pub fn profile(&self, user: &UserId) -> TxResult<Option<ProfileRecord>> {
        decode_opt(self.profiles().get(user_key(user))?).or_else(abort)
    }

    pub fn put_profile(&self, user: &UserId, record: &ProfileRecord) -> TxResult<()> {
        self.profiles()
            .insert(user_key(user), record.encode_to_vec())?;
        Ok(())
    }

    pub fn remove_profile(&self, user: &UserId) -> TxResult<()> {
        self.profiles().remove(user_key(user))?;
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

    /// Records what profile version `version` shows.
    pub fn put_version(&self, user: &UserId, version: u64, record: &VersionRecord) -> TxResult<()> {
        self.profile_versions()
            .insert(user_version_key(user, version), record.encode_to_vec())?;
        Ok(())
    }

    pub fn put_job(&self, user: &UserId, job: &DownloadJob) -> TxResult<()> {
        self.jobs().insert(user_key(user), job.encode_to_vec())?;
        Ok(())
    }

    pub fn job(&self, user: &UserId) -> TxResult<Option<DownloadJob>> {
        decode_opt(self.jobs().get(user_key(user))?).or_else(abort)
    }

    pub fn remove_job(&self, user: &UserId) -> TxResult<()> {
        self.jobs().remove(user_key(user))?;
        Ok(())
    }

    /// Takes one reference on the file that holds `blob` (a pack counts one reference
    /// per blob of it that a record names).
    fn add_ref(&self, blob: &BlobRef) -> TxResult<()> {
        let key = blob.storage_key();
        let count = self.refs().get(key)?.map_or(0, |v| be_u64(&v));
        self.refs().insert(key, &(count + 1).to_be_bytes())?;
        Ok(())
    }

    /// Drops one reference; the last one marks the file pending, for the sweeper.
    fn release_ref(&self, blob: &BlobRef) -> TxResult<()> {
        let key = blob.storage_key();
        let count = self.refs().get(key)?.map_or(0, |v| be_u64(&v));
        if count <= 1 {
            self.refs().remove(key)?;
            self.pending().insert(key, &[])?;
        } else {
            self.refs().insert(key, &(count - 1).to_be_bytes())?;
        }
        Ok(())
    }
}
