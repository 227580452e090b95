use std::path::Path;

use super::*;
use crate::model::UserState;
use crate::store::{Change, MetadataStore};
use records::{MediaRecord, RenditionRecord};

fn user() -> UserId {
    UserId::parse("user_id", "u").unwrap()
}

/// Opens the store again; sled's threads may hold the file lock for a moment after the
/// previous handle is dropped.
fn reopen(dir: &Path) -> LocalStore {
    for _ in 0..100 {
        if let Ok(store) = LocalStore::open(dir) {
            return store;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    LocalStore::open(dir).expect("reopen the store")
}

/// Blob files under the data dir (temporary files excluded).
fn blob_files(dir: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name() != "tmp")
                    .map(|e| {
                        if e.file_type().unwrap().is_dir() {
                            count(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    count(&dir.join("objects"))
}

fn media_with(store: &LocalStore, original: &BlobRef, rendition: &BlobRef) -> MediaRecord {
    let seq = store.generate_id().unwrap();
    MediaRecord {
        media_id: format!("m{seq}"),
        user_id: "u".into(),
        seq,
        source: records::SOURCE_UPLOAD,
        original: original.into(),
        renditions: vec![RenditionRecord {
            edge: 64,
            format: records::FORMAT_JPEG,
            blob: rendition.into(),
        }],
        ..Default::default()
    }
}

/// Deletes a media record and waits until the sweeper has settled what it released.
fn remove_and_sweep(store: &LocalStore, record: &MediaRecord) {
    store
        .transact_blocking(|tx| tx.remove_media(&user(), record))
        .unwrap();
    store.blobs.request_sweep();
    store.blobs.wait_for_sweeper();
}

#[test]
fn blobs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let bytes: Vec<u8> = (0..300_017).map(|i| (i % 251) as u8).collect();
    let staged = store.blobs.stage(&bytes).unwrap();
    assert_eq!(
        store.blobs.read(staged.blob()).unwrap().as_ref(),
        bytes.as_slice()
    );
    assert_eq!(blob_files(dir.path()), 1);
}

#[test]
fn a_blob_that_is_gone_reads_as_missing_not_internal() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let staged = store.blobs.stage(b"short-lived").unwrap();
    let blob = *staged.blob();
    drop(staged);
    store.blobs.wait_for_sweeper();
    assert!(matches!(store.blobs.read(&blob), Err(Error::BlobMissing)));
}

#[test]
fn uncommitted_blobs_are_removed_when_the_request_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let staged = store.blobs.stage(b"half-written request").unwrap();
    assert_eq!(blob_files(dir.path()), 1);
    drop(staged);
    store.blobs.wait_for_sweeper();
    assert_eq!(blob_files(dir.path()), 0);
}

#[test]
fn committed_blobs_stay_until_their_last_reference_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let (original, shared) = (
        store.blobs.stage(b"original").unwrap(),
        store.blobs.stage(b"shared").unwrap(),
    );
    let first = media_with(&store, original.blob(), shared.blob());
    let other = store.blobs.stage(b"other").unwrap();
    let second = media_with(&store, other.blob(), shared.blob());
    store
        .transact_blocking(|tx| {
            tx.insert_media(&user(), &first)?;
            tx.insert_media(&user(), &second)
        })
        .unwrap();
    drop((original, shared, other));
    store.blobs.wait_for_sweeper();
    assert_eq!(
        blob_files(dir.path()),
        3,
        "committed blobs survive their staging guards"
    );

    store
        .transact_blocking(|tx| tx.remove_media(&user(), &first))
        .unwrap();
    store.blobs.sweep().unwrap();
    assert_eq!(
        blob_files(dir.path()),
        2,
        "the shared blob is still referenced"
    );
    remove_and_sweep(&store, &second);
    assert_eq!(blob_files(dir.path()), 0);
}

#[test]
fn blobs_written_together_share_one_pack_file_and_read_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let parts: Vec<Bytes> = vec![
        Bytes::from((0..70_001).map(|i| (i % 241) as u8).collect::<Vec<_>>()),
        Bytes::from_static(b"a 64 px rendition"),
        Bytes::from_static(b""),
        Bytes::from_static(b"a 128 px rendition"),
    ];
    let staged = store.blobs.stage_pack(&parts).unwrap();
    assert_eq!(blob_files(dir.path()), 1, "one file for the four blobs");
    let packs: std::collections::HashSet<_> =
        staged.iter().map(|s| s.blob().storage_key()).collect();
    assert_eq!(packs.len(), 1);
    for (part, staged) in parts.iter().zip(&staged) {
        // Each blob keeps its own content hash (the etag clients see).
        assert_eq!(*staged.blob(), {
            let mut own = BlobRef::of(part);
            own.packed = staged.blob().packed;
            own
        });
        assert_eq!(store.blobs.read(staged.blob()).unwrap(), *part);
    }
    // Writing the same blobs again names the same pack: no second file.
    let again = store.blobs.stage_pack(&parts).unwrap();
    assert_eq!(again[1].blob(), staged[1].blob());
    assert_eq!(blob_files(dir.path()), 1);
    drop((staged, again));
    store.blobs.wait_for_sweeper();
    assert_eq!(
        blob_files(dir.path()),
        0,
        "an uncommitted pack goes with its guards"
    );
}

