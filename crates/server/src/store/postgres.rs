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
//! - The audit chain and live events are not written by units of work at all.
//!   A unit writes its records and events to `audit_pending` and `events_pending`
//!   in its own transaction (one statement as it commits), so no unit waits for
//!   another's commit. After its commit it waits for a *chaining round*
//!   ([`begin_round`], [`Round::finish`]): under [`AUDIT_LOCK`], the round reads
//!   the head and every pending record, chains and signs them in order, appends
//!   them to `audit`, moves every pending event to `events` (ids handed out in
//!   one statement) and commits. Rounds of all replicas take turns on the lock,
//!   so the chain stays one line and a stream that has seen event id N never
//!   later finds a new id below N. One round serves every unit that committed
//!   before it began (see [`crate::store::Store::chain_pending`]); a round is a
//!   handful of statements whatever it carries.
//!
//!   A unit's answer comes after its round, so what a client was told happened is
//!   in the signed chain. If the unit's process dies between its commit and the
//!   round, its records wait in `audit_pending` (written in the same transaction
//!   as the change they record) and the next round of any replica chains them; the
//!   worker runs one on every pass. For that short time a pending record is
//!   unsigned: someone who can write to the database could change it before it is
//!   chained, as they could change the state it records; once chained, it is
//!   covered by the chain and its signature like every other record.
//!
//! Connector calls happen outside transactions, so locks are held for a handful of
//! statements only.
//!
//! Live events: a round that moves events into `events` also sends
//! `NOTIFY firedoor_events` (a statement trigger on `events`, migrations 0003 and
//! 0016: only when rows were inserted), which PostgreSQL delivers at commit and
//! never for a rollback; every replica listens ([`listen_events`]) and wakes its
//! streams, which then read the new rows from the shared table.

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

/// Connections a broker opens to the store at most, unless the URL says otherwise.
pub const DEFAULT_POOL_MAX_CONNS: u32 = 16;

/// The URL parameter that caps a broker's connections to the store (the name
/// pgx uses). It is the broker's, not PostgreSQL's: taken out of the URL before
/// the driver sees it.
pub const POOL_MAX_CONNS: &str = "pool_max_conns";

/// Splits `pool_max_conns=N` off a `postgres://` URL: the URL without it, and N
/// (default [`DEFAULT_POOL_MAX_CONNS`]).
pub fn pool_size(url: &str) -> Result<(String, u32)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_POOL_MAX_CONNS));
    };
    let mut size = DEFAULT_POOL_MAX_CONNS;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((POOL_MAX_CONNS, v)) => {
                size = v.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    crate::error::Error::Config(format!(
                        "{POOL_MAX_CONNS} in the database URL must be a whole number from 1 to 1000, not '{v}'"
                    ))
                })?;
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, size))
}

/// Connects to the store (at most `pool_max_conns` connections, see
/// [`pool_size`]) and brings its schema up to date.
///
/// Fewer connections can mean more throughput: every connection is a server
/// process, and on a store server with few cores, many processes with a transaction
/// open each only take turns on the cores and on each other's locks. The
/// benchmark (`cargo bench --bench broker`) measured two brokers on a 2-core
/// machine at 5 connections each 1.1-1.3x as fast as at 16.
pub async fn open(url: &str) -> Result<PgPool> {
    let (url, size) = pool_size(url)?;
    // No JIT: the broker's statements are short, and the planner's guesses for the
    // pending tables (rarely analysed, nearly always empty) made PostgreSQL compile
    // the chaining round's read to machine code each time: 60-130 ms for one row.
    let opts = PgConnectOptions::from_str(&url)?
        .application_name("firedoor-server")
        .options([("jit", "off")]);
    let pool = PgPoolOptions::new()
        .max_connections(size)
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

/// The advisory lock a chaining round holds from its read of the pending records
/// to its commit ("FIRA"): rounds of all replicas take turns, so the chain stays one
/// line.
pub const AUDIT_LOCK: i64 = 0x4649_5241;

/// An audit record written by a unit of work, waiting in `audit_pending` for a
/// chaining round to give it its seq, hash and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecord {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

/// A live event waiting in `events_pending` for its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub recipient: String,
    pub kind: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub body: String,
}

/// One column of `rows`, to bind as an array (`unnest` turns the arrays back into
/// rows: one statement for any number of them).
fn col<T, U: Clone>(rows: &[T], f: impl Fn(&T) -> &U) -> Vec<U> {
    rows.iter().map(|x| f(x).clone()).collect()
}

