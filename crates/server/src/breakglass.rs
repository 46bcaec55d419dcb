//! Offline break glass, the broker's side (see `firedoor_core::breakglass` for the
//! envelope and the unlock chain, and the design's "Offline break glass").
//!
//! - Devices enrol an age recipient and an ed25519 key.
//! - Admins store a secret's value (sealed at rest with the broker key); the broker
//!   seals it to every enrolled device of every person who may unlock it: an
//!   ASCII-armoured age file plus metadata signed with the broker's signing key.
//! - Devices upload their signed, hash-chained unlock records; the broker accepts
//!   only a chain that continues the device's acknowledged head, records every
//!   unlock, alerts admins and the secret's alert audience, and rotates the secret.
//! - Rotation is crash-safe: the new value is stored (sealed) as `pending_value`
//!   before the target is changed, so a retry sends the same value; only after the
//!   target took it does the value become current, together with fresh envelopes.
//!
//! No secret value is ever logged, put in an error, an audit record, an event or a
//! URL, or stored unencrypted.

use crate::audit::Actor;
use crate::clock::ts;
use crate::error::{Error, Result};
use crate::ops::{Notice, Uow};
use crate::service::Broker;
use crate::store::devices::DeviceRow;
use crate::store::envelopes::NewEnvelope;
pub use crate::store::secrets::RotationTrigger;
use crate::store::{Ts, Tx};
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey;
use firedoor_core::api::EventKind;
use firedoor_core::audit::AuditEvent;
use firedoor_core::breakglass::{
    decode_public_key, encode_public_key, fingerprint, BrokerIdentity, ChainHead, DeviceView,
    Envelope, EnvelopeMeta,
};
use firedoor_core::notify::Audience;
use firedoor_core::policy::SecretPolicy;
use firedoor_core::quorum::{self, HolderDevice, QuorumHolder, QuorumMeta};
use firedoor_core::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Active devices one user may have enrolled at once.
pub const MAX_DEVICES_PER_USER: i64 = 20;
/// Unlock records in one upload.
pub const MAX_RECORDS_PER_UPLOAD: usize = 1000;
/// Longest problem text of a refused upload in the audit log, an alert or an error.
pub(crate) const MAX_PROBLEM_CHARS: usize = 300;
/// A device's refused uploads raise at most one security alert per this many minutes.
pub const REJECTION_ALERT_INTERVAL_MINUTES: i64 = 10;

/// When each device last raised a security alert for a refused upload, and how many
/// refusals were not alerted since. In memory: a restart may alert once more.
#[derive(Default)]
pub struct RejectionAlerts(std::sync::Mutex<std::collections::HashMap<String, AlertWindow>>);

struct AlertWindow {
    last_alert: DateTime<Utc>,
    quiet: u64,
    quiet_since: Option<DateTime<Utc>>,
}

impl RejectionAlerts {
    /// Whether a refusal of `device` at `now` is alerted: `Some(quiet)` with the
    /// refusals not alerted since the last alert (count, first time), or `None` to
    /// stay quiet and count it.
    pub fn due(&self, device: &str, now: DateTime<Utc>) -> Option<Option<(u64, DateTime<Utc>)>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let interval = chrono::Duration::minutes(REJECTION_ALERT_INTERVAL_MINUTES);
        match map.get_mut(device) {
            Some(w) if now < w.last_alert + interval && now >= w.last_alert => {
                w.quiet += 1;
                w.quiet_since.get_or_insert(now);
                None
            }
            _ => {
                let prev = map.insert(
                    device.to_string(),
                    AlertWindow {
                        last_alert: now,
                        quiet: 0,
                        quiet_since: None,
                    },
                );
                Some(prev.and_then(|w| w.quiet_since.map(|t| (w.quiet, t))))
            }
        }
    }
}
/// Longest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 65536;
/// Length of a value the broker generates at rotation (a-z, A-Z, 0-9).
pub const ROTATED_VALUE_CHARS: usize = 32;
pub use firedoor_core::input::MAX_DEVICE_NAME_CHARS;

impl DeviceRow {
    pub(crate) fn view(&self) -> Result<DeviceView> {
        let key = decode_public_key(&self.signing_key)
            .map_err(|e| Error::Corrupt(format!("device {}: {e}", self.id)))?;
        Ok(DeviceView {
            id: self.id.clone(),
            user: self.user_name.clone(),
            name: self.name.clone(),
            recipient: self.recipient.clone(),
            signing_key: self.signing_key.clone(),
            fingerprint: fingerprint(&key),
            created_at: self.created_at.0,
            head: self.head(),
        })
    }
    pub(crate) fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.head_seq.max(0) as u64,
            hash: self.head_hash.clone(),
        }
    }
    pub(crate) fn target(&self) -> SealTarget {
        SealTarget {
            device_id: self.id.clone(),
            user: self.user_name.clone(),
            recipient: self.recipient.clone(),
        }
    }
}

