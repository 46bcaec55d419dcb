//! Notifications on their way to chat and webhooks: one delivery per event and
//! channel, leased by the worker that sends it, retried, dead-lettered.

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Outbound<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn outbound(&self) -> Outbound<'_> {
        Outbound(self.db())
    }
}

impl Tx {
    pub fn outbound(&mut self) -> Outbound<'_> {
        Outbound(self.db())
    }
}

row_struct! {
    /// A delivery as stored.
    #[derive(Debug, Clone)]
    pub struct DeliveryRow {
        pub id: String,
        pub channel: String,
        pub kind: String,
        /// The JSON payload (`firedoor_core::outbound::Payload`).
        pub payload: String,
        /// `pending`, `delivered` or `dead`.
        pub state: String,
        pub attempts: i64,
        pub next_attempt_at: Ts,
        pub last_error: Option<String>,
        pub last_status: Option<i64>,
        pub created_at: Ts,
        pub updated_at: Ts,
    }
}

macro_rules! delivery_query {
    ($rest:literal) => {
        concat!(
            "SELECT id, channel, kind, payload, state, attempts, next_attempt_at, last_error, last_status, created_at, updated_at FROM outbound",
            $rest
        )
    };
}

impl Outbound<'_> {
    pub async fn insert(
        &mut self,
        id: &str,
        channel: &str,
        kind: &str,
        payload: &str,
        now: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO outbound (id, channel, kind, payload, state, attempts, next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7)",
            id,
            channel,
            kind,
            payload,
            now,
            now,
            now
        )?;
        Ok(())
    }

    pub async fn load(&mut self, id: &str) -> Result<Option<DeliveryRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            DeliveryRow,
            delivery_query!(" WHERE id = $1"),
            id
        )?)
    }

    /// Pending deliveries due at `now`, oldest first.
    pub async fn due(&mut self, now: Ts, limit: i64) -> Result<Vec<DeliveryRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DeliveryRow,
            delivery_query!(
                " WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY created_at, id LIMIT $2"
            ),
            now,
            limit
        )?)
    }

    /// Takes a due delivery for this worker until `lease_until` (another broker
    /// then skips it); false if someone else took it first.
    pub async fn claim(&mut self, id: &str, seen: Ts, lease_until: Ts) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE outbound SET next_attempt_at = $1
             WHERE id = $2 AND state = 'pending' AND next_attempt_at = $3",
            lease_until,
            id,
            seen
        )?;
        Ok(n == 1)
    }

    /// Records an attempt: `state` becomes `delivered`, `pending` (retry at `next`)
    /// or `dead`.
    #[allow(clippy::too_many_arguments)]
    pub async fn attempted(
        &mut self,
        id: &str,
        state: &str,
        attempts: i64,
        next: Ts,
        error: Option<&str>,
        status: Option<i64>,
        now: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "UPDATE outbound SET state = $1, attempts = $2, next_attempt_at = $3, last_error = $4,
                last_status = $5, updated_at = $6 WHERE id = $7",
            state,
            attempts,
            next,
            error,
            status,
            now,
            id
        )?;
        Ok(())
    }

    /// Deliveries (in `state` if given), newest first.
    pub async fn list(&mut self, state: Option<&str>, limit: i64) -> Result<Vec<DeliveryRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DeliveryRow,
            delivery_query!(
                " WHERE ($1 IS NULL OR state = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
            ),
            state,
            state,
            limit
        )?)
    }

    /// A dead delivery is tried again from now, attempts counted afresh; false if it
    /// is not dead.
    pub async fn revive(&mut self, id: &str, now: Ts) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE outbound SET state = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $2
             WHERE id = $3 AND state = 'dead'",
            now,
            now,
            id
        )?;
        Ok(n == 1)
    }

    /// Forgets deliveries done before `before`; dead ones stay until retried.
    pub async fn prune_delivered(&mut self, before: Ts) -> Result<u64> {
        Ok(exec!(
            self.0,
            "DELETE FROM outbound WHERE state = 'delivered' AND updated_at < $1",
            before
        )?)
    }
}
