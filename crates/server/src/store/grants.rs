//! Grants: the access an approved request gives, its lifecycle (provisioning,
//! active, revoking…), the leases of the work on it and its sealed credentials.

use super::{Db, Store, Ts, Tx};
use crate::error::Result;
use firedoor_core::lifecycle::{EndReason, GrantState};

pub struct Grants<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn grants(&self) -> Grants<'_> {
        Grants(self.db())
    }
}

impl Tx {
    pub fn grants(&mut self) -> Grants<'_> {
        Grants(self.db())
    }
}

/// `SELECT <every grant column> FROM grants <rest>`.
macro_rules! grant_query {
    ($rest:literal) => {
        concat!(
            "SELECT id, request_id, bundle, flow, holder, state, duration_secs, activated_at, expires_at, ended_at, end_reason, ended_by, last_error, attempts, next_attempt_at FROM grants",
            $rest
        )
    };
}

row_struct! {
    #[derive(Debug, Clone)]
    pub struct GrantRow {
        pub id: String,
        pub request_id: String,
        pub bundle: String,
        pub flow: String,
        pub holder: String,
        pub state: String,
        pub duration_secs: i64,
        pub activated_at: Option<Ts>,
        pub expires_at: Ts,
        pub ended_at: Option<Ts>,
        pub end_reason: Option<String>,
        pub ended_by: Option<String>,
        pub last_error: Option<String>,
        pub attempts: i64,
        pub next_attempt_at: Option<Ts>,
    }
}

/// A grant about to be stored (in `provisioning`).
pub struct NewGrant<'a> {
    pub id: &'a str,
    pub request_id: &'a str,
    pub bundle: &'a str,
    pub flow: &'a str,
    pub holder: &'a str,
    pub duration_secs: i64,
    pub expires_at: Ts,
    /// The lease of the first provisioning attempt.
    pub next_attempt_at: Ts,
}

