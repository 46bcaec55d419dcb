//! Two-person (m-of-n) offline break glass (issue 14: quorum).
//!
//! A secret whose policy says `unlock = { groups = [...], quorum = 2 }` is never sealed
//! whole to anyone. The broker splits it with Shamir secret sharing and seals **one
//! share per eligible person** (the same share to each of that person's devices, so two
//! laptops of one person never count as two people). Offline, the requester's device
//! signs an [`UnlockRequest`]; another eligible person's device checks it, and
//! releases its share in a [`ShareRelease`] that is signed by the releaser's device key
//! and age-encrypted to the requester's device; the requester's device checks every
//! binding, and with `m` shares of `m` different people recombines the secret.
//!
//! ## Shamir crate
//!
//! [`blahaj`] (GF(256), byte-wise): the maintained fork of `sharks`, small (no
//! dependency beyond `rand`, `hashbrown`, `zeroize`), shares zeroised on drop, and its
//! dealer takes the caller's RNG. That last point matters here: the broker deals from
//! an RNG seeded with a key derived from its signing key, the secret and the version
//! ([`split_seed`]), so when a person enrols another laptop later the broker deals the
//! **same** split again and seals the same share, without storing any share. Each
//! version (every rotation or `secret put`) has its own seed, so shares rotate with
//! the secret and shares of different versions never combine. `vsss-rs` (Feldman /
//! Pedersen verifiable sharing over elliptic-curve fields) was the alternative: it
//! verifies shares, but needs the secret to be a field element (so a wrapping key and a
//! second encryption layer) and a much larger API; the commitment below gives the
//! requester the check that matters (did the recombined value come out right) with a
//! plain byte-wise scheme.
//!
//! ## The pitfalls of a naive threshold scheme on top of age, and what is done
//!
//! age authenticates nothing about the sender: anyone who knows a recipient can
//! encrypt to it ("age does not provide sender authentication", the age spec, and the
//! classic analysis of sign/encrypt composition: Davis, "Defective Sign & Encrypt in
//! S/MIME, PKCS#7, MOSS, PEM, PGP, and XML", USENIX 2001). And Shamir shares are not
//! authenticated either: a forged or substituted share makes interpolation return a
//! different "secret" without any error (Tompa and Woll, "How to share a secret with
//! cheaters", 1988). A naive scheme ("encrypt your share to the requester's age key")
//! therefore lets an attacker
//!
//! - replay a share released for one request into another request, another envelope or
//!   another version (a chosen-ciphertext / replay attack on an unbound ciphertext),
//! - forward a release decrypted by one requester to someone else (surreptitious
//!   forwarding after sign-then-encrypt),
//! - inject a share of their own making, or a share of a person who never agreed,
//!   silently changing the result.
//!
//! Here every release is bound, inside a body signed by the releaser's **device** key,
//! to the secret, its version, the split ([`QuorumMeta::share_set`]), the SHA-256 of
//! the requester's signed request (which itself names the requester's user, device and
//! recipient and carries a nonce and a short expiry), the requester's device, the
//! share's index and its own expiry. The releaser's device key is checked against the
//! holder directory in the requester's envelope metadata, which the **broker signs**,
//! so the requester verifies offline that the release comes from an eligible co-holder
//! holding that index. Two shares of one person count once. A release is applied once:
//! the requester's device remembers the release ids of a request and consumes the
//! request when the secret is shown. Finally the broker commits to the recombined
//! value: the shared payload is a random 32-byte check key followed by the value, and
//! the signed metadata carries `SHA-256(domain, check key, value)`. The check key is
//! only known with `m` shares, so fewer shares cannot test guesses against the
//! commitment, and a substituted share is detected instead of yielding a wrong value.
//!
//! Everything here is pure: keys, time and randomness (the nonce) are passed in.

use crate::breakglass::{decode_public_key, BreakGlassError, EnvelopeMeta, CLOCK_LEEWAY_SECS};
use base64::Engine;
use blahaj::{Share, Sharks};
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// Record mode of an unlock opened from `m` shares.
pub const MODE_QUORUM: &str = "quorum";
/// Record mode of a share released to someone else's request (no secret was shown).
pub const MODE_SHARE_RELEASED: &str = "share_released";
/// Prefix of an unlock request as text.
pub const REQUEST_PREFIX: &str = "firedoor-unlock-request:v1:";
/// Prefix of a share release as text.
pub const RELEASE_PREFIX: &str = "firedoor-share-release:v1:";
/// Prefix of the plaintext of a quorum envelope (one share, base64).
pub const SHARE_PREFIX: &str = "firedoor-share:v1:";
/// How long an unlock request stays valid.
pub const REQUEST_TTL_MINUTES: i64 = 15;
/// How long a release stays valid (never past its request's expiry).
pub const RELEASE_TTL_MINUTES: i64 = 15;
/// The longest text blob accepted (a request is about 1 KiB, a release about 1.5 KiB).
pub const MAX_BLOB_CHARS: usize = 16 * 1024;
/// The check key's length at the front of the shared payload.
const CHECK_KEY_BYTES: usize = 32;

