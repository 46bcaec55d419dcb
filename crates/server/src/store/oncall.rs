//! On-call overrides (the schedules themselves are in the policy, see
//! [`firedoor_core::oncall`]).

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
