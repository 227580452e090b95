//! The one owner of profile changes. Every change of a user's profile is one method of
//! [`Locked`] (a user's lock, held), and every one runs the same sequence in
//! [`Locked::apply`]: read the user's state, decide the change on it, commit it (the
//! store makes it durable and cleans up blobs it released; a shared store also logs the
//! event in the same transaction), then publish the event.
//! Nothing else writes profile records or publishes their events.

use std::sync::Arc;

use tokio::sync::MutexGuard;

use super::locks::UserLocks;
use super::views::profile_view;
use super::{StageTimer, no_image};
use crate::error::{Error, Result};
use crate::model::{
    CropRequest, DownloadJob, EventKind, ExpectedVersion, Failure, Media, Profile, ProfileView,
    Source, Status, UserId, UserState, now_millis,
};
use crate::store::{Change, ChangeEvent, MediaWrite, MetadataStore, Write};
use crate::watch::Hub;

/// How often a change is decided again when another writer (a replica sharing the
/// store) changed the user's state between the read and the commit.
const CONFLICT_ATTEMPTS: usize = 8;

pub struct Transitions {
    meta: Arc<dyn MetadataStore>,
    events: Arc<Hub>,
    locks: UserLocks,
    full_max_edge: u32,
}

/// What a committed change left.
struct Applied {
    /// The state after the change (None = no profile).
    view: Option<ProfileView>,
    /// The user's last version after the change.
    version: u64,
}

/// A user's lock, held: the user's changes happen one at a time, in version order, and
/// their events come out in that order.
pub struct Locked<'a> {
    owner: &'a Transitions,
    user: &'a UserId,
    _guard: MutexGuard<'a, ()>,
}

impl Transitions {
    pub fn new(meta: Arc<dyn MetadataStore>, events: Arc<Hub>, full_max_edge: u32) -> Self {
        Transitions {
            meta,
            events,
            locks: UserLocks::new(),
            full_max_edge,
        }
    }

    /// Takes `user`'s lock (waiting for the user's other changes).
    pub async fn lock<'a>(&'a self, user: &'a UserId) -> Locked<'a> {
        Locked {
            _guard: self.locks.lock(user).await,
            owner: self,
            user,
        }
    }

    pub fn view(&self, user: &UserId, profile: Profile, media: Option<Media>) -> ProfileView {
        profile_view(user, profile, media, self.full_max_edge)
    }
}