const REQUEST_DOMAIN: &[u8] = b"firedoor quorum unlock request v1\n";
const RELEASE_DOMAIN: &[u8] = b"firedoor quorum share release v1\n";
const CHECK_DOMAIN: &[u8] = b"firedoor quorum check v1\n";
const SEED_DOMAIN: &[u8] = b"firedoor quorum split seed v1\n";

fn b64url() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}
fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}
fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Why a quorum step was refused. Messages are fit to show a person and never contain
/// secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error("this is not a {0} (it should start with {1})")]
    NotABlob(&'static str, &'static str),
    #[error("the {0} is damaged: {1}")]
    Malformed(&'static str, String),
    #[error("the {0} is not signed by a device the broker lists for {1}")]
    UnknownDevice(&'static str, String),
    #[error("the {0}'s signature does not verify")]
    BadSignature(&'static str),
    #[error("the {0} is for {1}, not for this envelope ({2})")]
    WrongEnvelope(&'static str, String, String),
    #[error("the release answers another unlock request")]
    OtherRequest,
    #[error("the {0} expired at {1}")]
    Expired(&'static str, DateTime<Utc>),
    #[error("the {0} is dated in the future ({1}); check this computer's clock")]
    FromTheFuture(&'static str, DateTime<Utc>),
    #[error("{0} cannot release a share to their own request: a second person must")]
    OwnRequest(String),
    #[error("{0} already gave a share: two shares of one person count once")]
    SamePerson(String),
    #[error("this release was already applied")]
    Replayed,
    #[error("{have} of {need} shares: nothing opens until {need} different people took part")]
    NotEnough { have: usize, need: usize },
    #[error("the shares do not recombine to the value the broker sealed (a share was altered or substituted)")]
    CheckFailed,
    #[error("this envelope holds no share: the secret does not need a quorum")]
    NotQuorum,
    #[error("{0}")]
    Envelope(#[from] BreakGlassError),
}

// ---- what the broker signs ----------------------------------------------------------

/// One device of a co-holder, as the broker lists it in the signed metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderDevice {
    pub id: String,
    /// Base64 ed25519 public key that signs the device's requests and releases.
    pub signing_key: String,
    /// The device's age recipient (requests name it; releases are encrypted to it).
    pub recipient: String,
}

/// One person holding a share of the split, and their devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumHolder {
    pub user: String,
    /// The share's x coordinate (1 to 255).
    pub index: u8,
    pub devices: Vec<HolderDevice>,
}

/// The quorum part of a signed [`EnvelopeMeta`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumMeta {
    /// Id of this split (one per secret version).
    pub share_set: String,
    /// Shares needed (the policy's quorum).
    pub m: u8,
    /// Shares dealt (people holding one when the envelope was sealed).
    pub n: u8,
    /// This envelope's share index.
    pub index: u8,
    /// Hex `SHA-256(CHECK_DOMAIN || check key || value)`.
    pub check: String,
    /// Every holder of the split and their devices' keys (this one included).
    pub holders: Vec<QuorumHolder>,
}

impl QuorumMeta {
    fn device(&self, user: &str, device_id: &str) -> Option<(&QuorumHolder, &HolderDevice)> {
        let h = self.holders.iter().find(|h| h.user == user)?;
        let d = h.devices.iter().find(|d| d.id == device_id)?;
        Some((h, d))
    }
}

/// The seed of a secret version's split: derived from the broker's signing key, so
/// only the broker can deal it, and the same every time for one version.
pub fn split_seed(broker: &SigningKey, secret: &str, version: i64) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(SEED_DOMAIN);
    h.update(broker.to_bytes());
    h.update(secret.as_bytes());
    h.update([0]);
    h.update(version.to_be_bytes());
    Zeroizing::new(h.finalize().into())
}

/// A split, ready to seal: the share of each requested index (as envelope plaintext)
/// and the facts for the metadata.
pub struct Dealt {
    pub share_set: String,
    pub check: String,
    /// `(index, plaintext)`: `firedoor-share:v1:<base64 share>`.
    pub shares: Vec<(u8, Zeroizing<String>)>,
}

impl fmt::Debug for Dealt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dealt")
            .field("share_set", &self.share_set)
            .field("shares", &self.shares.len())
            .finish_non_exhaustive()
    }
}

