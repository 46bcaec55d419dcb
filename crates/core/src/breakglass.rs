//! Offline break glass: the sealed envelope and the device's signed unlock chain.
//!
//! An **envelope** is a break-glass secret encrypted with age to one device's X25519
//! recipient (a standard age file, ASCII-armoured) plus metadata signed by the broker's
//! ed25519 key. The signature covers the exact metadata bytes (`meta_json`), which
//! include the SHA-256 of the age file, so neither the window nor the ciphertext can
//! be changed without the device noticing.
//!
//! An **unlock record** is written by the device before it shows a secret. Records
//! form a hash chain (each names the previous record's hash, sequence numbers have no
//! gaps) and each is signed with the device's ed25519 key. The broker keeps the head
//! of every device's chain and accepts only records that continue it.
//!
//! Everything here is pure: keys and time are passed in.

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// `prev_hash` of a device's first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Domain separation for the broker's envelope signatures.
const ENVELOPE_DOMAIN: &[u8] = b"firedoor envelope v1\n";
/// Domain separation for the device's record signatures.
const RECORD_DOMAIN: &[u8] = b"firedoor unlock record v1\n";
/// Longest accepted unlock reason, in characters: a sentence or two for the audit
/// trail and the alert. It bounds every unlock record (see [`MAX_RECORD_BODY_CHARS`]).
pub use crate::input::MAX_REASON_CHARS;
/// Longest unlock record body, in characters: the fixed fields (about 400) plus a
/// reason of [`MAX_REASON_CHARS`] characters even if every one of them is written
/// as a six-character JSON escape, plus (issue 14: quorum) a quorum part naming up to
/// [`crate::policy::MAX_QUORUM`] releasers and release ids.
pub const MAX_RECORD_BODY_CHARS: usize = 16384;
/// The most bytes of records a device sends in one upload (the broker takes 2 MiB).
pub const UNLOCKS_BATCH_BYTES: usize = 1024 * 1024;
/// Longest name of a secret, user or device id inside an unlock record.
pub const MAX_RECORD_NAME_CHARS: usize = 64;
/// Shortest local unlock passphrase, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Lowest accepted zxcvbn score (0 to 4) of a local unlock passphrase: 3 means
/// "safely unguessable: moderate protection from an offline slow-hash scenario".
pub const MIN_PASSPHRASE_SCORE: u8 = 3;
/// Wrong passphrases allowed per [`LOCKOUT_WINDOW_MINUTES`]; the next one locks.
pub const MAX_FAILED_PASSPHRASES: usize = 5;
pub const LOCKOUT_WINDOW_MINUTES: i64 = 15;
/// How far a device's clock may run behind the broker's before a freshly sealed
/// envelope counts as not yet valid. Only `not_before` gets this leeway; expiry is
/// exact.
pub const CLOCK_LEEWAY_SECS: i64 = 300;

/// The wrong-passphrase times that still count at `now` (within the lock-out
/// window), sorted. Times after `now` (the clock went back) still count: a clock
/// change never buys more guesses.
pub fn failures_in_window(
    mut failures: Vec<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let window = chrono::Duration::minutes(LOCKOUT_WINDOW_MINUTES);
    failures.retain(|t| *t > now - window);
    failures.sort();
    failures
}

/// When the lock-out caused by these failures (from [`failures_in_window`]) ends, if
/// there is one: [`LOCKOUT_WINDOW_MINUTES`] after the oldest of the last
/// [`MAX_FAILED_PASSPHRASES`].
pub fn locked_until(failures: &[DateTime<Utc>]) -> Option<DateTime<Utc>> {
    let n = failures.len();
    (n >= MAX_FAILED_PASSPHRASES).then(|| {
        failures[n - MAX_FAILED_PASSPHRASES] + chrono::Duration::minutes(LOCKOUT_WINDOW_MINUTES)
    })
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A problem with a key, an envelope or a record. Messages are fit to show a person
/// and never contain secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakGlassError {
    #[error("malformed public key: {0}")]
    BadKey(String),
    #[error("the envelope's signature does not verify against the pinned broker key")]
    BadEnvelopeSignature,
    #[error("the envelope's encrypted secret does not match its signed checksum")]
    CiphertextMismatch,
    #[error("malformed envelope: {0}")]
    MalformedEnvelope(String),
    #[error("the envelope is not valid before {0}")]
    NotYetValid(DateTime<Utc>),
    #[error("the envelope expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("record {seq}: {problem}")]
    Chain { seq: u64, problem: String },
}

