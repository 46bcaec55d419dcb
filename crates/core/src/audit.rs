//! The tamper-evident audit log: every record carries the hash of the one before it,
//! `hash = SHA-256(prev_hash ‖ record)`, so an edited, inserted or removed record
//! breaks the chain at that point.
//!
//! The hash chain alone stops nobody who can write the database: they edit a record
//! and recompute every later hash. So each record also carries an ed25519 signature
//! by the broker's signing key (kept in the key file, never in the database) over
//! [`head_message`] — its sequence number and hash, which commit to every record up
//! to it. A signed `(seq, hash)` is a *signed head*: the broker appends them to an
//! anchor file outside the database and hands them to clients, and [`check_anchor`]
//! / [`check_extends`] say whether a log still contains a head seen earlier.

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub use crate::audit_event::{AuditEvent, GrantedResource, SealedVersion};

/// What happened. The string form is stored and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    BrokerStarted,
    UserAdded,
    TokenIssued,
    TokenRevoked,
    RequestCreated,
    ApprovalRecorded,
    RequestApproved,
    RequestDenied,
    RequestCancelled,
    RequestTimedOut,
    GrantActivated,
    GrantProvisionFailed,
    GrantExtended,
    GrantRevokeRequested,
    GrantRevoked,
    GrantExpired,
    GrantRevokeFailed,
    CredentialsViewed,
    AuditExported,
    DeviceRegistered,
    DeviceRevoked,
    SecretStored,
    SecretRotated,
    SecretRotationFailed,
    EnvelopesSealed,
    BreakGlassOfflineUnlock,
    BreakGlassOnlineUnlock,
    UnlockChainRejected,
    UserDisabled,
    UserGroupsChanged,
    /// Envelopes of people no longer eligible were deleted and the secret marked for
    /// rotation.
    EnvelopesWithdrawn,
    OnCallOverrideAdded,
    OnCallOverrideRemoved,
    IncidentOpened,
    IncidentResolved,
    /// A webhook delivery was refused (bad authentication, a replay, unreadable).
    IncidentWebhookRefused,
    /// A grant ends earlier: the incident it was made for is resolved.
    GrantShortened,
    /// A pending request went to the next approval stage.
    RequestEscalated,
    /// The current approvers of a pending request were reminded.
    RequestReminded,
    /// A notification to chat or a webhook was given up after its retries.
    NotificationDeadLettered,
    /// An admin sent a dead notification again.
    NotificationRetried,
    /// A grant's device key got an SSH certificate.
    SshCertificateIssued,
    /// An SSH integration's certificate authority key was made (first, or by a
    /// rotation).
    SshCaCreated,
    /// A synced on-call schedule's provider could not be read (after it could).
    OnCallSyncFailed,
    /// A synced on-call schedule's provider is read again after failing.
    OnCallSyncRecovered,
    /// Someone signed in through the OpenID Provider (an SSO session began).
    SsoSignedIn,
    /// An SSO session's refresh token was used (rotated, a new access token).
    SsoRefreshed,
    /// An SSO session ended early: sign-out, a disabled user, a replayed refresh
    /// token.
    SsoSessionRevoked,
    // issue 14: drills
    /// A break-glass drill began.
    DrillStarted,
    /// A device proved in a drill that it opens its envelope.
    DrillPassed,
    /// A device's drill answer was refused.
    DrillFailed,
    /// A drill reached its deadline.
    DrillClosed,
    /// A secret has fewer ready holders than its policy requires.
    ReadinessBelow,
    /// A secret has enough ready holders again.
    ReadinessRestored,
    // issue 14: uses
    /// A break-glass use was recorded; its classification is pending (it is open).
    BreakGlassUseOpened,
    /// A break-glass use was classified (drill, incident, other) or reclassified.
    BreakGlassUseClassified,
    /// A rotation waiting for an incident became due: the incident was resolved.
    RotationReleased,
    /// After a rotation, the target's open sessions of the role were ended (or
    /// could not be).
    RotationSessionsEnded,
    // issue 14: quorum
    /// A two-person (m-of-n) offline unlock recorded by the requester's device.
    BreakGlassQuorumUnlock,
    /// A share released to another person's offline unlock request.
    BreakGlassShareReleased,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::BrokerStarted => "broker_started",
            AuditAction::UserAdded => "user_added",
            AuditAction::TokenIssued => "token_issued",
            AuditAction::TokenRevoked => "token_revoked",
            AuditAction::RequestCreated => "request_created",
            AuditAction::ApprovalRecorded => "approval_recorded",
            AuditAction::RequestApproved => "request_approved",
            AuditAction::RequestDenied => "request_denied",
            AuditAction::RequestCancelled => "request_cancelled",
            AuditAction::RequestTimedOut => "request_timed_out",
            AuditAction::GrantActivated => "grant_activated",
            AuditAction::GrantProvisionFailed => "grant_provision_failed",
            AuditAction::GrantExtended => "grant_extended",
            AuditAction::GrantRevokeRequested => "grant_revoke_requested",
            AuditAction::GrantRevoked => "grant_revoked",
            AuditAction::GrantExpired => "grant_expired",
            AuditAction::GrantRevokeFailed => "grant_revoke_failed",
            AuditAction::CredentialsViewed => "credentials_viewed",
            AuditAction::AuditExported => "audit_exported",
            AuditAction::DeviceRegistered => "device_registered",
            AuditAction::DeviceRevoked => "device_revoked",
            AuditAction::SecretStored => "secret_stored",
            AuditAction::SecretRotated => "secret_rotated",
            AuditAction::SecretRotationFailed => "secret_rotation_failed",
            AuditAction::EnvelopesSealed => "envelopes_sealed",
            AuditAction::BreakGlassOfflineUnlock => "break_glass_offline_unlock",
            AuditAction::BreakGlassOnlineUnlock => "break_glass_online_unlock",
            AuditAction::UnlockChainRejected => "unlock_chain_rejected",
            AuditAction::UserDisabled => "user_disabled",
            AuditAction::UserGroupsChanged => "user_groups_changed",
            AuditAction::EnvelopesWithdrawn => "envelopes_withdrawn",
            AuditAction::OnCallOverrideAdded => "oncall_override_added",
            AuditAction::OnCallOverrideRemoved => "oncall_override_removed",
            AuditAction::IncidentOpened => "incident_opened",
            AuditAction::IncidentResolved => "incident_resolved",
            AuditAction::IncidentWebhookRefused => "incident_webhook_refused",
            AuditAction::GrantShortened => "grant_shortened",
            AuditAction::RequestEscalated => "request_escalated",
            AuditAction::RequestReminded => "request_reminded",
            AuditAction::NotificationDeadLettered => "notification_dead_lettered",
            AuditAction::NotificationRetried => "notification_retried",
            AuditAction::SshCertificateIssued => "ssh_certificate_issued",
            AuditAction::SshCaCreated => "ssh_ca_created",
            AuditAction::OnCallSyncFailed => "oncall_sync_failed",
            AuditAction::OnCallSyncRecovered => "oncall_sync_recovered",
            AuditAction::SsoSignedIn => "sso_signed_in",
            AuditAction::SsoRefreshed => "sso_refreshed",
            AuditAction::SsoSessionRevoked => "sso_session_revoked",
            // issue 14: drills
            AuditAction::DrillStarted => "drill_started",
            AuditAction::DrillPassed => "drill_passed",
            AuditAction::DrillFailed => "drill_failed",
            AuditAction::DrillClosed => "drill_closed",
            AuditAction::ReadinessBelow => "readiness_below",
            AuditAction::ReadinessRestored => "readiness_restored",
            // issue 14: uses
            AuditAction::BreakGlassUseOpened => "break_glass_use_opened",
            AuditAction::BreakGlassUseClassified => "break_glass_use_classified",
            AuditAction::RotationReleased => "rotation_released",
            AuditAction::RotationSessionsEnded => "rotation_sessions_ended",
            // issue 14: quorum
            AuditAction::BreakGlassQuorumUnlock => "break_glass_quorum_unlock",
            AuditAction::BreakGlassShareReleased => "break_glass_share_released",
        }
    }
}