/// A device an envelope is sealed for.
#[derive(Debug, Clone)]
pub(crate) struct SealTarget {
    pub(crate) device_id: String,
    pub(crate) user: String,
    recipient: String,
}

/// An envelope ready to store.
pub(crate) struct Sealed {
    device_id: String,
    user: String,
    pub(crate) version: i64,
    envelope: Envelope,
    sealed_at: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl Sealed {
    /// The envelope as the store takes it.
    fn row(&self) -> NewEnvelope<'_> {
        NewEnvelope {
            device_id: &self.device_id,
            version: self.version,
            meta_json: &self.envelope.meta_json,
            signature: &self.envelope.signature,
            ciphertext: &self.envelope.ciphertext,
            sealed_at: Ts(self.sealed_at),
            not_after: Ts(self.not_after),
        }
    }
}

/// Encrypts `value` to one device and signs the metadata. `None` (logged) if the
/// stored recipient does not parse, which registration prevents.
fn seal_one(
    secret: &str,
    version: i64,
    value: &[u8],
    t: &SealTarget,
    now: DateTime<Utc>,
    validity: Duration,
    key: &SigningKey,
) -> Option<Sealed> {
    seal_one_with(secret, version, value, t, now, validity, key, None)
}

/// [`seal_one`], with the quorum part of the metadata when `value` is a share.
#[allow(clippy::too_many_arguments)]
fn seal_one_with(
    secret: &str,
    version: i64,
    value: &[u8],
    t: &SealTarget,
    now: DateTime<Utc>,
    validity: Duration,
    key: &SigningKey,
    quorum: Option<QuorumMeta>,
) -> Option<Sealed> {
    let recipient = match age::x25519::Recipient::from_str(&t.recipient) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(device = %t.device_id, error = %e, "stored recipient does not parse; no envelope sealed");
            return None;
        }
    };
    let ciphertext = match age::encrypt_and_armor(&recipient, value) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(device = %t.device_id, error = %e, "age encryption failed; no envelope sealed");
            return None;
        }
    };
    let not_after = now + validity;
    let meta = EnvelopeMeta {
        format: 1,
        secret: secret.to_string(),
        version,
        device_id: t.device_id.clone(),
        user: t.user.clone(),
        recipient: t.recipient.clone(),
        sealed_at: now,
        not_before: now,
        not_after,
        ciphertext_sha256: String::new(),
        quorum,
    };
    Some(Sealed {
        device_id: t.device_id.clone(),
        user: t.user.clone(),
        version,
        envelope: Envelope::seal(meta, ciphertext, key),
        sealed_at: now,
        not_after,
    })
}

impl Broker {
    pub(crate) fn secret_policy(&self, name: &str) -> Result<&SecretPolicy> {
        self.policy.secret(name).ok_or_else(|| {
            Error::rule(
                ErrorCode::NotFound,
                format!("no secret named {name} in the policy"),
            )
        })
    }

    /// The broker's envelope signing key, as apps pin it.
    pub fn identity(&self) -> BrokerIdentity {
        let vk = self.key.verifying_key();
        BrokerIdentity {
            signing_key: encode_public_key(&vk),
            fingerprint: fingerprint(&vk),
        }
    }

    /// Active devices of users who may unlock `sp`.
    pub(crate) async fn eligible_targets(&self, sp: &SecretPolicy) -> Result<Vec<SealTarget>> {
        let eligible: BTreeSet<String> = crate::auth::all_users(self.store.users())
            .await?
            .into_iter()
            .filter(|u| sp.may_unlock(u))
            .map(|u| u.name)
            .collect();
        if eligible.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.store.devices().active_recipients().await?;
        Ok(rows
            .into_iter()
            .filter(|(_, u, _)| eligible.contains(u))
            .map(|(device_id, user, recipient)| SealTarget {
                device_id,
                user,
                recipient,
            })
            .collect())
    }