/// Encodes an ed25519 public key for the wire (standard base64 of the 32 bytes).
pub fn encode_public_key(key: &VerifyingKey) -> String {
    b64().encode(key.as_bytes())
}

/// Parses a public key produced by [`encode_public_key`].
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, BreakGlassError> {
    let bytes = b64()
        .decode(text.trim())
        .map_err(|e| BreakGlassError::BadKey(format!("not base64: {e}")))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| BreakGlassError::BadKey(format!("{} bytes, expected 32", bytes.len())))?;
    VerifyingKey::from_bytes(&arr).map_err(|e| BreakGlassError::BadKey(e.to_string()))
}

/// A short fingerprint of a public key, as people compare it: `SHA256:` and the
/// unpadded base64 of the SHA-256 of the key bytes (the OpenSSH style).
pub fn fingerprint(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sign_b64(key: &SigningKey, domain: &[u8], msg: &[u8]) -> String {
    let mut buf = Vec::with_capacity(domain.len() + msg.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(msg);
    b64().encode(key.sign(&buf).to_bytes())
}

fn verify_b64(key: &VerifyingKey, domain: &[u8], msg: &[u8], sig: &str) -> bool {
    let Ok(bytes) = b64().decode(sig.trim()) else {
        return false;
    };
    let Ok(arr) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    let mut buf = Vec::with_capacity(domain.len() + msg.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(msg);
    key.verify_strict(&buf, &Signature::from_bytes(&arr))
        .is_ok()
}

/// What the broker signs about an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeMeta {
    /// Always 1 for now.
    pub format: u32,
    pub secret: String,
    /// Increases by one at every rotation or `secret put`.
    pub version: i64,
    pub device_id: String,
    pub user: String,
    /// The age recipient (`age1…`) the ciphertext is encrypted to.
    pub recipient: String,
    pub sealed_at: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Hex SHA-256 of the `ciphertext` text exactly as sent.
    pub ciphertext_sha256: String,
    /// Issue 14: quorum. Set when the ciphertext holds one Shamir share of the
    /// secret rather than the secret (see [`crate::quorum`]); absent from every
    /// single-holder envelope, so their signed bytes are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<crate::quorum::QuorumMeta>,
}

/// A sealed break-glass secret for one device. `ciphertext` is an ASCII-armoured age
/// file: `age -d -i device-identity.txt` opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The JSON of an [`EnvelopeMeta`]; the signature covers these exact bytes.
    pub meta_json: String,
    /// Base64 ed25519 signature by the broker.
    pub signature: String,
    pub ciphertext: String,
}

impl Envelope {
    /// Signs `meta` (its `ciphertext_sha256` is set here from `ciphertext`).
    pub fn seal(mut meta: EnvelopeMeta, ciphertext: String, broker: &SigningKey) -> Envelope {
        meta.ciphertext_sha256 = sha256_hex(ciphertext.as_bytes());
        // Serialising a struct of strings, integers and timestamps cannot fail.
        let meta_json = serde_json::to_string(&meta).unwrap_or_default();
        let signature = sign_b64(broker, ENVELOPE_DOMAIN, meta_json.as_bytes());
        Envelope {
            meta_json,
            signature,
            ciphertext,
        }
    }

    /// Checks the broker signature and the ciphertext checksum and returns the
    /// metadata. Does not look at time: see [`EnvelopeMeta::check_window`].
    pub fn verify(&self, broker: &VerifyingKey) -> Result<EnvelopeMeta, BreakGlassError> {
        if !verify_b64(
            broker,
            ENVELOPE_DOMAIN,
            self.meta_json.as_bytes(),
            &self.signature,
        ) {
            return Err(BreakGlassError::BadEnvelopeSignature);
        }
        let meta: EnvelopeMeta = serde_json::from_str(&self.meta_json)
            .map_err(|e| BreakGlassError::MalformedEnvelope(e.to_string()))?;
        if meta.ciphertext_sha256 != sha256_hex(self.ciphertext.as_bytes()) {
            return Err(BreakGlassError::CiphertextMismatch);
        }
        Ok(meta)
    }
}

impl EnvelopeMeta {
    /// Is the envelope usable at `now`? `not_before` has [`CLOCK_LEEWAY_SECS`] of
    /// leeway for a device clock a little behind the broker's; `not_after` is exact.
    pub fn check_window(&self, now: DateTime<Utc>) -> Result<(), BreakGlassError> {
        if now + chrono::Duration::seconds(CLOCK_LEEWAY_SECS) < self.not_before {
            return Err(BreakGlassError::NotYetValid(self.not_before));
        }
        if now >= self.not_after {
            return Err(BreakGlassError::Expired(self.not_after));
        }
        Ok(())
    }
}

/// One offline unlock, as the device records it before showing the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockRecord {
    /// Always 1 for now.
    pub format: u32,
    /// 1 for the device's first record, then +1 each time.
    pub seq: u64,
    pub device_id: String,
    pub user: String,
    pub secret: String,
    pub version: i64,
    pub at: DateTime<Utc>,
    pub reason: String,
    /// `offline` (opened from the envelope) or `online` (released by the broker).
    pub mode: String,
    /// `hash` of record `seq - 1`, or [`GENESIS_HASH`].
    pub prev_hash: String,
    /// The incident the unlock was for, if the person named one (optional, so
    /// records written before it existed still verify byte for byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Issue 14: quorum. With mode `quorum` (opened from shares) or
    /// `share_released` (this device released its share to someone else's request):
    /// who took part and which request. Absent from other records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<crate::quorum::QuorumRecord>,
}