/// One record as stored and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    /// RFC 3339 with microseconds, UTC; hashed exactly as stored.
    pub at: String,
    /// Who acted: a user name, `system` (the broker itself) or `cli:<os user>`.
    pub actor: String,
    pub action: String,
    /// What it was done to: a request, grant, user or token id/name.
    pub subject: String,
    /// A JSON object, as stored (compact, keys sorted).
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
    /// Base64 ed25519 signature by the broker's signing key over
    /// [`head_message`]`(seq, hash)`. `None` only in a database written before
    /// signatures existed and not yet signed (the broker signs those at start).
    #[serde(default)]
    pub signature: Option<String>,
}

/// The hash of a record given the one before it. Each field is length-prefixed so
/// no two different records hash the same input.
pub fn record_hash(
    prev_hash: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev_hash,
        &seq.to_string(),
        at,
        actor,
        action,
        subject,
        details,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

impl AuditRecord {
    pub fn expected_hash(&self) -> String {
        record_hash(
            &self.prev_hash,
            self.seq,
            &self.at,
            &self.actor,
            &self.action,
            &self.subject,
            &self.details,
        )
    }
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {problem}")]
pub struct ChainError {
    pub seq: i64,
    pub problem: String,
}

/// Domain separation: an audit signature can never be mistaken for an envelope or
/// unlock-record signature made with the same key.
const HEAD_DOMAIN: &str = "firedoor audit head v1\n";

/// The bytes the broker signs for the record (or head) `seq` with hash `hash`.
pub fn head_message(seq: i64, hash: &str) -> Vec<u8> {
    format!("{HEAD_DOMAIN}{seq}\n{hash}").into_bytes()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Signs `(seq, hash)`; base64 signature.
pub fn sign_head(key: &SigningKey, seq: i64, hash: &str) -> String {
    b64().encode(key.sign(&head_message(seq, hash)).to_bytes())
}

/// Whether `signature` (base64) is `key`'s signature over `(seq, hash)`.
pub fn head_signature_valid(key: &VerifyingKey, seq: i64, hash: &str, signature: &str) -> bool {
    let Ok(bytes) = b64().decode(signature.trim()) else {
        return false;
    };
    let Ok(arr) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    key.verify(&head_message(seq, hash), &Signature::from_bytes(&arr))
        .is_ok()
}

/// A signed head: the log had `seq` records and the last one's hash was `hash`. Lines
/// of the anchor file and the broker's `GET /audit/head` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub seq: i64,
    pub hash: String,
    /// Base64 ed25519 signature over [`head_message`]`(seq, hash)`.
    pub signature: String,
    /// When the head was written out (anchored or served). Not signed: informational.
    pub at: String,
}

impl SignedHead {
    pub fn signature_valid(&self, key: &VerifyingKey) -> bool {
        head_signature_valid(key, self.seq, &self.hash, &self.signature)
    }
}

/// Walks the chain in order and checks it against the broker's public key. Returns
/// the number of records and the head hash.
///
/// The broker signs the last record of each commit (a signed head): the records
/// before it in the same commit are vouched for by that signature, since its hash
/// chains theirs. So a record may be unsigned if a later record is signed, every
/// signature present must be valid, and the chain must end on a signed record. An
/// attacker who edits a record and recomputes the later hashes cannot sign the new
/// hashes: the first signature after the edit fails, and the error names the first
/// record that signature vouches for (the earliest the edit can be). Records added
/// at the end without the key are named as unsigned.
pub fn verify_signed_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    key: &VerifyingKey,
) -> Result<(i64, String), ChainError> {
    let mut expected_seq = 1;
    let mut prev = GENESIS_HASH.to_string();
    // The first record not yet vouched for by a signature.
    let mut unvouched: Option<i64> = None;
    for r in records {
        check_link(r, expected_seq, &prev)?;
        let from = *unvouched.get_or_insert(r.seq);
        if let Some(sig) = &r.signature {
            if !head_signature_valid(key, r.seq, &r.hash, sig) {
                let which = if from == r.seq {
                    String::new()
                } else {
                    format!(" (it vouches for records {from}..={})", r.seq)
                };
                return Err(ChainError {
                    seq: from,
                    problem: format!(
                        "the signature on record {}{which} does not match (a record was edited and re-hashed by someone without the broker key, or it is signed by another key)",
                        r.seq
                    ),
                });
            }
            unvouched = None;
        }
        prev = r.hash.clone();
        expected_seq += 1;
    }
    if let Some(from) = unvouched {
        return Err(ChainError {
            seq: from,
            problem: format!(
                "records {from}..={} have no signature on or after them (added or edited by someone without the broker key)",
                expected_seq - 1
            ),
        });
    }
    Ok((expected_seq - 1, prev))
}

fn check_link(r: &AuditRecord, expected_seq: i64, prev: &str) -> Result<(), ChainError> {
    if r.seq != expected_seq {
        return Err(ChainError {
            seq: expected_seq,
            problem: format!(
                "missing: the next record present is {} (records were removed)",
                r.seq
            ),
        });
    }
    if r.prev_hash != prev {
        return Err(ChainError {
            seq: r.seq,
            problem:
                "does not link to the record before it (a record before it was edited or removed)"
                    .into(),
        });
    }
    if r.expected_hash() != r.hash {
        return Err(ChainError {
            seq: r.seq,
            problem: "its content does not match its hash (the record was edited)".into(),
        });
    }
    Ok(())
}

/// Why a log does not contain a head seen earlier (in the anchor file, by a client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    #[error("the signed head at record {seq} is not signed by this broker key (forged, or the broker key was replaced: check --key-file)")]
    BadSignature { seq: i64 },
    #[error("the log ends at record {now} but record {seen} was seen signed earlier: the records after {now} were removed (the log was truncated or rolled back)")]
    Truncated { seen: i64, now: i64 },
    #[error("record {seq} is not the one seen signed earlier (its hash changed): the log was rewritten from there or rolled back and written again")]
    Rewritten { seq: i64 },
}