impl Grants<'_> {
    pub async fn load(&mut self, id: &str) -> Result<Option<GrantRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            GrantRow,
            grant_query!(" WHERE id = $1"),
            id
        )?)
    }

    /// A grant's state as stored.
    pub async fn state(&mut self, id: &str) -> Result<Option<String>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            String,
            "SELECT state FROM grants WHERE id = $1",
            id
        )?)
    }

    /// A grant's (holder, state, sealed credentials).
    pub async fn credentials(
        &mut self,
        id: &str,
    ) -> Result<Option<(String, String, Option<Vec<u8>>)>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (String, String, Option<Vec<u8>>),
            "SELECT holder, state, credentials FROM grants WHERE id = $1",
            id
        )?)
    }

    /// The grants `holder` holds, latest expiry first, at most `limit`; with `live`,
    /// only those whose access may still exist ([`GrantState::LIVE`]).
    pub async fn of_holder(
        &mut self,
        holder: &str,
        live: bool,
        limit: i64,
    ) -> Result<Vec<GrantRow>> {
        let [a, b, c, d] = GrantState::LIVE.map(GrantState::as_str);
        let live = live.then_some("live");
        Ok(fetch!(
            self.0,
            fetch_all,
            GrantRow,
            grant_query!(
                " WHERE holder = $1 AND ($2 IS NULL OR state IN ($3, $4, $5, $6))
                  ORDER BY expires_at DESC, id DESC LIMIT $7"
            ),
            holder,
            live,
            a,
            b,
            c,
            d,
            limit
        )?)
    }

    /// One page of every grant, latest expiry first: at most `limit`, after `after`
    /// (the expiry and id of the previous page's last grant); with `live`, only
    /// those whose access may still exist.
    pub async fn page(
        &mut self,
        live: bool,
        after: Option<(Ts, &str)>,
        limit: i64,
    ) -> Result<Vec<GrantRow>> {
        let [a, b, c, d] = GrantState::LIVE.map(GrantState::as_str);
        let live = live.then_some("live");
        // Two texts rather than one with `$n IS NULL OR (…) < (…)`: PostgreSQL's generic
        // plan keeps the row comparison an index condition only when it always applies.
        Ok(match after {
            None => fetch!(
                self.0,
                fetch_all,
                GrantRow,
                grant_query!(
                    " WHERE ($1 IS NULL OR state IN ($2, $3, $4, $5))
                      ORDER BY expires_at DESC, id DESC LIMIT $6"
                ),
                live,
                a,
                b,
                c,
                d,
                limit
            )?,
            Some((at, id)) => fetch!(
                self.0,
                fetch_all,
                GrantRow,
                grant_query!(
                    " WHERE ($1 IS NULL OR state IN ($2, $3, $4, $5)) AND (expires_at, id) < ($6, $7)
                      ORDER BY expires_at DESC, id DESC LIMIT $8"
                ),
                live,
                a,
                b,
                c,
                d,
                at,
                id,
                limit
            )?,
        })
    }

    pub async fn insert(&mut self, g: &NewGrant<'_>) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO grants (id, request_id, bundle, flow, holder, state, duration_secs, expires_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, 'provisioning', $6, $7, $8)",
            g.id,
            g.request_id,
            g.bundle,
            g.flow,
            g.holder,
            g.duration_secs,
            g.expires_at,
            g.next_attempt_at
        )?;
        Ok(())
    }

    /// A provisioning grant becomes active with its clock and sealed credentials.
    pub async fn activate(
        &mut self,
        id: &str,
        activated_at: Ts,
        expires_at: Ts,
        sealed: &[u8],
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET state = 'active', activated_at = $1, expires_at = $2, credentials = $3,
               last_error = NULL, next_attempt_at = NULL WHERE id = $4 AND state = 'provisioning'",
            activated_at,
            expires_at,
            sealed,
            id
        )?;
        Ok(n == 1)
    }

    /// A provisioning grant failed for good after `attempts`.
    pub async fn fail_provisioning(
        &mut self,
        id: &str,
        attempts: i64,
        error: &str,
        now: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET state = 'failed', attempts = $1, last_error = $2, ended_at = $3, next_attempt_at = NULL
             WHERE id = $4 AND state = 'provisioning'",
            attempts,
            error,
            now,
            id
        )?;
        Ok(n == 1)
    }

    /// A provisioning attempt failed; the next one is due at `next_attempt_at`.
    pub async fn retry_provisioning(
        &mut self,
        id: &str,
        attempts: i64,
        error: &str,
        next_attempt_at: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET attempts = $1, last_error = $2, next_attempt_at = $3 WHERE id = $4 AND state = 'provisioning'",
            attempts,
            error,
            next_attempt_at,
            id
        )?;
        Ok(n == 1)
    }

    /// Moves an active grant to `revoking` for `reason`, leased until `lease_until`;
    /// false if it was not active.
    pub async fn claim_end(
        &mut self,
        id: &str,
        reason: EndReason,
        by: &str,
        lease_until: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET state = 'revoking', end_reason = $1, ended_by = $2, next_attempt_at = $3
             WHERE id = $4 AND state = 'active'",
            reason.as_str(),
            by,
            lease_until,
            id
        )?;
        Ok(n == 1)
    }

    /// A revoking (or revoke_failed) grant ended in `state`: its credentials are
    /// wiped. False if it was not ending.
    pub async fn end(&mut self, id: &str, state: GrantState, now: Ts) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET state = $1, ended_at = $2, credentials = NULL, last_error = NULL, next_attempt_at = NULL
             WHERE id = $3 AND state IN ('revoking', 'revoke_failed')",
            state.as_str(),
            now,
            id
        )?;
        Ok(n == 1)
    }

    /// Removing a grant's access failed; retried at `next_attempt_at`.
    pub async fn end_failed(
        &mut self,
        id: &str,
        attempts: i64,
        error: &str,
        next_attempt_at: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET state = 'revoke_failed', attempts = $1, last_error = $2, next_attempt_at = $3
             WHERE id = $4 AND state IN ('revoking', 'revoke_failed')",
            attempts,
            error,
            next_attempt_at,
            id
        )?;
        Ok(n == 1)
    }

    /// Moves an active grant's expiry from `from` to `to` (compare-and-set on the
    /// expiry); its expiring notice is due again.
    pub async fn cas_expiry(&mut self, id: &str, from: Ts, to: Ts) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET expires_at = $1, expiring_notified = 0 WHERE id = $2 AND state = 'active' AND expires_at = $3",
            to,
            id,
            from
        )?;
        Ok(n == 1)
    }

    pub async fn set_last_error(&mut self, id: &str, error: &str) -> Result<()> {
        exec!(
            self.0,
            "UPDATE grants SET last_error = $1 WHERE id = $2",
            error,
            id
        )?;
        Ok(())
    }

    /// Active grants whose expiry has come at `now`.
    pub async fn due_to_expire(&mut self, now: Ts, limit: i64) -> Result<Vec<GrantRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            GrantRow,
            grant_query!(" WHERE state = 'active' AND expires_at <= $1 LIMIT $2"),
            now,
            limit
        )?)
    }

    /// (id, state) of grants with provisioning or removal work due at `now`.
    pub async fn due_retries(&mut self, now: Ts, limit: i64) -> Result<Vec<(String, String)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, String),
            "SELECT id, state FROM grants WHERE state IN ('revoking', 'revoke_failed', 'provisioning')
             AND next_attempt_at <= $1 LIMIT $2",
            now,
            limit
        )?)
    }

    /// Takes the lease of a grant's due work until `lease_until`, if it is still
    /// in `state` and due at `now`; false if another broker took it.
    pub async fn claim_retry(
        &mut self,
        id: &str,
        state: &str,
        now: Ts,
        lease_until: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET next_attempt_at = $1 WHERE id = $2 AND state = $3 AND next_attempt_at <= $4",
            lease_until,
            id,
            state,
            now
        )?;
        Ok(n == 1)
    }

    /// Active grants expiring by `by` whose holder was not told yet.
    pub async fn expiring_unnotified(&mut self, by: Ts, limit: i64) -> Result<Vec<GrantRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            GrantRow,
            grant_query!(
                " WHERE state = 'active' AND expiring_notified = 0 AND expires_at <= $1 LIMIT $2"
            ),
            by,
            limit
        )?)
    }

    /// Marks an active grant's expiring notice sent; false if it already was.
    pub async fn mark_expiring_notified(&mut self, id: &str) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE grants SET expiring_notified = 1 WHERE id = $1 AND expiring_notified = 0 AND state = 'active'",
            id
        )?;
        Ok(n == 1)
    }

    /// Makes every claimed provisioning or removal due at `now` (after a restart).
    pub async fn release_leases(&mut self, now: Ts) -> Result<()> {
        exec!(
            self.0,
            "UPDATE grants SET next_attempt_at = $1 WHERE state IN ('revoking', 'provisioning')",
            now
        )?;
        Ok(())
    }
}