/// An [`UnlockRecord`] as stored and uploaded: its exact JSON, the hex SHA-256 of that
/// JSON, and the device's base64 ed25519 signature over it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    pub body: String,
    pub hash: String,
    pub signature: String,
}

impl fmt::Debug for SignedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRecord")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl SignedRecord {
    pub fn sign(record: &UnlockRecord, device: &SigningKey) -> SignedRecord {
        let body = serde_json::to_string(record).unwrap_or_default();
        let hash = sha256_hex(body.as_bytes());
        let signature = sign_b64(device, RECORD_DOMAIN, body.as_bytes());
        SignedRecord {
            body,
            hash,
            signature,
        }
    }

    /// Checks hash and signature and returns the record.
    pub fn verify(&self, device: &VerifyingKey) -> Result<UnlockRecord, BreakGlassError> {
        let rec: UnlockRecord =
            serde_json::from_str(&self.body).map_err(|e| BreakGlassError::Chain {
                seq: 0,
                problem: format!("unreadable record: {e}"),
            })?;
        let fail = |problem: &str| BreakGlassError::Chain {
            seq: rec.seq,
            problem: problem.to_string(),
        };
        if self.hash != sha256_hex(self.body.as_bytes()) {
            return Err(fail("its hash does not match its contents (edited)"));
        }
        if !verify_b64(device, RECORD_DOMAIN, self.body.as_bytes(), &self.signature) {
            return Err(fail("its signature does not verify against the device key"));
        }
        Ok(rec)
    }
}

impl SignedRecord {
    /// Cheap bounds on an uploaded record, checked before any parsing or signature
    /// work. The problem never quotes the offending field.
    pub fn check_size(&self) -> Result<(), String> {
        // Bytes bound characters from above: only a long body is counted.
        if self.body.len() > MAX_RECORD_BODY_CHARS
            && self.body.chars().count() > MAX_RECORD_BODY_CHARS
        {
            return Err(format!(
                "its body is longer than {MAX_RECORD_BODY_CHARS} characters"
            ));
        }
        if !is_hex_sha256(&self.hash) {
            return Err("its hash is not 64 lowercase hex digits".into());
        }
        if self.signature.len() > 100 {
            return Err("its signature is not an ed25519 signature".into());
        }
        Ok(())
    }
}

