//! Who the store knows and who covers on-call: the users, the on-call overrides
//! not yet over and the synced schedules' last fetched shifts. Nearly every call
//! needs them (the caller's on-call schedules, a notice's audience) and they
//! change rarely, so each process keeps one copy, tagged with the store's
//! `directory_version`: a number every change of the three tables bumps in its own
//! transaction (triggers, see the migrations). A caller reads only the number (in
//! the statement that checks its token, or at the start of its unit of work) and
//! uses the copy if it has that number; otherwise it reads the rows and keeps them.
//! So a copy is never used once a change has committed that the caller could have
//! read, on any replica.

use super::oncall::{OverrideRow, SyncRow};
use super::users::UserRow;
use super::{Db, Store, Ts, Tx};
use crate::error::Result;
use std::sync::Arc;

/// The directory as of one version.
#[derive(Debug)]
pub struct Directory {
    pub version: i64,
    /// When it was read: overrides that had ended then are not in it.
    pub read_at: Ts,
    pub users: Vec<UserRow>,
    /// Overrides not removed and not over at `read_at`, soonest first.
    pub overrides: Vec<OverrideRow>,
    pub sync: Vec<SyncRow>,
}

impl Directory {
    /// The overrides not removed and not over at `now` (not before `read_at`),
    /// soonest first: what `OnCall::current(now)` reads.
    pub fn overrides_at(&self, now: Ts) -> Vec<OverrideRow> {
        self.overrides
            .iter()
            .filter(|o| o.ends_at.0 > now.0)
            .cloned()
            .collect()
    }
}

/// This process's copy.
#[derive(Default)]
pub(crate) struct Cached(std::sync::Mutex<Option<Arc<Directory>>>);

impl Cached {
    /// The copy, if it is of `version` and was read no later than `now` (a copy
    /// read later than `now` lacks overrides that ended in between).
    fn get(&self, version: i64, now: Ts) -> Option<Arc<Directory>> {
        let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        c.as_ref()
            .filter(|d| d.version == version && d.read_at.0 <= now.0)
            .cloned()
    }

    fn put(&self, d: Arc<Directory>) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Never replace a copy with an older one (two readers racing).
        if c.as_ref().is_none_or(|old| old.version <= d.version) {
            *c = Some(d);
        }
    }
}

/// The store's directory version now.
async fn version(mut db: Db<'_>) -> Result<i64> {
    Ok(scalar!(
        db,
        fetch_one,
        i64,
        "SELECT n FROM directory_version"
    )?)
}

/// This process's copy if it is of `version` and was read no later than `now`;
/// otherwise the rows, read through `db` and kept. The rows are read after
/// `version` was: should a change commit in between, they are newer than their
/// tag, and the next caller finds a new number and reads again; never older.
async fn as_of(cached: &Cached, mut db: Db<'_>, version: i64, now: Ts) -> Result<Arc<Directory>> {
    if let Some(d) = cached.get(version, now) {
        return Ok(d);
    }
    let d = Arc::new(Directory {
        version,
        read_at: now,
        users: super::users::Users(db.reborrow()).all().await?,
        overrides: super::oncall::OnCall(db.reborrow()).current(now).await?,
        sync: super::oncall::OnCall(db.reborrow()).sync_rows().await?,
    });
    cached.put(d.clone());
    Ok(d)
}

impl Store {
    /// The directory as of `version`, a number the caller has just read (with its
    /// token): this process's copy, or read on the pool and kept.
    pub async fn directory_as_of(&self, version: i64, now: Ts) -> Result<Arc<Directory>> {
        as_of(&self.inner.directory, self.db(), version, now).await
    }
}

impl Tx {
    /// The directory as this unit of work sees it at `now`: one read of the
    /// version, and the rows only if this process's copy is not of that version.
    pub async fn directory(&mut self, now: Ts) -> Result<Arc<Directory>> {
        let v = version(self.db()).await?;
        let store = self.store().clone();
        as_of(&store.inner.directory, self.db(), v, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn at(secs: i64) -> Ts {
        Ts(Utc.timestamp_opt(1_900_000_000, 0).unwrap() + Duration::seconds(secs))
    }

    fn copy(version: i64, read_at: Ts) -> Arc<Directory> {
        Arc::new(Directory {
            version,
            read_at,
            users: Vec::new(),
            overrides: Vec::new(),
            sync: Vec::new(),
        })
    }

    /// A copy serves only callers that read its version, at or after the time it
    /// was read (one read later lacks overrides that ended in between), and a
    /// slower reader of an older version never replaces it.
    #[test]
    fn a_copy_serves_its_version_from_its_time_on() {
        let c = Cached::default();
        assert!(c.get(1, at(0)).is_none());
        c.put(copy(2, at(10)));
        assert!(c.get(2, at(10)).is_some());
        assert!(c.get(2, at(11)).is_some());
        assert!(c.get(2, at(9)).is_none(), "read after the caller's now");
        assert!(c.get(1, at(10)).is_none());
        assert!(c.get(3, at(10)).is_none());
        c.put(copy(1, at(20)));
        assert_eq!(
            c.get(2, at(20)).unwrap().version,
            2,
            "not replaced by an older one"
        );
        c.put(copy(3, at(20)));
        assert!(c.get(2, at(20)).is_none());
        assert_eq!(c.get(3, at(20)).unwrap().version, 3);
    }
}