/// The anchor rule: a head seen earlier (`anchored`, from the anchor file) must be
/// signed by the broker key, the log (whose head is `log_head_seq`) must reach it,
/// and the log's record at that seq must have the anchored hash (`log_hash_at` is
/// the log's hash at `anchored.seq`, `None` if there is no such record).
pub fn check_anchor(
    anchored: &SignedHead,
    key: &VerifyingKey,
    log_head_seq: i64,
    log_hash_at: Option<&str>,
) -> Result<(), RollbackError> {
    if !anchored.signature_valid(key) {
        return Err(RollbackError::BadSignature { seq: anchored.seq });
    }
    if log_head_seq < anchored.seq {
        return Err(RollbackError::Truncated {
            seen: anchored.seq,
            now: log_head_seq,
        });
    }
    match log_hash_at {
        Some(h) if h == anchored.hash => Ok(()),
        _ => Err(RollbackError::Rewritten { seq: anchored.seq }),
    }
}

/// The client rule: the broker's new head `new` extends the head `seen` earlier when
/// it is signed, its seq is not lower, and the broker's signed hash at `seen.seq`
/// (`signed_at_seen`, fetched from `GET /audit/heads/{seq}`; not needed when the seqs
/// are equal) is the one seen.
pub fn check_extends(
    seen: &SignedHead,
    new: &SignedHead,
    signed_at_seen: Option<&SignedHead>,
    key: &VerifyingKey,
) -> Result<(), RollbackError> {
    if !new.signature_valid(key) {
        return Err(RollbackError::BadSignature { seq: new.seq });
    }
    if new.seq < seen.seq {
        return Err(RollbackError::Truncated {
            seen: seen.seq,
            now: new.seq,
        });
    }
    let at_seen = if new.seq == seen.seq {
        new
    } else {
        match signed_at_seen {
            Some(h) if h.seq == seen.seq => h,
            _ => return Err(RollbackError::Rewritten { seq: seen.seq }),
        }
    };
    if !at_seen.signature_valid(key) {
        return Err(RollbackError::BadSignature { seq: at_seen.seq });
    }
    if at_seen.hash != seen.hash {
        return Err(RollbackError::Rewritten { seq: seen.seq });
    }
    Ok(())
}