/// Splits records (oldest first) into uploads of at most `max_records` records and
/// [`UNLOCKS_BATCH_BYTES`] of record text each. A batch always holds at least one
/// record, so nothing is ever stuck behind the limit.
pub fn upload_batches(records: &[SignedRecord], max_records: usize) -> Vec<&[SignedRecord]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        // Escaping in the upload's JSON can at most double the body.
        let size = 2 * r.body.len() + r.hash.len() + r.signature.len() + 64;
        if i > start && (i - start >= max_records.max(1) || bytes + size > UNLOCKS_BATCH_BYTES) {
            out.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

fn is_hex_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl UnlockRecord {
    /// Bounds on every field, checked before the record is verified, stored, audited
    /// or shown to anyone. The problem names the field and its size, never its text.
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.format != 1 {
            return Err(format!("unknown format {}", self.format));
        }
        if !matches!(
            self.mode.as_str(),
            "offline" | "online" | crate::quorum::MODE_QUORUM | crate::quorum::MODE_SHARE_RELEASED
        ) {
            return Err(format!(
                "unknown mode ({} characters; expected offline, online, quorum or share_released)",
                self.mode.chars().count()
            ));
        }
        let quorum_mode = matches!(
            self.mode.as_str(),
            crate::quorum::MODE_QUORUM | crate::quorum::MODE_SHARE_RELEASED
        );
        match &self.quorum {
            Some(q) if quorum_mode => q.check_bounds()?,
            None if !quorum_mode => {}
            Some(_) => return Err("quorum details on a record that is not a quorum record".into()),
            None => return Err("a quorum record without its quorum details".into()),
        }
        for (field, value) in [
            ("device_id", &self.device_id),
            ("user", &self.user),
            ("secret", &self.secret),
        ] {
            let n = value.chars().count();
            if n == 0 || n > MAX_RECORD_NAME_CHARS {
                return Err(format!(
                    "{field} is {n} characters; expected 1 to {MAX_RECORD_NAME_CHARS}"
                ));
            }
        }
        let n = self.reason.chars().count();
        if n > MAX_REASON_CHARS {
            return Err(format!(
                "reason is {n} characters; at most {MAX_REASON_CHARS}"
            ));
        }
        if !is_hex_sha256(&self.prev_hash) {
            return Err("prev_hash is not 64 lowercase hex digits".into());
        }
        if let Some(i) = &self.incident {
            let n = i.chars().count();
            if n > crate::uses::MAX_INCIDENT_REF_CHARS {
                return Err(format!(
                    "incident is {n} characters; at most {}",
                    crate::uses::MAX_INCIDENT_REF_CHARS
                ));
            }
        }
        Ok(())
    }
}

/// The last accepted record of a chain: sequence number and hash. A fresh device's
/// head is `(0, GENESIS_HASH)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> ChainHead {
        ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }
}

/// Verifies that `records` continue the chain from `head` without gaps or edits, all
/// signed by `device` and all naming `device_id`. Returns the records and the new head.
pub fn verify_chain(
    head: &ChainHead,
    records: &[SignedRecord],
    device_id: &str,
    device: &VerifyingKey,
) -> Result<(Vec<UnlockRecord>, ChainHead), BreakGlassError> {
    let mut cur = head.clone();
    let mut out = Vec::with_capacity(records.len());
    for sr in records {
        let rec = sr.verify(device)?;
        let fail = |problem: String| BreakGlassError::Chain {
            seq: rec.seq,
            problem,
        };
        if rec.seq != cur.seq + 1 {
            return Err(fail(format!(
                "expected record {} next: records are missing or out of order",
                cur.seq + 1
            )));
        }
        if rec.prev_hash != cur.hash {
            return Err(fail(
                "it does not follow the previous record (a record was removed or replaced)".into(),
            ));
        }
        if rec.device_id != device_id {
            return Err(fail(format!("it names device {}", rec.device_id)));
        }
        cur = ChainHead {
            seq: rec.seq,
            hash: sr.hash.clone(),
        };
        out.push(rec);
    }
    Ok((out, cur))
}

// ---- HTTP shapes ------------------------------------------------------------------