/// Writes a unit of work's audit records and live events to the pending tables in
/// one statement (no lock beyond the unit's own).
pub(super) async fn pend(
    conn: &mut sqlx::PgConnection,
    records: &[PendingRecord],
    events: &[PendingEvent],
) -> Result<()> {
    sqlx::query(
        "WITH a AS (
             INSERT INTO audit_pending (at, actor, action, subject, details)
             SELECT at, actor, action, subject, details
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                  WITH ORDINALITY AS t(at, actor, action, subject, details, n)
             ORDER BY n)
         INSERT INTO events_pending (recipient, kind, at, body)
         SELECT recipient, kind, at, body
         FROM unnest($6::text[], $7::text[], $8::timestamptz[], $9::text[])
              WITH ORDINALITY AS t(recipient, kind, at, body, n)
         ORDER BY n",
    )
    .bind(col(records, |r| &r.at))
    .bind(col(records, |r| &r.actor))
    .bind(col(records, |r| &r.action))
    .bind(col(records, |r| &r.subject))
    .bind(col(records, |r| &r.details))
    .bind(col(events, |e| &e.recipient))
    .bind(col(events, |e| &e.kind))
    .bind(col(events, |e| &e.at))
    .bind(col(events, |e| &e.body))
    .execute(conn)
    .await?;
    Ok(())
}

/// A chaining round, begun: it holds [`AUDIT_LOCK`] and has read the head to chain
/// onto and the records waiting, oldest first.
///
/// Its transaction is driven by hand on a pooled connection, so that `BEGIN`, the
/// lock and the read go in one message (the lock is then held for two round trips:
/// the append and the commit). A round dropped before its commit (an error, or its
/// caller gone) closes the connection instead of returning it to the pool:
/// PostgreSQL then rolls the transaction back and releases the lock.
pub struct Round {
    conn: sqlx::pool::PoolConnection<Postgres>,
    done: bool,
    /// (seq, hash) of the last record; `None` for an empty log.
    pub head: Option<(i64, String)>,
    /// Whether the last record is signed, or the log is empty (every round's last
    /// record is signed; one that is not was added without the broker key).
    pub head_signed: bool,
    /// (pending id, record).
    pub pending: Vec<(i64, PendingRecord)>,
}

impl Drop for Round {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}

/// `BEGIN`, [`AUDIT_LOCK`], then the head (from `audit_high`, kept by a trigger)
/// and the pending records in one statement that runs once the lock is granted,
/// with a snapshot that sees what the previous round committed.
const BEGIN_ROUND: &str = "BEGIN; SELECT pg_advisory_xact_lock(1179210305); \
     SELECT p.id, p.at, p.actor, p.action, p.subject, p.details, h.seq, h.hash, \
     (SELECT a.signature IS NOT NULL FROM audit a WHERE a.seq = h.seq) \
     FROM audit_high h LEFT JOIN audit_pending p ON TRUE ORDER BY p.id";

/// Begins a round (one round trip).
pub(super) async fn begin_round(pool: &PgPool) -> Result<Round> {
    use sqlx::Row;
    let conn = pool.acquire().await?;
    let mut round = Round {
        conn,
        done: false,
        head: None,
        head_signed: false,
        pending: Vec::new(),
    };
    let rows = sqlx::raw_sql(BEGIN_ROUND)
        .fetch_all(&mut *round.conn)
        .await?;
    for r in rows.iter().filter(|r| r.len() == 9) {
        if round.head.is_none() {
            let seq: i64 = r.try_get(6)?;
            let hash: Option<String> = r.try_get(7)?;
            round.head = hash.filter(|_| seq > 0).map(|h| (seq, h));
            round.head_signed = r.try_get::<Option<bool>, _>(8)?.unwrap_or(false);
        }
        if let Some(id) = r.try_get::<Option<i64>, _>(0)? {
            round.pending.push((
                id,
                PendingRecord {
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    subject: r.try_get(4)?,
                    details: r.try_get(5)?,
                },
            ));
        }
    }
    if round.head.is_none() {
        // No mark, or a mark above the last record (`store copy`): the records say.
        let last: Option<(i64, String, bool)> = sqlx::query_as(
            "SELECT seq, hash, signature IS NOT NULL FROM audit ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *round.conn)
        .await?;
        round.head_signed = last.as_ref().is_none_or(|l| l.2);
        round.head = last.map(|(seq, hash, _)| (seq, hash));
    }
    Ok(round)
}

impl Round {
    /// Appends `records` (the pending ones, chained and signed, in order), moves
    /// every pending event to `events` (ids in their pending order), clears what was
    /// moved and commits. Returns the events moved.
    pub async fn finish(mut self, records: &[firedoor_core::audit::AuditRecord]) -> Result<u64> {
        let ids: Vec<i64> = self.pending.iter().map(|(id, _)| *id).collect();
        let moved = sqlx::query(
            "WITH a AS (
                 INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash, signature)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::text[], $8::text[], $9::text[])),
             da AS (DELETE FROM audit_pending WHERE id = ANY($10::bigint[])),
             de AS (DELETE FROM events_pending RETURNING id, recipient, kind, at, body)
             INSERT INTO events (recipient, kind, at, body)
             SELECT recipient, kind, at, body FROM de ORDER BY id",
        )
        .bind(col(records, |r| &r.seq))
        .bind(col(records, |r| &r.at))
        .bind(col(records, |r| &r.actor))
        .bind(col(records, |r| &r.action))
        .bind(col(records, |r| &r.subject))
        .bind(col(records, |r| &r.details))
        .bind(col(records, |r| &r.prev_hash))
        .bind(col(records, |r| &r.hash))
        .bind(col(records, |r| &r.signature))
        .bind(ids)
        .execute(&mut *self.conn)
        .await?
        .rows_affected();
        sqlx::raw_sql("COMMIT").execute(&mut *self.conn).await?;
        self.done = true;
        Ok(moved)
    }
}

