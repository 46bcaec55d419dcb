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

use crate::audit::{append, Actor};
use crate::clock::ts;
use crate::error::{Error, Result};
use crate::ops::{Notice, Uow};
use crate::service::{emit, Broker, NewEvent};
use crate::store::devices::DeviceRow;
use crate::store::envelopes::NewEnvelope;
use crate::store::secrets::SecretRow;
use crate::store::{Ts, Tx};
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey;
use firedoor_core::api::EventKind;
use firedoor_core::audit::AuditEvent;
use firedoor_core::breakglass::{
    decode_public_key, encode_public_key, fingerprint, verify_chain, BrokerIdentity, ChainHead,
    DeviceView, Envelope, EnvelopeMeta, OnlineUnlock, SignedRecord, UnlockRecord, UnlockedSecret,
    UnlocksAck, UploadUnlocks, MAX_REASON_CHARS,
};
use firedoor_core::input::{self, truncate_chars};
use firedoor_core::notify::Audience;
use firedoor_core::policy::{Principal, SecretPolicy};
use firedoor_core::ErrorCode;
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Active devices one user may have enrolled at once.
pub const MAX_DEVICES_PER_USER: i64 = 20;
/// Unlock records in one upload.
pub const MAX_RECORDS_PER_UPLOAD: usize = 1000;
/// Longest problem text of a refused upload in the audit log, an alert or an error.
const MAX_PROBLEM_CHARS: usize = 300;
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
    device_id: String,
    user: String,
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

fn chain_rejected(problem: impl Into<String>) -> Error {
    Error::rule(
        ErrorCode::ChainRejected,
        format!("unlock chain rejected: {}", problem.into()),
    )
}

/// What a device's upload accomplished, before the commit.
struct Accepted {
    record: UnlockRecord,
    signed: SignedRecord,
    /// The secret's version when the record arrived (0 if none is stored).
    current_version: Option<i64>,
}

/// Why a rotation is running, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationTrigger {
    /// Due after an unlock (the worker).
    Due,
    /// An admin asked for it.
    Manual,
}