#[test]
fn a_pack_stays_while_any_of_its_blobs_is_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let staged = store
        .blobs
        .stage_pack(&[
            Bytes::from_static(b"original"),
            Bytes::from_static(b"rendition"),
        ])
        .unwrap();
    let first = media_with(&store, staged[0].blob(), staged[1].blob());
    store
        .transact_blocking(|tx| tx.insert_media(&user(), &first))
        .unwrap();
    drop(staged);
    // A crop: the same original, a new rendition of its own.
    let cropped = store.blobs.stage(b"cropped rendition").unwrap();
    let mut second = first.clone();
    second.renditions[0].blob = cropped.blob().into();
    store
        .transact_blocking(|tx| tx.replace_media(&first, &second))
        .unwrap();
    drop(cropped);
    store.blobs.request_sweep();
    store.blobs.wait_for_sweeper();
    assert_eq!(
        blob_files(dir.path()),
        2,
        "the pack still holds the original"
    );
    let original = BlobRef::try_from(&second.original).unwrap();
    assert_eq!(store.blobs.read(&original).unwrap().as_ref(), b"original");

    remove_and_sweep(&store, &second);
    assert_eq!(blob_files(dir.path()), 0);
    let reopened = {
        drop(store);
        reopen(dir.path())
    };
    assert!(matches!(
        reopened.blobs.read(&original),
        Err(Error::BlobMissing)
    ));
}

#[test]
fn a_packed_record_reads_back_with_its_place() {
    let blob = BlobRef {
        hash: [7; 32],
        len: 12,
        packed: Some(crate::model::Packed {
            pack: [9; 32],
            offset: 4096,
        }),
    };
    let record = records::BlobRef::from(&blob);
    assert_eq!(record.storage_key(), &[9; 32]);
    assert_eq!(BlobRef::try_from(&record).unwrap(), blob);
    let plain = records::BlobRef::from(&blob.unpacked());
    assert_eq!(plain.storage_key(), &[7; 32]);
    assert_eq!(BlobRef::try_from(&plain).unwrap(), blob.unpacked());
}

#[test]
fn blobs_left_by_a_crash_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What a process that died between writing a blob and committing leaves: the
        // pending mark and the file, and no reference.
        let store = LocalStore::open(dir.path()).unwrap();
        let hash = blake3::hash(b"interrupted");
        store
            .blobs
            .pending_tree()
            .insert(hash.as_bytes(), &[])
            .unwrap();
        let hex = hash.to_hex();
        let fan_out = dir.path().join("objects").join(&hex[..2]).join(&hex[2..4]);
        std::fs::create_dir_all(&fan_out).unwrap();
        std::fs::write(fan_out.join(hex.as_str()), b"interrupted").unwrap();
        store.db.flush().unwrap();
        assert_eq!(blob_files(dir.path()), 1);
    }
    let store = reopen(dir.path());
    assert_eq!(blob_files(dir.path()), 0);
    drop(store);
}