impl Locked<'_> {
    /// The user's stored state; it cannot change while the lock is held (except through
    /// another replica, which the commit detects).
    pub async fn state(&self) -> Result<UserState> {
        self.owner.meta.user_state(self.user).await
    }

    /// Makes a new media item (its blobs already written) the active image, as a new
    /// version. Supersedes any download.
    pub async fn set_new_media(
        &self,
        media: Media,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        self.activate(
            EventKind::Set,
            media.source,
            MediaWrite::Insert(media.clone()),
            &media,
            expected,
        )
        .await
    }

    /// Makes an earlier media item (as stored, or re-cropped) the active image again.
    pub async fn set_earlier_media(
        &self,
        media: Media,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        // Written back as it is (or re-cropped): the commit then also checks that the
        // item still exists.
        self.activate(
            EventKind::Set,
            Source::Media,
            MediaWrite::Replace(media.clone()),
            &media,
            expected,
        )
        .await
    }

    async fn activate(
        &self,
        kind: EventKind,
        source: Source,
        write: MediaWrite,
        media: &Media,
        expected: ExpectedVersion,
    ) -> Result<ProfileView> {
        let done = self
            .apply(kind, |state| {
                expected.check(state.version)?;
                let now = now_millis();
                let version = state.version + 1;
                let mut change = Change::on(self.user, state);
                change.version = Some(version);
                change.media.push(write.clone());
                change.job = Write::Remove;
                change.profile = Write::Put(Profile {
                    version,
                    status: Status::Ready,
                    media_id: Some(media.id.clone()),
                    source,
                    source_url: match source {
                        Source::Url => media.source_url.clone(),
                        _ => String::new(),
                    },
                    failure: None,
                    create_time_ms: state.profile.as_ref().map_or(now, |p| p.create_time_ms),
                    update_time_ms: now,
                });
                Ok(Some(change))
            })
            .await?;
        done.and_then(|applied| applied.view)
            .ok_or_else(|| Error::internal("a set committed no state"))
    }

    /// Replaces the active image's renditions with a new crop of it, as a new version.
    pub async fn crop(&self, cropped: Media, expected: ExpectedVersion) -> Result<ProfileView> {
        let done = self
            .apply(EventKind::Cropped, |state| {
                expected.check(state.version)?;
                let Some(profile) = &state.profile else {
                    return Err(no_image(self.user));
                };
                if profile.media_id.as_deref() != Some(cropped.id.as_str()) {
                    return Err(Error::Conflict);
                }
                let version = state.version + 1;
                let mut change = Change::on(self.user, state);
                change.version = Some(version);
                change.media.push(MediaWrite::Replace(cropped.clone()));
                change.profile = Write::Put(Profile {
                    version,
                    update_time_ms: now_millis(),
                    ..profile.clone()
                });
                Ok(Some(change))
            })
            .await?;
        done.and_then(|applied| applied.view)
            .ok_or_else(|| Error::internal("a crop committed no state"))
    }

    /// Removes the active profile image (its media item stays), as a new version; that
    /// version.
    pub async fn delete(&self, expected: ExpectedVersion) -> Result<u64> {
        self.apply(EventKind::Deleted, |state| {
            expected.check(state.version)?;
            if state.profile.is_none() {
                return Err(no_image(self.user));
            }
            let mut change = Change::on(self.user, state);
            change.version = Some(state.version + 1);
            change.profile = Write::Remove;
            change.job = Write::Remove;
            Ok(Some(change))
        })
        .await?
        .map(|applied| applied.version)
        .ok_or_else(|| Error::internal("a delete committed nothing"))
    }

    /// Deletes one of the user's media items; if it is the active one, the profile
    /// image too (a new version). The user's version after it.
    pub async fn delete_media(&self, media_id: &str) -> Result<u64> {
        self.apply(EventKind::Deleted, |state| {
            let mut change = Change::on(self.user, state);
            change.media.push(MediaWrite::Remove(media_id.to_owned()));
            let active = state
                .profile
                .as_ref()
                .is_some_and(|p| p.media_id.as_deref() == Some(media_id));
            if active {
                change.version = Some(state.version + 1);
                change.profile = Write::Remove;
            }
            Ok(Some(change))
        })
        .await?
        .map(|applied| applied.version)
        .ok_or_else(|| Error::internal("a media delete committed nothing"))
    }

    /// Records a URL to download as a new version in DOWNLOADING, with its job.
    pub async fn begin_download(
        &self,
        url: &str,
        crop: Option<CropRequest>,
        expected: ExpectedVersion,
    ) -> Result<(ProfileView, DownloadJob)> {
        let done = self
            .apply(EventKind::Set, |state| {
                expected.check(state.version)?;
                let now = now_millis();
                let version = state.version + 1;
                let mut change = Change::on(self.user, state);
                change.version = Some(version);
                change.job = Write::Put(DownloadJob {
                    user: self.user.clone(),
                    version,
                    url: url.to_owned(),
                    attempts: 0,
                    crop,
                });
                change.profile = Write::Put(Profile {
                    version,
                    status: Status::Downloading,
                    media_id: None,
                    source: Source::Url,
                    source_url: url.to_owned(),
                    failure: None,
                    create_time_ms: state.profile.as_ref().map_or(now, |p| p.create_time_ms),
                    update_time_ms: now,
                });
                Ok(Some(change))
            })
            .await?;
        let view = done
            .and_then(|applied| applied.view)
            .ok_or_else(|| Error::internal("a download began with no state"))?;
        let job = DownloadJob {
            user: self.user.clone(),
            version: view.profile.version,
            url: url.to_owned(),
            attempts: 0,
            crop,
        };
        Ok((view, job))
    }

    /// Moves the download of `version` to `status` (DOWNLOADING or PROCESSING). False
    /// when the download was superseded.
    pub async fn mark_download(&self, version: u64, status: Status) -> Result<bool> {
        let done = self
            .apply(EventKind::StatusChanged, |state| {
                let Some(profile) = state.profile.as_ref().filter(|p| p.version == version) else {
                    return Ok(None);
                };
                if profile.status == status {
                    return Ok(None);
                }
                let mut change = Change::on(self.user, state);
                change.profile = Write::Put(Profile {
                    status,
                    update_time_ms: now_millis(),
                    ..profile.clone()
                });
                Ok(Some(change))
            })
            .await?;
        if done.is_some() {
            return Ok(true);
        }
        Ok(self
            .state()
            .await?
            .profile
            .is_some_and(|p| p.version == version))
    }

    /// Completes the download of `version` with its media item (blobs written): READY.
    /// False when the download was superseded (nothing changed).
    pub async fn complete_download(&self, version: u64, media: Media) -> Result<bool> {
        let done = self
            .apply(EventKind::StatusChanged, |state| {
                let Some(profile) = state.profile.as_ref().filter(|p| p.version == version) else {
                    return Ok(None);
                };
                if state.job.as_ref().is_none_or(|job| job.version != version) {
                    return Ok(None);
                }
                let mut change = Change::on(self.user, state);
                change.media.push(MediaWrite::Insert(media.clone()));
                change.job = Write::Remove;
                change.profile = Write::Put(Profile {
                    status: Status::Ready,
                    media_id: Some(media.id.clone()),
                    update_time_ms: now_millis(),
                    ..profile.clone()
                });
                Ok(Some(change))
            })
            .await?;
        Ok(done.is_some())
    }

    /// Fails the download of `version`: FAILED with `failure`, the job removed.
    /// Whether it failed the profile (false: superseded meanwhile).
    pub async fn fail_download(&self, version: u64, failure: Failure) -> Result<bool> {
        self.apply(EventKind::StatusChanged, |state| {
            let Some(profile) = state.profile.as_ref().filter(|p| p.version == version) else {
                return Ok(None);
            };
            let mut change = Change::on(self.user, state);
            change.job = Write::Remove;
            change.profile = Write::Put(Profile {
                status: Status::Failed,
                failure: Some(failure.clone()),
                update_time_ms: now_millis(),
                ..profile.clone()
            });
            Ok(Some(change))
        })
        .await
        .map(|applied| applied.is_some())
    }

    /// Counts a failed attempt on the download of `version` (no event: the profile does
    /// not change). False when the download is no longer pending.
    pub async fn record_attempt(&self, version: u64, attempts: u32) -> Result<bool> {
        self.owner
            .meta
            .record_attempt(self.user, version, attempts)
            .await
    }

    /// Reads the state, lets `decide` turn it into a change (None: nothing to do), and
    /// commits it; decides again if another writer changed the state meanwhile. A
    /// change that writes the profile publishes one event of `kind`. Returns None when
    /// nothing was done, else what the change left.
    async fn apply(
        &self,
        kind: EventKind,
        decide: impl Fn(&UserState) -> Result<Option<Change>>,
    ) -> Result<Option<Applied>> {
        let _timer = StageTimer::new("commit");
        for _ in 0..CONFLICT_ATTEMPTS {
            let state = self.state().await?;
            let change = match decide(&state) {
                Ok(Some(change)) => change,
                Ok(None) => return Ok(None),
                // A crop decided while the active item changed under another replica.
                Err(Error::Conflict) => continue,
                Err(error) => return Err(error),
            };
            let mut change = change;
            let after = self.state_after(&state, &change).await?;
            let writes_profile = change.profile != Write::Keep;
            let version = change.version.unwrap_or(state.version);
            if writes_profile {
                change.event = Some(ChangeEvent {
                    kind,
                    after: after.clone(),
                });
            }
            match self.owner.meta.commit(change).await {
                Ok(committed) => {
                    let view =
                        after.map(|(profile, media)| self.owner.view(self.user, profile, media));
                    if writes_profile {
                        self.owner
                            .events
                            .committed(committed.sequence, kind, self.user, view.clone())
                            .await?;
                    }
                    return Ok(Some(Applied { view, version }));
                }
                Err(Error::Conflict) => {}
                Err(error) => return Err(error),
            }
        }
        Err(Error::Unavailable(format!(
            "user {}'s profile kept changing during the change; retry",
            self.user
        )))
    }

    /// The profile and active media item `change` leaves.
    async fn state_after(
        &self,
        state: &UserState,
        change: &Change,
    ) -> Result<Option<(Profile, Option<Media>)>> {
        let profile = match &change.profile {
            Write::Put(profile) => profile.clone(),
            Write::Remove => return Ok(None),
            Write::Keep => match &state.profile {
                Some(profile) => profile.clone(),
                None => return Ok(None),
            },
        };
        let Some(id) = profile.media_id.as_deref() else {
            return Ok(Some((profile, None)));
        };
        let written = change.media.iter().find_map(|write| match write {
            MediaWrite::Insert(media) | MediaWrite::Replace(media) if media.id == id => {
                Some(media.clone())
            }
            _ => None,
        });
        let media = match written {
            Some(media) => Some(media),
            None => match &state.media {
                Some(media) if media.id == id => Some(media.clone()),
                _ => self.owner.meta.media(id).await?,
            },
        };
        Ok(Some((profile, media)))
    }
}
