//! Two-person (m-of-n) offline break glass on this device (issue 14: quorum), as
//! more methods of [`Console`]. The cryptography and every binding check are in
//! [`firedoor_core::quorum`] (read its module docs for the design and the pitfalls of
//! naive threshold schemes it avoids); this module keeps the state on the device and
//! writes the records.
//!
//! 1. The requester: [`Console::quorum_request`] (reason, passphrase) signs an unlock
//!    request with the device key and returns it as text
//!    (`firedoor-unlock-request:v1:…`) and as a QR code (SVG). The request is kept in
//!    the cache (`kv`, per account) with the releases accepted so far.
//! 2. Another eligible person, on their own device: [`Console::quorum_inspect`] shows
//!    who asks, for what and why; [`Console::quorum_release`] (passphrase) releases
//!    their share, encrypted to the requester's device and bound to that request, and
//!    first appends a signed `share_released` record to their own chain.
//! 3. The requester: [`Console::quorum_complete`] (releases, passphrase) verifies each
//!    release, refuses replays, and with `m` shares of `m` different people
//!    recombines the secret, appends a signed `quorum` record naming the releasers,
//!    spends the request, and only then returns the secret. With fewer shares it keeps
//!    the releases (still encrypted to this device) and opens nothing.
//!
//! Both chains go to the broker at the next sync like every unlock record.

use super::{
    check_binding, damaged, fmt_time, pin_of, Account, Enrolment, OfflineUnlock, UnlockMode,
    UnlockResult, HIDE_AFTER_SECS, K_OFFLINE_UNLOCKS, K_TIP,
};
use crate::console::{Change, Console, ConsoleError, ConsoleErrorCode, ErrorCode, Result};
use crate::device::DeviceKeys;
use crate::trust::TrustState;
use chrono::{DateTime, Utc};
use firedoor_core::breakglass::{
    BreakGlassError, ChainHead, Envelope, EnvelopeMeta, SignedRecord, UnlockRecord,
};
use firedoor_core::quorum::{
    self as q, QuorumError, QuorumRecord, SignedRequest, UnlockRequest, MODE_QUORUM,
    MODE_SHARE_RELEASED,
};
use rand::RngCore;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Pending requests of this device (JSON map request id -> [`PendingRequest`]).
const K_PENDING: &str = "quorum_requests";
/// Requests this device released a share to (JSON map request id -> expiry).
const K_RELEASED: &str = "quorum_released";

/// A request of this device, kept until it expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingRequest {
    secret: String,
    request: SignedRequest,
    expires_at: DateTime<Utc>,
    /// Releases accepted so far, as received (age-encrypted to this device).
    releases: Vec<String>,
    /// Their ids: a release is applied once.
    release_ids: Vec<String>,
    /// When the secret was shown: the request is spent.
    completed_at: Option<DateTime<Utc>>,
}

/// A two-person unlock request made on this device, to hand to another person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct QuorumRequestOut {
    /// Hex SHA-256 of the signed request: releases are bound to it.
    pub request_id: String,
    pub name: String,
    pub title: String,
    pub version: i64,
    /// `firedoor-unlock-request:v1:…`: paste it, save it to a file, or show the QR.
    pub text: String,
    /// The same text as a QR code (SVG), when it fits one.
    pub qr_svg: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Shares needed, this device's included.
    pub need: u8,
    /// The other people who may release a share.
    pub co_holders: Vec<String>,
}

/// What a releaser sees of someone's request before releasing a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct QuorumRequestView {
    pub request_id: String,
    pub name: String,
    pub title: String,
    pub version: i64,
    pub requester: String,
    pub requester_device: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub need: u8,
}

/// A share released by this device, to hand back to the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct QuorumReleaseOut {
    pub request_id: String,
    pub name: String,
    pub requester: String,
    /// `firedoor-share-release:v1:…` (encrypted to the requester's device).
    pub text: String,
    pub qr_svg: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// This device's `share_released` record.
    pub record_seq: u64,
}

/// A pending request of this device and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct QuorumProgress {
    pub request_id: String,
    pub name: String,
    pub expires_at: DateTime<Utc>,
    /// Shares in hand, this device's included.
    pub have: u8,
    pub need: u8,
    pub completed: bool,
}

/// The text as an SVG QR code (medium error correction), or `None` when it is too
/// long for one. Pasting the text always works; the QR is for a camera.
pub fn qr_svg(text: &str) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
    )
}

