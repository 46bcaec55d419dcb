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
//! What is stored where: in the secret store (OS keyring), the wrapped private keys and
//! the break-glass state ([`crate::trust::TrustState`]: the pinned broker key, a changed
//! key waiting for the user's confirmation, the highest envelope version seen per
//! secret, the times of wrong passphrases), so that deleting, editing or restoring an
//! old copy of `cache.db` resets none of it; in the cache (`kv` keys under
//! [`KEEP_PREFIX`], per broker + user) the device id and name, the public recipient and
//! signing key, the scrypt work factor, the acknowledged chain head and the local chain
//! tip; the envelopes (ciphertext) and the signed records. Never a secret, a
//! passphrase, a token or a private key.
//!
//! The broker key is pinned at first sign-in and never re-pinned silently: a different
//! key at sign-in or sync stops break glass (no unlock, enrolment, upload or new
//! envelopes) until the user compares both fingerprints and confirms
//! ([`Console::confirm_broker_key`]) or signs out. An envelope older than the highest
//! version seen of its secret is refused.
//!
//! Lock-out: a correct passphrase does not reset earlier failures; they age out of
//! the 15-minute window (simpler to reason about: at most 5 guesses per 15 minutes,
//! whatever happens in between). A new enrolment (new keys) starts with none.

mod quorum;
pub use quorum::{qr_svg, QuorumProgress, QuorumReleaseOut, QuorumRequestOut, QuorumRequestView};

use crate::cache::{CachedEnvelope, KEEP_PREFIX};
use crate::console::{
    blocking, is_network, Change, Console, ConsoleError, ConsoleErrorCode, ErrorCode, Result,
    Snapshot,
};
use crate::device::{self, DeviceKeyError, DeviceKeys};
use crate::trust::{passphrase_strength, TrustState};
use crate::{Client, ClientError};
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use firedoor_core::breakglass::upload_batches;
use firedoor_core::breakglass::{
    decode_public_key, encode_public_key, failures_in_window, fingerprint, locked_until,
    verify_chain, BreakGlassError, ChainHead, EnvelopeItem, EnvelopeMeta, OnlineUnlock,
    RegisterDevice, SignedRecord, UnlockRecord, UploadUnlocks, LOCKOUT_WINDOW_MINUTES,
    MAX_FAILED_PASSPHRASES, MAX_REASON_CHARS,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

// issue 14: drills
pub mod drill;

/// How long the UI shows a revealed secret.
pub const HIDE_AFTER_SECS: u64 = 60;
/// Unlock records per upload (the broker takes up to 1000).
const UPLOAD_BATCH: usize = 200;

/// This device's enrolment, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// Set when the broker presented a signing key other than the pinned one: break
    /// glass stops until the user compares both fingerprints and confirms the new key
    /// ([`Console::confirm_broker_key`]) or signs out.
    pub broker_key_change: Option<BrokerKeyChange>,
}

/// The broker's signing key is not the one pinned for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BrokerKeyChange {
    /// The key pinned so far (what envelopes have been checked against).
    pub pinned_fingerprint: String,
    /// The key the broker presents now.
    pub new_fingerprint: String,
    pub seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SealedState {
    Valid,
    Expired,
    NotYetValid,
    Invalid,
}

/// A break-glass credential cached on this device as a sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// After an offline unlock of it from this device (for a day): what became of
    /// it once the broker was back, in words ("record delivered · rotated to v2 —
    /// the password you copied no longer works").
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub reconnect: Option<String>,
    /// Issue 14: quorum. The people needed to open it when more than one: this
    /// device holds one share, opened with `quorum_request` / `quorum_complete`.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub quorum: Option<u8>,
}

/// This device's last offline unlock of a secret (kept per account, names and
/// versions only): what [`SealedCredential::reconnect`] is told from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OfflineUnlock {
    version: i64,
    seq: u64,
    at: DateTime<Utc>,
}

/// How long after an offline unlock its outcome is shown.
const RECONNECT_SHOWN_HOURS: i64 = 24;