impl RotationTrigger {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RotationTrigger::Due => "due",
            RotationTrigger::Manual => "manual",
        }
    }
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

    // ------------------------------------------------------------- unlock chain

    /// Accepts a device's unlock records that continue its acknowledged chain.
    /// Records already acknowledged (same sequence number and hash) are acknowledged
    /// again without effect. Anything else that does not fit is refused as a whole,
    /// and the refusal is audited and raised to the admins.
    pub async fn upload_unlocks(
        &self,
        who: &Principal,
        id: &str,
        body: UploadUnlocks,
    ) -> Result<UnlocksAck> {
        if body.records.len() > MAX_RECORDS_PER_UPLOAD {
            return Err(Error::rule(
                ErrorCode::InvalidRequest,
                format!(
                    "{} records in one upload; send at most {MAX_RECORDS_PER_UPLOAD} at a time, oldest first",
                    body.records.len()
                ),
            ));
        }
        // Revoked devices may still report what happened on them.
        let d0 = self.own_device(who, id, true).await?;
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let d = tx
            .devices()
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found("device"))?;
        let n = body.records.len();
        let checked = match self.check_chain(&mut tx, &d, &body.records).await? {
            Ok(c) => c,
            Err(problem) => {
                drop(tx);
                return Err(self.reject_chain(who, &d0, &problem, n).await);
            }
        };
        let Some((accepted, head)) = checked else {
            // Nothing new: everything was acknowledged before.
            return Ok(UnlocksAck {
                head: d.head(),
                accepted: 0,
                rotating: Vec::new(),
            });
        };
        let old = d.head();
        let moved = tx
            .devices()
            .advance_head(
                id,
                (old.seq as i64, &old.hash),
                (head.seq as i64, &head.hash),
            )
            .await?;
        if !moved {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "the device's chain moved at the same moment; upload again",
            ));
        }
        let actor = Actor::User(who.clone());
        let mut rotating = BTreeSet::new();
        for a in &accepted {
            let sr = &a.signed;
            tx.devices()
                .insert_unlock(
                    id,
                    a.record.seq as i64,
                    &sr.hash,
                    &sr.body,
                    &sr.signature,
                    Ts(now),
                )
                .await?;
            let r = &a.record;
            if r.mode != "offline" {
                // An online unlock was audited and alerted when the broker released
                // the value; the device's record of it is audited, not alerted again.
                append(
                    &mut tx,
                    &actor,
                    &r.secret,
                    AuditEvent::OnlineUnlockRecorded {
                        device: id.to_string(),
                        seq: r.seq,
                        version: r.version,
                        reason: truncate_chars(r.reason.trim(), MAX_REASON_CHARS),
                        at: r.at.to_rfc3339(),
                        hash: sr.hash.clone(),
                    },
                    now,
                )
                .await?;
                continue;
            }
            let sp = self.policy.secret(&r.secret);
            let reason = truncate_chars(r.reason.trim(), MAX_REASON_CHARS);
            let current = a.current_version == Some(r.version);
            append(
                &mut tx,
                &actor,
                &r.secret,
                AuditEvent::OfflineUnlock {
                    device: id.to_string(),
                    device_name: d.name.clone(),
                    seq: r.seq,
                    version: r.version,
                    reason: reason.clone(),
                    at: r.at.to_rfc3339(),
                    hash: sr.hash.clone(),
                    current_version: a.current_version,
                    eligible: sp.is_some_and(|s| s.may_unlock(who)),
                },
                now,
            )
            .await?;
            let to = self
                .recipients(
                    &mut tx,
                    Audience::Unlocked {
                        secret: sp,
                        by: &who.name,
                    },
                )
                .await?;
            emit(
                &mut tx,
                &to,
                NewEvent {
                    kind: EventKind::BreakGlassUnlocked,
                    request_id: None,
                    grant_id: None,
                    bundle: Some(&r.secret),
                    actor: Some(&who.name),
                    message: format!(
                        "BREAK GLASS: {} unlocked {} v{} offline on {} at {}: {}",
                        who.name,
                        r.secret,
                        r.version,
                        d.name,
                        r.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        truncate_chars(&reason, 200)
                    ),
                },
                now,
            )
            .await?;
            if current && sp.is_some() {
                self.mark_due(
                    &mut tx,
                    &r.secret,
                    r.version,
                    now,
                    &format!("offline unlock by {} on {id} (record {})", who.name, r.seq),
                )
                .await?;
                if sp.is_some_and(|s| s.rotate.is_some()) {
                    rotating.insert(r.secret.clone());
                }
            }
        }
        tx.commit().await?;
        self.events_changed();
        self.wake_worker.notify_one();
        Ok(UnlocksAck {
            head,
            accepted: accepted.len() as u64,
            rotating: rotating.into_iter().collect(),
        })
    }

    /// Checks an upload against the stored chain. `Ok(Err(problem))`: refuse it;
    /// `Ok(Ok(None))`: nothing new; otherwise the new records and the new head.
    async fn check_chain(
        &self,
        tx: &mut Tx,
        d: &DeviceRow,
        records: &[SignedRecord],
    ) -> Result<std::result::Result<Option<(Vec<Accepted>, ChainHead)>, String>> {
        let head = d.head();
        let Ok(key) = decode_public_key(&d.signing_key) else {
            return Err(Error::Corrupt(format!("device {}: stored key", d.id)));
        };
        // Records up to the head must be the very ones acknowledged before.
        // Bounds first: nothing oversized is parsed deeply, verified, stored or shown.
        let mut parsed = Vec::with_capacity(records.len());
        for (i, sr) in records.iter().enumerate() {
            if let Err(p) = sr.check_size() {
                return Ok(Err(format!("record {} of the upload: {p}", i + 1)));
            }
            let r = match serde_json::from_str::<UnlockRecord>(&sr.body) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(Err(format!(
                        "record {} of the upload: unreadable ({})",
                        i + 1,
                        truncate_chars(&e.to_string(), 120)
                    )))
                }
            };
            if let Err(p) = r.check_bounds() {
                return Ok(Err(format!("record {} of the upload: {p}", i + 1)));
            }
            parsed.push(r.seq);
        }
        let mut fresh_from = records.len();
        for (i, (sr, &seq)) in records.iter().zip(&parsed).enumerate() {
            if seq > head.seq {
                fresh_from = i;
                break;
            }
            let stored = tx.devices().unlock(&d.id, seq as i64).await?;
            match stored {
                Some((hash, body)) if hash == sr.hash && body == sr.body => {}
                Some(_) => {
                    return Ok(Err(format!(
                        "record {seq}: it differs from the record {seq} the broker acknowledged (the chain was rewritten)"
                    )))
                }
                None => {
                    return Ok(Err(format!(
                        "record {seq}: the broker has no record {seq} of this device to compare it with"
                    )))
                }
            }
        }
        let fresh = &records[fresh_from..];
        if fresh.is_empty() {
            return Ok(Ok(None));
        }
        let (recs, new_head) = match verify_chain(&head, fresh, &d.id, &key) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut out = Vec::with_capacity(recs.len());
        for (r, sr) in recs.into_iter().zip(fresh) {
            if r.user != d.user_name {
                return Ok(Err(format!(
                    "record {}: it names user {}, but device {} belongs to {}",
                    r.seq, r.user, d.id, d.user_name
                )));
            }
            let current = tx.secrets().version(&r.secret).await?;
            out.push(Accepted {
                current_version: current,
                signed: sr.clone(),
                record: r,
            });
        }
        Ok(Ok(Some((out, new_head))))
    }

    /// Audits a refused upload and raises it to the admins, in its own transaction;
    /// returns the error for the caller. Every refusal is audited (its text bounded);
    /// the admins hear of a device's refusals at most once per
    /// [`REJECTION_ALERT_INTERVAL_MINUTES`], with a count of those in between.
    async fn reject_chain(&self, who: &Principal, d: &DeviceRow, problem: &str, n: usize) -> Error {
        let now = self.now();
        let problem = truncate_chars(problem, MAX_PROBLEM_CHARS);
        let alert = self.rejection_alerts.due(&d.id, now);
        let result: Result<()> = async {
            let mut uow = self.uow_at(now).await?;
            uow.record(
                &Actor::User(who.clone()),
                &d.id,
                AuditEvent::UnlockChainRejected {
                    user: d.user_name.clone(),
                    device_name: d.name.clone(),
                    problem: problem.clone(),
                    records: n,
                    head_seq: d.head_seq,
                    head_hash: d.head_hash.clone(),
                    alerted: alert.is_some(),
                },
            );
            if let Some(quiet) = alert {
                let mut message = format!(
                    "SECURITY: the unlock chain uploaded by {} from device {} ({}) was rejected: {problem}",
                    who.name, d.name, d.id
                );
                if let Some((count, since)) = quiet {
                    message.push_str(&format!(
                        " (and {count} more rejected uploads from this device since {}, not alerted one by one: see the audit log)",
                        since.format("%Y-%m-%d %H:%M UTC")
                    ));
                }
                self.security_alert(&mut uow, None, Some(&who.name), message)
                    .await?;
            }
            uow.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(device = %d.id, error = %e, "recording a rejected unlock chain");
        }
        tracing::warn!(device = %d.id, user = %who.name, %problem, "unlock chain rejected");
        chain_rejected(problem)
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

    /// Online break glass: releases the current value to an eligible user, loudly,
    /// and schedules its rotation.
    pub async fn online_unlock(
        &self,
        who: &Principal,
        name: &str,
        body: OnlineUnlock,
    ) -> Result<UnlockedSecret> {
        let sp = self.secret_policy(name)?;
        if !sp.may_unlock(who) {
            return Err(Error::rule(
                ErrorCode::NotEligible,
                format!("you are not among the people who may unlock {name}"),
            ));
        }
        let reason = input::break_glass_reason(&body.reason)?;
        if let Some(dev) = &body.device_id {
            self.own_device(who, dev, false).await?;
        }
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let row = tx.secrets().get(name).await?;
        let (version, sealed) = match row {
            Some(SecretRow {
                version,
                value: Some(v),
                ..
            }) if version > 0 => (version, v),
            _ => {
                return Err(Error::rule(
                    ErrorCode::Conflict,
                    format!("no value of {name} is stored yet; an admin must store one first"),
                ))
            }
        };
        let value = Zeroizing::new(self.key.open(&sealed)?);
        let value = String::from_utf8(value.to_vec())
            .map_err(|_| Error::Corrupt(format!("the stored value of {name} is not UTF-8")))?;
        let due = now + Duration::seconds(sp.rotate_after_online_secs);
        self.mark_due(
            &mut tx,
            name,
            version,
            due,
            &format!("online unlock by {}", who.name),
        )
        .await?;
        let rotates_at = if sp.rotate.is_some() {
            tx.secrets()
                .get(name)
                .await?
                .and_then(|r| r.rotation_due_at)
                .map(|t| t.0)
        } else {
            None
        };
        append(
            &mut tx,
            &Actor::User(who.clone()),
            name,
            AuditEvent::OnlineUnlock {
                version,
                reason: reason.clone(),
                device: body.device_id.clone(),
                rotates_at: rotates_at.map(ts),
            },
            now,
        )
        .await?;
        let to = self
            .recipients(
                &mut tx,
                Audience::Unlocked {
                    secret: Some(sp),
                    by: &who.name,
                },
            )
            .await?;
        emit(
            &mut tx,
            &to,
            NewEvent {
                kind: EventKind::BreakGlassUnlocked,
                request_id: None,
                grant_id: None,
                bundle: Some(name),
                actor: Some(&who.name),
                message: format!(
                    "BREAK GLASS: {} unlocked {name} v{version} online: {}{}",
                    who.name,
                    truncate_chars(&reason, 200),
                    match rotates_at {
                        Some(t) => format!(" (rotates at {})", t.format("%H:%M UTC")),
                        None => " (no automatic rotation: store a new value)".into(),
                    }
                ),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        self.events_changed();
        self.wake_worker.notify_one();
        Ok(UnlockedSecret {
            name: name.to_string(),
            version,
            value,
            rotates_at,
        })
    }
}
