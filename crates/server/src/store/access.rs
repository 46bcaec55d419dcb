//! Where access ends across aggregates (see [`crate::access`]): a disabled user's
//! live grants and pending requests.

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Access<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn access(&self) -> Access<'_> {
        Access(self.db())
    }
}

impl Tx {
    pub fn access(&mut self) -> Access<'_> {
        Access(self.db())
    }
}

impl Access<'_> {
    /// Claims every active grant of `holder` for revocation by `ended_by` (the
    /// same state change as a revoke), the claim due at `next_attempt_at`; returns
    /// their ids.
    pub async fn revoke_live_grants_of(
        &mut self,
        holder: &str,
        ended_by: &str,
        next_attempt_at: Ts,
    ) -> Result<Vec<String>> {
        Ok(scalar!(
            self.0,
            fetch_all,
            String,
            "UPDATE grants SET state = 'revoking', end_reason = 'revoked', ended_by = $1, next_attempt_at = $2
             WHERE holder = $3 AND state = 'active' RETURNING id",
            ended_by,
            next_attempt_at,
            holder
        )?)
    }

    /// Cancels every pending request of `requester`; returns how many.
    pub async fn cancel_pending_requests_of(&mut self, requester: &str, now: Ts) -> Result<u64> {
        Ok(exec!(
            self.0,
            "UPDATE requests SET state = 'cancelled', updated_at = $1 WHERE requester = $2 AND state = 'pending'",
            now,
            requester
        )?)
    }

    /// Whether a disabled user holds an active grant.
    pub async fn disabled_hold_live_grants(&mut self) -> Result<bool> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            String,
            "SELECT id FROM grants WHERE state = 'active'
               AND holder IN (SELECT name FROM users WHERE disabled_at IS NOT NULL) LIMIT 1"
        )?
        .is_some())
    }

    /// Claims every active grant of a disabled user for revocation by the system,
    /// the claim due at `next_attempt_at`; returns their ids.
    pub async fn revoke_live_grants_of_disabled(
        &mut self,
        next_attempt_at: Ts,
    ) -> Result<Vec<String>> {
        Ok(scalar!(
            self.0,
            fetch_all,
            String,
            "UPDATE grants SET state = 'revoking', end_reason = 'revoked', ended_by = 'system', next_attempt_at = $1
             WHERE state = 'active' AND holder IN (SELECT name FROM users WHERE disabled_at IS NOT NULL)
             RETURNING id",
            next_attempt_at
        )?)
    }
}
