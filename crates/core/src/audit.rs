//! The tamper-evident audit log: every record carries the hash of the one before it,
//! `hash = SHA-256(prev_hash ‖ record)`, so an edited, inserted or removed record
//! breaks the chain at that point.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// Walks the chain in order. Returns the number of records and the head hash.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<(i64, String), ChainError> {
    let mut expected_seq = 1;
    let mut prev = GENESIS_HASH.to_string();
    for r in records {
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
                problem: "does not link to the record before it (a record before it was edited or removed)".into(),
            });
        }
        if r.expected_hash() != r.hash {
            return Err(ChainError {
                seq: r.seq,
                problem: "its content does not match its hash (the record was edited)".into(),
            });
        }
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
}