fn refused(e: QuorumError) -> ConsoleError {
    match e {
        QuorumError::NotEnough { .. } => {
            ConsoleError::new(ConsoleErrorCode::QuorumIncomplete, format!("{e}."))
        }
        QuorumError::Expired(..) => ConsoleError::new(
            ConsoleErrorCode::QuorumRefused,
            format!("{e}: start a new request."),
        ),
        _ => ConsoleError::new(ConsoleErrorCode::QuorumRefused, format!("{e}.")),
    }
}

fn internal(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::new(ErrorCode::Internal, e.to_string())
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn reason_ok(reason: &str) -> Result<String> {
    firedoor_core::input::break_glass_reason(reason).map_err(|_| {
        ConsoleError::new(
            ConsoleErrorCode::Validation,
            "Give a reason (one line, under 500 characters): it goes to the audit trail and to security.",
        )
    })
}

impl Console {
    /// The account, enrolment and user, or why there is none.
    async fn quorum_account(&self) -> Result<(Account, Enrolment, String)> {
        let (_, a, user) = self.signed_in_account().await?;
        let Some(enr) = self.enrolment(&a).await? else {
            return Err(ConsoleError::new(
                ConsoleErrorCode::NotEnrolled,
                "This device is not enrolled for break glass. Enrol it while the broker is reachable.",
            ));
        };
        Ok((a, enr, user))
    }

    /// This device's sealed share of `name`, checked like an offline unlock checks
    /// its envelope (pinned broker signature, binding to this device and user, no
    /// rollback, validity window): its metadata, envelope and title.
    async fn own_share(
        &self,
        a: &Account,
        enr: &Enrolment,
        user: &str,
        state: &mut TrustState,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(EnvelopeMeta, Envelope, String)> {
        let cached = self.cache.envelope(name).await?.ok_or_else(|| {
            ConsoleError::new(
                ErrorCode::NotFound,
                format!("This device holds no sealed share of '{name}'."),
            )
        })?;
        let title = cached.title.clone();
        let invalid = |why: String| {
            ConsoleError::new(
                ConsoleErrorCode::EnvelopeInvalid,
                format!("The sealed share of {title} cannot be used: {why}."),
            )
        };
        let envelope = cached.envelope.map_err(&invalid)?;
        let pin = pin_of(state)?.ok_or_else(|| {
            invalid(
                "no broker signing key is pinned; sign in again while the broker is reachable"
                    .into(),
            )
        })?;
        let meta = envelope
            .verify(&pin.key)
            .map_err(|e| invalid(e.to_string()))?;
        check_binding(&meta, name, enr, user).map_err(&invalid)?;
        if meta.quorum.is_none() {
            return Err(ConsoleError::new(
                ConsoleErrorCode::QuorumRefused,
                format!("{title} opens with one person: unlock it directly."),
            ));
        }
        if let Some(floor) = state.floor(name).filter(|f| meta.version < *f) {
            return Err(ConsoleError::new(
                ConsoleErrorCode::EnvelopeRolledBack,
                format!(
                    "The sealed share of {title} is version {}, older than version {floor} this device has already seen.",
                    meta.version
                ),
            ));
        }
        if state.saw_version(name, meta.version) {
            self.save_state(a, state).await?;
        }
        match meta.check_window(now) {
            Ok(()) => {}
            Err(BreakGlassError::Expired(t)) => {
                return Err(ConsoleError::new(
                    ConsoleErrorCode::EnvelopeExpired,
                    format!(
                        "The sealed share of {title} expired at {}. It is renewed when the broker is reachable.",
                        fmt_time(t)
                    ),
                ))
            }
            Err(e) => return Err(invalid(e.to_string())),
        }
        Ok((meta, envelope, title))
    }

    fn open_share(keys: &DeviceKeys, envelope: &Envelope) -> Result<Zeroizing<String>> {
        let plain = Zeroizing::new(
            age::decrypt(keys.age_identity(), envelope.ciphertext.as_bytes()).map_err(|e| {
                ConsoleError::new(
                    ConsoleErrorCode::EnvelopeInvalid,
                    format!("This device's key does not open its sealed share ({e})."),
                )
            })?,
        );
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| {
                ConsoleError::new(
                    ConsoleErrorCode::EnvelopeInvalid,
                    "The sealed share is not a share.",
                )
            })
    }

    async fn pending(&self, a: &Account) -> BTreeMap<String, PendingRequest> {
        match self.cache.get(&a.key(K_PENDING)).await {
            Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    }

    async fn save_pending(
        &self,
        a: &Account,
        map: &BTreeMap<String, PendingRequest>,
    ) -> Result<()> {
        let v = serde_json::to_string(map).map_err(internal)?;
        self.cache.set(&a.key(K_PENDING), Some(&v)).await?;
        Ok(())
    }

    /// Appends a signed record to this device's chain (refused while the chain does
    /// not verify); returns its sequence number. `extra` kv entries commit with it.
    #[allow(clippy::too_many_arguments)]
    async fn append_quorum_record(
        &self,
        a: &Account,
        enr: &Enrolment,
        keys: &DeviceKeys,
        user: &str,
        meta: &EnvelopeMeta,
        reason: &str,
        mode: &str,
        record: QuorumRecord,
        extra: impl FnOnce(u64) -> Result<Vec<(String, String)>>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let st = self.chain_state(a, enr).await?;
        if let Some(p) = st.problem {
            return Err(ConsoleError::new(
                ConsoleErrorCode::ChainBroken,
                format!(
                    "{p} Break glass is refused until the broker has seen this device's records."
                ),
            ));
        }
        let rec = UnlockRecord {
            format: 1,
            seq: st.tip.seq + 1,
            device_id: enr.device_id.clone(),
            user: user.to_string(),
            secret: meta.secret.clone(),
            version: meta.version,
            at: now,
            reason: reason.to_string(),
            mode: mode.to_string(),
            prev_hash: st.tip.hash.clone(),
            quorum: Some(record),
            incident: None,
        };
        rec.check_bounds()
            .map_err(|p| ConsoleError::new(ConsoleErrorCode::Validation, p))?;
        let signed = SignedRecord::sign(&rec, keys.signing_key());
        let tip = serde_json::to_string(&ChainHead {
            seq: rec.seq,
            hash: signed.hash.clone(),
        })
        .map_err(internal)?;
        let tip_key = a.key(K_TIP);
        let extra = extra(rec.seq)?;
        let mut kv: Vec<(&str, Option<&str>)> = vec![(&tip_key, Some(&tip))];
        for (k, v) in &extra {
            kv.push((k, Some(v)));
        }
        self.cache
            .append_unlock_record(&a.id, rec.seq, &signed, &kv)
            .await?;
        Ok(rec.seq)
    }

    /// Starts a two-person unlock of `name`: signs a request with this device's key
    /// (the passphrase opens it) and returns it as text and QR code.
    pub async fn quorum_request(
        &self,
        name: &str,
        reason: &str,
        passphrase: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<QuorumRequestOut> {
        let reason = reason_ok(reason)?;
        let (a, enr, user) = self.quorum_account().await?;
        let _turn = self.break_glass_turn.lock().await;
        let mut state = self.load_state(&a).await?;
        let (meta, _, title) = self
            .own_share(&a, &enr, &user, &mut state, name, now)
            .await?;
        let keys = self
            .open_device_keys(&a, &enr, &mut state, passphrase, now)
            .await?;
        let (signed, req) = SignedRequest::create(&meta, &reason, nonce(), keys.signing_key(), now)
            .map_err(refused)?;
        drop(keys);
        let qm = meta.quorum.as_ref().ok_or_else(|| internal("no quorum"))?;
        let id = signed.hash();
        let mut map = self.pending(&a).await;
        // Expired requests are forgotten.
        map.retain(|_, p| p.expires_at > now - chrono::Duration::days(1));
        map.insert(
            id.clone(),
            PendingRequest {
                secret: name.to_string(),
                request: signed.clone(),
                expires_at: req.expires_at,
                releases: Vec::new(),
                release_ids: Vec::new(),
                completed_at: None,
            },
        );
        self.save_pending(&a, &map).await?;
        let text = signed.encode();
        tracing::warn!(secret = %name, "two-person break glass: unlock request made");
        Ok(QuorumRequestOut {
            request_id: id,
            name: name.to_string(),
            title,
            version: meta.version,
            qr_svg: qr_svg(&text),
            text,
            expires_at: req.expires_at,
            need: qm.m,
            co_holders: qm
                .holders
                .iter()
                .filter(|h| h.user != user)
                .map(|h| h.user.clone())
                .collect(),
        })
    }

    /// The request in `text`, checked against this device's own share of the same
    /// secret: who asks, for what and why. Nothing is released.
    pub async fn quorum_inspect(
        &self,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<QuorumRequestView> {
        let (a, enr, user) = self.quorum_account().await?;
        let mut state = self.load_state(&a).await?;
        let signed = SignedRequest::decode(text).map_err(refused)?;
        let claimed: UnlockRequest = serde_json::from_str(&signed.body)
            .map_err(|e| refused(QuorumError::Malformed("unlock request", e.to_string())))?;
        let (meta, _, title) = self
            .own_share(&a, &enr, &user, &mut state, &claimed.secret, now)
            .await?;
        let req = signed.verify(&meta, now).map_err(refused)?;
        let device = meta
            .quorum
            .as_ref()
            .and_then(|qm| qm.holders.iter().find(|h| h.user == req.user))
            .map(|_| req.device_id.clone())
            .unwrap_or_default();
        Ok(QuorumRequestView {
            request_id: signed.hash(),
            name: req.secret.clone(),
            title,
            version: req.version,
            requester: req.user.clone(),
            requester_device: device,
            reason: req.reason.clone(),
            created_at: req.created_at,
            expires_at: req.expires_at,
            need: meta.quorum.as_ref().map(|qm| qm.m).unwrap_or(1),
        })
    }

    /// Releases this device's share to the request in `text` (another eligible
    /// person's): appends a signed `share_released` record first, then returns the
    /// release (encrypted to the requester's device) as text and QR code. A request
    /// gets at most one release from this device.
    pub async fn quorum_release(
        &self,
        text: &str,
        passphrase: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<QuorumReleaseOut> {
        let (a, enr, user) = self.quorum_account().await?;
        let _turn = self.break_glass_turn.lock().await;
        let mut state = self.load_state(&a).await?;
        let signed = SignedRequest::decode(text).map_err(refused)?;
        let claimed: UnlockRequest = serde_json::from_str(&signed.body)
            .map_err(|e| refused(QuorumError::Malformed("unlock request", e.to_string())))?;
        let (meta, envelope, _) = self
            .own_share(&a, &enr, &user, &mut state, &claimed.secret, now)
            .await?;
        let req = signed.verify(&meta, now).map_err(refused)?;
        let id = signed.hash();
        let mut released: BTreeMap<String, DateTime<Utc>> =
            match self.cache.get(&a.key(K_RELEASED)).await? {
                Some(v) => serde_json::from_str(&v).map_err(|_| damaged("released requests"))?,
                None => BTreeMap::new(),
            };
        if released.contains_key(&id) {
            return Err(ConsoleError::new(
                ConsoleErrorCode::QuorumRefused,
                "This device already released its share to this request.",
            ));
        }
        let keys = self
            .open_device_keys(&a, &enr, &mut state, passphrase, now)
            .await?;
        let share = Self::open_share(&keys, &envelope)?;
        let made = q::release_share(&signed, &meta, &share, keys.signing_key(), nonce(), now)
            .map_err(refused)?;
        drop(share);
        let qm = meta.quorum.as_ref().ok_or_else(|| internal("no quorum"))?;
        released.retain(|_, exp| *exp > now - chrono::Duration::days(1));
        released.insert(id.clone(), req.expires_at);
        let released = serde_json::to_string(&released).map_err(internal)?;
        let seq = self
            .append_quorum_record(
                &a,
                &enr,
                &keys,
                &user,
                &meta,
                &req.reason,
                MODE_SHARE_RELEASED,
                QuorumRecord {
                    share_set: qm.share_set.clone(),
                    request_hash: id.clone(),
                    requester: req.user.clone(),
                    requester_device: req.device_id.clone(),
                    releasers: vec![user.clone()],
                    releases: vec![made.id.clone()],
                    m: qm.m,
                },
                |_| Ok(vec![(a.key(K_RELEASED), released)]),
                now,
            )
            .await?;
        drop(keys);
        tracing::warn!(secret = %req.secret, seq, "two-person break glass: share released");
        self.changed(Change::Snapshot);
        Ok(QuorumReleaseOut {
            request_id: id,
            name: req.secret.clone(),
            requester: req.user.clone(),
            qr_svg: qr_svg(&made.text),
            text: made.text,
            expires_at: made.expires_at,
            record_seq: seq,
        })
    }

    /// Adds `releases` to this device's request `request_id` and, with the quorum
    /// reached, recombines the secret: appends a signed `quorum` record naming the
    /// releasers, spends the request, and returns the secret. With fewer shares the
    /// releases are kept and nothing opens (error `quorum_incomplete`).
    pub async fn quorum_complete(
        &self,
        request_id: &str,
        releases: &[String],
        passphrase: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<UnlockResult> {
        let (a, enr, user) = self.quorum_account().await?;
        let _turn = self.break_glass_turn.lock().await;
        let mut map = self.pending(&a).await;
        let Some(mut p) = map.get(request_id.trim()).cloned() else {
            return Err(ConsoleError::new(
                ConsoleErrorCode::QuorumRefused,
                "This device made no such request (or it was forgotten a day after it expired).",
            ));
        };
        if p.completed_at.is_some() {
            return Err(ConsoleError::new(
                ConsoleErrorCode::QuorumRefused,
                "This request was already completed: a release is applied once. Start a new request.",
            ));
        }
        if now >= p.expires_at {
            return Err(refused(QuorumError::Expired(
                "unlock request",
                p.expires_at,
            )));
        }
        let mut state = self.load_state(&a).await?;
        let (meta, envelope, title) = self
            .own_share(&a, &enr, &user, &mut state, &p.secret, now)
            .await?;
        let keys = self
            .open_device_keys(&a, &enr, &mut state, passphrase, now)
            .await?;
        let mut verified = Vec::new();
        for r in &p.releases {
            verified.push(
                q::open_release(r, keys.age_identity(), &p.request, &meta, now).map_err(refused)?,
            );
        }
        for r in releases {
            let v =
                q::open_release(r, keys.age_identity(), &p.request, &meta, now).map_err(refused)?;
            if p.release_ids.contains(&v.id) || verified.iter().any(|x| x.id == v.id) {
                return Err(refused(QuorumError::Replayed));
            }
            if verified.iter().any(|x| x.user == v.user) {
                return Err(refused(QuorumError::SamePerson(v.user.clone())));
            }
            p.releases.push(r.split_whitespace().collect());
            p.release_ids.push(v.id.clone());
            verified.push(v);
        }
        let share = Self::open_share(&keys, &envelope)?;
        let qm = meta.quorum.clone().ok_or_else(|| internal("no quorum"))?;
        let secret = match q::combine(&meta, &share, &verified) {
            Ok(s) => s,
            Err(e @ QuorumError::NotEnough { .. }) => {
                map.insert(request_id.trim().to_string(), p);
                self.save_pending(&a, &map).await?;
                return Err(refused(e));
            }
            Err(e) => return Err(refused(e)),
        };
        drop(share);
        let req: UnlockRequest = serde_json::from_str(&p.request.body).map_err(internal)?;
        p.completed_at = Some(now);
        map.insert(request_id.trim().to_string(), p);
        let pending = serde_json::to_string(&map).map_err(internal)?;
        let mut unlocks = self.offline_unlocks(&a).await;
        let releasers: Vec<String> = verified.iter().map(|v| v.user.clone()).collect();
        let seq = self
            .append_quorum_record(
                &a,
                &enr,
                &keys,
                &user,
                &meta,
                &req.reason,
                MODE_QUORUM,
                QuorumRecord {
                    share_set: qm.share_set.clone(),
                    request_hash: request_id.trim().to_string(),
                    requester: user.clone(),
                    requester_device: enr.device_id.clone(),
                    releasers: releasers.clone(),
                    releases: verified.iter().map(|v| v.id.clone()).collect(),
                    m: qm.m,
                },
                |seq| {
                    unlocks.insert(
                        meta.secret.clone(),
                        OfflineUnlock {
                            version: meta.version,
                            seq,
                            at: now,
                        },
                    );
                    let unlocks = serde_json::to_string(&unlocks).map_err(internal)?;
                    Ok(vec![
                        (a.key(K_PENDING), pending),
                        (a.key(K_OFFLINE_UNLOCKS), unlocks),
                    ])
                },
                now,
            )
            .await?;
        drop(keys);
        tracing::warn!(secret = %meta.secret, seq, "two-person break glass: unlock recorded");
        self.changed(Change::Snapshot);
        Ok(UnlockResult {
            name: meta.secret.clone(),
            title,
            version: meta.version,
            secret,
            mode: UnlockMode::Quorum,
            record_seq: Some(seq),
            hide_after_secs: HIDE_AFTER_SECS,
            message: format!(
                "Opened offline with the shares of {}. This unlock is recorded and will be reported \
                 to security as soon as the broker is reachable.",
                releasers.join(", ")
            ),
        })
    }

    /// This device's two-person requests of the last day and how far each got.
    pub async fn quorum_pending(&self, now: DateTime<Utc>) -> Result<Vec<QuorumProgress>> {
        let (a, _, _) = self.quorum_account().await?;
        let map = self.pending(&a).await;
        let mut out = Vec::new();
        for (id, p) in map {
            if p.expires_at <= now - chrono::Duration::days(1) {
                continue;
            }
            let need = self
                .cache
                .envelope(&p.secret)
                .await?
                .and_then(|c| c.envelope.ok())
                .and_then(|e| serde_json::from_str::<EnvelopeMeta>(&e.meta_json).ok())
                .and_then(|m| m.quorum.map(|qm| qm.m))
                .unwrap_or(0);
            out.push(QuorumProgress {
                request_id: id,
                name: p.secret.clone(),
                expires_at: p.expires_at,
                have: 1 + p.releases.len() as u8,
                need,
                completed: p.completed_at.is_some(),
            });
        }
        Ok(out)
    }
}
