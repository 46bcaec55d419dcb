//! Incidents opened by the policy's sources, and the deliveries already handled.

use super::{Db, Store, Ts, Tx};
use crate::error::Result;
use firedoor_core::incident::Signal;

pub struct Incidents<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn incidents(&self) -> Incidents<'_> {
        Incidents(self.db())
    }
}

impl Tx {
    pub fn incidents(&mut self) -> Incidents<'_> {
        Incidents(self.db())
    }
}

row_struct! {
    /// An incident as stored (one per provider incident and matching rule).
    #[derive(Debug, Clone)]
    pub struct IncidentRow {
        pub id: String,
        pub source: String,
        pub external_id: String,
        pub rule: String,
        pub title: String,
        pub url: Option<String>,
        /// `open` or `resolved`.
        pub state: String,
        pub opened_at: Ts,
        pub resolved_at: Option<Ts>,
    }
}

/// `SELECT <every incident column> FROM incidents <rest>`.
macro_rules! incident_query {
    ($rest:literal) => {
        concat!(
            "SELECT id, source, external_id, rule, title, url, state, opened_at, resolved_at FROM incidents",
            $rest
        )
    };
}

/// What opening an incident did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    New(String),
    /// It had been resolved and fires again.
    Reopened(String),
    /// It was open already (a repeated notification).
    AlreadyOpen(String),
}

impl Incidents<'_> {
    pub async fn load(&mut self, id: &str) -> Result<Option<IncidentRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            IncidentRow,
            incident_query!(" WHERE id = $1"),
            id
        )?)
    }

    async fn find(
        &mut self,
        source: &str,
        external_id: &str,
        rule: &str,
    ) -> Result<Option<IncidentRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            IncidentRow,
            incident_query!(" WHERE source = $1 AND external_id = $2 AND rule = $3"),
            source,
            external_id,
            rule
        )?)
    }

    /// Opens the incident `s` reports under `rule` (new, reopened, or already
    /// open: then nothing changes).
    pub async fn open(&mut self, new_id: &str, s: &Signal, rule: &str, now: Ts) -> Result<Opened> {
        match self.find(&s.source, &s.external_id, rule).await? {
            Some(r) if r.state == "open" => Ok(Opened::AlreadyOpen(r.id)),
            Some(r) => {
                exec!(
                    self.0,
                    "UPDATE incidents SET state = 'open', opened_at = $1, resolved_at = NULL, title = $2 WHERE id = $3",
                    now,
                    &s.title,
                    &r.id
                )?;
                Ok(Opened::Reopened(r.id))
            }
            None => {
                exec!(
                    self.0,
                    "INSERT INTO incidents (id, source, external_id, rule, title, url, state, opened_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'open', $7)",
                    new_id,
                    &s.source,
                    &s.external_id,
                    rule,
                    &s.title,
                    s.url.as_deref(),
                    now
                )?;
                Ok(Opened::New(new_id.to_string()))
            }
        }
    }

    /// Resolves the open incident `external_id` of `source` under `rule`; its id,
    /// or `None` if it was not open.
    pub async fn resolve(
        &mut self,
        source: &str,
        external_id: &str,
        rule: &str,
        now: Ts,
    ) -> Result<Option<String>> {
        let Some(r) = self.find(source, external_id, rule).await? else {
            return Ok(None);
        };
        let n = exec!(
            self.0,
            "UPDATE incidents SET state = 'resolved', resolved_at = $1 WHERE id = $2 AND state = 'open'",
            now,
            &r.id
        )?;
        Ok((n == 1).then_some(r.id))
    }

    /// Open incidents first, then the latest resolved ones, at most `limit`.
    pub async fn recent(&mut self, limit: i64) -> Result<Vec<IncidentRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            IncidentRow,
            incident_query!(
                " ORDER BY CASE WHEN state = 'open' THEN 0 ELSE 1 END, opened_at DESC, id LIMIT $1"
            ),
            limit
        )?)
    }

    /// The active grants of requests made for incident `id`: (grant id, flow,
    /// expires_at).
    pub async fn active_grants(&mut self, id: &str) -> Result<Vec<(String, String, Ts)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, String, Ts),
            "SELECT g.id, g.flow, g.expires_at FROM grants g JOIN requests r ON r.grant_id = g.id
             WHERE r.incident_id = $1 AND g.state = 'active' ORDER BY g.id",
            id
        )?)
    }

    /// Forgets the deliveries handled before `before` (they can no longer be
    /// replayed: their events are too old to be accepted).
    pub async fn prune_deliveries(&mut self, before: Ts) -> Result<u64> {
        Ok(exec!(
            self.0,
            "DELETE FROM webhook_deliveries WHERE received_at < $1",
            before
        )?)
    }

    /// Notes that delivery `delivery_id` of `source` was handled; false if it
    /// already was (a replay).
    pub async fn first_delivery(
        &mut self,
        source: &str,
        delivery_id: &str,
        now: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "INSERT INTO webhook_deliveries (source, delivery_id, received_at) VALUES ($1, $2, $3)
             ON CONFLICT (source, delivery_id) DO NOTHING",
            source,
            delivery_id,
            now
        )?;
        Ok(n == 1)
    }
}