#[test]
fn files_a_crash_left_before_their_commit_are_swept_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let hex;
    {
        // What a process that died between writing a blob and committing it leaves
        // now: the file alone (staging writes no mark).
        let store = LocalStore::open(dir.path()).unwrap();
        let kept = store.blobs.stage(b"committed").unwrap();
        let media = media_with(&store, kept.blob(), kept.blob());
        store
            .transact_blocking(|tx| tx.insert_media(&user(), &media))
            .unwrap();
        store.db.flush().unwrap();
        drop(kept);
        let hash = blake3::hash(b"interrupted");
        hex = hash.to_hex();
        let fan_out = dir.path().join("objects").join(&hex[..2]).join(&hex[2..4]);
        std::fs::create_dir_all(&fan_out).unwrap();
        std::fs::write(fan_out.join(hex.as_str()), b"interrupted").unwrap();
        store.blobs.wait_for_sweeper();
        assert_eq!(blob_files(dir.path()), 2);
    }
    let store = reopen(dir.path());
    store.blobs.wait_for_sweeper();
    assert_eq!(blob_files(dir.path()), 1, "the committed blob stays");
    let committed = BlobRef::of(b"committed");
    assert_eq!(store.blobs.read(&committed).unwrap().as_ref(), b"committed");
}

#[test]
fn blobs_an_older_version_kept_in_sled_move_to_files() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..200_000).map(|i| (i % 253) as u8).collect();
    let hash = *blake3::hash(&bytes).as_bytes();
    {
        let db = sled::open(dir.path()).unwrap();
        let chunks = db.open_tree("blob_chunks").unwrap();
        for (index, chunk) in bytes.chunks(128 * 1024).enumerate() {
            let mut key = hash.to_vec();
            key.extend_from_slice(&(index as u32).to_be_bytes());
            chunks.insert(key, chunk).unwrap();
        }
        db.open_tree("blob_refs")
            .unwrap()
            .insert(hash, &1u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let store = reopen(dir.path());
    let blob = BlobRef {
        hash,
        len: bytes.len() as u64,
        packed: None,
    };
    store.blobs.wait_for_sweeper();
    assert_eq!(store.blobs.read(&blob).unwrap().as_ref(), bytes.as_slice());
    assert!(!store.db.tree_names().iter().any(|n| n == b"blob_chunks"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_flushes_and_all_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let writers: Vec<_> = (0..64u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let user = UserId::parse("user_id", &format!("u{i}")).unwrap();
                let mut change = Change::on(&user, &UserState::default());
                change.version = Some(1);
                // Returns once the change is durable.
                store.commit(change).await.unwrap();
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(store.flushing_for().is_none() || store.flushing_for().unwrap().as_secs() < 5);
    drop(store);
    let store = reopen(dir.path());
    for i in 0..64 {
        let user = UserId::parse("user_id", &format!("u{i}")).unwrap();
        assert_eq!(store.user_state(&user).await.unwrap().version, 1);
    }
}

#[tokio::test]
async fn media_pages_are_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let blob = store.blobs.stage(b"x").unwrap();
    let records: Vec<_> = (0..5)
        .map(|_| media_with(&store, blob.blob(), blob.blob()))
        .collect();
    store
        .transact_blocking(|tx| records.iter().try_for_each(|r| tx.insert_media(&user(), r)))
        .unwrap();
    let (page, more) = store.list_media(&user(), None, 2).await.unwrap();
    assert!(more);
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [records[4].seq, records[3].seq]
    );
    let (rest, more) = store
        .list_media(&user(), Some(records[3].seq), 10)
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(
        rest.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [records[2].seq, records[1].seq, records[0].seq]
    );
}

fn user_in(tenant: &str, id: &str) -> UserId {
    let tenant = crate::model::TenantId::parse("tenant", tenant).unwrap();
    UserId::parse_in(&tenant, "user_id", id).unwrap()
}

#[test]
fn no_users_key_or_media_prefix_is_a_prefix_of_another_users() {
    let users = [
        user_in("default", "a"),
        user_in("default", "ab"),
        user_in("t", "a"),
        user_in("t", "ab"),
        user_in("ta", "b"),
        user_in("default", "t"),
    ];
    assert_eq!(user_key(&users[0]), b"a", "default users keep the bare id");
    for one in &users {
        for other in users.iter().filter(|u| *u != one) {
            let (key, prefix) = (user_media_prefix(one), user_media_prefix(other));
            assert!(!prefix.starts_with(&key), "{one:?} / {other:?}");
            assert_ne!(user_key(one), user_key(other), "{one:?} / {other:?}");
        }
    }
}

#[tokio::test]
async fn the_same_user_id_in_two_tenants_is_two_users() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let (acme, globex) = (user_in("acme", "alice"), user_in("globex", "alice"));
    let blob = store.blobs.stage(b"x").unwrap();
    let mut record = media_with(&store, blob.blob(), blob.blob());
    record.tenant = "acme".into();
    record.user_id = "alice".into();
    store
        .transact_blocking(|tx| tx.insert_media(&acme, &record))
        .unwrap();
    let mut change = Change::on(&acme, &UserState::default());
    change.version = Some(3);
    store.commit(change).await.unwrap();

    assert_eq!(store.user_state(&acme).await.unwrap().version, 3);
    assert_eq!(store.user_state(&globex).await.unwrap().version, 0);
    assert_eq!(store.list_media(&acme, None, 10).await.unwrap().0.len(), 1);
    assert!(
        store
            .list_media(&globex, None, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let stored = store.media(&record.media_id).await.unwrap().unwrap();
    assert_eq!(stored.user, acme, "the media item keeps its owner's tenant");
    assert_ne!(stored.user, globex);
}

#[test]
fn the_schema_version_is_recorded_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let meta = store.db.open_tree("meta").unwrap();
    let stored = meta.get("schema_version").unwrap().unwrap();
    assert_eq!(be_u64(&stored), migrate::SCHEMA_VERSION);
    meta.insert(
        "schema_version",
        &(migrate::SCHEMA_VERSION + 1).to_be_bytes(),
    )
    .unwrap();
    store.db.flush().unwrap();
    drop((meta, store));
    let mut refused = None;
    for _ in 0..100 {
        match LocalStore::open(dir.path()) {
            Ok(_) => panic!("a store of a newer schema opened"),
            Err(error) if error.to_string().contains("schema version") => {
                refused = Some(error);
                break;
            }
            // The previous handle's threads may hold the file lock for a moment.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    assert!(refused.is_some(), "a store of a newer schema is refused");
}

/// A profile with `media` as its active, ready image at `version`.
fn ready(version: u64, media: &crate::model::Media) -> crate::model::Profile {
    crate::model::Profile {
        version,
        status: crate::model::Status::Ready,
        media_id: Some(media.id.clone()),
        source: crate::model::Source::Upload,
        source_url: String::new(),
        failure: None,
        create_time_ms: 1,
        update_time_ms: 1,
    }
}

#[tokio::test]
async fn a_versions_media_resolves_until_the_item_is_cropped_again_or_deleted() {
    use crate::model::Crop;
    use crate::store::{MediaWrite, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let blob = store.blobs.stage(b"pixels").unwrap();
    let media =
        crate::model::Media::try_from(media_with(&store, blob.blob(), blob.blob())).unwrap();

    let mut set = Change::on(&user(), &UserState::default());
    set.version = Some(1);
    set.media.push(MediaWrite::Insert(media.clone()));
    set.profile = Write::Put(ready(1, &media));
    store.commit(set).await.unwrap();
    let shown = store.media_at_version(&user(), 1).await.unwrap();
    assert_eq!(shown.map(|m| m.id), Some(media.id.clone()));
    assert!(store.media_at_version(&user(), 2).await.unwrap().is_none());

    let cropped = crate::model::Media {
        crop: Crop {
            x: 1,
            y: 1,
            size: 5,
        },
        ..media.clone()
    };
    let mut crop = Change::on(&user(), &store.user_state(&user()).await.unwrap());
    crop.version = Some(2);
    crop.media.push(MediaWrite::Replace(cropped.clone()));
    crop.profile = Write::Put(ready(2, &cropped));
    store.commit(crop).await.unwrap();
    assert!(
        store.media_at_version(&user(), 1).await.unwrap().is_none(),
        "version 1 showed another crop"
    );
    assert!(store.media_at_version(&user(), 2).await.unwrap().is_some());

    let mut delete = Change::on(&user(), &store.user_state(&user()).await.unwrap());
    delete.version = Some(3);
    delete.media.push(MediaWrite::Remove(media.id.clone()));
    delete.profile = Write::Remove;
    store.commit(delete).await.unwrap();
    assert!(store.media_at_version(&user(), 2).await.unwrap().is_none());
}
