//! The shared store: PostgreSQL, for several broker replicas (migrations in
//! `migrations/postgres`).
//!
//! Writers take turns on transaction-scoped advisory locks, released by the
//! transaction's commit or rollback:
//!
//! - [`WRITE_LOCK`]: a unit of work that may touch anything takes it exclusively,
//!   first; it then runs alone, exactly as on SQLite — compare-and-set transitions
//!   over facts read in the same transaction, claims of due work by lease, the audit
//!   chain and event ids are all serialised.
//! - The hot lifecycle steps (a new request, an approval, provisioning, a revoke and
//!   its end) touch one request or one grant. They take [`WRITE_LOCK`] *shared*
//!   plus an exclusive lock on their own request or grant ([`Scope::Only`]), so
//!   steps of different lifecycles run side by side on every replica, and two steps
//!   of one lifecycle (two approvers of one request on two replicas) still take
//!   turns. A unit that may touch anything waits for all of them and they for it.
//! - [`AUDIT_LOCK`]: taken by a shared-scope unit as it commits, just before it
//!   appends its audit records and stores its events, and held through the commit;
//!   the same round trip reads the head to chain onto from `audit_high` (the
//!   highest audit seq written and its hash, kept by a trigger).
//!   So the audit chain stays one line and event ids are handed out in commit
//!   order (a stream that has seen id N never later finds a new id below N).
//!
//! Connector calls happen outside transactions, so locks are held for a handful of
//! statements only.
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
/// The class of the two-key advisory locks on one request or grant.
const ITEM_LOCK_CLASS: i32 = 0x4649_5249;
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

/// The two-key advisory lock of one item (a request or a grant, by its id): a
/// 32-bit digest of the key. Two keys sharing a digest only take turns needlessly.
fn item_lock(key: &str) -> i32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    i32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// `BEGIN`, [`WRITE_LOCK`] shared and the items' locks in a fixed order (so two
/// units locking the same items never wait on each other crosswise), sent as one
/// message. The lock keys are numbers computed here, never text from a caller.
fn begin_shared_sql(keys: &[String]) -> String {
    let mut locks: Vec<i32> = keys.iter().map(|k| item_lock(k)).collect();
    locks.sort_unstable();
    locks.dedup();
    let mut sql = format!("BEGIN; SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})");
    for l in locks {
        sql.push_str(&format!(
            "; SELECT pg_advisory_xact_lock({ITEM_LOCK_CLASS}, {l})"
        ));
    }
    sql
}

pub(super) async fn begin_shared(
    pool: &PgPool,
    keys: &[String],
) -> Result<Transaction<'static, Postgres>> {
    // Safe: the text holds only constants and numbers computed here.
    Ok(pool
        .begin_with(sqlx::AssertSqlSafe(begin_shared_sql(keys)))
        .await?)
}

/// Locks one more item inside a shared-scope transaction (found only after a read:
/// the grant an extension request extends). Items locked later than the first are
/// always grants after requests, never the other way round.
pub(super) async fn lock_item(conn: &mut sqlx::PgConnection, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(ITEM_LOCK_CLASS)
        .bind(item_lock(key))
        .execute(conn)
        .await?;
    Ok(())
}

/// The advisory lock a shared-scope unit of work holds from its first audit append
/// or event to its commit ("FIRA").
pub const AUDIT_LOCK: i64 = 0x4649_5241;

/// [`AUDIT_LOCK`], then the head to chain onto, in one message: the second
/// statement runs after the lock is granted, with its own snapshot, so it sees
/// what the previous holder committed. (A row lock on `audit_high` would do both in
/// one statement, but its waiters all wake at each commit and race for the row:
/// measured 20% fewer lifecycles/s than this queue.) `None` when the log is empty
/// or the mark names no record.
pub(super) async fn lock_audit(conn: &mut sqlx::PgConnection) -> Result<Option<(i64, String)>> {
    use sqlx::Row;
    const SQL: &str = "SELECT pg_advisory_xact_lock(1179210305); SELECT seq, hash FROM audit_high";
    let rows = sqlx::raw_sql(SQL).fetch_all(conn).await?;
    let head = rows.iter().find(|r| r.len() == 2).map(|r| {
        (
            r.try_get::<i64, _>(0).unwrap_or(0),
            r.try_get::<Option<String>, _>(1).unwrap_or(None),
        )
    });
    Ok(match head {
        Some((seq, Some(hash))) if seq > 0 => Some((seq, hash)),
        _ => None,
    })
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
    fn a_shared_begin_locks_its_items_in_one_order() {
        let a = begin_shared_sql(&["r1".into(), "g2".into()]);
        let b = begin_shared_sql(&["g2".into(), "r1".into(), "r1".into()]);
        assert_eq!(a, b);
        assert!(a.starts_with(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock_shared({WRITE_LOCK}); SELECT pg_advisory_xact_lock({ITEM_LOCK_CLASS}, "
        )));
        assert_eq!(a.matches("pg_advisory_xact_lock(").count(), 2);
        assert_ne!(item_lock("r1"), item_lock("r2"));
    }

    #[test]
    fn the_audit_lock_key_is_the_constant() {
        assert_eq!(AUDIT_LOCK, 1179210305);
    }

    #[test]
    fn the_begin_statement_takes_the_write_lock() {
        assert_eq!(
            BEGIN_LOCKED,
            format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        );
    }
}