/// `GET /v1/broker`: the broker's public signing key, pinned by apps at sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerIdentity {
    /// Base64 ed25519 public key.
    pub signing_key: String,
    pub fingerprint: String,
}

/// `POST /v1/devices`: registers this device's public keys for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterDevice {
    /// A label people recognise, e.g. the host name.
    pub name: String,
    /// age X25519 recipient, `age1…`.
    pub recipient: String,
    /// Base64 ed25519 public key that signs the device's unlock chain.
    pub signing_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: String,
    pub user: String,
    pub name: String,
    pub recipient: String,
    pub signing_key: String,
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    /// The last unlock record the broker accepted from this device.
    pub head: ChainHead,
}

/// One sealed credential as served to its device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeItem {
    pub name: String,
    pub title: String,
    pub description: String,
    pub envelope: Envelope,
}

/// `GET /v1/devices/{id}/envelopes`: every secret the device's user may unlock
/// offline, sealed to the device, current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeList {
    pub envelopes: Vec<EnvelopeItem>,
}

/// `POST /v1/devices/{id}/unlocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadUnlocks {
    pub records: Vec<SignedRecord>,
}

/// The broker's answer to an upload: every record up to `head.seq` is stored and may
/// leave the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlocksAck {
    pub head: ChainHead,
    /// Records of this upload that were new to the broker.
    pub accepted: u64,
    /// Secrets whose rotation this upload started.
    pub rotating: Vec<String>,
}

/// `PUT /v1/secrets/{name}` (admins): the new value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutSecret {
    pub value: String,
}

impl fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PutSecret { value: [redacted] }")
    }
}

/// A break-glass secret's public facts (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretView {
    pub name: String,
    pub title: String,
    pub description: String,
    /// 0 while no value has been stored.
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub validity_secs: i64,
    /// `integration` that rotates it, if any.
    pub rotated_by: Option<String>,
    /// Set while a rotation is due or failing.
    pub rotation_due_at: Option<DateTime<Utc>>,
    pub last_rotation_error: Option<String>,
    /// Devices holding an envelope of the current version.
    pub sealed_devices: i64,
}

