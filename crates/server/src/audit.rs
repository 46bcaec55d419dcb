//! Appending to and checking the hash-chained audit log. Appends happen inside the
//! same transaction as the state change they record.

use crate::clock::ts;
use crate::error::{Error, Result};
use crate::store::Tx;
use chrono::{DateTime, Utc};
use firedoor_core::audit::{
    record_hash, verify_chain, AuditAction, AuditRecord, ChainError, GENESIS_HASH,
};
use sqlx::SqlitePool;

/// Who acted.
#[derive(Debug, Clone)]
pub enum Actor {
    User(String),
    /// The broker itself (expiry, timeouts, retries).
    System,
    /// An operator on the broker's machine.
    Cli(String),
}

impl Actor {
    pub fn name(&self) -> String {
        match self {
            Actor::User(u) => u.clone(),
            Actor::System => "system".into(),
            Actor::Cli(u) => format!("cli:{u}"),
        }
    }
    /// The operator running a CLI command.
    pub fn cli() -> Actor {
        Actor::Cli(std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
    }
}

/// Appends one record, chained to the last.
pub async fn append(
    tx: &mut Tx,
    actor: &Actor,
    action: AuditAction,
    subject: &str,
    details: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<i64> {
    // serde_json's map keeps keys sorted: the stored text is canonical.
    let details = serde_json::to_string(&details).map_err(|e| Error::Corrupt(e.to_string()))?;
    let at = ts(now);
    let actor = actor.name();
    let hint = tx
        .audit_head
        .as_ref()
        .and_then(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone());
    // Fast path: chain to the head this process last wrote, if it is still the head
    // (checked in the same statement). Otherwise read the head.
    if let Some((head_seq, head_hash)) = hint {
        let seq = head_seq + 1;
        let hash = record_hash(
            &head_hash,
            seq,
            &at,
            &actor,
            action.as_str(),
            subject,
            &details,
        );
        let done = sqlx::query(
            "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash)
             SELECT ?, ?, ?, ?, ?, ?, ?, ?
             WHERE (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1) = ?",
        )
        .bind(seq)
        .bind(&at)
        .bind(&actor)
        .bind(action.as_str())
        .bind(subject)
        .bind(&details)
        .bind(&head_hash)
        .bind(&hash)
        .bind(&head_hash)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 1 {
            remember(tx, seq, hash);
            return Ok(seq);
        }
    }
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let (seq, prev) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS_HASH.to_string()),
    };
    let hash = record_hash(&prev, seq, &at, &actor, action.as_str(), subject, &details);
    sqlx::query(
        "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(&at)
    .bind(&actor)
    .bind(action.as_str())
    .bind(subject)
    .bind(&details)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    remember(tx, seq, hash);
    Ok(seq)
}

fn remember(tx: &Tx, seq: i64, hash: String) {
    if let Some(h) = &tx.audit_head {
        *h.lock().unwrap_or_else(|p| p.into_inner()) = Some((seq, hash));
    }
}

type Row = (i64, String, String, String, String, String, String, String);

fn to_record(r: Row) -> AuditRecord {
    AuditRecord {
        seq: r.0,
        at: r.1,
        actor: r.2,
        action: r.3,
        subject: r.4,
        details: r.5,
        prev_hash: r.6,
        hash: r.7,
    }
}

/// Records in order, `after` exclusive, at most `limit`.
pub async fn records(pool: &SqlitePool, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit
         WHERE seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(to_record).collect())
}

/// The outcome of a verification.
#[derive(Debug)]
pub struct Verified {
    pub records: i64,
    pub head: String,
}

/// Verifies the whole chain. A removed last record is caught through SQLite's
/// AUTOINCREMENT counter, which remembers the highest sequence ever written.
pub async fn verify(pool: &SqlitePool) -> Result<Result<Verified, ChainError>> {
    let all = records(pool, 0, i64::MAX).await?;
    let (n, head) = match verify_chain(&all) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let high: Option<(i64,)> =
        sqlx::query_as("SELECT seq FROM sqlite_sequence WHERE name = 'audit'")
            .fetch_optional(pool)
            .await?;
    if let Some((high,)) = high {
        if high > n {
            return Ok(Err(ChainError {
                seq: n + 1,
                problem: format!(
                    "missing: records {}..={high} were written and are gone (the end of the log was removed)",
                    n + 1
                ),
            }));
        }
    }
    Ok(Ok(Verified { records: n, head }))
}
