//! Offline break glass on this device, as more methods of [`Console`].
//!
//! - **Enrolment** ([`Console::enrol_device`]): makes the device keys (see
//!   [`crate::device`]), wraps them with the user's local unlock passphrase, keeps them
//!   in the secret store (OS keyring) under an account tied to broker URL + user, and
//!   registers the public halves with the broker.
//! - **Envelopes**: fetched at every sync, cached as ciphertext, judged against the
//!   broker signing key pinned at sign-in and their validity window
//!   ([`Console::break_glass`]).
//! - **Unlock** ([`Console::unlock_secret`]): re-authenticates with the passphrase
//!   (5 wrong ones in 15 minutes lock it out), then asks the broker (online break glass)
//!   or, when the broker cannot be reached, opens the cached envelope and first
//!   commits a signed, hash-chained record to the local unlock chain.
//! - **Upload**: every sync first uploads pending records; they leave the cache only
//!   once the broker acknowledged them.
//!
//! What is stored where: the wrapped private keys only in the secret store; in the
//! cache (`kv` keys under [`KEEP_PREFIX`], per broker + user) the device id and name,
//! the public recipient and signing key, the scrypt work factor, the pinned broker key
//! and fingerprint, the acknowledged chain head, the local chain tip and the times of
//! wrong passphrases; the envelopes (ciphertext) and the signed records. Never a
//! secret, a passphrase, a token or a private key.
//!
//! Lock-out: a correct passphrase does not reset earlier failures; they age out of
//! the 15-minute window (simpler to reason about: at most 5 guesses per 15 minutes,
//! whatever happens in between). A new enrolment (new keys) starts with none.

use crate::cache::{CachedEnvelope, KEEP_PREFIX};
use crate::console::{blocking, is_network, Change, Console, ConsoleError, Result, Snapshot};
use crate::device::{self, DeviceKeyError, DeviceKeys};
use crate::{Client, ClientError};
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use firedoor_core::breakglass::upload_batches;
use firedoor_core::breakglass::{
    decode_public_key, encode_public_key, failures_in_window, fingerprint, locked_until,
    verify_chain, BreakGlassError, ChainHead, EnvelopeMeta, OnlineUnlock, RegisterDevice,
    SignedRecord, UnlockRecord, UploadUnlocks, LOCKOUT_WINDOW_MINUTES, MAX_FAILED_PASSPHRASES,
    MAX_REASON_CHARS, MIN_PASSPHRASE_CHARS,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// How long the UI shows a revealed secret.
pub const HIDE_AFTER_SECS: u64 = 60;
/// Unlock records per upload (the broker takes up to 1000).
const UPLOAD_BATCH: usize = 200;

/// This device's enrolment, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The device has its keys (age identity + signing key) and is registered.
    pub enrolled: bool,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    /// Fingerprint of the broker signing key pinned at sign-in.
    pub broker_fingerprint: Option<String>,
    /// Wrong passphrases in the current 15-minute window.
    pub failed_attempts: u32,
    /// Set while locked out after 5 wrong passphrases.
    pub locked_until: Option<DateTime<Utc>>,
    /// Unlock records waiting to be acknowledged by the broker.
    pub pending_records: u64,
    /// The local signed chain verified; false if a record was edited or removed.
    pub chain_ok: bool,
    pub chain_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealedState {
    Valid,
    Expired,
    NotYetValid,
    Invalid,
}

/// A break-glass credential cached on this device as a sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedCredential {
    pub name: String,
    pub title: String,
    pub description: String,
    pub version: i64,
    pub sealed_at: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub state: SealedState,
    /// Why it is not `valid`, readable.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    pub device: DeviceStatus,
    pub credentials: Vec<SealedCredential>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlockMode {
    /// Opened from the sealed envelope on this device.
    Offline,
    /// Released by the broker.
    Online,
}

/// A revealed break-glass secret. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockResult {
    pub name: String,
    pub title: String,
    pub version: i64,
    pub secret: String,
    pub mode: UnlockMode,
    /// Sequence number of the local record written before the secret was shown.
    pub record_seq: Option<u64>,
    pub hide_after_secs: u64,
    pub message: String,
}

impl fmt::Debug for UnlockResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockResult")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("secret", &"[redacted]")
            .field("mode", &self.mode)
            .field("record_seq", &self.record_seq)
            .finish_non_exhaustive()
    }
}

/// One enrolment's namespace: broker URL + user.
pub(crate) struct Account {
    id: String,
}

impl Account {
    pub(crate) fn new(url: &str, user: &str) -> Account {
        Account {
            id: format!("{user}@{url}"),
        }
    }
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{KEEP_PREFIX}{}/{name}", self.id)
    }
    /// Where the wrapped device keys live in the secret store.
    fn keyring_account(&self) -> String {
        format!("device-keys:{}", self.id)
    }
}

