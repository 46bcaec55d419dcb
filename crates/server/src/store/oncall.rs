//! On-call overrides and the cache of synced schedules (the schedules themselves
//! are in the policy, see [`firedoor_core::oncall`]).

use super::{Db, Store, Ts, Tx};
use crate::error::Result;
use firedoor_core::oncall::Override;

pub struct OnCall<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn oncall(&self) -> OnCall<'_> {
        OnCall(self.db())
    }
}

impl Tx {
    pub fn oncall(&mut self) -> OnCall<'_> {
        OnCall(self.db())
    }
}

row_struct! {
    /// An override as stored.
    #[derive(Debug, Clone)]
    pub struct OverrideRow {
        pub id: String,
        pub schedule: String,
        pub user_name: String,
        pub starts_at: Ts,
        pub ends_at: Ts,
        pub reason: Option<String>,
        pub created_by: String,
        pub created_at: Ts,
        pub removed_at: Option<Ts>,
    }
}

impl OverrideRow {
    pub fn to_override(&self) -> Override {
        Override {
            id: self.id.clone(),
            schedule: self.schedule.clone(),
            user: self.user_name.clone(),
            starts_at: self.starts_at.0,
            ends_at: self.ends_at.0,
        }
    }
}

/// An override to store.
pub struct NewOverride<'s> {
    pub id: &'s str,
    pub schedule: &'s str,
    pub user: &'s str,
    pub starts_at: Ts,
    pub ends_at: Ts,
    pub reason: Option<&'s str>,
    pub created_by: &'s str,
    pub created_at: Ts,
}

impl OnCall<'_> {
    pub async fn insert(&mut self, o: &NewOverride<'_>) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO oncall_overrides (id, schedule, user_name, starts_at, ends_at, reason, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            o.id,
            o.schedule,
            o.user,
            o.starts_at,
            o.ends_at,
            o.reason,
            o.created_by,
            o.created_at
        )?;
        Ok(())
    }

    /// The overrides not removed that have not ended at `now` (running or to come),
    /// soonest first.
    pub async fn current(&mut self, now: Ts) -> Result<Vec<OverrideRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            OverrideRow,
            "SELECT id, schedule, user_name, starts_at, ends_at, reason, created_by, created_at, removed_at
             FROM oncall_overrides WHERE removed_at IS NULL AND ends_at > $1
             ORDER BY starts_at, id",
            now
        )?)
    }

    pub async fn load(&mut self, id: &str) -> Result<Option<OverrideRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            OverrideRow,
            "SELECT id, schedule, user_name, starts_at, ends_at, reason, created_by, created_at, removed_at
             FROM oncall_overrides WHERE id = $1",
            id
        )?)
    }

    /// Marks an override removed at `now`; false if it already was.
    pub async fn remove(&mut self, id: &str, now: Ts) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE oncall_overrides SET removed_at = $1 WHERE id = $2 AND removed_at IS NULL",
            now,
            id
        )?;
        Ok(n == 1)
    }
}

row_struct! {
    /// A synced schedule's cache and how its last attempt went.
    #[derive(Debug, Clone)]
    pub struct SyncRow {
        pub schedule: String,
        /// Which provider schedule it is ([`firedoor_core::oncall::SyncSpec::source`]).
        pub source: String,
        /// [`firedoor_core::oncall::Fetched`] as JSON; `None`: never fetched.
        pub fetched_json: Option<String>,
        /// The last successful fetch.
        pub fetched_at: Option<Ts>,
        pub last_attempt: Option<Ts>,
        /// Why the last attempt failed (`None`: it did not).
        pub last_error: Option<String>,
        /// Failed attempts in a row.
        pub failures: i64,
        pub next_attempt_at: Ts,
    }
}

/// `SELECT <every oncall_sync column> FROM oncall_sync <rest>`.
macro_rules! sync_query {
    ($rest:literal) => {
        concat!(
            "SELECT schedule, source, fetched_json, fetched_at, last_attempt, last_error, failures, next_attempt_at FROM oncall_sync",
            $rest
        )
    };
}

impl OnCall<'_> {
    /// Every synced schedule's cache row.
    pub async fn sync_rows(&mut self) -> Result<Vec<SyncRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            SyncRow,
            sync_query!(" ORDER BY schedule")
        )?)
    }

    pub async fn sync_row(&mut self, schedule: &str) -> Result<Option<SyncRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            SyncRow,
            sync_query!(" WHERE schedule = $1"),
            schedule
        )?)
    }

    /// Makes sure a synced schedule has a row, due at `now` if new.
    pub async fn ensure_sync(&mut self, schedule: &str, source: &str, now: Ts) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO oncall_sync (schedule, source, next_attempt_at) VALUES ($1, $2, $3)
             ON CONFLICT (schedule) DO NOTHING",
            schedule,
            source,
            now
        )?;
        Ok(())
    }

    /// Takes the next fetch of `schedule` if it is due at `now`, or at once if the
    /// row is of another `source` (the policy changed: what it holds is dropped).
    /// A compare-and-set, so one replica fetches; no one else takes it before
    /// `lease_until`. False if it is not due or someone took it.
    pub async fn claim_sync(
        &mut self,
        schedule: &str,
        source: &str,
        now: Ts,
        lease_until: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE oncall_sync SET next_attempt_at = $1, last_attempt = $2,
                 fetched_json = CASE WHEN source = $4 THEN fetched_json END,
                 fetched_at = CASE WHEN source = $4 THEN fetched_at END,
                 failures = CASE WHEN source = $4 THEN failures ELSE 0 END,
                 last_error = CASE WHEN source = $4 THEN last_error END,
                 source = $4
             WHERE schedule = $3 AND (next_attempt_at <= $2 OR source <> $4)",
            lease_until,
            now,
            schedule,
            source
        )?;
        Ok(n == 1)
    }

    /// A fetch succeeded: replaces the cache.
    pub async fn sync_succeeded(
        &mut self,
        schedule: &str,
        fetched_json: &str,
        fetched_at: Ts,
        next_attempt_at: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "UPDATE oncall_sync SET fetched_json = $1, fetched_at = $2,
                 last_attempt = $2, last_error = NULL, failures = 0, next_attempt_at = $3
             WHERE schedule = $4",
            fetched_json,
            fetched_at,
            next_attempt_at,
            schedule
        )?;
        Ok(())
    }

    /// A fetch failed: the cache stays as it was; the error is kept.
    pub async fn sync_failed(
        &mut self,
        schedule: &str,
        error: &str,
        at: Ts,
        next_attempt_at: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "UPDATE oncall_sync SET last_attempt = $1, last_error = $2, failures = failures + 1,
                 next_attempt_at = $3
             WHERE schedule = $4",
            at,
            error,
            next_attempt_at,
            schedule
        )?;
        Ok(())
    }
}
