//! Break-glass secrets: their values (sealed with the broker key), and their
//! rotation state: when it is due, the claim (lease) of the rotation running, the
//! pending value and the failures (see [`crate::breakglass`]).

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Secrets<'a>(pub(crate) Db<'a>);

/// Why a rotation is running: it decides what its claim needs (see
/// [`Secrets::claim_rotation`]) and is named in its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationTrigger {
    /// Due after an unlock, an eligibility change or its maximum age (the worker).
    Due,
    /// An admin asked for it.
    Manual,
}

impl RotationTrigger {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RotationTrigger::Due => "due",
            RotationTrigger::Manual => "manual",
        }
    }
}

impl Store {
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets(self.db())
    }
}

impl Tx {
    pub fn secrets(&mut self) -> Secrets<'_> {
        Secrets(self.db())
    }
}

row_struct! {
    /// A secret as stored (its name is the key it was read by).
    #[derive(Debug, Clone)]
    pub struct SecretRow {
        /// 0 while no value has been stored.
        pub version: i64,
        /// Sealed with the broker key.
        pub value: Option<Vec<u8>>,
        /// A rotation's new value (sealed), kept until the target took it.
        pub pending_value: Option<Vec<u8>>,
        pub updated_at: Option<Ts>,
        pub rotation_due_at: Option<Ts>,
        pub rotation_attempts: i64,
        pub last_rotation_error: Option<String>,
        /// Lease of the rotation running right now.
        pub rotating_until: Option<Ts>,
        pub rotation_reason: Option<String>,
    }
}