/// What became of an offline unlock of version `u.version`: its record's delivery
/// (`acked_seq`: the broker acknowledged records up to it) and the version the
/// device holds now.
fn reconnect_words(u: &OfflineUnlock, acked_seq: u64, current: Option<i64>) -> String {
    if u.seq > acked_seq {
        return "unlocked offline · record not delivered yet — it is sent to the broker (and \
                security) as soon as it is reachable"
            .into();
    }
    match current {
        Some(v) if v > u.version => {
            format!("record delivered · rotated to v{v} — the password you copied no longer works")
        }
        _ => format!(
            "record delivered · not rotated yet — the password you copied (v{}) works until it is",
            u.version
        ),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BreakGlass {
    pub device: DeviceStatus,
    pub credentials: Vec<SealedCredential>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum UnlockMode {
    /// Opened from the sealed envelope on this device.
    Offline,
    /// Released by the broker.
    Online,
    /// Issue 14: quorum. Recombined on this device from its own share and the shares
    /// other people released to its request.
    Quorum,
}

/// A revealed break-glass secret. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnlockResult {
    pub name: String,
    pub title: String,
    pub version: i64,
    /// Zeroized when dropped (after it was sent to the UI).
    #[serde(with = "zeroizing_string")]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub secret: Zeroizing<String>,
    pub mode: UnlockMode,
    /// Sequence number of the local record written before the secret was shown.
    pub record_seq: Option<u64>,
    pub hide_after_secs: u64,
    pub message: String,
}

/// (De)serialises a `Zeroizing<String>` as a plain string.
mod zeroizing_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(v: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
        String::deserialize(d).map(Zeroizing::new)
    }
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
    /// Where the break-glass state ([`TrustState`]) lives in the secret store.
    fn state_account(&self) -> String {
        format!("break-glass-state:{}", self.id)
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
/// The last offline unlock of each secret (JSON map name -> [`OfflineUnlock`]).
const K_OFFLINE_UNLOCKS: &str = "offline_unlocks";

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
        ConsoleErrorCode::Cache,
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
        ConsoleErrorCode::LockedOut,
        format!(
            "Locked out after {MAX_FAILED_PASSPHRASES} wrong passphrases. Try again in {} min.",
            minutes_left(until, now)
        ),
    )
}

/// Whether `a`'s device keys are gone from the secret store and no unlock record
/// waits for the broker (then enrolling again loses nothing).
async fn pending_free_and_keyless(c: &Console, a: &Account) -> bool {
    let store = c.secrets.clone();
    let account = a.keyring_account();
    let keyless = matches!(blocking(move || store.get(&account)).await, Ok(Ok(None)));
    keyless && c.cache.unlock_record_count(&a.id).await.unwrap_or(1) == 0
}

/// The broker cannot serve the call (down, or a proxy in front says it is).
fn unreachable(e: &ClientError) -> bool {
    is_network(e) || matches!(e.status(), Some(502..=504))
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The pinned broker key in `st`.
fn pin_of(st: &TrustState) -> Result<Option<Pin>> {
    let Some(k) = st.broker_key.as_deref() else {
        return Ok(None);
    };
    let key = decode_public_key(k).map_err(|e| damaged(&e.to_string()))?;
    Ok(Some(Pin {
        key,
        fingerprint: fingerprint(&key),
    }))
}

/// The broker presented another key than the pinned one, not yet confirmed.
fn key_change(st: &TrustState) -> Option<BrokerKeyChange> {
    let fp = |k: &str| {
        decode_public_key(k)
            .map(|k| fingerprint(&k))
            .unwrap_or_else(|_| "(unreadable key)".into())
    };
    let offered = st.offered_key.as_deref()?;
    Some(BrokerKeyChange {
        pinned_fingerprint: st.broker_key.as_deref().map(fp).unwrap_or_default(),
        new_fingerprint: fp(offered),
        seen_at: st.offered_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    })
}

fn key_changed_error(ch: &BrokerKeyChange) -> ConsoleError {
    ConsoleError::new(
        ConsoleErrorCode::BrokerKeyChanged,
        format!(
            "The broker's signing key changed: it was {} and is now {}. Break glass is stopped \
             until you compare both fingerprints with your security team (not through the broker) \
             and confirm the new key, or sign out.",
            ch.pinned_fingerprint, ch.new_fingerprint
        ),
    )
}

/// Remembers in `st` the version of each envelope that verifies against `pin` and was
/// sealed for this device and user. Returns the rolled-back ones: (secret, version
/// served, highest version seen).
fn remember_versions(
    st: &mut TrustState,
    pin: &Pin,
    enr: &Enrolment,
    user: &str,
    items: &[EnvelopeItem],
) -> Vec<(String, i64, i64)> {
    let mut rolled_back = Vec::new();
    for item in items {
        let Ok(meta) = item.envelope.verify(&pin.key) else {
            continue;
        };
        if check_binding(&meta, &item.name, enr, user).is_err() {
            continue;
        }
        if let Some(floor) = st.floor(&item.name).filter(|f| meta.version < *f) {
            rolled_back.push((item.name.clone(), meta.version, floor));
        } else {
            st.saw_version(&item.name, meta.version);
        }
    }
    rolled_back
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
            .ok_or_else(|| ConsoleError::new(ConsoleErrorCode::SignedOut, "Sign in first."))
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

    /// The break-glass state kept in the secret store ([`TrustState`]). Before there
    /// was one (an enrolment made by an older version) the pin and the wrong-passphrase
    /// times are taken from the cache once, kept in the secret store, and removed from
    /// the cache: from then on nothing in `cache.db` counts for them.
    async fn load_state(&self, a: &Account) -> Result<TrustState> {
        let store = self.secrets.clone();
        let account = a.state_account();
        let stored = blocking(move || store.get(&account)).await?.map_err(|e| {
            ConsoleError::new(
                ConsoleErrorCode::Keyring,
                format!("Cannot read this device's break-glass state: {e}"),
            )
        })?;
        if let Some(json) = stored {
            return serde_json::from_str(&json).map_err(|_| {
                ConsoleError::new(
                    ConsoleErrorCode::Keyring,
                    format!(
                        "This device's break-glass state in the {} is damaged; enrol the device again.",
                        self.secrets.describe()
                    ),
                )
            });
        }
        let st = TrustState {
            broker_key: self.cache.get(&a.key(K_BROKER_KEY)).await?,
            failures: self
                .cache
                .get(&a.key(K_FAILURES))
                .await?
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default(),
            ..TrustState::default()
        };
        if st != TrustState::default() {
            self.save_state(a, &st).await?;
            self.cache
                .set_many(&[
                    (&a.key(K_BROKER_KEY), None),
                    (&a.key(K_BROKER_FP), None),
                    (&a.key(K_FAILURES), None),
                ])
                .await?;
        }
        Ok(st)
    }

    /// The broker key pinned for this account (it also verifies the audit heads), and
    /// whether the broker now presents another key the user has not confirmed.
    pub(crate) async fn pinned(&self, a: &Account) -> Result<(Option<Pin>, bool)> {
        let st = self.load_state(a).await?;
        Ok((pin_of(&st)?, st.offered_key.is_some()))
    }

    /// The broker key `a`'s broker presented last (base64): the one offered and not
    /// yet confirmed, else the pinned one.
    pub(crate) async fn presented_key(&self, a: &Account) -> Result<Option<String>> {
        let st = self.load_state(a).await?;
        Ok(st.offered_key.or(st.broker_key))
    }

    async fn save_state(&self, a: &Account, st: &TrustState) -> Result<()> {
        let json = serde_json::to_string(st)
            .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?;
        let store = self.secrets.clone();
        let account = a.state_account();
        blocking(move || store.set(&account, &json))
            .await?
            .map_err(|e| {
                ConsoleError::new(
                    ConsoleErrorCode::Keyring,
                    format!(
                        "Cannot keep this device's break-glass state in the {}: {e}",
                        self.secrets.describe()
                    ),
                )
            })
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

    /// Records a wrong passphrase in `st` (and the secret store); returns the failures
    /// now in the window.
    async fn record_failure(
        &self,
        a: &Account,
        st: &mut TrustState,
        now: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let mut list = failures_in_window(std::mem::take(&mut st.failures), now);
        list.push(now);
        list.sort();
        st.failures = list.clone();
        self.save_state(a, st).await?;
        Ok(list)
    }

    /// Compares `key`, just presented by the broker, with the pin of `a`. First use:
    /// pins it. The pinned key: clears any earlier offer. Another key: never re-pins
    /// silently; it is kept as offered, break glass stops, and the user compares both
    /// fingerprints and confirms ([`Console::confirm_broker_key`]) or signs out.
    /// Call with `break_glass_turn` held.
    async fn observe_broker_key(
        &self,
        a: &Account,
        key: &VerifyingKey,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut st = self.load_state(a).await?;
        let before = st.clone();
        let encoded = encode_public_key(key);
        let pinned = st.broker_key.as_deref().map(|k| decode_public_key(k).ok());
        match pinned {
            None => {
                tracing::info!(fingerprint = %fingerprint(key), "pinned the broker's signing key");
                st.broker_key = Some(encoded);
                st.offered_key = None;
                st.offered_at = None;
            }
            Some(Some(p)) if p == *key => {
                st.offered_key = None;
                st.offered_at = None;
            }
            Some(p) => {
                if st.offered_key.as_deref() != Some(encoded.as_str()) {
                    tracing::warn!(
                        pinned = %p.map(|p| fingerprint(&p)).unwrap_or_default(),
                        presented = %fingerprint(key),
                        "the broker presents a signing key other than the pinned one; break glass stops until the user confirms it"
                    );
                    st.offered_key = Some(encoded);
                    st.offered_at = Some(now);
                }
            }
        }
        if st != before {
            self.save_state(a, &st).await?;
        }
        Ok(())
    }

    /// Checks the broker's signing key for `url` + `user` at sign-in: pinned on first
    /// use, compared with the pin afterwards (see [`Console::observe_broker_key`]). A
    /// broker without break glass, or an unreadable answer, leaves the pin as it was.
    pub(crate) async fn pin_broker_key(
        &self,
        client: &Client,
        url: &str,
        user: &str,
    ) -> Result<()> {
        match fetch_broker_key(client).await {
            Ok(key) => {
                let _turn = self.break_glass_turn.lock().await;
                self.observe_broker_key(&Account::new(url, user), &key, Utc::now())
                    .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "the broker's signing key was not checked");
                Ok(())
            }
        }
    }

    /// The user compared the fingerprints shown in
    /// [`DeviceStatus::broker_key_change`] and trusts the broker's new signing key:
    /// pins it (only if `new_fingerprint` is still the key offered, so a key that
    /// changed again meanwhile is not pinned unseen) and syncs. The highest envelope
    /// versions seen are kept: a new key does not allow older envelopes back.
    pub async fn confirm_broker_key(
        &self,
        new_fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Snapshot> {
        let (_, a, _) = self.signed_in_account().await?;
        {
            let _turn = self.break_glass_turn.lock().await;
            let mut st = self.load_state(&a).await?;
            let Some(offered) = st.offered_key.clone() else {
                return Err(ConsoleError::new(
                    ConsoleErrorCode::NoKeyChange,
                    "The broker's signing key has not changed: there is nothing to confirm.",
                ));
            };
            let key = decode_public_key(&offered).map_err(|e| damaged(&e.to_string()))?;
            if fingerprint(&key) != new_fingerprint.trim() {
                return Err(ConsoleError::new(
                    ConsoleErrorCode::FingerprintMismatch,
                    format!(
                        "The broker's new key is {}, not the one confirmed (it may have changed again). Compare again.",
                        fingerprint(&key)
                    ),
                ));
            }
            tracing::warn!(fingerprint = %fingerprint(&key), "the user confirmed the broker's new signing key; re-pinned");
            st.broker_key = Some(offered);
            st.offered_key = None;
            st.offered_at = None;
            self.save_state(&a, &st).await?;
            // Heads seen before were signed by the old key: the new key's log starts
            // afresh as the one this app witnesses.
            self.forget_audit_head(&a).await?;
        }
        if let Err(e) = self.sync().await {
            tracing::info!(error = %e, "sync after confirming the broker key");
        }
        self.changed(Change::Snapshot);
        self.snapshot_at(now).await
    }
    /// The last offline unlock of each secret by this account (empty when unreadable:
    /// it only feeds what the UI says).
    async fn offline_unlocks(
        &self,
        a: &Account,
    ) -> std::collections::BTreeMap<String, OfflineUnlock> {
        self.cache
            .get(&a.key(K_OFFLINE_UNLOCKS))
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default()
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
            broker_key_change: None,
        };
        let Some((_, a, user)) = self.session_account().await else {
            return Ok(BreakGlass {
                device,
                credentials: Vec::new(),
            });
        };
        let state = match self.load_state(&a).await {
            Ok(st) => st,
            Err(e) => {
                device.chain_error = Some(e.message);
                TrustState::default()
            }
        };
        device.broker_key_change = key_change(&state);
        let pin = match pin_of(&state) {
            Ok(p) => p,
            Err(e) => {
                device.chain_error = Some(e.message);
                None
            }
        };
        device.broker_fingerprint = pin.as_ref().map(|p| p.fingerprint.clone());
        let mut acked_seq = 0;
        let unlocks = self.offline_unlocks(&a).await;
        let enr = match self.enrolment(&a).await {
            Ok(e) => e,
            Err(e) => {
                device.enrolled = true;
                device.chain_ok = false;
                device.chain_error = Some(e.message);
                None
            }
        };
        // Demo mode keeps the device keys in memory: after a restart the enrolment
        // in the cache has no keys left, so the device shows as not enrolled (and
        // can enrol again) rather than failing at unlock.
        let enr = match enr {
            Some(e) if self.demo() && pending_free_and_keyless(self, &a).await => {
                tracing::info!(device = %e.device_id, "demo: the device keys ended with the last run");
                None
            }
            other => other,
        };
        if let Some(enr) = &enr {
            device.enrolled = true;
            device.device_id = Some(enr.device_id.clone());
            device.device_name = Some(enr.device_name.clone());
            let failures = failures_in_window(state.failures.clone(), now);
            device.failed_attempts = u32::try_from(failures.len()).unwrap_or(u32::MAX);
            device.locked_until = locked_until(&failures).filter(|t| *t > now);
            match self.chain_state(&a, enr).await {
                Ok(st) => {
                    acked_seq = st.acked.seq;
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
            .map(|c| {
                let floor = state.floor(&c.name);
                let mut cred = judge(&c, pin.as_ref(), enr.as_ref(), &user, floor, now);
                if let Some(u) = unlocks.get(&c.name).filter(|u| {
                    u.seq > acked_seq || now - u.at < chrono::Duration::hours(RECONNECT_SHOWN_HOURS)
                }) {
                    let current = (cred.state != SealedState::Invalid).then_some(cred.version);
                    cred.reconnect = Some(reconnect_words(u, acked_seq, current));
                }
                cred
            })
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
        let (c, a, user) = self.signed_in_account().await?;
        let (p, u) = (passphrase.clone(), user.clone());
        let strength =
            blocking(move || passphrase_strength(&p, &[u.as_str(), &device::host_name()])).await?;
        if !strength.acceptable {
            return Err(ConsoleError::new(
                ConsoleErrorCode::WeakPassphrase,
                strength.message(),
            ));
        }
        let offline = |e: ConsoleError| -> ConsoleError {
            if e.code == ConsoleErrorCode::Offline {
                ConsoleError::new(
                    ConsoleErrorCode::Offline,
                    "Enrolling this device needs the broker, and it cannot be reached right now.",
                )
            } else {
                e
            }
        };
        let state = match self.load_state(&a).await {
            Ok(st) => st,
            Err(e) if e.code == ConsoleErrorCode::Keyring && e.message.contains("damaged") => {
                // Enrolling again is the way out of a damaged state: start it anew.
                tracing::warn!(error = %e, "the break-glass state is damaged; enrolment starts it anew");
                let fresh = TrustState::default();
                self.save_state(&a, &fresh).await?;
                fresh
            }
            Err(e) => return Err(e),
        };
        if let Some(ch) = key_change(&state) {
            return Err(key_changed_error(&ch));
        }
        if state.broker_key.is_none() {
            // A session from before break glass existed: pin now (an explicit action).
            let key = fetch_broker_key(&c).await.map_err(offline)?;
            let _turn = self.break_glass_turn.lock().await;
            self.observe_broker_key(&a, &key, now).await?;
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
                ConsoleErrorCode::PendingRecords,
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
                    ErrorCode::Internal,
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
        let wrapped = wrapped.map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?;
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
                if ce.code == ConsoleErrorCode::Offline {
                    self.mark_offline(&ce.message).await;
                }
                return Err(offline(ce));
            }
        };
        if view.recipient != recipient || view.signing_key != signing_key {
            return Err(ConsoleError::new(
                ConsoleErrorCode::BadAnswer,
                "The broker registered different keys than this device sent.",
            ));
        }
        let store = self.secrets.clone();
        let account = a.keyring_account();
        blocking(move || store.set(&account, &wrapped))
            .await?
            .map_err(|e| {
                ConsoleError::new(
                    ConsoleErrorCode::Keyring,
                    format!(
                        "Cannot keep the device keys in the {}: {e}",
                        self.secrets.describe()
                    ),
                )
            })?;
        let head = serde_json::to_string(&view.head)
            .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?;
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
                (&a.key(K_OFFLINE_UNLOCKS), None),
            ])
            .await?;
        tracing::info!(device = %view.id, work_factor = factor, "device enrolled for offline break glass");
        // New keys start with no wrong passphrases and no versions seen.
        let mut st = self.load_state(&a).await?;
        st.failures.clear();
        st.versions.clear();
        match c.envelopes(&view.id).await {
            Ok(list) => {
                self.cache
                    .put_envelopes(&list.envelopes, Utc::now())
                    .await?;
                if let (Some(pin), Some(enr)) = (pin_of(&st)?, self.enrolment(&a).await?) {
                    remember_versions(&mut st, &pin, &enr, &user, &list.envelopes);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching envelopes after enrolment; the next sync retries")
            }
        }
        self.save_state(&a, &st).await?;
        drop(turn);
        self.changed(Change::Snapshot);
        self.snapshot_at(now).await
    }

    /// The device keys, unwrapped with the passphrase: refused while the broker key
    /// change waits for confirmation or the passphrase is locked out; a wrong one is
    /// counted. Shared by the offline unlock and the two-person unlock (issue 14).
    async fn open_device_keys(
        &self,
        a: &Account,
        enr: &Enrolment,
        state: &mut TrustState,
        passphrase: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<DeviceKeys> {
        if let Some(ch) = key_change(state) {
            return Err(key_changed_error(&ch));
        }
        if let Some(until) =
            locked_until(&failures_in_window(state.failures.clone(), now)).filter(|t| *t > now)
        {
            return Err(locked_out(until, now));
        }
        let store = self.secrets.clone();
        let account = a.keyring_account();
        let wrapped = blocking(move || store.get(&account))
            .await?
            .map_err(|e| {
                ConsoleError::new(
                    ConsoleErrorCode::Keyring,
                    format!("Cannot read the device keys: {e}"),
                )
            })?
            .ok_or_else(|| {
                let message = if self.demo() {
                    // Demo mode keeps secrets in memory: a restart loses the keys.
                    "In demo mode the device keys live in memory only, so the enrolment ended when \
                     Firedoor last quit. Enrol this device again (a new passphrase is fine)."
                        .to_string()
                } else {
                    format!(
                        "This device's keys are missing from the {}. Enrol the device again.",
                        self.secrets.describe()
                    )
                };
                ConsoleError::new(ConsoleErrorCode::NotEnrolled, message)
            })?;
        let max = enr.kdf_log_n;
        let passphrase = passphrase.clone();
        let keys = match blocking(move || DeviceKeys::unwrap(&wrapped, &passphrase, max)).await? {
            Ok(k) => k,
            Err(DeviceKeyError::WrongPassphrase) => {
                let failures = self.record_failure(a, state, now).await?;
                self.changed(Change::Snapshot);
                if let Some(until) = locked_until(&failures) {
                    return Err(locked_out(until, now));
                }
                let left = MAX_FAILED_PASSPHRASES - failures.len();
                return Err(ConsoleError::new(
                    ConsoleErrorCode::WrongPassphrase,
                    format!(
                        "Wrong passphrase. {left} attempt{} left before a {LOCKOUT_WINDOW_MINUTES}-minute lock-out.",
                        if left == 1 { "" } else { "s" }
                    ),
                ));
            }
            Err(e @ DeviceKeyError::Unreadable(_)) => {
                return Err(ConsoleError::new(
                    ConsoleErrorCode::KeysUnreadable,
                    format!("{e}. Enrol the device again."),
                ))
            }
        };
        if keys.recipient() != enr.recipient || keys.verifying_key() != enr.signing_key {
            return Err(ConsoleError::new(
                ConsoleErrorCode::KeysUnreadable,
                "The keys in the secret store belong to another enrolment. Enrol the device again.",
            ));
        }
        Ok(keys)
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
        // The broker's rule (core), checked here too: an offline unlock records the
        // reason before the broker ever sees it.
        let reason = firedoor_core::input::break_glass_reason(reason).map_err(|e| {
            let message = match e.code {
                firedoor_core::ErrorCode::JustificationRequired => {
                    "Give a reason: it goes to the audit trail and to security.".to_string()
                }
                _ if reason.trim().chars().count() > MAX_REASON_CHARS => {
                    format!("Keep the reason under {MAX_REASON_CHARS} characters.")
                }
                _ => "The reason cannot contain control characters.".to_string(),
            };
            ConsoleError::new(ConsoleErrorCode::Validation, message)
        })?;
        let reason = reason.as_str();
        let (c, a, user) = self.signed_in_account().await?;
        let _turn = self.break_glass_turn.lock().await;
        let Some(enr) = self.enrolment(&a).await? else {
            return Err(ConsoleError::new(
                ConsoleErrorCode::NotEnrolled,
                "This device is not enrolled for break glass. Enrol it while the broker is reachable.",
            ));
        };
        let mut state = self.load_state(&a).await?;
        let keys = self
            .open_device_keys(&a, &enr, &mut state, passphrase, now)
            .await?;
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
                    incident: None,
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
                    secret: Zeroizing::new(u.value),
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
                ErrorCode::NotFound,
                format!(
                    "The broker is unreachable and this device holds no sealed copy of '{name}'."
                ),
            ));
        };
        let invalid = |why: String| {
            ConsoleError::new(
                ConsoleErrorCode::EnvelopeInvalid,
                format!("The sealed copy of {title} cannot be used: {why}."),
            )
        };
        let envelope = cached.envelope.map_err(&invalid)?;
        let pin = pin_of(&state)?.ok_or_else(|| {
            invalid(
                "no broker signing key is pinned; sign in again while the broker is reachable"
                    .into(),
            )
        })?;
        let meta = envelope
            .verify(&pin.key)
            .map_err(|e| invalid(e.to_string()))?;
        check_binding(&meta, name, &enr, &user).map_err(&invalid)?;
        if let Some(q) = &meta.quorum {
            // issue 14: quorum. The envelope holds one share, never the secret.
            return Err(ConsoleError::new(
                ConsoleErrorCode::QuorumIncomplete,
                format!(
                    "{title} needs {} people: this device holds one share. Start a two-person unlock                      (firedoor break-glass request) and ask another eligible person to release theirs.",
                    q.m
                ),
            ));
        }
        if let Some(floor) = state.floor(name).filter(|f| meta.version < *f) {
            tracing::error!(secret = %name, version = meta.version, seen = floor, "an older envelope than already seen was refused");
            return Err(ConsoleError::new(
                ConsoleErrorCode::EnvelopeRolledBack,
                format!(
                    "The sealed copy of {title} cannot be used: it is version {}, older than version {floor} \
                     this device has already seen (an older copy was put back). It is renewed when the broker is reachable.",
                    meta.version
                ),
            ));
        }
        if state.saw_version(name, meta.version) {
            self.save_state(&a, &state).await?;
        }
        match meta.check_window(now) {
            Ok(()) => {}
            Err(BreakGlassError::Expired(t)) => {
                return Err(ConsoleError::new(
                    ConsoleErrorCode::EnvelopeExpired,
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
        let secret = Zeroizing::new(
            String::from_utf8(plain.to_vec())
                .map_err(|_| invalid("it does not hold text".into()))?,
        );
        let st = self.chain_state(&a, &enr).await?;
        if let Some(p) = st.problem {
            return Err(ConsoleError::new(
                ConsoleErrorCode::ChainBroken,
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
            incident: None,
            quorum: None,
        };
        let signed = SignedRecord::sign(&record, keys.signing_key());
        drop(keys);
        let tip = serde_json::to_string(&ChainHead {
            seq: record.seq,
            hash: signed.hash.clone(),
        })
        .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?;
        let mut unlocks = self.offline_unlocks(&a).await;
        unlocks.insert(
            name.to_string(),
            OfflineUnlock {
                version: meta.version,
                seq: record.seq,
                at: now,
            },
        );
        let unlocks = serde_json::to_string(&unlocks)
            .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?;
        self.cache
            .append_unlock_record(
                &a.id,
                record.seq,
                &signed,
                &[
                    (&a.key(K_TIP), Some(&tip)),
                    (&a.key(K_OFFLINE_UNLOCKS), Some(&unlocks)),
                ],
            )
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
        let Some((_, a, user)) = self.session_account().await else {
            return Ok(None);
        };
        // The broker's key first: a change stops break glass (no upload of records to
        // it, no envelopes from it) until the user confirms it.
        match fetch_broker_key(c).await {
            Ok(key) => {
                let _turn = self.break_glass_turn.lock().await;
                self.observe_broker_key(&a, &key, Utc::now()).await?;
            }
            Err(e) if e.code == ConsoleErrorCode::Offline => {
                self.mark_offline(&e.message).await;
                return Err(e);
            }
            Err(e) => tracing::debug!(error = %e, "the broker's signing key was not checked"),
        }
        match self.load_state(&a).await {
            Ok(st) => {
                if let Some(ch) = key_change(&st) {
                    return Ok(Some(key_changed_error(&ch).message));
                }
            }
            Err(e) => return Ok(Some(e.message)),
        }
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
                let _turn = self.break_glass_turn.lock().await;
                let mut st = self.load_state(&a).await?;
                let before = st.clone();
                if let Some(pin) = pin_of(&st)? {
                    for (name, served, seen) in
                        remember_versions(&mut st, &pin, &enr, &user, &list.envelopes)
                    {
                        tracing::error!(secret = %name, served, seen, "the broker served an older envelope than already seen");
                        problems.push(format!(
                            "The broker served version {served} of '{name}', older than version {seen} \
                             this device has already seen: it is refused."
                        ));
                    }
                }
                if st != before {
                    self.save_state(&a, &st).await?;
                }
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
                        .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?;
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
            ConsoleErrorCode::BadAnswer,
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
    floor: Option<i64>,
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
        reconnect: None,
        quorum: shown.as_ref().and_then(|m| m.quorum.as_ref()).map(|q| q.m),
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
        if let Some(floor) = floor.filter(|f| meta.version < *f) {
            return Err(format!(
                "it is version {}, older than version {floor} this device has already seen (an older copy was put back)",
                meta.version
            ));
        }
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
    fn an_offline_unlock_is_told_in_words_as_it_settles() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let u = OfflineUnlock {
            version: 1,
            seq: 3,
            at: t0,
        };
        assert!(reconnect_words(&u, 2, Some(1))
            .starts_with("unlocked offline · record not delivered yet"));
        assert_eq!(
            reconnect_words(&u, 3, Some(1)),
            "record delivered · not rotated yet — the password you copied (v1) works until it is"
        );
        assert_eq!(
            reconnect_words(&u, 4, Some(2)),
            "record delivered · rotated to v2 — the password you copied no longer works"
        );
        // A refused envelope says nothing about rotation.
        assert!(reconnect_words(&u, 3, None).contains("not rotated yet"));
    }

    #[test]
    fn types_serialise_to_the_ui_contract() {
        let r = UnlockResult {
            name: "n".into(),
            title: "T".into(),
            version: 2,
            secret: Zeroizing::new("s3cr3t".into()),
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