// kv names (under Account::key).
const K_DEVICE_ID: &str = "device_id";
const K_DEVICE_NAME: &str = "device_name";
const K_RECIPIENT: &str = "recipient";
const K_SIGNING_KEY: &str = "signing_key";
const K_WORK_FACTOR: &str = "kdf_log_n";
const K_ENROLLED_AT: &str = "enrolled_at";
const K_BROKER_KEY: &str = "broker_key";
const K_BROKER_FP: &str = "broker_fingerprint";
const K_ACKED: &str = "acked_head";
const K_TIP: &str = "chain_tip";
const K_FAILURES: &str = "failed_passphrases";

/// The public data of an enrolment.
struct Enrolment {
    device_id: String,
    device_name: String,
    recipient: String,
    signing_key: VerifyingKey,
    kdf_log_n: u8,
}

pub(crate) struct Pin {
    pub(crate) key: VerifyingKey,
    fingerprint: String,
}

/// The local chain as it stands.
struct ChainState {
    records: Vec<SignedRecord>,
    acked: ChainHead,
    tip: ChainHead,
    /// Why the chain does not verify, if it does not.
    problem: Option<String>,
}

fn damaged(what: &str) -> ConsoleError {
    ConsoleError::new(
        "cache",
        format!("This device's break-glass data in the local cache is damaged ({what}); enrol the device again."),
    )
}

/// Whole minutes until `until`, rounded up, at least 1.
fn minutes_left(until: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let secs = (until - now).num_seconds().max(0);
    ((secs + 59) / 60).max(1)
}

fn locked_out(until: DateTime<Utc>, now: DateTime<Utc>) -> ConsoleError {
    ConsoleError::new(
        "locked_out",
        format!(
            "Locked out after {MAX_FAILED_PASSPHRASES} wrong passphrases. Try again in {} min.",
            minutes_left(until, now)
        ),
    )
}

