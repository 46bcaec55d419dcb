//! Counts for `/metrics`, read at scrape time.

use super::{Store, Ts};
use crate::error::Result;

/// Requests and grants by state, and the `expires_at` of the most overdue grant
/// that is still live (or failing to end) at `now`.
pub struct Stats {
    pub requests: Vec<(String, i64)>,
    pub grants: Vec<(String, i64)>,
    pub oldest_overdue: Option<Ts>,
}

impl Store {
    pub async fn stats(&self, now: Ts) -> Result<Stats> {
        let requests = fetch!(
            self.db(),
            fetch_all,
            (String, i64),
            "SELECT state, COUNT(*) FROM requests GROUP BY state"
        )?;
        let grants = fetch!(
            self.db(),
            fetch_all,
            (String, i64),
            "SELECT state, COUNT(*) FROM grants GROUP BY state"
        )?;
        let oldest_overdue = scalar!(
            self.db(),
            fetch_one,
            Option<Ts>,
            "SELECT MIN(expires_at) FROM grants
             WHERE state IN ('active', 'revoking', 'revoke_failed') AND expires_at <= $1",
            now
        )?;
        Ok(Stats {
            requests,
            grants,
            oldest_overdue,
        })
    }
}
