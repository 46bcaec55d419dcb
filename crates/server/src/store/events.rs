//! Live events, one row per recipient; their ids are the event streams' ids.

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Events<'a> {
    db: Db<'a>,
}

impl Store {
    pub fn events(&self) -> Events<'_> {
        Events { db: self.db() }
    }
}

impl Tx {
    pub fn events(&mut self) -> Events<'_> {
        Events { db: self.db() }
    }
}

impl Events<'_> {
    /// Stores one event for `recipient`. On PostgreSQL the insert also queues a
    /// NOTIFY to every replica, sent by the commit (a trigger, migration 0003).
    pub async fn insert(&mut self, recipient: &str, kind: &str, at: Ts, body: &str) -> Result<()> {
        exec!(
            self.db,
            "INSERT INTO events (recipient, kind, at, body) VALUES ($1, $2, $3, $4)",
            recipient,
            kind,
            at,
            body
        )?;
        Ok(())
    }

    /// Stores one event for each of `recipients` (distinct). On PostgreSQL in one
    /// statement: a unit of work stores its events while it holds the audit lock.
    pub async fn insert_for(
        &mut self,
        recipients: &[&str],
        kind: &str,
        at: Ts,
        body: &str,
    ) -> Result<()> {
        match self.db.reborrow() {
            super::Db::Pg(c) if recipients.len() > 1 => {
                sqlx::query(
                    "INSERT INTO events (recipient, kind, at, body)
                     SELECT r, $2, $3, $4 FROM unnest($1::text[]) WITH ORDINALITY AS t(r, n) ORDER BY n",
                )
                .bind(recipients)
                .bind(kind)
                .bind(at)
                .bind(body)
                .execute(c)
                .await?;
            }
            _ => {
                for r in recipients {
                    self.insert(r, kind, at, body).await?;
                }
            }
        }
        Ok(())
    }

    /// (id, body) of `recipient`'s events after id `after`, oldest first.
    pub async fn after(
        &mut self,
        recipient: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>> {
        Ok(fetch!(
            self.db,
            fetch_all,
            (i64, String),
            "SELECT id, body FROM events WHERE recipient = $1 AND id > $2 ORDER BY id LIMIT $3",
            recipient,
            after,
            limit
        )?)
    }

    /// Deletes the events stored before `before` (by id, so that no event at or
    /// below the new watermark is left) and raises the watermark. Returns how many
    /// rows went.
    pub async fn prune(&mut self, before: Ts) -> Result<u64> {
        let Some(through) = scalar!(
            self.db,
            fetch_one,
            Option<i64>,
            "SELECT MAX(id) FROM events WHERE at < $1",
            before
        )?
        else {
            return Ok(0);
        };
        let n = exec!(self.db, "DELETE FROM events WHERE id <= $1", through)?;
        exec!(
            self.db,
            "INSERT INTO events_pruned (one, through) VALUES (1, $1)
             ON CONFLICT (one) DO UPDATE SET through = excluded.through
             WHERE events_pruned.through < excluded.through",
            through
        )?;
        Ok(n)
    }

    /// The highest event id pruned so far (0: none).
    pub async fn pruned_through(&mut self) -> Result<i64> {
        Ok(scalar!(
            self.db,
            fetch_optional,
            i64,
            "SELECT through FROM events_pruned WHERE one = 1"
        )?
        .unwrap_or(0))
    }

    /// (id, recipient, body) of every event after id `after`, oldest first: what
    /// the broker's fan-out hands to its open streams.
    pub async fn all_after(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, String)>> {
        Ok(fetch!(
            self.db,
            fetch_all,
            (i64, String, String),
            "SELECT id, recipient, body FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            limit
        )?)
    }

    /// The highest event id stored (0: none).
    pub async fn last_id(&mut self) -> Result<i64> {
        Ok(scalar!(
            self.db,
            fetch_one,
            i64,
            "SELECT COALESCE(MAX(id), 0) FROM events"
        )?)
    }
}