/// The broker cannot serve the call (down, or a proxy in front says it is).
fn unreachable(e: &ClientError) -> bool {
    is_network(e) || matches!(e.status(), Some(502..=504))
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Checks that an envelope was sealed for this very secret, device, user and key.
fn check_binding(
    meta: &EnvelopeMeta,
    name: &str,
    enr: &Enrolment,
    user: &str,
) -> std::result::Result<(), String> {
    if meta.secret != name {
        return Err(format!("it was sealed for the secret '{}'", meta.secret));
    }
    if meta.device_id != enr.device_id || meta.recipient != enr.recipient {
        return Err("it was sealed for another device".into());
    }
    if meta.user != user {
        return Err(format!("it was sealed for the user '{}'", meta.user));
    }
    Ok(())
}

impl Console {
    /// The signed-in session's client, enrolment account and user.
    async fn session_account(&self) -> Option<(Client, Account, String)> {
        let live = self.live.lock().await;
        live.session.as_ref().map(|s| {
            (
                s.client.clone(),
                Account::new(&s.url, &s.user),
                s.user.clone(),
            )
        })
    }

    async fn signed_in_account(&self) -> Result<(Client, Account, String)> {
        self.session_account()
            .await
            .ok_or_else(|| ConsoleError::new("signed_out", "Sign in first."))
    }

    async fn enrolment(&self, a: &Account) -> Result<Option<Enrolment>> {
        let Some(device_id) = self.cache.get(&a.key(K_DEVICE_ID)).await? else {
            return Ok(None);
        };
        let device_name = self
            .cache
            .get(&a.key(K_DEVICE_NAME))
            .await?
            .unwrap_or_else(|| "this device".into());
        let recipient = self
            .cache
            .get(&a.key(K_RECIPIENT))
            .await?
            .ok_or_else(|| damaged("no recipient"))?;
        let signing_key = self
            .cache
            .get(&a.key(K_SIGNING_KEY))
            .await?
            .ok_or_else(|| damaged("no signing key"))
            .and_then(|k| decode_public_key(&k).map_err(|e| damaged(&e.to_string())))?;
        let kdf_log_n = self
            .cache
            .get(&a.key(K_WORK_FACTOR))
            .await?
            .and_then(|v| v.parse::<u8>().ok())
            .filter(|f| (1..=device::MAX_WORK_FACTOR).contains(f))
            .ok_or_else(|| damaged("no work factor"))?;
        Ok(Some(Enrolment {
            device_id,
            device_name,
            recipient,
            signing_key,
            kdf_log_n,
        }))
    }

    pub(crate) async fn pinned(&self, a: &Account) -> Result<Option<Pin>> {
        let Some(k) = self.cache.get(&a.key(K_BROKER_KEY)).await? else {
            return Ok(None);
        };
        let key = decode_public_key(&k).map_err(|e| damaged(&e.to_string()))?;
        Ok(Some(Pin {
            key,
            fingerprint: fingerprint(&key),
        }))
    }

    /// The local chain, read consistently, and whether it verifies: every pending
    /// record continues the acknowledged head (signed by this device, no gap, no
    /// edit) and the last one is the recorded tip (so a removed last record shows).
    async fn chain_state(&self, a: &Account, enr: &Enrolment) -> Result<ChainState> {
        let (rows, kv) = self
            .cache
            .unlock_chain_view(&a.id, &[&a.key(K_ACKED), &a.key(K_TIP)])
            .await?;
        let head = |v: Option<&Option<String>>| -> Result<Option<ChainHead>> {
            match v.and_then(|v| v.as_deref()) {
                None => Ok(None),
                Some(v) => serde_json::from_str(v)
                    .map(Some)
                    .map_err(|_| damaged("unreadable chain head")),
            }
        };
        let acked = head(kv.first())?.unwrap_or_else(ChainHead::genesis);
        let tip = head(kv.get(1))?.unwrap_or_else(|| acked.clone());
        // Records up to the first unreadable row (the rest cannot be checked).
        let mut records = Vec::with_capacity(rows.len());
        let mut unreadable = None;
        for (seq, r) in rows {
            match r {
                Ok(r) => records.push(r),
                Err(e) => {
                    unreadable = Some(format!(
                        "Unlock record chain broken: record {seq} is unreadable ({e})."
                    ));
                    break;
                }
            }
        }
        let problem = match verify_chain(&acked, &records, &enr.device_id, &enr.signing_key) {
            Err(e) => Some(format!("Unlock record chain broken: {e}.")),
            Ok(_) if unreadable.is_some() => unreadable,
            Ok((_, head)) if head != tip => Some(if tip.seq > head.seq {
                format!(
                    "Unlock record chain broken: record {} is missing (the chain should end at record {}).",
                    head.seq + 1,
                    tip.seq
                )
            } else {
                format!(
                    "Unlock record chain broken: record {} does not match the recorded end of the chain.",
                    head.seq
                )
            }),
            Ok(_) => None,
        };
        Ok(ChainState {
            records,
            acked,
            tip,
            problem,
        })
    }

    /// Wrong-passphrase times within the window before `now`, oldest first.
    async fn failures(&self, a: &Account, now: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>> {
        let list: Vec<DateTime<Utc>> = self
            .cache
            .get(&a.key(K_FAILURES))
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        Ok(failures_in_window(list, now))
    }

    /// Records a wrong passphrase; returns the failures now in the window.
    async fn record_failure(&self, a: &Account, now: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>> {
        let mut list = self.failures(a, now).await?;
        list.push(now);
        list.sort();
        let json = serde_json::to_string(&list)
            .map_err(|e| ConsoleError::new("internal", e.to_string()))?;
        self.cache.set(&a.key(K_FAILURES), Some(&json)).await?;
        Ok(list)
    }

    /// Keeps `key` as the pinned broker signing key of `a`.
    async fn store_pin(&self, a: &Account, key: &VerifyingKey) -> Result<()> {
        let fp = fingerprint(key);
        if let Some(old) = self.pinned(a).await.ok().flatten() {
            if old.key != *key {
                tracing::warn!(old = %old.fingerprint, new = %fp, "the broker's signing key changed since it was pinned; re-pinned at sign-in");
            }
        }
        let encoded = encode_public_key(key);
        self.cache
            .set_many(&[
                (&a.key(K_BROKER_KEY), Some(&encoded)),
                (&a.key(K_BROKER_FP), Some(&fp)),
            ])
            .await?;
        Ok(())
    }

    /// Pins the broker's signing key for `url` + `user` (sign-in only). A broker
    /// without break glass, or an unreadable answer, leaves the pin as it was.
    pub(crate) async fn pin_broker_key(
        &self,
        client: &Client,
        url: &str,
        user: &str,
    ) -> Result<()> {
        match fetch_broker_key(client).await {
            Ok(key) => self.store_pin(&Account::new(url, user), &key).await,
            Err(e) => {
                tracing::warn!(error = %e, "the broker's signing key was not pinned");
                Ok(())
            }
        }
    }

    /// This device's break-glass state and its sealed credentials, from the cache
    /// (works offline), judged at `now`.
    pub async fn break_glass(&self, now: DateTime<Utc>) -> Result<BreakGlass> {
        let mut device = DeviceStatus {
            enrolled: false,
            device_id: None,
            device_name: None,
            broker_fingerprint: None,
            failed_attempts: 0,
            locked_until: None,
            pending_records: 0,
            chain_ok: true,
            chain_error: None,
        };
        let Some((_, a, user)) = self.session_account().await else {
            return Ok(BreakGlass {
                device,
                credentials: Vec::new(),
            });
        };
        let pin = match self.pinned(&a).await {
            Ok(p) => p,
            Err(e) => {
                device.chain_error = Some(e.message);
                None
            }
        };
        device.broker_fingerprint = pin.as_ref().map(|p| p.fingerprint.clone());
        let enr = match self.enrolment(&a).await {
            Ok(e) => e,
            Err(e) => {
                device.enrolled = true;
                device.chain_ok = false;
                device.chain_error = Some(e.message);
                None
            }
        };
        if let Some(enr) = &enr {
            device.enrolled = true;
            device.device_id = Some(enr.device_id.clone());
            device.device_name = Some(enr.device_name.clone());
            let failures = self.failures(&a, now).await?;
            device.failed_attempts = u32::try_from(failures.len()).unwrap_or(u32::MAX);
            device.locked_until = locked_until(&failures).filter(|t| *t > now);
            match self.chain_state(&a, enr).await {
                Ok(st) => {
                    device.pending_records = st.records.len() as u64;
                    device.chain_ok = st.problem.is_none();
                    device.chain_error = st.problem;
                }
                Err(e) => {
                    device.chain_ok = false;
                    device.chain_error = Some(e.message);
                }
            }
        }
        let credentials = self
            .cache
            .envelopes()
            .await?
            .into_iter()
            .map(|c| judge(&c, pin.as_ref(), enr.as_ref(), &user, now))
            .collect();
        Ok(BreakGlass {
            device,
            credentials,
        })
    }

    /// Enrols this device for offline break glass: makes its keys, wraps them with
    /// `passphrase` (at least 8 characters), keeps them in the secret store, registers
    /// the public halves with the broker and fetches the envelopes sealed to them.
    /// Needs the broker. Enrolling again (e.g. a forgotten passphrase) makes new keys
    /// and a new device; it is refused while unlock records of the current enrolment
    /// have not reached the broker.
    pub async fn enrol_device(
        &self,
        passphrase: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<Snapshot> {
        if passphrase.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(ConsoleError::new(
                "weak_passphrase",
                format!(
                    "Choose an unlock passphrase of at least {MIN_PASSPHRASE_CHARS} characters."
                ),
            ));
        }
        let (c, a, _) = self.signed_in_account().await?;
        let offline = |e: ConsoleError| -> ConsoleError {
            if e.code == "offline" {
                ConsoleError::new(
                    "offline",
                    "Enrolling this device needs the broker, and it cannot be reached right now.",
                )
            } else {
                e
            }
        };
        if self.pinned(&a).await?.is_none() {
            // A session from before break glass existed: pin now (an explicit action).
            let key = fetch_broker_key(&c).await.map_err(offline)?;
            self.store_pin(&a, &key).await?;
        }
        if let Ok(Some(old)) = self.enrolment(&a).await {
            // Records signed by the old keys must reach the broker first.
            self.upload_pending(&c, &a, &old).await.map_err(offline)?;
        }
        let turn = self.break_glass_turn.lock().await;
        // Never orphan audit records: they are only ever dropped once acknowledged.
        let left = self.cache.unlock_record_count(&a.id).await?;
        if left > 0 {
            return Err(ConsoleError::new(
                "pending_records",
                format!(
                    "This device holds {left} unlock record(s) the broker has not accepted yet; \
                     they must reach the broker before the device is enrolled again."
                ),
            ));
        }
        let factor = match self.options.kdf_work_factor {
            Some(f) if (1..=device::MAX_WORK_FACTOR).contains(&f) => f,
            Some(f) => {
                return Err(ConsoleError::new(
                    "internal",
                    format!("scrypt work factor {f} is out of range"),
                ))
            }
            None => blocking(|| device::calibrate_work_factor(device::TARGET_UNWRAP_TIME)).await?,
        };
        let passphrase = passphrase.clone();
        let (recipient, signing_key, wrapped) = blocking(move || {
            let keys = DeviceKeys::generate();
            let wrapped = keys.wrap(&passphrase, factor);
            (keys.recipient(), keys.signing_key_b64(), wrapped)
        })
        .await?;
        let wrapped = wrapped.map_err(|e| ConsoleError::new("internal", e.to_string()))?;
        let name = device::host_name();
        let view = match c
            .register_device(&RegisterDevice {
                name: name.clone(),
                recipient: recipient.clone(),
                signing_key: signing_key.clone(),
            })
            .await
        {
            Ok(v) => {
                self.mark_online().await;
                v
            }
            Err(e) => {
                let ce = ConsoleError::from(e);
                if ce.code == "offline" {
                    self.mark_offline(&ce.message).await;
                }
                return Err(offline(ce));
            }
        };
        if view.recipient != recipient || view.signing_key != signing_key {
            return Err(ConsoleError::new(
                "bad_answer",
                "The broker registered different keys than this device sent.",
            ));
        }
        let store = self.secrets.clone();
        let account = a.keyring_account();
        blocking(move || store.set(&account, &wrapped))
            .await?
            .map_err(|e| {
                ConsoleError::new(
                    "keyring",
                    format!(
                        "Cannot keep the device keys in the {}: {e}",
                        self.secrets.describe()
                    ),
                )
            })?;
        let head = serde_json::to_string(&view.head)
            .map_err(|e| ConsoleError::new("internal", e.to_string()))?;
        let factor_text = factor.to_string();
        let enrolled_at = now.to_rfc3339();
        self.cache
            .set_many(&[
                (&a.key(K_DEVICE_ID), Some(&view.id)),
                (&a.key(K_DEVICE_NAME), Some(&view.name)),
                (&a.key(K_RECIPIENT), Some(&recipient)),
                (&a.key(K_SIGNING_KEY), Some(&signing_key)),
                (&a.key(K_WORK_FACTOR), Some(&factor_text)),
                (&a.key(K_ENROLLED_AT), Some(&enrolled_at)),
                (&a.key(K_ACKED), Some(&head)),
                (&a.key(K_TIP), Some(&head)),
                (&a.key(K_FAILURES), None),
            ])
            .await?;
        tracing::info!(device = %view.id, work_factor = factor, "device enrolled for offline break glass");
        match c.envelopes(&view.id).await {
            Ok(list) => {
                self.cache
                    .put_envelopes(&list.envelopes, Utc::now())
                    .await?
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching envelopes after enrolment; the next sync retries")
            }
        }
        drop(turn);
        self.changed(Change::Snapshot);
        self.snapshot_at(now).await
    }

    /// Break glass: checks the reason and the passphrase (5 wrong ones in 15 minutes
    /// lock it out), then asks the broker (mode `online`); if the broker cannot be
    /// reached, opens the cached envelope (mode `offline`) after verifying its
    /// signature against the pinned broker key, its window at `now`, and the local
    /// chain, and commits a signed unlock record to the cache before returning.
    pub async fn unlock_secret(
        &self,
        name: &str,
        reason: &str,
        passphrase: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<UnlockResult> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ConsoleError::new(
                "validation",
                "Give a reason: it goes to the audit trail and to security.",
            ));
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(ConsoleError::new(
                "validation",
                format!("Keep the reason under {MAX_REASON_CHARS} characters."),
            ));
        }
        let (c, a, user) = self.signed_in_account().await?;
        let _turn = self.break_glass_turn.lock().await;
        let Some(enr) = self.enrolment(&a).await? else {
            return Err(ConsoleError::new(
                "not_enrolled",
                "This device is not enrolled for break glass. Enrol it while the broker is reachable.",
            ));
        };
        if let Some(until) = locked_until(&self.failures(&a, now).await?).filter(|t| *t > now) {
            return Err(locked_out(until, now));
        }
        let store = self.secrets.clone();
        let account = a.keyring_account();
        let wrapped = blocking(move || store.get(&account))
            .await?
            .map_err(|e| ConsoleError::new("keyring", format!("Cannot read the device keys: {e}")))?
            .ok_or_else(|| {
                ConsoleError::new(
                    "not_enrolled",
                    format!(
                        "This device's keys are missing from the {}. Enrol the device again.",
                        self.secrets.describe()
                    ),
                )
            })?;
        let max = enr.kdf_log_n;
        let passphrase = passphrase.clone();
        let keys = match blocking(move || DeviceKeys::unwrap(&wrapped, &passphrase, max)).await? {
            Ok(k) => k,
            Err(DeviceKeyError::WrongPassphrase) => {
                let failures = self.record_failure(&a, now).await?;
                self.changed(Change::Snapshot);
                if let Some(until) = locked_until(&failures) {
                    return Err(locked_out(until, now));
                }
                let left = MAX_FAILED_PASSPHRASES - failures.len();
                return Err(ConsoleError::new(
                    "wrong_passphrase",
                    format!(
                        "Wrong passphrase. {left} attempt{} left before a {LOCKOUT_WINDOW_MINUTES}-minute lock-out.",
                        if left == 1 { "" } else { "s" }
                    ),
                ));
            }
            Err(e @ DeviceKeyError::Unreadable(_)) => {
                return Err(ConsoleError::new(
                    "keys_unreadable",
                    format!("{e}. Enrol the device again."),
                ))
            }
        };
        if keys.recipient() != enr.recipient || keys.verifying_key() != enr.signing_key {
            return Err(ConsoleError::new(
                "keys_unreadable",
                "The keys in the secret store belong to another enrolment. Enrol the device again.",
            ));
        }
        let cached = self.cache.envelope(name).await?;
        let title = cached
            .as_ref()
            .map(|c| c.title.clone())
            .unwrap_or_else(|| name.to_string());

        // Online first: the broker releases it and raises the alarm itself.
        let online = c
            .unlock_secret(
                name,
                &OnlineUnlock {
                    reason: reason.to_string(),
                    device_id: Some(enr.device_id.clone()),
                },
            )
            .await;
        match online {
            Ok(u) => {
                drop(keys);
                self.mark_online().await;
                let when = u
                    .rotates_at
                    .map(|t| format!(" It will be rotated at {}.", fmt_time(t)))
                    .unwrap_or_default();
                return Ok(UnlockResult {
                    name: u.name,
                    title,
                    version: u.version,
                    secret: u.value,
                    mode: UnlockMode::Online,
                    record_seq: None,
                    hide_after_secs: HIDE_AFTER_SECS,
                    message: format!("Released by the broker; security has been alerted.{when}"),
                });
            }
            Err(e) if unreachable(&e) => {
                self.mark_offline(&ConsoleError::from(e).message).await;
            }
            Err(e) => {
                self.mark_online().await;
                return Err(e.into());
            }
        }

        // Offline: the sealed envelope.
        let Some(cached) = cached else {
            return Err(ConsoleError::new(
                "not_found",
                format!(
                    "The broker is unreachable and this device holds no sealed copy of '{name}'."
                ),
            ));
        };
        let invalid = |why: String| {
            ConsoleError::new(
                "envelope_invalid",
                format!("The sealed copy of {title} cannot be used: {why}."),
            )
        };
        let envelope = cached.envelope.map_err(&invalid)?;
        let pin = self.pinned(&a).await?.ok_or_else(|| {
            invalid(
                "no broker signing key is pinned; sign in again while the broker is reachable"
                    .into(),
            )
        })?;
        let meta = envelope
            .verify(&pin.key)
            .map_err(|e| invalid(e.to_string()))?;
        check_binding(&meta, name, &enr, &user).map_err(&invalid)?;
        match meta.check_window(now) {
            Ok(()) => {}
            Err(BreakGlassError::Expired(t)) => {
                return Err(ConsoleError::new(
                    "envelope_expired",
                    format!(
                        "The sealed copy of {title} expired at {}. It is renewed when the broker is reachable.",
                        fmt_time(t)
                    ),
                ))
            }
            Err(BreakGlassError::NotYetValid(t)) => {
                return Err(invalid(format!(
                    "it is not valid before {} (check this computer's clock)",
                    fmt_time(t)
                )))
            }
            Err(e) => return Err(invalid(e.to_string())),
        }
        let plain = Zeroizing::new(
            age::decrypt(keys.age_identity(), envelope.ciphertext.as_bytes())
                .map_err(|e| invalid(format!("this device's key does not open it ({e})")))?,
        );
        let secret = String::from_utf8(plain.to_vec())
            .map_err(|_| invalid("it does not hold text".into()))?;
        let st = self.chain_state(&a, &enr).await?;
        if let Some(p) = st.problem {
            return Err(ConsoleError::new(
                "chain_broken",
                format!("{p} Offline unlocks are refused until the broker has seen this device's records."),
            ));
        }
        let record = UnlockRecord {
            format: 1,
            seq: st.tip.seq + 1,
            device_id: enr.device_id.clone(),
            user,
            secret: name.to_string(),
            version: meta.version,
            at: now,
            reason: reason.to_string(),
            mode: "offline".into(),
            prev_hash: st.tip.hash.clone(),
        };
        let signed = SignedRecord::sign(&record, keys.signing_key());
        drop(keys);
        let tip = serde_json::to_string(&ChainHead {
            seq: record.seq,
            hash: signed.hash.clone(),
        })
        .map_err(|e| ConsoleError::new("internal", e.to_string()))?;
        self.cache
            .append_unlock_record(&a.id, record.seq, &signed, &[(&a.key(K_TIP), Some(&tip))])
            .await?;
        tracing::warn!(secret = %name, seq = record.seq, "offline break glass: unlock recorded");
        self.changed(Change::Snapshot);
        Ok(UnlockResult {
            name: name.to_string(),
            title,
            version: meta.version,
            secret,
            mode: UnlockMode::Offline,
            record_seq: Some(record.seq),
            hide_after_secs: HIDE_AFTER_SECS,
            message: "Opened offline from the sealed copy. This unlock is recorded and will be \
                      reported to security as soon as the broker is reachable."
                .into(),
        })
    }

    /// Sync's break-glass part: uploads pending records, then replaces the cached
    /// envelopes. Returns a problem to show (the broker refused the records, …);
    /// fails only when the broker cannot be reached.
    pub(crate) async fn sync_break_glass(&self, c: &Client) -> Result<Option<String>> {
        let Some((_, a, _)) = self.session_account().await else {
            return Ok(None);
        };
        let enr = match self.enrolment(&a).await {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(None),
            Err(e) => return Ok(Some(e.message)),
        };
        let mut problems = Vec::new();
        if let Some(p) = self.upload_pending(c, &a, &enr).await? {
            problems.push(p);
        }
        match c.envelopes(&enr.device_id).await {
            Ok(list) => {
                self.mark_online().await;
                self.cache
                    .put_envelopes(&list.envelopes, Utc::now())
                    .await?;
            }
            Err(e) if is_network(&e) => {
                let ce = ConsoleError::from(e);
                self.mark_offline(&ce.message).await;
                return Err(ce);
            }
            Err(ClientError::Api { status: 404, .. }) => {
                // Revoked (or unknown to this broker): its sealed copies must go too.
                self.mark_online().await;
                self.cache.put_envelopes(&[], Utc::now()).await?;
                problems.push(
                    "The broker no longer knows this device (it was revoked?): its sealed \
                     credentials were removed. Enrol the device again to get new ones."
                        .to_string(),
                );
            }
            Err(e) => problems.push(format!(
                "Could not refresh the sealed credentials: {}",
                ConsoleError::from(e).message
            )),
        }
        Ok((!problems.is_empty()).then(|| problems.join(" ")))
    }

    /// Uploads pending records, oldest first in batches. Records leave the cache only
    /// once the broker acknowledged them (a crash in between is harmless: uploading
    /// again is idempotent). No lock is held while the broker is asked, so an unlock
    /// never waits on a slow broker; records appended meanwhile have higher numbers
    /// than any acknowledgement of this upload. Returns a problem to show.
    async fn upload_pending(
        &self,
        c: &Client,
        a: &Account,
        enr: &Enrolment,
    ) -> Result<Option<String>> {
        let st = self.chain_state(a, enr).await?;
        let mut acked = st.acked.clone();
        for batch in upload_batches(&st.records, UPLOAD_BATCH) {
            let sent = c
                .upload_unlocks(
                    &enr.device_id,
                    &UploadUnlocks {
                        records: batch.to_vec(),
                    },
                )
                .await;
            let ack = match sent {
                Ok(ack) => ack,
                Err(e) if is_network(&e) => {
                    let ce = ConsoleError::from(e);
                    self.mark_offline(&ce.message).await;
                    return Err(ce);
                }
                Err(ClientError::Api { code, message, .. }) if code == "chain_rejected" => {
                    self.mark_online().await;
                    tracing::error!(%message, "the broker rejected this device's unlock records");
                    return Ok(Some(format!(
                        "The broker rejected this device's unlock records: {message}"
                    )));
                }
                Err(e) => {
                    self.mark_online().await;
                    return Ok(Some(format!(
                        "Could not upload this device's unlock records: {}",
                        ConsoleError::from(e).message
                    )));
                }
            };
            self.mark_online().await;
            // The acknowledged head must be one this device knows: the previous head
            // or one of the records just sent.
            let known = ack.head == acked
                || batch.iter().any(|r| {
                    r.hash == ack.head.hash
                        && serde_json::from_str::<UnlockRecord>(&r.body)
                            .map(|b| b.seq == ack.head.seq)
                            .unwrap_or(false)
                });
            if !known || ack.head.seq < acked.seq {
                tracing::error!(head = ?ack.head, "the broker acknowledged a record this device does not hold");
                return Ok(Some(format!(
                    "The broker acknowledged unlock record {} with a hash this device does not know; \
                     nothing was removed from this device.",
                    ack.head.seq
                )));
            }
            {
                let _turn = self.break_glass_turn.lock().await;
                // Another upload (a concurrent sync) may have got further already.
                let now_acked = self.chain_state(a, enr).await?.acked;
                if ack.head.seq > now_acked.seq {
                    let head = serde_json::to_string(&ack.head)
                        .map_err(|e| ConsoleError::new("internal", e.to_string()))?;
                    self.cache
                        .ack_unlock_records(&a.id, ack.head.seq, &[(&a.key(K_ACKED), Some(&head))])
                        .await?;
                }
            }
            if !ack.rotating.is_empty() {
                tracing::info!(secrets = ?ack.rotating, "the broker is rotating unlocked secrets");
            }
            tracing::info!(
                head = ack.head.seq,
                accepted = ack.accepted,
                "unlock records acknowledged"
            );
            let progressed = ack.head != acked;
            acked = ack.head;
            if !progressed {
                break;
            }
        }
        // Whatever remains wrong locally (e.g. a removed last record) still shows.
        Ok(self.chain_state(a, enr).await?.problem)
    }
}

/// Fetches the broker's signing key (network errors come back as code `offline`).
async fn fetch_broker_key(client: &Client) -> Result<VerifyingKey> {
    let id = client.broker_identity().await?;
    let key = decode_public_key(&id.signing_key).map_err(|e| {
        ConsoleError::new(
            "bad_answer",
            format!("The broker's signing key is malformed: {e}"),
        )
    })?;
    let fp = fingerprint(&key);
    if fp != id.fingerprint {
        tracing::warn!(served = %id.fingerprint, computed = %fp, "the broker's key fingerprint does not match its key; using the key's own");
    }
    Ok(key)
}

/// One cached envelope as the UI shows it.
fn judge(
    c: &CachedEnvelope,
    pin: Option<&Pin>,
    enr: Option<&Enrolment>,
    user: &str,
    now: DateTime<Utc>,
) -> SealedCredential {
    let fallback_time = c.fetched_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    // Unverified facts, for display only (the state says whether they can be trusted).
    let shown: Option<EnvelopeMeta> = c
        .envelope
        .as_ref()
        .ok()
        .and_then(|e| serde_json::from_str(&e.meta_json).ok());
    let mut cred = SealedCredential {
        name: c.name.clone(),
        title: c.title.clone(),
        description: c.description.clone(),
        version: shown.as_ref().map(|m| m.version).unwrap_or(0),
        sealed_at: shown.as_ref().map(|m| m.sealed_at).unwrap_or(fallback_time),
        not_before: shown
            .as_ref()
            .map(|m| m.not_before)
            .unwrap_or(fallback_time),
        not_after: shown.as_ref().map(|m| m.not_after).unwrap_or(fallback_time),
        state: SealedState::Invalid,
        problem: None,
    };
    let verdict = (|| {
        let env = c.envelope.as_ref().map_err(|e| e.clone())?;
        let pin = pin.ok_or("no broker signing key is pinned; sign in again")?;
        let meta = env.verify(&pin.key).map_err(|e| match e {
            BreakGlassError::BadEnvelopeSignature => format!(
                "its signature does not verify against the pinned broker key ({})",
                pin.fingerprint
            ),
            other => other.to_string(),
        })?;
        let enr = enr.ok_or("this device is not enrolled")?;
        check_binding(&meta, &c.name, enr, user)?;
        Ok::<EnvelopeMeta, String>(meta)
    })();
    match verdict {
        Err(problem) => {
            cred.problem = Some(format!("Not usable: {problem}."));
        }
        Ok(meta) => {
            cred.version = meta.version;
            cred.sealed_at = meta.sealed_at;
            cred.not_before = meta.not_before;
            cred.not_after = meta.not_after;
            match meta.check_window(now) {
                Ok(()) => cred.state = SealedState::Valid,
                Err(BreakGlassError::Expired(t)) => {
                    cred.state = SealedState::Expired;
                    cred.problem = Some(format!(
                        "Expired at {}; it is renewed when the broker is reachable.",
                        fmt_time(t)
                    ));
                }
                Err(BreakGlassError::NotYetValid(t)) => {
                    cred.state = SealedState::NotYetValid;
                    cred.problem = Some(format!(
                        "Not valid before {} (check this computer's clock).",
                        fmt_time(t)
                    ));
                }
                Err(e) => cred.problem = Some(format!("Not usable: {e}.")),
            }
        }
    }
    cred
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn minutes_left_rounds_up() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        assert_eq!(minutes_left(t0 + Duration::minutes(15), t0), 15);
        assert_eq!(minutes_left(t0 + Duration::seconds(61), t0), 2);
        assert_eq!(minutes_left(t0, t0), 1);
    }

    #[test]
    fn types_serialise_to_the_ui_contract() {
        let r = UnlockResult {
            name: "n".into(),
            title: "T".into(),
            version: 2,
            secret: "s3cr3t".into(),
            mode: UnlockMode::Offline,
            record_seq: Some(1),
            hide_after_secs: 60,
            message: "m".into(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["mode"], "offline");
        assert_eq!(v["record_seq"], 1);
        assert!(!format!("{r:?}").contains("s3cr3t"));
        assert_eq!(
            serde_json::to_value(SealedState::NotYetValid).unwrap(),
            "not_yet_valid"
        );
    }
}