/// Walks the chain in order. Returns the number of records and the head hash.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<(i64, String), ChainError> {
    let mut expected_seq = 1;
    let mut prev = GENESIS_HASH.to_string();
    for r in records {
        check_link(r, expected_seq, &prev)?;
        prev = r.hash.clone();
        expected_seq += 1;
    }
    Ok((expected_seq - 1, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let prev = out
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| GENESIS_HASH.to_string());
            let mut r = AuditRecord {
                seq,
                at: format!("2026-11-21T00:00:{seq:02}.000000Z"),
                actor: "alice".into(),
                action: "request_created".into(),
                subject: format!("req_{seq}"),
                details: "{}".into(),
                prev_hash: prev,
                hash: String::new(),
                signature: None,
            };
            r.hash = r.expected_hash();
            out.push(r);
        }
        out
    }

    #[test]
    fn detects_edits_and_removals() {
        let c = chain(5);
        assert_eq!(verify_chain(&c).unwrap().0, 5);

        let mut edited = c.clone();
        edited[2].actor = "mallory".into();
        assert_eq!(verify_chain(&edited).unwrap_err().seq, 3);

        let mut removed = c.clone();
        removed.remove(1);
        assert_eq!(verify_chain(&removed).unwrap_err().seq, 2);

        // Re-hashing the edited record still breaks the link to the next one.
        let mut rehashed = c.clone();
        rehashed[2].details = r#"{"x":1}"#.into();
        rehashed[2].hash = rehashed[2].expected_hash();
        assert_eq!(verify_chain(&rehashed).unwrap_err().seq, 4);
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn signed_chain(n: i64, k: &SigningKey) -> Vec<AuditRecord> {
        let mut c = chain(n);
        for r in &mut c {
            r.signature = Some(sign_head(k, r.seq, &r.hash));
        }
        c
    }

    /// What an attacker with the database but without the key does: edit a record
    /// and recompute every hash and link after it.
    fn rewrite_from(c: &mut [AuditRecord], index: usize) {
        for i in index..c.len() {
            if i > 0 {
                c[i].prev_hash = c[i - 1].hash.clone();
            }
            c[i].hash = c[i].expected_hash();
        }
    }

    #[test]
    fn signed_chain_verifies_and_names_the_edited_record() {
        let k = key(1);
        let vk = k.verifying_key();
        let c = signed_chain(6, &k);
        assert_eq!(verify_signed_chain(&c, &vk).unwrap().0, 6);
        assert_eq!(verify_signed_chain(&c, &vk).unwrap().1, c[5].hash);

        // Attack: edit record 3 and recompute every SHA-256 after it. The plain chain
        // check passes; the signature check names record 3.
        let mut forged = c.clone();
        forged[2].details = r#"{"reason":"nothing to see"}"#.into();
        rewrite_from(&mut forged, 2);
        assert!(verify_chain(&forged).is_ok(), "the unsigned rule is fooled");
        let e = verify_signed_chain(&forged, &vk).unwrap_err();
        assert_eq!(e.seq, 3, "{e}");
        assert!(e.problem.contains("signature"), "{e}");

        // Dropping the signatures does not help: the end is unsigned.
        let mut unsigned = forged.clone();
        for r in &mut unsigned[2..] {
            r.signature = None;
        }
        let e = verify_signed_chain(&unsigned, &vk).unwrap_err();
        assert_eq!(e.seq, 3, "{e}");
        assert!(e.problem.contains("no signature"), "{e}");

        // A log signed by another key (a replaced key file) fails at record 1.
        let other = signed_chain(6, &key(2));
        assert_eq!(verify_signed_chain(&other, &vk).unwrap_err().seq, 1);

        // Garbage signatures are a failure, not a panic.
        let mut junk = c.clone();
        junk[4].signature = Some("not base64!".into());
        assert_eq!(verify_signed_chain(&junk, &vk).unwrap_err().seq, 5);
        junk[4].signature = Some("AAAA".into());
        assert_eq!(verify_signed_chain(&junk, &vk).unwrap_err().seq, 5);

        // Edits without re-hashing are still named by the hash check.
        let mut edited = c.clone();
        edited[1].actor = "mallory".into();
        assert_eq!(verify_signed_chain(&edited, &vk).unwrap_err().seq, 2);
    }

    /// Signed heads per commit: records 1-3 are one commit (3 signed), 4 one, 5-6 one.
    fn commits(k: &SigningKey) -> Vec<AuditRecord> {
        let mut c = chain(6);
        for r in &mut c {
            if [3, 4, 6].contains(&r.seq) {
                r.signature = Some(sign_head(k, r.seq, &r.hash));
            }
        }
        c
    }

    #[test]
    fn each_commit_is_vouched_for_by_the_signature_on_its_last_record() {
        let k = key(1);
        let vk = k.verifying_key();
        let c = commits(&k);
        assert_eq!(
            verify_signed_chain(&c, &vk).unwrap(),
            (6, c[5].hash.clone())
        );

        // Attack: edit an unsigned record (2) and re-hash everything after it. The
        // signature on 3, which vouches for 1..=3, fails; the error names record 1,
        // the first record it vouches for.
        let mut forged = c.clone();
        forged[1].details = r#"{"reason":"nothing to see"}"#.into();
        rewrite_from(&mut forged, 1);
        assert!(verify_chain(&forged).is_ok());
        let e = verify_signed_chain(&forged, &vk).unwrap_err();
        assert_eq!(e.seq, 1, "{e}");
        assert!(e.problem.contains("records 1..=3"), "{e}");

        // Attack: edit record 5 and re-hash it and 6.
        let mut forged = c.clone();
        forged[4].actor = "mallory".into();
        rewrite_from(&mut forged, 4);
        assert_eq!(verify_signed_chain(&forged, &vk).unwrap_err().seq, 5);

        // Attack: append records without the key, then also strip the last
        // signature so that the tail looks like one long commit.
        let mut appended = c.clone();
        let mut extra = chain(8).split_off(6);
        extra[0].prev_hash = appended[5].hash.clone();
        appended.append(&mut extra);
        rewrite_from(&mut appended, 6);
        let e = verify_signed_chain(&appended, &vk).unwrap_err();
        assert_eq!(e.seq, 7, "{e}");
        assert!(e.problem.contains("no signature on or after"), "{e}");
        appended[5].signature = None;
        assert_eq!(verify_signed_chain(&appended, &vk).unwrap_err().seq, 5);

        // A signature moved to another record does not verify there.
        let mut moved = c.clone();
        moved[1].signature = moved[2].signature.clone();
        assert_eq!(verify_signed_chain(&moved, &vk).unwrap_err().seq, 1);

        // Dropping a signature in the middle loses nothing: the next one vouches.
        let mut dropped = c.clone();
        dropped[3].signature = None;
        assert_eq!(verify_signed_chain(&dropped, &vk).unwrap().0, 6);
    }

    #[test]
    fn signatures_are_domain_separated() {
        let k = key(1);
        let sig = k.sign(b"42\nabc");
        let b = b64().encode(sig.to_bytes());
        assert!(!head_signature_valid(&k.verifying_key(), 42, "abc", &b));
        assert!(head_signature_valid(
            &k.verifying_key(),
            42,
            "abc",
            &sign_head(&k, 42, "abc")
        ));
        assert!(!head_signature_valid(
            &k.verifying_key(),
            43,
            "abc",
            &sign_head(&k, 42, "abc")
        ));
    }

    fn head_of(c: &[AuditRecord], seq: i64) -> SignedHead {
        let r = &c[(seq - 1) as usize];
        SignedHead {
            seq,
            hash: r.hash.clone(),
            signature: r.signature.clone().unwrap(),
            at: r.at.clone(),
        }
    }

    #[test]
    fn anchor_rule_detects_truncation_rewrite_and_forgery() {
        let k = key(1);
        let vk = k.verifying_key();
        let c = signed_chain(6, &k);
        let anchored = head_of(&c, 4);
        let at = |log: &[AuditRecord], seq: i64| {
            log.iter().find(|r| r.seq == seq).map(|r| r.hash.clone())
        };
        // The log reaches the anchored head, with that hash: fine.
        assert_eq!(
            check_anchor(&anchored, &vk, 6, at(&c, 4).as_deref()),
            Ok(())
        );
        assert_eq!(
            check_anchor(&anchored, &vk, 4, at(&c, 4).as_deref()),
            Ok(())
        );

        // Truncated to record 2.
        assert_eq!(
            check_anchor(&anchored, &vk, 2, None),
            Err(RollbackError::Truncated { seen: 4, now: 2 })
        );

        // Truncated to record 2, then the broker wrote on: same seqs, other hashes.
        let mut forked = c[..2].to_vec();
        forked.extend(signed_chain(6, &k)[2..].iter().cloned().map(|mut r| {
            r.details = r#"{"after":"rollback"}"#.into();
            r
        }));
        rewrite_from(&mut forked, 2);
        assert_eq!(
            check_anchor(&anchored, &vk, 6, at(&forked, 4).as_deref()),
            Err(RollbackError::Rewritten { seq: 4 })
        );

        // A forged anchor line (not signed by the broker key).
        let mut forged = anchored.clone();
        forged.seq = 5;
        assert_eq!(
            check_anchor(&forged, &vk, 6, at(&c, 5).as_deref()),
            Err(RollbackError::BadSignature { seq: 5 })
        );
    }

    #[test]
    fn client_rule_requires_later_heads_to_extend_the_one_seen() {
        let k = key(1);
        let vk = k.verifying_key();
        let c = signed_chain(6, &k);
        let seen = head_of(&c, 3);
        // Same head, or a later one whose signed hash at seq 3 is the one seen.
        assert_eq!(check_extends(&seen, &seen, None, &vk), Ok(()));
        assert_eq!(
            check_extends(&seen, &head_of(&c, 6), Some(&head_of(&c, 3)), &vk),
            Ok(())
        );
        // Rolled back below what the client saw.
        assert_eq!(
            check_extends(&seen, &head_of(&c, 2), None, &vk),
            Err(RollbackError::Truncated { seen: 3, now: 2 })
        );
        // Rolled back and written again: the signed hash at seq 3 differs.
        let mut forked = c.clone();
        forked[2].subject = "other".into();
        rewrite_from(&mut forked, 2);
        for r in &mut forked {
            r.signature = Some(sign_head(&k, r.seq, &r.hash));
        }
        assert_eq!(
            check_extends(&seen, &head_of(&forked, 6), Some(&head_of(&forked, 3)), &vk),
            Err(RollbackError::Rewritten { seq: 3 })
        );
        assert_eq!(
            check_extends(&seen, &head_of(&forked, 3), None, &vk),
            Err(RollbackError::Rewritten { seq: 3 })
        );
        // The broker does not answer the earlier head: not proven, so reported.
        assert_eq!(
            check_extends(&seen, &head_of(&c, 6), None, &vk),
            Err(RollbackError::Rewritten { seq: 3 })
        );
        // A head signed by another key.
        let other = signed_chain(6, &key(2));
        assert_eq!(
            check_extends(&seen, &head_of(&other, 6), Some(&head_of(&c, 3)), &vk),
            Err(RollbackError::BadSignature { seq: 6 })
        );
    }
}