/// Deals the split of `value` for quorum `m` from `seed` and returns the shares of
/// `indexes` (1 to 255). The same seed always gives the same split.
pub fn deal(value: &[u8], m: u8, seed: &[u8; 32], indexes: &[u8]) -> Dealt {
    use rand010::SeedableRng;
    let sub = |label: &[u8]| -> Zeroizing<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(label);
        h.update(seed);
        Zeroizing::new(h.finalize().into())
    };
    let check_key = sub(b"check key");
    let share_set = format!("qs_{}", &sha256_hex(&[b"share set", seed])[..20]);
    let check = sha256_hex(&[CHECK_DOMAIN, &check_key[..], value]);
    let mut payload = Zeroizing::new(Vec::with_capacity(CHECK_KEY_BYTES + value.len()));
    payload.extend_from_slice(&check_key[..]);
    payload.extend_from_slice(value);
    let mut rng = rand010::rngs::StdRng::from_seed(*sub(b"polynomial"));
    let max = indexes.iter().copied().max().unwrap_or(0) as usize;
    let all: Vec<Share> = Sharks(m.max(1))
        .dealer_rng(&payload, &mut rng)
        .take(max)
        .collect();
    let shares = indexes
        .iter()
        .filter(|i| **i >= 1)
        .map(|&i| {
            let bytes = Zeroizing::new(Vec::<u8>::from(&all[i as usize - 1]));
            (
                i,
                Zeroizing::new(format!("{SHARE_PREFIX}{}", b64().encode(&bytes[..]))),
            )
        })
        .collect();
    Dealt {
        share_set,
        check,
        shares,
    }
}

/// Parses an envelope's plaintext share. The share's x must be the signed index.
pub fn parse_share(text: &str, index: u8) -> Result<Zeroizing<Vec<u8>>, QuorumError> {
    let bad = |why: &str| QuorumError::Malformed("share", why.to_string());
    let rest = text
        .trim()
        .strip_prefix(SHARE_PREFIX)
        .ok_or_else(|| bad("not a share"))?;
    let bytes = Zeroizing::new(b64().decode(rest).map_err(|_| bad("not base64"))?);
    if bytes.len() < 1 + CHECK_KEY_BYTES + 1 || bytes[0] != index {
        return Err(bad("its index does not match the signed one"));
    }
    Ok(bytes)
}

// ---- the requester's signed request -----------------------------------------------

/// What the requester's device signs to ask co-holders for their shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockRequest {
    pub format: u32,
    pub secret: String,
    pub version: i64,
    pub share_set: String,
    pub user: String,
    pub device_id: String,
    /// The requester device's age recipient: releases are encrypted to it.
    pub recipient: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// 16 random bytes, hex: two requests never hash alike.
    pub nonce: String,
}

/// An [`UnlockRequest`]'s exact JSON and the device's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    pub body: String,
    pub signature: String,
}

fn sign(key: &SigningKey, domain: &[u8], body: &str) -> String {
    let mut buf = domain.to_vec();
    buf.extend_from_slice(body.as_bytes());
    b64().encode(key.sign(&buf).to_bytes())
}

fn verify(key: &VerifyingKey, domain: &[u8], body: &str, sig: &str) -> bool {
    let Ok(bytes) = b64().decode(sig.trim()) else {
        return false;
    };
    let Ok(arr) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    let mut buf = domain.to_vec();
    buf.extend_from_slice(body.as_bytes());
    key.verify_strict(&buf, &Signature::from_bytes(&arr))
        .is_ok()
}

fn check_times(
    what: &'static str,
    created: DateTime<Utc>,
    expires: DateTime<Utc>,
    max_minutes: i64,
    now: DateTime<Utc>,
) -> Result<(), QuorumError> {
    if created > now + Duration::seconds(CLOCK_LEEWAY_SECS) {
        return Err(QuorumError::FromTheFuture(what, created));
    }
    if expires - created > Duration::minutes(max_minutes) {
        return Err(QuorumError::Malformed(
            what,
            format!("valid for longer than {max_minutes} minutes"),
        ));
    }
    if now >= expires {
        return Err(QuorumError::Expired(what, expires));
    }
    Ok(())
}

impl SignedRequest {
    /// Starts a request from the requester's own quorum envelope.
    pub fn create(
        own: &EnvelopeMeta,
        reason: &str,
        nonce: [u8; 16],
        key: &SigningKey,
        now: DateTime<Utc>,
    ) -> Result<(SignedRequest, UnlockRequest), QuorumError> {
        let q = own.quorum.as_ref().ok_or(QuorumError::NotQuorum)?;
        let req = UnlockRequest {
            format: 1,
            secret: own.secret.clone(),
            version: own.version,
            share_set: q.share_set.clone(),
            user: own.user.clone(),
            device_id: own.device_id.clone(),
            recipient: own.recipient.clone(),
            reason: reason.to_string(),
            created_at: now,
            expires_at: now + Duration::minutes(REQUEST_TTL_MINUTES),
            nonce: hex::encode(nonce),
        };
        let body = serde_json::to_string(&req).unwrap_or_default();
        let signature = sign(key, REQUEST_DOMAIN, &body);
        Ok((SignedRequest { body, signature }, req))
    }

    /// Hex SHA-256 of the signed body: what a release is bound to.
    pub fn hash(&self) -> String {
        sha256_hex(&[self.body.as_bytes()])
    }

    /// `firedoor-unlock-request:v1:<base64url of the JSON>`.
    pub fn encode(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{REQUEST_PREFIX}{}", b64url().encode(json))
    }