/// Vacuums the pending tables: every row is deleted a moment after it is written,
/// faster than autovacuum comes by, and each round scans what is left. Outside any
/// transaction.
pub(super) async fn vacuum_pending(pool: &PgPool) -> Result<()> {
    sqlx::raw_sql("VACUUM (SKIP_LOCKED) audit_pending, events_pending")
        .execute(pool)
        .await?;
    Ok(())
}

/// How many audit records wait for a chaining round.
pub(super) async fn pending_records(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit_pending")
        .fetch_one(pool)
        .await?)
}

/// Calls `wake` for every commit with live events on any replica, and once after
/// each (re)connection of the listener (a notification sent while it was
/// reconnecting is not delivered, so streams look again). Runs until `stop`.
///
/// The listener holds its connection for as long as it runs, so it gets one of its
/// own beside `pool`'s (same server and role): taken from `pool`, it would leave
/// one fewer for the work than `pool_max_conns` says, and none at all with 1.
pub async fn listen_events(
    pool: PgPool,
    wake: impl Fn() + Send + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with((*pool.connect_options()).clone());
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

    /// A round whose caller goes away before its commit (a client that hangs up
    /// mid-request) must not leave the audit lock held by a pooled connection:
    /// every later write would wait for it forever.
    #[tokio::test]
    async fn a_round_dropped_before_its_commit_releases_the_audit_lock() {
        let url = firedoor_testkit::shared_server().fresh_database();
        let pool = open(&url).await.unwrap();
        let first = begin_round(&pool).await.unwrap();
        drop(first);
        for _ in 0..3 {
            let next = tokio::time::timeout(Duration::from_secs(10), begin_round(&pool))
                .await
                .expect("the lock was released")
                .unwrap();
            assert_eq!(next.finish(&[]).await.unwrap(), 0);
        }
        pool.close().await;
    }

    #[test]
    fn the_pool_size_is_taken_out_of_the_url() {
        let u = "postgres://b:pw@db/firedoor";
        assert_eq!(
            pool_size(u).unwrap(),
            (u.to_string(), DEFAULT_POOL_MAX_CONNS)
        );
        assert_eq!(
            pool_size("postgres://b:pw@db/f?pool_max_conns=5").unwrap(),
            ("postgres://b:pw@db/f".to_string(), 5)
        );
        assert_eq!(
            pool_size("postgres://b:pw@db/f?sslmode=require&pool_max_conns=3&application_name=x")
                .unwrap(),
            (
                "postgres://b:pw@db/f?sslmode=require&application_name=x".to_string(),
                3
            )
        );
        for bad in ["0", "-1", "x", "", "1001"] {
            let e = pool_size(&format!("postgres://b:pw@db/f?pool_max_conns={bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("pool_max_conns") && e.contains("1 to 1000"),
                "{e}"
            );
            assert!(!e.contains("pw"), "{e}");
        }
    }

    /// A broker with a small pool still serves a unit of work and its chaining
    /// round (the round takes a connection of its own after the unit's is back).
    #[tokio::test]
    async fn a_pool_of_one_connection_serves_units_and_rounds() {
        let url = firedoor_testkit::shared_server().fresh_database();
        let pool = open(&format!("{url}?pool_max_conns=1")).await.unwrap();
        assert_eq!(pool.options().get_max_connections(), 1);
        let mut tx = begin(&pool).await.unwrap();
        pend(&mut tx, &[], &[]).await.unwrap();
        tx.commit().await.unwrap();
        let round = tokio::time::timeout(Duration::from_secs(10), begin_round(&pool))
            .await
            .expect("the unit's connection was back in the pool")
            .unwrap();
        assert_eq!(round.finish(&[]).await.unwrap(), 0);
        pool.close().await;
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
