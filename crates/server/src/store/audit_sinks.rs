//! The cursor of each audit sink (the last record its receiver accepted), the lease
//! of the replica delivering it, and its backoff after a failure (see
//! [`crate::ops::siem`]).

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct AuditSinks<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn audit_sinks(&self) -> AuditSinks<'_> {
        AuditSinks(self.db())
    }
}

impl Tx {
    pub fn audit_sinks(&mut self) -> AuditSinks<'_> {
        AuditSinks(self.db())
    }
}

row_struct! {
    /// A sink's delivery state as stored.
    #[derive(Debug, Clone)]
    pub struct AuditSinkRow {
        pub name: String,
        pub delivered_seq: i64,
        pub delivered_at: Option<Ts>,
        pub lease_until: Option<Ts>,
        pub next_attempt_at: Ts,
        pub failures: i64,
        pub last_error: Option<String>,
        pub last_error_at: Option<Ts>,
    }
}

/// `SELECT <every shown column> FROM audit_sinks <rest>`.
macro_rules! sink_query {
    ($rest:literal) => {
        concat!(
            "SELECT name, delivered_seq, delivered_at, lease_until, next_attempt_at, failures, last_error, last_error_at FROM audit_sinks",
            $rest
        )
    };
}

impl AuditSinks<'_> {
    /// Makes the row of sink `name` if there is none (cursor 0, due `now`).
    pub async fn ensure(&mut self, name: &str, now: Ts) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO audit_sinks (name, delivered_seq, next_attempt_at) VALUES ($1, 0, $2)
             ON CONFLICT (name) DO NOTHING",
            name,
            now
        )?;
        Ok(())
    }

    pub async fn load(&mut self, name: &str) -> Result<Option<AuditSinkRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            AuditSinkRow,
            sink_query!(" WHERE name = $1"),
            name
        )?)
    }

    pub async fn all(&mut self) -> Result<Vec<AuditSinkRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            AuditSinkRow,
            sink_query!(" ORDER BY name")
        )?)
    }

    /// Takes the lease of sink `name` as `token` until `lease_until`, if it is due
    /// at `now` and nobody holds it; false if it is not due or another replica
    /// delivers it. One statement: two replicas cannot both take it.
    pub async fn claim(
        &mut self,
        name: &str,
        token: &str,
        now: Ts,
        lease_until: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE audit_sinks SET lease_token = $1, lease_until = $2
             WHERE name = $3 AND next_attempt_at <= $4 AND (lease_until IS NULL OR lease_until <= $4)",
            token,
            lease_until,
            name,
            now
        )?;
        Ok(n == 1)
    }

    /// The receiver accepted the records up to `to_seq`: moves the cursor from
    /// `from_seq`, clears the failures and renews the lease, if `token` still
    /// holds it and the cursor is where this delivery read from; false otherwise
    /// (the lease ran out and another replica took over: it delivers from there).
    pub async fn advance(
        &mut self,
        name: &str,
        token: &str,
        from_seq: i64,
        to_seq: i64,
        now: Ts,
        lease_until: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE audit_sinks SET delivered_seq = $1, delivered_at = $2, lease_until = $3,
                 failures = 0, last_error = NULL, last_error_at = NULL
             WHERE name = $4 AND lease_token = $5 AND delivered_seq = $6 AND $1 > delivered_seq",
            to_seq,
            now,
            lease_until,
            name,
            token,
            from_seq
        )?;
        Ok(n == 1)
    }

    /// Gives the lease back (caught up, or out of time for this pass): the sink is
    /// due again at `next_attempt_at`.
    pub async fn release(&mut self, name: &str, token: &str, next_attempt_at: Ts) -> Result<()> {
        exec!(
            self.0,
            "UPDATE audit_sinks SET lease_token = NULL, lease_until = NULL, next_attempt_at = $1
             WHERE name = $2 AND lease_token = $3",
            next_attempt_at,
            name,
            token
        )?;
        Ok(())
    }

    /// A delivery failed: notes `error`, counts the failure, and gives the lease
    /// back until `next_attempt_at`. The cursor stays.
    pub async fn failed(
        &mut self,
        name: &str,
        token: &str,
        error: &str,
        now: Ts,
        next_attempt_at: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "UPDATE audit_sinks SET failures = failures + 1, last_error = $1, last_error_at = $2,
                 next_attempt_at = $3, lease_token = NULL, lease_until = NULL
             WHERE name = $4 AND lease_token = $5",
            error,
            now,
            next_attempt_at,
            name,
            token
        )?;
        Ok(())
    }

    /// After a restart nothing is in flight (a single broker on SQLite).
    pub async fn release_leases(&mut self) -> Result<()> {
        exec!(
            self.0,
            "UPDATE audit_sinks SET lease_token = NULL, lease_until = NULL WHERE lease_token IS NOT NULL"
        )?;
        Ok(())
    }
}
