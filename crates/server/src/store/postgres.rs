//! The shared store: PostgreSQL, for several broker replicas (migrations in
//! `migrations/postgres`).
//!
//! Writers take turns on one transaction-scoped advisory lock ([`WRITE_LOCK`]),
//! taken first in every write transaction and released by its commit or rollback.
//! That keeps the guarantees the operations were written against on SQLite —
//! compare-and-set transitions over facts read in the same transaction, claims of
//! due work by lease, one line of audit records, event ids in commit order (a
//! stream that has seen id N never later finds a new id below N) — true across any
//! number of replicas. Connector calls happen outside transactions, so the lock is
//! held for a handful of statements only.
//!
//! Live events: a transaction that inserts events also sends
//! `NOTIFY firedoor_events` (a statement trigger on `events`, migration 0003), which
//! PostgreSQL delivers at commit and never for a rollback; every replica listens ([`listen_events`]) and wakes its streams, which then read the
//! new rows from the shared table.

use crate::error::Result;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// The advisory lock key every write transaction takes ("FIRE" in ASCII).
pub const WRITE_LOCK: i64 = 0x4649_5245;
/// The channel that says "live events were committed".
pub const EVENTS_CHANNEL: &str = "firedoor_events";

pub async fn open(url: &str) -> Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)?.application_name("firedoor-server");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

/// `BEGIN` and the [`WRITE_LOCK`], sent as one message (one round trip).
const BEGIN_LOCKED: &str = "BEGIN; SELECT pg_advisory_xact_lock(1179210309)";

pub(super) async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool.begin_with(BEGIN_LOCKED).await?)
}

/// Calls `wake` for every commit with live events on any replica, and once after
/// each (re)connection of the listener (a notification sent while it was
/// reconnecting is not delivered, so streams look again). Runs until `stop`.
pub async fn listen_events(
    pool: PgPool,
    wake: impl Fn() + Send + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "event listener: cannot connect to the store; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        if let Err(e) = listener.listen(EVENTS_CHANNEL).await {
            tracing::warn!(error = %e, "event listener: LISTEN failed; retrying");
            continue;
        }
        wake();
        loop {
            tokio::select! {
                n = listener.try_recv() => match n {
                    Ok(Some(_)) => wake(),
                    // The connection was lost and re-established: look again.
                    Ok(None) => wake(),
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener lost the store; reconnecting");
                        break;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_begin_statement_takes_the_write_lock() {
        assert_eq!(
            BEGIN_LOCKED,
            format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        );
    }
}