    /// Seals `value` for every target, on blocking threads (one chunk per core).
    pub(crate) async fn seal_many(
        &self,
        sp: &SecretPolicy,
        version: i64,
        value: Arc<Zeroizing<Vec<u8>>>,
        targets: Vec<SealTarget>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Sealed>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        if sp.quorum > 1 {
            return self.seal_quorum(sp, version, value, targets, now).await;
        }
        let validity = Duration::seconds(sp.validity_secs);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let workers = cores.min(targets.len().div_ceil(32)).max(1);
        let chunk = targets.len().div_ceil(workers);
        let mut tasks = Vec::with_capacity(workers);
        for part in targets.chunks(chunk) {
            let part = part.to_vec();
            let value = value.clone();
            let key = self.key.signing_key().clone();
            let secret = sp.name.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                part.iter()
                    .filter_map(|t| seal_one(&secret, version, &value, t, now, validity, &key))
                    .collect::<Vec<_>>()
            }));
        }
        let mut out = Vec::with_capacity(targets.len());
        for t in tasks {
            out.extend(
                t.await
                    .map_err(|e| Error::Corrupt(format!("sealing envelopes: {e}")))?,
            );
        }
        Ok(out)
    }

    pub(crate) async fn store_envelope(tx: &mut Tx, secret: &str, s: &Sealed) -> Result<()> {
        tx.envelopes().upsert(secret, &s.row()).await
    }

    /// Whether the quorum shares in `sealed` were dealt from a view of the split
    /// that changed before this unit of work: a share index stored at `version` for
    /// one person that `sealed`'s holder directory gives to another (and does not
    /// list for the first). Two people enrolling at once each take the smallest free
    /// index from what they read, so both could be dealt the same share; the second
    /// to store deals again instead. Single-holder envelopes never are.
    pub(crate) async fn stale_quorum_deal(
        tx: &mut Tx,
        secret: &str,
        version: i64,
        sealed: &[Sealed],
    ) -> Result<bool> {
        let directory: BTreeSet<(String, u8)> = sealed
            .iter()
            .filter_map(|s| serde_json::from_str::<EnvelopeMeta>(&s.envelope.meta_json).ok())
            .filter_map(|m| m.quorum)
            .flat_map(|q| q.holders.into_iter().map(|h| (h.user, h.index)))
            .collect();
        if directory.is_empty() {
            return Ok(false);
        }
        for meta in tx.envelopes().metas_of(secret, version).await? {
            let Ok(m) = serde_json::from_str::<EnvelopeMeta>(&meta) else {
                continue;
            };
            let Some(q) = m.quorum else {
                continue;
            };
            let given_to_another = directory
                .iter()
                .any(|(user, index)| *index == q.index && *user != m.user);
            if given_to_another && !directory.contains(&(m.user, q.index)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replaces every envelope of a secret with `sealed` (devices not in it lose
    /// theirs), audits it and tells each affected user to fetch envelopes again.
    pub(crate) async fn install_envelopes(
        &self,
        uow: &mut Uow<'_>,
        sp: &SecretPolicy,
        version: i64,
        sealed: &[Sealed],
        actor: &Actor,
    ) -> Result<()> {
        let now = uow.now();
        let mut affected: BTreeSet<String> = uow
            .envelopes()
            .holder_users(&sp.name)
            .await?
            .into_iter()
            .collect();
        uow.envelopes().delete_for_secret(&sp.name).await?;
        let rows: Vec<NewEnvelope<'_>> = sealed.iter().map(Sealed::row).collect();
        uow.envelopes().insert_many(&sp.name, &rows).await?;
        affected.extend(sealed.iter().map(|s| s.user.clone()));
        uow.record(
            actor,
            &sp.name,
            AuditEvent::EnvelopesSealed {
                version,
                devices: sealed.len(),
                users: affected.len(),
                not_after: ts(now + Duration::seconds(sp.validity_secs)),
            },
        );
        uow.notify_to(
            affected.into_iter().collect(),
            Notice::new(
                EventKind::EnvelopesChanged,
                format!(
                    "{} is now version {version}: fetch its envelope again",
                    sp.name
                ),
            )
            .bundle(Some(&sp.name)),
        );
        Ok(())
    }

    /// A `security_alert` event to every admin, in `tx`.
    pub(crate) async fn security_alert(
        &self,
        uow: &mut Uow<'_>,
        secret: Option<&str>,
        actor: Option<&str>,
        message: String,
    ) -> Result<()> {
        uow.notify(
            Audience::Admins,
            Notice::new(EventKind::SecurityAlert, message)
                .bundle(secret)
                .actor(actor),
        )
        .await
    }

    /// Makes a rotation of `name` due at `at` (or keeps an earlier due time), if the
    /// secret is still at `version`.
    pub(crate) async fn mark_due(
        &self,
        tx: &mut Tx,
        name: &str,
        version: i64,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<()> {
        tx.secrets().mark_due(name, version, Ts(at), reason).await
    }

    // issue 14: quorum
    /// Seals a quorum secret: one Shamir share per eligible person (the same share on
    /// each of their devices), dealt from the version's seed (see
    /// [`firedoor_core::quorum`]), so a device sealed later gets the share its owner
    /// already holds. Share indexes already dealt at this version are kept; people new
    /// to the split get the smallest free index. The signed metadata lists every holder
    /// and their active devices' keys, for the offline checks between devices.
    async fn seal_quorum(
        &self,
        sp: &SecretPolicy,
        version: i64,
        value: Arc<Zeroizing<Vec<u8>>>,
        targets: Vec<SealTarget>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Sealed>> {
        let eligible: BTreeSet<String> = crate::auth::all_users(self.store.users())
            .await?
            .into_iter()
            .filter(|u| sp.may_unlock(u))
            .map(|u| u.name)
            .collect();
        let devices: Vec<DeviceRow> = self
            .store
            .devices()
            .all()
            .await?
            .into_iter()
            .filter(|d| d.revoked_at.is_none() && eligible.contains(&d.user_name))
            .collect();
        let mut index: BTreeMap<String, u8> = BTreeMap::new();
        for meta in self.store.envelopes().metas_of(&sp.name, version).await? {
            if let Ok(m) = serde_json::from_str::<EnvelopeMeta>(&meta) {
                if let Some(q) = m.quorum {
                    index.insert(m.user, q.index);
                }
            }
        }
        let people: BTreeSet<String> = devices
            .iter()
            .map(|d| d.user_name.clone())
            .chain(targets.iter().map(|t| t.user.clone()))
            .collect();
        for p in &people {
            if index.contains_key(p) {
                continue;
            }
            let used: BTreeSet<u8> = index.values().copied().collect();
            let Some(free) = (1..=255u8).find(|i| !used.contains(i)) else {
                return Err(Error::rule(
                    ErrorCode::Conflict,
                    format!("{}: more than 255 people would hold a share", sp.name),
                ));
            };
            index.insert(p.clone(), free);
        }
        let holders: Vec<QuorumHolder> = index
            .iter()
            .filter(|(u, _)| people.contains(*u))
            .map(|(u, i)| QuorumHolder {
                user: u.clone(),
                index: *i,
                devices: devices
                    .iter()
                    .filter(|d| &d.user_name == u)
                    .map(|d| HolderDevice {
                        id: d.id.clone(),
                        signing_key: d.signing_key.clone(),
                        recipient: d.recipient.clone(),
                    })
                    .collect(),
            })
            .collect();
        let wanted: Vec<u8> = holders.iter().map(|h| h.index).collect();
        let seed = quorum::split_seed(self.key.signing_key(), &sp.name, version);
        let m = sp.quorum;
        let key = self.key.signing_key().clone();
        let secret = sp.name.clone();
        let validity = Duration::seconds(sp.validity_secs);
        tokio::task::spawn_blocking(move || {
            let dealt = quorum::deal(&value, m, &seed, &wanted);
            let n = holders.len().min(255) as u8;
            targets
                .iter()
                .filter_map(|t| {
                    let i = *index.get(&t.user)?;
                    let (_, share) = dealt.shares.iter().find(|(x, _)| *x == i)?;
                    let meta = QuorumMeta {
                        share_set: dealt.share_set.clone(),
                        m,
                        n,
                        index: i,
                        check: dealt.check.clone(),
                        holders: holders.clone(),
                    };
                    seal_one_with(
                        &secret,
                        version,
                        share.as_bytes(),
                        t,
                        now,
                        validity,
                        &key,
                        Some(meta),
                    )
                })
                .collect()
        })
        .await
        .map_err(|e| Error::Corrupt(format!("sealing shares: {e}")))
    }

    /// Seals a quorum secret's current version again to every holder (same split,
    /// same shares), so every holder's signed directory lists a newly enrolled device.
    /// Skipped when the secret changed version meanwhile.
    pub(crate) async fn reseal_quorum_directory(
        &self,
        actor: &Actor,
        sp: &SecretPolicy,
    ) -> Result<()> {
        let Some(row) = self.store.secrets().get(&sp.name).await? else {
            return Ok(());
        };
        let (version, Some(sealed_value)) = (row.version, row.value.as_ref()) else {
            return Ok(());
        };
        if version <= 0 {
            return Ok(());
        }
        let value = Arc::new(Zeroizing::new(self.key.open(sealed_value)?));
        for _ in 0..5 {
            let targets = self.eligible_targets(sp).await?;
            let now = self.now();
            let sealed = self
                .seal_many(sp, version, value.clone(), targets, now)
                .await?;
            let mut uow = self.uow_at(now).await?;
            if uow.secrets().version(&sp.name).await? != Some(version) {
                return Ok(());
            }
            if Self::stale_quorum_deal(&mut uow, &sp.name, version, &sealed).await? {
                continue; // someone enrolled meanwhile: deal again
            }
            self.install_envelopes(&mut uow, sp, version, &sealed, actor)
                .await?;
            return uow.commit().await;
        }
        Err(Error::rule(
            ErrorCode::Conflict,
            format!("{}: people kept enrolling while it was being resealed; it is resealed at the next enrolment or rotation", sp.name),
        ))
    }
}