    pub fn decode(text: &str) -> Result<SignedRequest, QuorumError> {
        let text: String = text.split_whitespace().collect();
        if text.len() > MAX_BLOB_CHARS {
            return Err(QuorumError::Malformed("unlock request", "too long".into()));
        }
        let rest = text
            .strip_prefix(REQUEST_PREFIX)
            .ok_or(QuorumError::NotABlob("unlock request", REQUEST_PREFIX))?;
        let json = b64url()
            .decode(rest)
            .map_err(|_| QuorumError::Malformed("unlock request", "not base64url".into()))?;
        serde_json::from_slice(&json)
            .map_err(|e| QuorumError::Malformed("unlock request", e.to_string()))
    }

    /// The request as a co-holder checks it against their own verified envelope
    /// metadata: signed by a device the broker lists for the requester, for the same
    /// split, not expired, from another person.
    pub fn verify(
        &self,
        own: &EnvelopeMeta,
        now: DateTime<Utc>,
    ) -> Result<UnlockRequest, QuorumError> {
        let q = own.quorum.as_ref().ok_or(QuorumError::NotQuorum)?;
        let req: UnlockRequest = serde_json::from_str(&self.body)
            .map_err(|e| QuorumError::Malformed("unlock request", e.to_string()))?;
        let (_, dev) = q.device(&req.user, &req.device_id).ok_or_else(|| {
            QuorumError::UnknownDevice(
                "unlock request",
                format!("{} ({})", req.user, req.device_id),
            )
        })?;
        let key = decode_public_key(&dev.signing_key)?;
        if !verify(&key, REQUEST_DOMAIN, &self.body, &self.signature) {
            return Err(QuorumError::BadSignature("unlock request"));
        }
        if req.format != 1 {
            return Err(QuorumError::Malformed(
                "unlock request",
                format!("format {}", req.format),
            ));
        }
        if req.recipient != dev.recipient {
            return Err(QuorumError::Malformed(
                "unlock request",
                "its recipient is not the requester device's registered one".into(),
            ));
        }
        if req.secret != own.secret || req.version != own.version || req.share_set != q.share_set {
            return Err(QuorumError::WrongEnvelope(
                "unlock request",
                format!("{} v{}", req.secret, req.version),
                format!("{} v{}", own.secret, own.version),
            ));
        }
        check_times(
            "unlock request",
            req.created_at,
            req.expires_at,
            REQUEST_TTL_MINUTES,
            now,
        )?;
        if req.user == own.user {
            return Err(QuorumError::OwnRequest(req.user));
        }
        Ok(req)
    }
}

// ---- the releaser's signed, encrypted release ---------------------------------------

/// What the releaser's device signs when it gives its share to one request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRelease {
    pub format: u32,
    pub secret: String,
    pub version: i64,
    pub share_set: String,
    /// [`SignedRequest::hash`] of the request it answers.
    pub request_hash: String,
    pub requester: String,
    pub requester_device: String,
    pub user: String,
    pub device_id: String,
    pub index: u8,
    /// The share, base64 (only ever inside the age encryption).
    pub share: String,
    pub released_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub nonce: String,
}

impl fmt::Debug for ShareRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareRelease")
            .field("secret", &self.secret)
            .field("version", &self.version)
            .field("user", &self.user)
            .field("share", &"[redacted]")
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct SignedRelease {
    body: String,
    signature: String,
}

/// A release made by this device: the text to hand over and the facts to record.
pub struct MadeRelease {
    /// `firedoor-share-release:v1:<base64url of the age file>`.
    pub text: String,
    /// Hex SHA-256 of the signed body (the release's id).
    pub id: String,
    pub request_hash: String,
    pub request: UnlockRequest,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for MadeRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MadeRelease")
            .field("id", &self.id)
            .field("request_hash", &self.request_hash)
            .finish_non_exhaustive()
    }
}

/// Releases this device's share to a verified request. `own_share` is the envelope's
/// plaintext; `own` its verified metadata.
pub fn release_share(
    request: &SignedRequest,
    own: &EnvelopeMeta,
    own_share: &str,
    key: &SigningKey,
    nonce: [u8; 16],
    now: DateTime<Utc>,
) -> Result<MadeRelease, QuorumError> {
    let req = request.verify(own, now)?;
    let q = own.quorum.as_ref().ok_or(QuorumError::NotQuorum)?;
    let share = parse_share(own_share, q.index)?;
    let expires_at = (now + Duration::minutes(RELEASE_TTL_MINUTES)).min(req.expires_at);
    let rel = ShareRelease {
        format: 1,
        secret: own.secret.clone(),
        version: own.version,
        share_set: q.share_set.clone(),
        request_hash: request.hash(),
        requester: req.user.clone(),
        requester_device: req.device_id.clone(),
        user: own.user.clone(),
        device_id: own.device_id.clone(),
        index: q.index,
        share: b64().encode(&share[..]),
        released_at: now,
        expires_at,
        nonce: hex::encode(nonce),
    };
    let body = Zeroizing::new(serde_json::to_string(&rel).unwrap_or_default());
    let id = sha256_hex(&[body.as_bytes()]);
    let signature = sign(key, RELEASE_DOMAIN, &body);
    let inner = Zeroizing::new(
        serde_json::to_string(&SignedRelease {
            body: body.to_string(),
            signature,
        })
        .unwrap_or_default(),
    );
    let recipient = age::x25519::Recipient::from_str(&req.recipient)
        .map_err(|e| QuorumError::Malformed("unlock request", format!("recipient: {e}")))?;
    let ct = age::encrypt(&recipient, inner.as_bytes())
        .map_err(|e| QuorumError::Malformed("release", format!("encryption: {e}")))?;
    Ok(MadeRelease {
        text: format!("{RELEASE_PREFIX}{}", b64url().encode(ct)),
        id,
        request_hash: request.hash(),
        request: req,
        expires_at,
    })
}

