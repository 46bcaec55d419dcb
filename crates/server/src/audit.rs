//! Appending to and checking the hash-chained, signed audit log. Appends happen
//! inside the same transaction as the state change they record. The last record of
//! each commit is signed with the broker's signing key as the commit ends (a signed
//! head, see [`firedoor_core::audit::verify_signed_chain`]): its hash chains every
//! record before it, so its signature vouches for the whole commit, and a commit of
//! several units of work costs one signature. The process sets the key on its store
//! ([`Store::set_signer`]) when it loads the key file.

use crate::clock::ts;
use crate::error::{Error, Result};
use crate::store::postgres::PendingRecord;
use crate::store::{Store, Tx};
use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use firedoor_core::access::{check_admin, AdminAction};
use firedoor_core::audit::{
    record_hash, sign_head, verify_signed_chain, AuditAction, AuditEvent, AuditRecord, ChainError,
    SignedHead, GENESIS_HASH,
};

/// Who acted: see [`firedoor_core::access::Actor`] (the same type, so the rules
/// that decide what an actor may do and the audit record agree on who it is).
pub use firedoor_core::access::Actor;

/// The operator running a CLI command ([`Actor::Cli`], named after `$USER`).
pub fn cli_actor() -> Actor {
    Actor::Cli(std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

/// Appends one record, chained to the last (on PostgreSQL: at the commit, see
/// [`Tx::commit`]; the seq returned is then 0). A failure is counted
/// (`firedoor_audit_append_failures_total`): the operation that wanted the record
/// fails with it, and on-call must hear of it.
pub async fn append(
    tx: &mut Tx,
    actor: &Actor,
    subject: &str,
    event: AuditEvent,
    now: DateTime<Utc>,
) -> Result<i64> {
    if tx.is_postgres() {
        // Written to `audit_pending` as the transaction commits and chained by a
        // round after it (see [`Tx::commit`]): its seq is not known here.
        let r = pending_record(actor, subject, event, now);
        if r.is_err() {
            crate::metrics::audit_append_failed();
        }
        tx.pend_record(r?);
        return Ok(0);
    }
    let out = append_record(tx, actor, event.action(), subject, event.details(), now).await;
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
    // The store signs the commit's last record as it commits (see
    // [`Store::set_signer`]); without a key nothing may be appended unsigned.
    if tx.audit_key.is_none() {
        return Err(crate::store::no_signer());
    }

    // Fast path: chain to the head this process last wrote, if it is still the head
    // (checked in the same statement). Otherwise read the head.
    let hint = tx
        .audit_head
        .as_ref()
        .and_then(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone());
    let record = |seq: i64, prev: String| {
        let hash = record_hash(&prev, seq, &at, &actor, action.as_str(), subject, &details);
        AuditRecord {
            seq,
            at: at.clone(),
            actor: actor.clone(),
            action: action.as_str().to_string(),
            subject: subject.to_string(),
            details: details.clone(),
            signature: None,
            prev_hash: prev,
            hash,
        }
    };
    if let Some((head_seq, head_hash)) = hint {
        let r = record(head_seq + 1, head_hash.clone());
        if tx.audit().append_if_head(&r, &head_hash).await? {
            remember(tx, r.seq, r.hash);
            return Ok(head_seq + 1);
        }
    }
    let (seq, prev) = match tx.audit().last().await? {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS_HASH.to_string()),
    };
    let r = record(seq, prev);
    tx.audit().append(&r).await?;
    remember(tx, seq, r.hash);
    Ok(seq)
}

/// A record as a unit of work on PostgreSQL writes it to `audit_pending`: what it
/// says, not yet where it sits in the chain.
pub fn pending_record(
    actor: &Actor,
    subject: &str,
    event: AuditEvent,
    now: DateTime<Utc>,
) -> Result<PendingRecord> {
    let details =
        serde_json::to_string(&event.details()).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(PendingRecord {
        at: ts(now),
        actor: actor.name(),
        action: event.action().as_str().to_string(),
        subject: subject.to_string(),
        details,
    })
}

/// Chains `pending` (oldest first) onto `head` (`None`: an empty log) and signs the
/// last record with `key` (it vouches for the round's others; `None`: signs
/// nothing): what a chaining round appends.
pub fn chain_records(
    head: Option<(i64, String)>,
    pending: &[(i64, PendingRecord)],
    key: Option<&SigningKey>,
) -> Vec<AuditRecord> {
    let (mut seq, mut prev) = head.unwrap_or((0, GENESIS_HASH.to_string()));
    let last = pending.len();
    pending
        .iter()
        .enumerate()
        .map(|(i, (_, p))| {
            seq += 1;
            let hash = record_hash(
                &prev, seq, &p.at, &p.actor, &p.action, &p.subject, &p.details,
            );
            AuditRecord {
                seq,
                at: p.at.clone(),
                actor: p.actor.clone(),
                action: p.action.clone(),
                subject: p.subject.clone(),
                details: p.details.clone(),
                signature: key
                    .filter(|_| i + 1 == last)
                    .map(|key| sign_head(key, seq, &hash)),
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect()
}

fn remember(tx: &mut Tx, seq: i64, hash: String) {
    if let Some(h) = &tx.audit_head {
        *h.lock().unwrap_or_else(|p| p.into_inner()) = Some((seq, hash));
    }
}

impl crate::service::Broker {
    /// The audit log's records for `actor` (admins, the CLI): `after` exclusive
    /// (negative reads as 0), at most `limit` (clamped to 1..=5000).
    pub async fn audit_records(
        &self,
        actor: &Actor,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        check_admin(actor, AdminAction::ReadAudit)?;
        records(&self.store, after.max(0), limit.clamp(1, 5000)).await
    }
}

/// Records in order, `after` exclusive, at most `limit`. Every record committed
/// before the read is in it: on PostgreSQL, where records are chained by a round
/// after their commit, a reader holding the signing key runs one first (a reader
/// without it sees the chain as it stands; `audit verify` counts what waits).
pub async fn records(store: &Store, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
    if store.signer().is_some() {
        store.chain_pending().await?;
    }
    store.audit().records(after, limit).await
}

/// The outcome of a verification.
#[derive(Debug)]
pub struct Verified {
    pub records: i64,
    pub head: String,
}

/// Verifies the whole chain (hashes, links and signatures) with the public key
/// set on `store` (see [`Store::set_signer`]).
pub async fn verify(store: &Store) -> Result<Result<Verified, ChainError>> {
    let key = store.signer().ok_or_else(|| {
        Error::Config("no broker key is loaded for this database: cannot check signatures".into())
    })?;
    verify_with(store, &key.verifying_key()).await
}

/// Verifies the whole chain: hashes, links, and every record's signature with the
/// broker's public key `key`. A removed last record is caught through the store's
/// high-water mark, which remembers the highest sequence ever written (an attacker
/// can reset it: the anchor file and clients catch that, see [`crate::anchor`]).
pub async fn verify_with(
    store: &Store,
    key: &VerifyingKey,
) -> Result<Result<Verified, ChainError>> {
    // The chain as it stands: checking writes nothing.
    let all = store.audit().records(0, i64::MAX).await?;
    let (n, head) = match verify_signed_chain(&all, key) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(high) = store.audit().high_water().await? {
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
pub async fn head(store: &Store, at: DateTime<Utc>) -> Result<Option<SignedHead>> {
    let row = store.audit().head().await?;
    Ok(row.and_then(|(seq, hash, sig)| signed(seq, hash, sig, at)))
}

/// The signed head as it was at record `seq` (`None` if there is no such record, or
/// it is not the last record of a commit: only those are signed; every head served
/// or anchored is one).
pub async fn head_at(store: &Store, seq: i64, at: DateTime<Utc>) -> Result<Option<SignedHead>> {
    let row = store.audit().head_at(seq).await?;
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

/// Signs the log written before audit signatures existed (migration 0003 left its
/// records without one): the last record's signature vouches for them all. Only
/// allowed while nothing was anchored yet (`anchored` is false) and no record is
/// signed: that is the first start after the upgrade. Otherwise a log that ends on
/// an unsigned record had records added by someone without the key (every commit
/// ends on a signed record), and this refuses. The old records are signed as they
/// are, so they are only as trustworthy as the unsigned chain was; their hashes are
/// checked first. Returns how many records the signature vouches for.
pub async fn sign_legacy(store: &Store, key: &SigningKey, anchored: bool) -> Result<u64> {
    let Some((last, hash, None)) = store.audit().head().await? else {
        return Ok(0);
    };
    if anchored || store.audit().any_signed().await? {
        return Err(Error::Config(format!(
            "audit record {last} has no signature on or after it although the log was \
             already signed: it was added or edited by someone without the broker key \
             (run `firedoor-server audit verify`)"
        )));
    }
    let all = records(store, 0, i64::MAX).await?;
    if let Err(e) = firedoor_core::audit::verify_chain(&all) {
        return Err(Error::Config(format!(
            "not signing the audit records written before signatures existed: {e}"
        )));
    }
    let mut tx = store.begin().await?;
    tx.audit()
        .set_signature(last, &hash, &sign_head(key, last, &hash))
        .await?;
    tx.commit().await?;
    Ok(all.len() as u64)
}