impl Secrets<'_> {
    pub async fn get(&mut self, name: &str) -> Result<Option<SecretRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            SecretRow,
            "SELECT version, value, pending_value, updated_at, rotation_due_at, rotation_attempts, last_rotation_error, rotating_until, rotation_reason FROM secrets
             WHERE name = $1",
            name
        )?)
    }

    /// The secret's version, if it has a row.
    pub async fn version(&mut self, name: &str) -> Result<Option<i64>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            i64,
            "SELECT version FROM secrets WHERE name = $1",
            name
        )?)
    }

    /// Every stored value: (name, version, sealed value).
    pub async fn stored_values(&mut self) -> Result<Vec<(String, i64, Vec<u8>)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, i64, Vec<u8>),
            "SELECT name, version, value FROM secrets WHERE version > 0 AND value IS NOT NULL"
        )?)
    }

    /// Secrets with a value and no rotation due: (name, version, updated_at).
    pub async fn not_due(&mut self) -> Result<Vec<(String, i64, Option<Ts>)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, i64, Option<Ts>),
            "SELECT name, version, updated_at FROM secrets WHERE version > 0 AND rotation_due_at IS NULL"
        )?)
    }

    /// Makes sure the secret has a row (version 0 when new).
    pub async fn ensure(&mut self, name: &str) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO secrets (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            name
        )?;
        Ok(())
    }

    /// Stores `value` (sealed) as version `version + 1` if the secret is still at
    /// `version`, clearing any rotation state; false if it moved.
    pub async fn store_value(
        &mut self,
        name: &str,
        version: i64,
        value: &[u8],
        now: Ts,
    ) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE secrets SET version = $1, value = $2, pending_value = NULL, updated_at = $3,
               rotation_due_at = NULL, rotation_attempts = 0, next_rotation_at = NULL,
               last_rotation_error = NULL, rotating_until = NULL, rotation_reason = NULL
             WHERE name = $4 AND version = $5",
            version + 1,
            value,
            now,
            name,
            version
        )? == 1)
    }

    /// Makes a rotation due at `at` (or keeps an earlier due time), if the secret is
    /// still at `version`.
    pub async fn mark_due(&mut self, name: &str, version: i64, at: Ts, reason: &str) -> Result<()> {
        exec!(
            self.0,
            "UPDATE secrets SET rotation_due_at = $1, rotation_reason = $2
             WHERE name = $3 AND version = $4 AND (rotation_due_at IS NULL OR rotation_due_at > $5)",
            at,
            reason,
            name,
            version,
            at
        )?;
        Ok(())
    }

    /// Secrets whose rotation is due at `now`, not backing off and not claimed:
    /// (name, rotation attempts), at most 100.
    pub async fn due_for_rotation(&mut self, now: Ts) -> Result<Vec<(String, i64)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, i64),
            "SELECT name, rotation_attempts FROM secrets WHERE rotation_due_at IS NOT NULL AND rotation_due_at <= $1
               AND (next_rotation_at IS NULL OR next_rotation_at <= $2)
               AND (rotating_until IS NULL OR rotating_until <= $3) LIMIT 100",
            now,
            now,
            now
        )?)
    }

    /// A due secret that must be changed by hand: records `error` as its first
    /// (and only) attempt; false if that was done before or nothing is due.
    pub async fn flag_manual_rotation(&mut self, name: &str, error: &str) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE secrets SET rotation_attempts = 1, last_rotation_error = $1
             WHERE name = $2 AND rotation_attempts = 0 AND rotation_due_at IS NOT NULL",
            error,
            name
        )? == 1)
    }

    /// Claims the rotation of `name` until `until`; false while another claim holds.
    /// A [`RotationTrigger::Due`] claim also needs the rotation to be due still (as
    /// [`Self::due_for_rotation`] says): a worker that listed the secret before
    /// another one finished rotating it must not rotate it a second time. A
    /// [`RotationTrigger::Manual`] claim (an administrator's "rotate now") makes it due
    /// at `now` if it was not.
    pub async fn claim_rotation(
        &mut self,
        name: &str,
        now: Ts,
        until: Ts,
        trigger: RotationTrigger,
    ) -> Result<bool> {
        let due_only = trigger == RotationTrigger::Due;
        Ok(exec!(
            self.0,
            "UPDATE secrets SET rotating_until = $1, rotation_due_at = COALESCE(rotation_due_at, $2)
             WHERE name = $3 AND (rotating_until IS NULL OR rotating_until <= $4)
               AND ($5 = FALSE OR (rotation_due_at IS NOT NULL AND rotation_due_at <= $6
                    AND (next_rotation_at IS NULL OR next_rotation_at <= $7)))",
            until,
            now,
            name,
            now,
            due_only,
            now,
            now
        )? == 1)
    }

    /// Stores a rotation's new value (sealed) before the target is changed.
    pub async fn set_pending(&mut self, name: &str, sealed: &[u8]) -> Result<()> {
        exec!(
            self.0,
            "UPDATE secrets SET pending_value = $1 WHERE name = $2",
            sealed,
            name
        )?;
        Ok(())
    }

    /// The pending value (sealed), if the secret has a row.
    pub async fn pending_value(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            Vec<u8>,
            "SELECT pending_value FROM secrets WHERE name = $1",
            name
        )?)
    }

    /// Makes the pending value `pending` current as version `version + 1`, clearing
    /// the rotation state, if the secret is still at `version` with that pending
    /// value; false if a value was stored meanwhile.
    pub async fn promote_pending(
        &mut self,
        name: &str,
        version: i64,
        pending: Option<&[u8]>,
        now: Ts,
    ) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE secrets SET value = pending_value, pending_value = NULL, version = version + 1, updated_at = $1,
               rotation_due_at = NULL, rotation_attempts = 0, next_rotation_at = NULL, last_rotation_error = NULL,
               rotating_until = NULL, rotation_reason = NULL
             WHERE name = $2 AND version = $3 AND pending_value = $4",
            now,
            name,
            version,
            pending
        )? == 1)
    }

    /// A failed rotation: releases the claim, records the attempt and when to retry
    /// (the rotation stays due, from `now` if it was not).
    pub async fn record_rotation_failure(
        &mut self,
        name: &str,
        attempts: i64,
        next_at: Ts,
        error: &str,
        now: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "UPDATE secrets SET rotation_attempts = $1, next_rotation_at = $2, last_rotation_error = $3,
               rotating_until = NULL, rotation_due_at = COALESCE(rotation_due_at, $4)
             WHERE name = $5",
            attempts,
            next_at,
            error,
            now,
            name
        )?;
        Ok(())
    }

    /// Releases every rotation claim (nothing is in flight after a restart).
    pub async fn release_leases(&mut self) -> Result<()> {
        exec!(
            self.0,
            "UPDATE secrets SET rotating_until = NULL WHERE rotating_until IS NOT NULL"
        )?;
        Ok(())
    }
}
