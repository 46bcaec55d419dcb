//! Appending to and checking the hash-chained, signed audit log. Appends happen
//! inside the same transaction as the state change they record; each record is
//! signed there with the broker's signing key (see [`firedoor_core::audit`]), which
//! the process registers for its database with [`register_signer`] when it loads the
//! key file.

use crate::clock::ts;
use crate::error::{Error, Result};
use crate::store::Tx;
use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use firedoor_core::audit::{
    record_hash, sign_head, verify_signed_chain, AuditAction, AuditRecord, ChainError, SignedHead,
    GENESIS_HASH,
};
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

type Signers = Mutex<HashMap<PathBuf, Arc<SigningKey>>>;

fn signers() -> &'static Signers {
    static SIGNERS: OnceLock<Signers> = OnceLock::new();
    SIGNERS.get_or_init(Signers::default)
}

fn db_file(pool: &SqlitePool) -> PathBuf {
    pool.connect_options().get_filename().to_path_buf()
}

/// Makes `key` sign the audit records this process appends to `pool`'s database.
/// Every writer (the broker, and the CLI's user and token commands) loads the key
/// file and registers it; an append without a registered key fails.
pub fn register_signer(pool: &SqlitePool, key: &SigningKey) {
    signers()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(db_file(pool), Arc::new(key.clone()));
}

/// The audit signing key registered for `pool`'s database.
pub fn signer_for(pool: &SqlitePool) -> Option<Arc<SigningKey>> {
    signers()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&db_file(pool))
        .cloned()
}

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

/// Appends one record, chained to the last. A failure is counted
/// (`firedoor_audit_append_failures_total`): the operation that wanted the record
/// fails with it, and on-call must hear of it.
pub async fn append(
    tx: &mut Tx,
    actor: &Actor,
    action: AuditAction,
    subject: &str,
    details: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<i64> {
    let out = append_record(tx, actor, action, subject, details, now).await;
    if out.is_err() {
        crate::metrics::audit_append_failed();
    }
    out
}

async fn append_record(
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
    let key = tx.audit_key.clone().ok_or_else(|| {
        Error::Config(
            "no audit signing key is loaded for this database (load the broker key file first)"
                .into(),
        )
    })?;
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
        let signature = sign_head(&key, seq, &hash);
        let done = sqlx::query(
            "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash, signature)
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?
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
        .bind(&signature)
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
    let signature = sign_head(&key, seq, &hash);
    sqlx::query(
        "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash, signature)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(&at)
    .bind(&actor)
    .bind(action.as_str())
    .bind(subject)
    .bind(&details)
    .bind(&prev)
    .bind(&hash)
    .bind(&signature)
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

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
);

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
        signature: r.8,
    }
}

/// Records in order, `after` exclusive, at most `limit`.
pub async fn records(pool: &SqlitePool, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor, action, subject, details, prev_hash, hash, signature FROM audit
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

/// Verifies the whole chain (hashes, links and signatures) with the public key
/// registered for `pool` (see [`register_signer`]).
pub async fn verify(pool: &SqlitePool) -> Result<Result<Verified, ChainError>> {
    let key = signer_for(pool).ok_or_else(|| {
        Error::Config("no broker key is loaded for this database: cannot check signatures".into())
    })?;
    verify_with(pool, &key.verifying_key()).await
}

/// Verifies the whole chain: hashes, links, and every record's signature with the
/// broker's public key `key`. A removed last record is caught through SQLite's
/// AUTOINCREMENT counter, which remembers the highest sequence ever written (an
/// attacker can reset it: the anchor file and clients catch that, see
/// [`crate::anchor`]).
pub async fn verify_with(
    pool: &SqlitePool,
    key: &VerifyingKey,
) -> Result<Result<Verified, ChainError>> {
    let all = records(pool, 0, i64::MAX).await?;
    let (n, head) = match verify_signed_chain(&all, key) {
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

/// The signed head of the log now (`None` while it is empty), stamped `at`.
pub async fn head(pool: &SqlitePool, at: DateTime<Utc>) -> Result<Option<SignedHead>> {
    let row: Option<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT seq, hash, signature FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(seq, hash, sig)| signed(seq, hash, sig, at)))
}

/// The signed head as it was at record `seq` (`None` if there is no such record).
pub async fn head_at(pool: &SqlitePool, seq: i64, at: DateTime<Utc>) -> Result<Option<SignedHead>> {
    let row: Option<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT seq, hash, signature FROM audit WHERE seq = ?")
            .bind(seq)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(seq, hash, sig)| signed(seq, hash, sig, at)))
}

fn signed(seq: i64, hash: String, sig: Option<String>, at: DateTime<Utc>) -> Option<SignedHead> {
    sig.map(|signature| SignedHead {
        seq,
        hash,
        signature,
        at: ts(at),
    })
}

/// Signs the records written before audit signatures existed (migration 0003 left
/// them without one). Only allowed while nothing was anchored yet (`anchored` is
/// false): that is the first start after the upgrade. Afterwards an unsigned record
/// was written by someone without the key, and this refuses. The old records are
/// signed as they are, so they are only as trustworthy as the unsigned chain was;
/// their hashes are checked first. Returns how many were signed.
pub async fn sign_legacy(pool: &SqlitePool, key: &SigningKey, anchored: bool) -> Result<u64> {
    let unsigned: Vec<(i64,)> =
        sqlx::query_as("SELECT seq FROM audit WHERE signature IS NULL ORDER BY seq LIMIT 1")
            .fetch_all(pool)
            .await?;
    let Some((first,)) = unsigned.first().copied() else {
        return Ok(0);
    };
    if anchored {
        return Err(Error::Config(format!(
            "audit record {first} has no signature although the log was already signed and              anchored: it was added or edited by someone without the broker key              (run `firedoor-server audit verify`)"
        )));
    }
    let all = records(pool, 0, i64::MAX).await?;
    // Legacy records come first: an unsigned record after a signed one was not
    // written before the upgrade.
    if let Some(r) = all
        .iter()
        .skip_while(|r| r.signature.is_none())
        .find(|r| r.signature.is_none())
    {
        return Err(Error::Config(format!(
            "audit record {} has no signature but follows signed records: it was added or \
             edited by someone without the broker key (run `firedoor-server audit verify`)",
            r.seq
        )));
    }
    if let Err(e) = firedoor_core::audit::verify_chain(&all) {
        return Err(Error::Config(format!(
            "not signing the audit records written before signatures existed: {e}"
        )));
    }
    let mut tx = crate::store::write_tx(pool).await?;
    let mut n = 0;
    for r in all.iter().filter(|r| r.signature.is_none()) {
        sqlx::query(
            "UPDATE audit SET signature = ? WHERE seq = ? AND hash = ? AND signature IS NULL",
        )
        .bind(sign_head(key, r.seq, &r.hash))
        .bind(r.seq)
        .bind(&r.hash)
        .execute(&mut *tx)
        .await?;
        n += 1;
    }
    tx.commit().await?;
    Ok(n)
}