/// `POST /v1/secrets/{name}/unlock`: online break glass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUnlock {
    pub reason: String,
    pub device_id: Option<String>,
    /// The incident the unlock is for (see [`crate::uses`]), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockedSecret {
    pub name: String,
    pub version: i64,
    pub value: String,
    /// When the broker will rotate it (the value stops working then).
    pub rotates_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for UnlockedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockedSecret")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("value", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn meta() -> EnvelopeMeta {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 1, 0, 0).unwrap();
        EnvelopeMeta {
            format: 1,
            secret: "pg-breakglass".into(),
            version: 3,
            device_id: "dev_1".into(),
            user: "alice".into(),
            recipient: "age1example".into(),
            sealed_at: t,
            not_before: t,
            not_after: t + chrono::Duration::days(7),
            ciphertext_sha256: String::new(),
            quorum: None,
        }
    }

    fn record(reason: &str) -> UnlockRecord {
        UnlockRecord {
            format: 1,
            seq: 1,
            device_id: "dev_1".into(),
            user: "alice".into(),
            secret: "pg-breakglass".into(),
            version: 1,
            at: Utc.with_ymd_and_hms(2026, 11, 22, 1, 0, 0).unwrap(),
            reason: reason.into(),
            mode: "offline".into(),
            prev_hash: GENESIS_HASH.into(),
            incident: None,
            quorum: None,
        }
    }

    #[test]
    fn record_bounds_hold_the_longest_legitimate_record() {
        // The worst legitimate reason: every character a 4-byte emoji, or a control
        // character escaped as \u00XX.
        for c in ['\u{1F525}', '\u{1}', '"'] {
            let reason: String = std::iter::repeat_n(c, MAX_REASON_CHARS).collect();
            let mut r = record(&reason);
            r.device_id = "d".repeat(MAX_RECORD_NAME_CHARS);
            r.user = "u".repeat(MAX_RECORD_NAME_CHARS);
            r.secret = "s".repeat(MAX_RECORD_NAME_CHARS);
            r.seq = u64::MAX;
            r.version = i64::MIN;
            assert_eq!(r.check_bounds(), Ok(()));
            let sr = SignedRecord::sign(&r, &key(2));
            assert_eq!(
                sr.check_size(),
                Ok(()),
                "a legitimate record must fit: {} bytes",
                sr.body.len()
            );
        }
    }

    #[test]
    fn record_bounds_refuse_oversized_fields_without_quoting_them() {
        let huge = "A".repeat(3 * 1024 * 1024);
        let mut r = record(&huge);
        let p = r.check_bounds().unwrap_err();
        assert!(p.len() < 100 && !p.contains("AAAA"), "{p}");
        r.reason = "ok".into();
        r.mode = huge.clone();
        let p = r.check_bounds().unwrap_err();
        assert!(p.len() < 100 && !p.contains("AAAA"), "{p}");
        r.mode = "offline".into();
        r.secret = huge.clone();
        assert!(r.check_bounds().is_err());
        r.secret = String::new();
        assert!(r.check_bounds().is_err(), "an empty name");
        r.secret = "x".into();
        r.prev_hash = "zz".into();
        assert!(r.check_bounds().is_err());
        let sr = SignedRecord {
            body: huge.clone(),
            hash: "0".repeat(64),
            signature: "s".into(),
        };
        let p = sr.check_size().unwrap_err();
        assert!(p.len() < 100 && !p.contains("AAAA"), "{p}");
        let sr = SignedRecord {
            body: "{}".into(),
            hash: huge,
            signature: "s".into(),
        };
        assert!(sr.check_size().is_err());
    }

    #[test]
    fn upload_batches_split_by_count_and_bytes_and_never_stall() {
        let small = SignedRecord::sign(&record("x"), &key(2));
        let recs = vec![small.clone(); 450];
        let b = upload_batches(&recs, 200);
        assert_eq!(
            b.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![200, 200, 50]
        );
        let big: String = std::iter::repeat_n('\u{1}', MAX_REASON_CHARS).collect();
        let big = SignedRecord::sign(&record(&big), &key(2));
        let recs = vec![big; 1000];
        let b = upload_batches(&recs, 1000);
        assert!(b.len() > 1, "a megabyte of records is split");
        assert_eq!(b.iter().map(|b| b.len()).sum::<usize>(), 1000);
        for batch in b {
            let wire = serde_json::to_string(&UploadUnlocks {
                records: batch.to_vec(),
            })
            .unwrap();
            assert!(wire.len() <= UNLOCKS_BATCH_BYTES + 1024, "{}", wire.len());
        }
        assert!(upload_batches(&[], 10).is_empty());
    }

    #[test]
    fn envelope_verifies_and_refuses_edits() {
        let broker = key(1);
        let env = Envelope::seal(
            meta(),
            "-----BEGIN AGE ENCRYPTED FILE-----\nxyz\n".into(),
            &broker,
        );
        let m = env.verify(&broker.verifying_key()).unwrap();
        assert_eq!(m.version, 3);
        assert!(m.check_window(m.not_before).is_ok());
        assert!(matches!(
            m.check_window(m.not_after),
            Err(BreakGlassError::Expired(_))
        ));
        let lee = chrono::Duration::seconds(CLOCK_LEEWAY_SECS);
        assert!(
            m.check_window(m.not_before - lee).is_ok(),
            "a clock a little behind"
        );
        assert!(matches!(
            m.check_window(m.not_before - lee - chrono::Duration::seconds(1)),
            Err(BreakGlassError::NotYetValid(_))
        ));

        let mut t = env.clone();
        t.meta_json = t.meta_json.replace("\"version\":3", "\"version\":4");
        assert_eq!(
            t.verify(&broker.verifying_key()),
            Err(BreakGlassError::BadEnvelopeSignature)
        );
        let mut t = env.clone();
        t.ciphertext.push('a');
        assert_eq!(
            t.verify(&broker.verifying_key()),
            Err(BreakGlassError::CiphertextMismatch)
        );
        assert_eq!(
            env.verify(&key(2).verifying_key()),
            Err(BreakGlassError::BadEnvelopeSignature)
        );
    }

    fn chain(dev: &SigningKey, n: u64) -> Vec<SignedRecord> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let r = UnlockRecord {
                    format: 1,
                    seq,
                    device_id: "dev_1".into(),
                    user: "alice".into(),
                    secret: "pg-breakglass".into(),
                    version: 1,
                    at: Utc
                        .with_ymd_and_hms(2026, 11, 22, 2, 0, seq as u32)
                        .unwrap(),
                    reason: format!("incident {seq}"),
                    mode: "offline".into(),
                    prev_hash: prev.clone(),
                    incident: None,
                    quorum: None,
                };
                let s = SignedRecord::sign(&r, dev);
                prev = s.hash.clone();
                s
            })
            .collect()
    }

    #[test]
    fn chain_detects_edit_gap_reorder_and_foreign_key() {
        let dev = key(7);
        let pk = dev.verifying_key();
        let recs = chain(&dev, 4);
        let (out, head) = verify_chain(&ChainHead::genesis(), &recs, "dev_1", &pk).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(head.seq, 4);

        // Continue from an acknowledged head.
        let mid = ChainHead {
            seq: 2,
            hash: recs[1].hash.clone(),
        };
        assert!(verify_chain(&mid, &recs[2..], "dev_1", &pk).is_ok());

        // Edited body.
        let mut t = recs.clone();
        t[1].body = t[1].body.replace("incident 2", "routine");
        assert!(matches!(
            verify_chain(&ChainHead::genesis(), &t, "dev_1", &pk),
            Err(BreakGlassError::Chain { seq: 2, .. })
        ));
        // Edited body with a recomputed hash: the signature fails.
        t[1].hash = sha256_hex(t[1].body.as_bytes());
        let e = verify_chain(&ChainHead::genesis(), &t, "dev_1", &pk).unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
        // A removed record.
        let mut t = recs.clone();
        t.remove(1);
        assert!(matches!(
            verify_chain(&ChainHead::genesis(), &t, "dev_1", &pk),
            Err(BreakGlassError::Chain { seq: 3, .. })
        ));
        // Not continuing the acknowledged head.
        assert!(verify_chain(&mid, &recs[3..], "dev_1", &pk).is_err());
        // Another device's key, or another device id.
        assert!(verify_chain(
            &ChainHead::genesis(),
            &recs,
            "dev_1",
            &key(8).verifying_key()
        )
        .is_err());
        assert!(verify_chain(&ChainHead::genesis(), &recs, "dev_2", &pk).is_err());
    }

    #[test]
    fn lockout_after_five_failures_ends_when_the_fifth_latest_ages_out() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let f: Vec<_> = (0..5).map(|i| t0 + chrono::Duration::minutes(i)).collect();
        assert_eq!(locked_until(&f[..4]), None);
        assert_eq!(locked_until(&f), Some(t0 + chrono::Duration::minutes(15)));
        let six: Vec<_> = (0..6).map(|i| t0 + chrono::Duration::minutes(i)).collect();
        assert_eq!(locked_until(&six), Some(t0 + chrono::Duration::minutes(16)));
        // Older than the window: forgotten; from the future (clock went back): kept.
        let now = t0 + chrono::Duration::minutes(20);
        let kept = failures_in_window(
            vec![
                now + chrono::Duration::minutes(1),
                t0,
                now - chrono::Duration::minutes(1),
            ],
            now,
        );
        assert_eq!(
            kept,
            vec![
                now - chrono::Duration::minutes(1),
                now + chrono::Duration::minutes(1)
            ]
        );
    }

    #[test]
    fn keys_round_trip_and_fingerprint_is_stable() {
        let pk = key(3).verifying_key();
        assert_eq!(decode_public_key(&encode_public_key(&pk)).unwrap(), pk);
        assert!(decode_public_key("AAAA").is_err());
        assert!(decode_public_key("not base64!").is_err());
        let fp = fingerprint(&pk);
        assert!(fp.starts_with("SHA256:") && fp.len() == 7 + 43, "{fp}");
        assert_ne!(fp, fingerprint(&key(4).verifying_key()));
    }
}