/// A release checked by the requester: a co-holder's share for this request.
pub struct VerifiedRelease {
    pub id: String,
    pub user: String,
    pub device_id: String,
    pub index: u8,
    pub released_at: DateTime<Utc>,
    share: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for VerifiedRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedRelease")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Opens and checks a release on the requester's device, against its own signed
/// request and its own verified envelope metadata.
pub fn open_release(
    text: &str,
    identity: &age::x25519::Identity,
    request: &SignedRequest,
    own: &EnvelopeMeta,
    now: DateTime<Utc>,
) -> Result<VerifiedRelease, QuorumError> {
    let q = own.quorum.as_ref().ok_or(QuorumError::NotQuorum)?;
    let text: String = text.split_whitespace().collect();
    if text.len() > MAX_BLOB_CHARS {
        return Err(QuorumError::Malformed("release", "too long".into()));
    }
    let rest = text
        .strip_prefix(RELEASE_PREFIX)
        .ok_or(QuorumError::NotABlob("release", RELEASE_PREFIX))?;
    let ct = b64url()
        .decode(rest)
        .map_err(|_| QuorumError::Malformed("release", "not base64url".into()))?;
    let inner = Zeroizing::new(age::decrypt(identity, &ct).map_err(|_| {
        QuorumError::Malformed(
            "release",
            "this device's key does not open it (it was made for another device)".into(),
        )
    })?);
    let signed: SignedRelease = serde_json::from_slice(&inner)
        .map_err(|e| QuorumError::Malformed("release", e.to_string()))?;
    let body = Zeroizing::new(signed.body);
    let rel: ShareRelease = serde_json::from_str(&body)
        .map_err(|e| QuorumError::Malformed("release", e.to_string()))?;
    let (holder, dev) = q.device(&rel.user, &rel.device_id).ok_or_else(|| {
        QuorumError::UnknownDevice("release", format!("{} ({})", rel.user, rel.device_id))
    })?;
    let key = decode_public_key(&dev.signing_key)?;
    if !verify(&key, RELEASE_DOMAIN, &body, &signed.signature) {
        return Err(QuorumError::BadSignature("release"));
    }
    if rel.format != 1 {
        return Err(QuorumError::Malformed(
            "release",
            format!("format {}", rel.format),
        ));
    }
    if rel.secret != own.secret || rel.version != own.version || rel.share_set != q.share_set {
        return Err(QuorumError::WrongEnvelope(
            "release",
            format!("{} v{}", rel.secret, rel.version),
            format!("{} v{}", own.secret, own.version),
        ));
    }
    if rel.request_hash != request.hash()
        || rel.requester != own.user
        || rel.requester_device != own.device_id
    {
        return Err(QuorumError::OtherRequest);
    }
    check_times(
        "release",
        rel.released_at,
        rel.expires_at,
        RELEASE_TTL_MINUTES,
        now,
    )?;
    if rel.user == own.user {
        return Err(QuorumError::OwnRequest(rel.user));
    }
    if rel.index != holder.index {
        return Err(QuorumError::Malformed(
            "release",
            "its share index is not the one the broker dealt to that person".into(),
        ));
    }
    let share = Zeroizing::new(
        b64()
            .decode(&rel.share)
            .map_err(|_| QuorumError::Malformed("release", "share not base64".into()))?,
    );
    if share.len() < 2 || share[0] != holder.index {
        return Err(QuorumError::Malformed(
            "release",
            "share index mismatch".into(),
        ));
    }
    Ok(VerifiedRelease {
        id: sha256_hex(&[body.as_bytes()]),
        user: rel.user.clone(),
        device_id: rel.device_id.clone(),
        index: rel.index,
        released_at: rel.released_at,
        share,
    })
}

/// Recombines the secret from this device's own share and verified releases: needs
/// `m` shares of `m` different people, and the result must match the broker's
/// signed commitment.
pub fn combine(
    own: &EnvelopeMeta,
    own_share: &str,
    releases: &[VerifiedRelease],
) -> Result<Zeroizing<String>, QuorumError> {
    let q = own.quorum.as_ref().ok_or(QuorumError::NotQuorum)?;
    let mine = parse_share(own_share, q.index)?;
    let mut people = BTreeSet::from([own.user.clone()]);
    let mut ids = BTreeSet::new();
    let mut shares =
        vec![Share::try_from(&mine[..]).map_err(|e| QuorumError::Malformed("share", e.into()))?];
    for r in releases {
        if !ids.insert(r.id.clone()) {
            return Err(QuorumError::Replayed);
        }
        if !people.insert(r.user.clone()) {
            return Err(QuorumError::SamePerson(r.user.clone()));
        }
        shares.push(
            Share::try_from(&r.share[..])
                .map_err(|e| QuorumError::Malformed("release", e.into()))?,
        );
    }
    let need = q.m as usize;
    if people.len() < need {
        return Err(QuorumError::NotEnough {
            have: people.len(),
            need,
        });
    }
    let payload = Zeroizing::new(
        Sharks(q.m)
            .recover(&shares)
            .map_err(|_| QuorumError::CheckFailed)?,
    );
    if payload.len() < CHECK_KEY_BYTES
        || sha256_hex(&[
            CHECK_DOMAIN,
            &payload[..CHECK_KEY_BYTES],
            &payload[CHECK_KEY_BYTES..],
        ]) != q.check
    {
        return Err(QuorumError::CheckFailed);
    }
    let value = String::from_utf8(payload[CHECK_KEY_BYTES..].to_vec())
        .map_err(|_| QuorumError::Malformed("secret", "not text".into()))?;
    Ok(Zeroizing::new(value))
}

// ---- what the device records ---------------------------------------------------------

/// The quorum part of an [`crate::breakglass::UnlockRecord`] (modes `quorum` and
/// `share_released`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumRecord {
    pub share_set: String,
    /// [`SignedRequest::hash`].
    pub request_hash: String,
    pub requester: String,
    pub requester_device: String,
    /// The people whose releases opened it (mode `quorum`), or the releaser itself
    /// (mode `share_released`).
    pub releasers: Vec<String>,
    /// Release ids ([`VerifiedRelease::id`] / [`MadeRelease::id`]).
    pub releases: Vec<String>,
    pub m: u8,
}

impl QuorumRecord {
    pub fn check_bounds(&self) -> Result<(), String> {
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex64(&self.request_hash) {
            return Err("quorum.request_hash is not a SHA-256".into());
        }
        let max = crate::policy::MAX_QUORUM as usize;
        if self.releasers.len() > max || self.releases.len() > max {
            return Err(format!("quorum names more than {max} releases"));
        }
        if self.releases.iter().any(|r| !hex64(r)) {
            return Err("quorum.releases holds something else than SHA-256 ids".into());
        }
        for (field, v) in [
            ("share_set", &self.share_set),
            ("requester", &self.requester),
            ("requester_device", &self.requester_device),
        ]
        .into_iter()
        .chain(self.releasers.iter().map(|r| ("releasers", r)))
        {
            let n = v.chars().count();
            if n == 0 || n > crate::breakglass::MAX_RECORD_NAME_CHARS {
                return Err(format!(
                    "quorum.{field} is {n} characters; expected 1 to {}",
                    crate::breakglass::MAX_RECORD_NAME_CHARS
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    struct Person {
        user: &'static str,
        device: String,
        key: SigningKey,
        id: age::x25519::Identity,
    }

    fn person(user: &'static str, dev: &str, b: u8) -> Person {
        Person {
            user,
            device: dev.into(),
            key: SigningKey::from_bytes(&[b; 32]),
            id: age::x25519::Identity::generate(),
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    /// Envelopes of one split, as the broker seals them: (meta, plaintext share).
    fn seal(value: &str, m: u8, people: &[&Person], version: i64) -> Vec<(EnvelopeMeta, String)> {
        let broker = SigningKey::from_bytes(&[9; 32]);
        let seed = split_seed(&broker, "db", version);
        let mut users: Vec<&str> = people.iter().map(|p| p.user).collect();
        users.dedup();
        let idx: Vec<u8> = (1..=users.len() as u8).collect();
        let dealt = deal(value.as_bytes(), m, &seed, &idx);
        let holders: Vec<QuorumHolder> = users
            .iter()
            .enumerate()
            .map(|(i, u)| QuorumHolder {
                user: u.to_string(),
                index: i as u8 + 1,
                devices: people
                    .iter()
                    .filter(|p| p.user == *u)
                    .map(|p| HolderDevice {
                        id: p.device.clone(),
                        signing_key: crate::breakglass::encode_public_key(&p.key.verifying_key()),
                        recipient: p.id.to_public().to_string(),
                    })
                    .collect(),
            })
            .collect();
        people
            .iter()
            .map(|p| {
                let index = users.iter().position(|u| *u == p.user).unwrap() as u8 + 1;
                let meta = EnvelopeMeta {
                    format: 1,
                    secret: "db".into(),
                    version,
                    device_id: p.device.clone(),
                    user: p.user.into(),
                    recipient: p.id.to_public().to_string(),
                    sealed_at: t0(),
                    not_before: t0(),
                    not_after: t0() + Duration::days(7),
                    ciphertext_sha256: String::new(),
                    quorum: Some(QuorumMeta {
                        share_set: dealt.share_set.clone(),
                        m,
                        n: users.len() as u8,
                        index,
                        check: dealt.check.clone(),
                        holders: holders.clone(),
                    }),
                };
                let share = dealt.shares[index as usize - 1].1.to_string();
                (meta, share)
            })
            .collect()
    }

    #[test]
    fn two_of_three_opens_with_two_people_and_not_with_one() {
        let a = person("alice", "d_a", 1);
        let b = person("bob", "d_b", 2);
        let c = person("carol", "d_c", 3);
        let env = seal("pw-secret-1", 2, &[&a, &b, &c], 4);
        let now = t0() + Duration::hours(1);
        let (req, _) =
            SignedRequest::create(&env[0].0, "INC-1 db down", [1; 16], &a.key, now).unwrap();
        let text = req.encode();
        assert!(text.starts_with(REQUEST_PREFIX));
        let req2 = SignedRequest::decode(&format!(" {}\n", text)).unwrap();
        assert_eq!(req2, req);
        // Fewer than m shares open nothing.
        assert_eq!(
            combine(&env[0].0, &env[0].1, &[]).unwrap_err(),
            QuorumError::NotEnough { have: 1, need: 2 }
        );
        let seen = req2.verify(&env[1].0, now).unwrap();
        assert_eq!(seen.reason, "INC-1 db down");
        let rel = release_share(&req2, &env[1].0, &env[1].1, &b.key, [2; 16], now).unwrap();
        assert!(!rel.text.contains("pw-secret"));
        let v = open_release(&rel.text, &a.id, &req, &env[0].0, now).unwrap();
        assert_eq!(v.user, "bob");
        assert_eq!(v.id, rel.id);
        let secret = combine(&env[0].0, &env[0].1, std::slice::from_ref(&v)).unwrap();
        assert_eq!(secret.as_str(), "pw-secret-1");
        // Replayed in the same combination.
        let v2 = open_release(&rel.text, &a.id, &req, &env[0].0, now).unwrap();
        assert_eq!(
            combine(&env[0].0, &env[0].1, &[v, v2]).unwrap_err(),
            QuorumError::Replayed
        );
        // Carol's share works too (any 2 of 3).
        let rc = release_share(&req2, &env[2].0, &env[2].1, &c.key, [3; 16], now).unwrap();
        let vc = open_release(&rc.text, &a.id, &req, &env[0].0, now).unwrap();
        assert_eq!(
            combine(&env[0].0, &env[0].1, &[vc]).unwrap().as_str(),
            "pw-secret-1"
        );
    }

    #[test]
    fn the_same_seed_deals_the_same_split_and_versions_differ() {
        let broker = SigningKey::from_bytes(&[9; 32]);
        let a = deal(b"v", 2, &split_seed(&broker, "db", 1), &[1, 2, 3]);
        let b = deal(b"v", 2, &split_seed(&broker, "db", 1), &[2]);
        assert_eq!(
            a.shares[1].1, b.shares[0].1,
            "a later device gets the same share"
        );
        assert_eq!(a.share_set, b.share_set);
        let c = deal(b"v", 2, &split_seed(&broker, "db", 2), &[2]);
        assert_ne!(a.shares[1].1, c.shares[0].1, "a new version, a new split");
        assert_ne!(a.share_set, c.share_set);
        // Pinned: a dependency update that changes the dealing fails here (devices
        // holding shares of the current version would no longer match new ones).
        assert_eq!(a.share_set, "qs_bb2f661f7c74afc498bf");
        assert_eq!(
            &sha256_hex(&[a.shares[0].1.as_bytes()])[..16],
            "27d89e2751a15c21",
            "the dealt share"
        );
    }

    #[test]
    fn releases_are_bound_to_request_envelope_time_and_holder() {
        let a = person("alice", "d_a", 1);
        let a2 = person("alice", "d_a2", 4);
        let b = person("bob", "d_b", 2);
        let x = person("mallory", "d_x", 5);
        let env = seal("pw-2", 2, &[&a, &a2, &b], 7);
        let now = t0() + Duration::hours(1);
        let (req, _) = SignedRequest::create(&env[0].0, "INC-2", [1; 16], &a.key, now).unwrap();
        let rel = release_share(&req, &env[2].0, &env[2].1, &b.key, [2; 16], now).unwrap();

        // Another request of the same device: the release does not fit it.
        let (other, _) = SignedRequest::create(&env[0].0, "INC-2", [7; 16], &a.key, now).unwrap();
        assert_eq!(
            open_release(&rel.text, &a.id, &other, &env[0].0, now).unwrap_err(),
            QuorumError::OtherRequest
        );
        // Expired.
        assert!(matches!(
            open_release(&rel.text, &a.id, &req, &env[0].0, rel.expires_at).unwrap_err(),
            QuorumError::Expired("release", _)
        ));
        // Another device (alice's second laptop) cannot even open it.
        assert!(matches!(
            open_release(&rel.text, &a2.id, &req, &env[1].0, now).unwrap_err(),
            QuorumError::Malformed("release", _)
        ));
        // Another version's envelope (a rotation happened): refused.
        let env8 = seal("pw-3", 2, &[&a, &a2, &b], 8);
        assert!(matches!(
            open_release(&rel.text, &a.id, &req, &env8[0].0, now).unwrap_err(),
            QuorumError::WrongEnvelope(..)
        ));
        // A request for the old version cannot be answered from the new envelope.
        assert!(matches!(
            req.verify(&env8[2].0, now).unwrap_err(),
            QuorumError::WrongEnvelope(..)
        ));
        // Alice's second device cannot release to alice: same person.
        assert!(matches!(
            release_share(&req, &env[1].0, &env[1].1, &a2.key, [3; 16], now).unwrap_err(),
            QuorumError::OwnRequest(_)
        ));
        // A stranger's key (not in the broker-signed directory) signs a release: refused.
        let mut forged_meta = env[2].0.clone();
        forged_meta.user = "mallory".into();
        forged_meta.device_id = "d_x".into();
        let forged = release_share(&req, &forged_meta, &env[2].1, &x.key, [4; 16], now);
        // The forged release is made (mallory's tool) but the requester refuses it.
        let forged = forged.unwrap();
        assert!(matches!(
            open_release(&forged.text, &a.id, &req, &env[0].0, now).unwrap_err(),
            QuorumError::UnknownDevice("release", _)
        ));
        // Bob's device id with mallory's key: the signature fails.
        let mut fm = env[2].0.clone();
        fm.recipient = env[2].0.recipient.clone();
        let forged = release_share(&req, &fm, &env[2].1, &x.key, [5; 16], now).unwrap();
        assert_eq!(
            open_release(&forged.text, &a.id, &req, &env[0].0, now).unwrap_err(),
            QuorumError::BadSignature("release")
        );
        // An expired request is not answered.
        assert!(matches!(
            release_share(
                &req,
                &env[2].0,
                &env[2].1,
                &b.key,
                [6; 16],
                req_expiry(&req)
            )
            .unwrap_err(),
            QuorumError::Expired("unlock request", _)
        ));
        // A tampered request (reason changed) fails its signature.
        let mut t = req.clone();
        t.body = t.body.replace("INC-2", "INC-3");
        assert_eq!(
            t.verify(&env[2].0, now).unwrap_err(),
            QuorumError::BadSignature("unlock request")
        );
    }

    fn req_expiry(r: &SignedRequest) -> DateTime<Utc> {
        serde_json::from_str::<UnlockRequest>(&r.body)
            .unwrap()
            .expires_at
    }

    #[test]
    fn a_substituted_share_is_detected_and_two_shares_of_one_person_count_once() {
        let a = person("alice", "d_a", 1);
        let a2 = person("alice", "d_a2", 4);
        let b = person("bob", "d_b", 2);
        let c = person("carol", "d_c", 3);
        let env = seal("pw-4", 3, &[&a, &a2, &b, &c], 1);
        let now = t0() + Duration::hours(1);
        assert_eq!(
            env[0].1, env[1].1,
            "one share per person, on each of their devices"
        );
        let (req, _) = SignedRequest::create(&env[0].0, "INC-4", [1; 16], &a.key, now).unwrap();
        let rb = release_share(&req, &env[2].0, &env[2].1, &b.key, [2; 16], now).unwrap();
        let vb = open_release(&rb.text, &a.id, &req, &env[0].0, now).unwrap();
        let vb2 = open_release(
            &release_share(&req, &env[2].0, &env[2].1, &b.key, [3; 16], now)
                .unwrap()
                .text,
            &a.id,
            &req,
            &env[0].0,
            now,
        )
        .unwrap();
        assert_eq!(
            combine(&env[0].0, &env[0].1, &[vb, vb2]).unwrap_err(),
            QuorumError::SamePerson("bob".into())
        );
        let vb = open_release(&rb.text, &a.id, &req, &env[0].0, now).unwrap();
        assert_eq!(
            combine(&env[0].0, &env[0].1, std::slice::from_ref(&vb)).unwrap_err(),
            QuorumError::NotEnough { have: 2, need: 3 }
        );
        // Carol's share altered (a cheater changes bytes but keeps the index).
        let rc = release_share(&req, &env[3].0, &env[3].1, &c.key, [4; 16], now).unwrap();
        let mut vc = open_release(&rc.text, &a.id, &req, &env[0].0, now).unwrap();
        let last = vc.share.len() - 1;
        vc.share[last] ^= 1;
        assert_eq!(
            combine(&env[0].0, &env[0].1, &[vb, vc]).unwrap_err(),
            QuorumError::CheckFailed
        );
    }

    #[test]
    fn record_bounds() {
        let r = QuorumRecord {
            share_set: "qs_1".into(),
            request_hash: "a".repeat(64),
            requester: "alice".into(),
            requester_device: "d".into(),
            releasers: vec!["bob".into()],
            releases: vec!["b".repeat(64)],
            m: 2,
        };
        assert_eq!(r.check_bounds(), Ok(()));
        let mut t = r.clone();
        t.request_hash = "zz".into();
        assert!(t.check_bounds().is_err());
        let mut t = r.clone();
        t.releasers = vec!["x".repeat(65)];
        assert!(t.check_bounds().is_err());
        let mut t = r;
        t.releases = vec!["b".repeat(64); 17];
        assert!(t.check_bounds().is_err());
    }
}
