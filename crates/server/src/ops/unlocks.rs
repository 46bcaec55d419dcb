//! Unlocks: a device's upload of its signed, hash-chained unlock records (accepted
//! only as a continuation of the device's acknowledged head; every unlock audited,
//! alerted and its secret marked for rotation; a refused chain audited and raised to
//! the admins), and online break glass (the current value released to an eligible
//! user, loudly, its rotation scheduled). Each is one unit of work.

use crate::audit::Actor;
use crate::breakglass::{MAX_PROBLEM_CHARS, MAX_RECORDS_PER_UPLOAD};
use crate::clock::ts;
use crate::error::{Error, Result};
use crate::ops::Notice;
use crate::service::Broker;
use crate::store::devices::DeviceRow;
use crate::store::secrets::SecretRow;
use crate::store::{Ts, Tx};
use chrono::Duration;
use firedoor_core::api::EventKind;
use firedoor_core::audit::AuditEvent;
use firedoor_core::breakglass::{
    decode_public_key, verify_chain, ChainHead, OnlineUnlock, SignedRecord, UnlockRecord,
    UnlockedSecret, UnlocksAck, UploadUnlocks, MAX_REASON_CHARS,
};
use firedoor_core::input::{self, truncate_chars};
use firedoor_core::notify::Audience;
use firedoor_core::policy::Principal;
use firedoor_core::quorum::{MODE_QUORUM, MODE_SHARE_RELEASED};
use firedoor_core::ErrorCode;
use std::collections::BTreeSet;
use zeroize::Zeroizing;

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

impl Broker {
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
        let mut uow = self.uow_at(now).await?;
        let d = uow
            .devices()
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found("device"))?;
        let n = body.records.len();
        let checked = match self.check_chain(&mut uow, &d, &body.records).await? {
            Ok(c) => c,
            Err(problem) => {
                drop(uow);
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
        let moved = uow
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
            uow.devices()
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
            if r.mode == MODE_QUORUM || r.mode == MODE_SHARE_RELEASED {
                // issue 14: quorum
                self.accept_quorum_record(&mut uow, who, &d, a, now, &mut rotating)
                    .await?;
                continue;
            }
            if r.mode != "offline" {
                // An online unlock was audited and alerted when the broker released
                // the value; the device's record of it is audited, not alerted again.
                uow.record(
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
                );
                continue;
            }
            let sp = self.policy.secret(&r.secret);
            let reason = truncate_chars(r.reason.trim(), MAX_REASON_CHARS);
            let current = a.current_version == Some(r.version);
            uow.record(
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
            );
            let message = format!(
                "BREAK GLASS: {} unlocked {} v{} offline on {} at {}: {}",
                who.name,
                r.secret,
                r.version,
                d.name,
                r.at.format("%Y-%m-%d %H:%M:%S UTC"),
                truncate_chars(&reason, 200)
            );
            uow.notify(
                Audience::Unlocked {
                    secret: sp,
                    by: &who.name,
                },
                Notice::new(EventKind::BreakGlassUnlocked, message)
                    .bundle(Some(&r.secret))
                    .actor(Some(&who.name)),
            )
            .await?;
            // issue 14: uses — every unlock is a use, open until classified; the
            // rotation is planned by the secret's policy (immediate or after the
            // linked incident).
            self.open_use(
                &mut uow,
                &actor,
                crate::ops::uses::Unlocked {
                    secret: &r.secret,
                    version: r.version,
                    user: &who.name,
                    mode: "offline",
                    device_id: Some(id),
                    seq: Some(r.seq as i64),
                    reason: &reason,
                    at: r.at,
                    incident: r.incident.as_deref(),
                    current: current && sp.is_some(),
                    due_reason: format!(
                        "offline unlock by {} on {id} (record {})",
                        who.name, r.seq
                    ),
                },
                now,
            )
            .await?;
            if current && sp.is_some_and(|s| s.rotate.is_some()) {
                rotating.insert(r.secret.clone());
            }
        }
        uow.commit().await?;
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
        if sp.quorum > 1 {
            // issue 14: quorum. The broker never releases a two-person secret to one.
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!(
                    "{name} needs {} people: it opens only offline, from the shares of {} different eligible people (firedoor break-glass request)",
                    sp.quorum, sp.quorum
                ),
            ));
        }
        let reason = input::break_glass_reason(&body.reason)?;
        if let Some(dev) = &body.device_id {
            self.own_device(who, dev, false).await?;
        }
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let row = uow.secrets().get(name).await?;
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
        if let Some(i) = &body.incident {
            firedoor_core::uses::check_incident_ref(i)
                .map_err(|m| Error::rule(ErrorCode::InvalidRequest, m))?;
        }
        // issue 14: uses — the unlock is a use, open until classified; its
        // rotation is planned by the secret's policy.
        let (_, rotates_at) = self
            .open_use(
                &mut uow,
                &Actor::User(who.clone()),
                crate::ops::uses::Unlocked {
                    secret: name,
                    version,
                    user: &who.name,
                    mode: "online",
                    device_id: body.device_id.as_deref(),
                    seq: None,
                    reason: &reason,
                    at: now,
                    incident: body.incident.as_deref(),
                    current: true,
                    due_reason: format!("online unlock by {}", who.name),
                },
                due,
            )
            .await?;
        uow.record(
            &Actor::User(who.clone()),
            name,
            AuditEvent::OnlineUnlock {
                version,
                reason: reason.clone(),
                device: body.device_id.clone(),
                rotates_at: rotates_at.map(ts),
            },
        );
        let message = format!(
            "BREAK GLASS: {} unlocked {name} v{version} online: {}{}",
            who.name,
            truncate_chars(&reason, 200),
            match rotates_at {
                Some(t) => format!(" (rotates at {})", t.format("%H:%M UTC")),
                None => " (no automatic rotation: store a new value)".into(),
            }
        );
        uow.notify(
            Audience::Unlocked {
                secret: Some(sp),
                by: &who.name,
            },
            Notice::new(EventKind::BreakGlassUnlocked, message)
                .bundle(Some(name))
                .actor(Some(&who.name)),
        )
        .await?;
        uow.commit().await?;
        self.wake_worker.notify_one();
        Ok(UnlockedSecret {
            name: name.to_string(),
            version,
            value,
            rotates_at,
        })
    }

    // issue 14: quorum
    /// One uploaded record of a two-person unlock (`quorum`, on the requester's device)
    /// or of a share released to one (`share_released`, on the releaser's device):
    /// audited, alerted like an offline unlock, and the secret marked for rotation
    /// (a released share may have completed an unlock whose record has not arrived).
    /// The broker checks that the people named were eligible, distinct and enough; a
    /// record that does not add up is still accepted (the device's chain must go on)
    /// but audited as inconsistent and raised to the admins.
    async fn accept_quorum_record(
        &self,
        uow: &mut crate::ops::Uow<'_>,
        who: &Principal,
        d: &DeviceRow,
        a: &Accepted,
        now: chrono::DateTime<chrono::Utc>,
        rotating: &mut BTreeSet<String>,
    ) -> Result<()> {
        let r = &a.record;
        let sr = &a.signed;
        let Some(q) = r.quorum.as_ref() else {
            return Ok(()); // check_bounds refuses a quorum mode without its details
        };
        let sp = self.policy.secret(&r.secret);
        let reason = truncate_chars(r.reason.trim(), MAX_REASON_CHARS);
        let eligible = sp.is_some_and(|s| s.may_unlock(who));
        let current = a.current_version == Some(r.version);
        let actor = Actor::User(who.clone());
        let at = r.at.format("%Y-%m-%d %H:%M:%S UTC");
        let message = if r.mode == MODE_QUORUM {
            let users = crate::auth::all_users(uow.users()).await?;
            let mut problems = Vec::new();
            let mut seen = BTreeSet::from([who.name.clone()]);
            for rel in &q.releasers {
                if !seen.insert(rel.clone()) {
                    problems.push(format!("{rel} is counted twice or is the requester"));
                }
                let ok = users
                    .iter()
                    .find(|u| &u.name == rel)
                    .is_some_and(|u| sp.is_some_and(|s| s.may_unlock(u)));
                if !ok {
                    problems.push(format!("{rel} may not unlock {}", r.secret));
                }
            }
            let need = sp.map(|s| s.quorum).unwrap_or(q.m).max(q.m) as usize;
            if seen.len() < need {
                problems.push(format!(
                    "{} people took part; {need} are needed",
                    seen.len()
                ));
            }
            if q.requester != who.name || q.requester_device != d.id {
                problems.push("the record names another requester".into());
            }
            let problem = (!problems.is_empty())
                .then(|| truncate_chars(&problems.join("; "), MAX_PROBLEM_CHARS));
            uow.record(
                &actor,
                &r.secret,
                AuditEvent::QuorumUnlock {
                    device: d.id.clone(),
                    device_name: d.name.clone(),
                    seq: r.seq,
                    version: r.version,
                    reason: reason.clone(),
                    at: r.at.to_rfc3339(),
                    hash: sr.hash.clone(),
                    current_version: a.current_version,
                    eligible,
                    quorum: q.m,
                    share_set: q.share_set.clone(),
                    request_hash: q.request_hash.clone(),
                    releasers: q.releasers.clone(),
                    releases: q.releases.clone(),
                    consistent: problem.is_none(),
                    problem: problem.clone(),
                },
            );
            if let Some(p) = &problem {
                self.security_alert(
                    uow,
                    Some(&r.secret),
                    Some(&who.name),
                    format!(
                        "SECURITY: the two-person unlock of {} recorded by {} on {} does not add up: {p}",
                        r.secret, who.name, d.name
                    ),
                )
                .await?;
            }
            format!(
                "BREAK GLASS: {} unlocked {} v{} offline on {} at {} with the shares of {}: {}",
                who.name,
                r.secret,
                r.version,
                d.name,
                at,
                q.releasers.join(", "),
                truncate_chars(&reason, 200)
            )
        } else {
            uow.record(
                &actor,
                &r.secret,
                AuditEvent::QuorumShareReleased {
                    device: d.id.clone(),
                    device_name: d.name.clone(),
                    seq: r.seq,
                    version: r.version,
                    requester: q.requester.clone(),
                    requester_device: q.requester_device.clone(),
                    request_hash: q.request_hash.clone(),
                    release: q.releases.first().cloned().unwrap_or_default(),
                    reason: reason.clone(),
                    at: r.at.to_rfc3339(),
                    hash: sr.hash.clone(),
                    current_version: a.current_version,
                    eligible,
                },
            );
            format!(
                "BREAK GLASS: {} released their share of {} v{} to {}'s offline unlock, on {} at {}: {}",
                who.name,
                r.secret,
                r.version,
                q.requester,
                d.name,
                at,
                truncate_chars(&reason, 200)
            )
        };
        uow.notify(
            Audience::Unlocked {
                secret: sp,
                by: &who.name,
            },
            Notice::new(EventKind::BreakGlassUnlocked, message)
                .bundle(Some(&r.secret))
                .actor(Some(&who.name)),
        )
        .await?;
        if r.mode == MODE_QUORUM {
            // issue 14: uses — a two-person unlock is a use like any other: open
            // until classified, its rotation planned by the secret's policy.
            self.open_use(
                uow,
                &actor,
                crate::ops::uses::Unlocked {
                    secret: &r.secret,
                    version: r.version,
                    user: &who.name,
                    mode: MODE_QUORUM,
                    device_id: Some(&d.id),
                    seq: Some(r.seq as i64),
                    reason: &reason,
                    at: r.at,
                    incident: r.incident.as_deref(),
                    current: current && sp.is_some(),
                    due_reason: format!(
                        "two-person offline unlock by {} on {} (record {})",
                        who.name, d.id, r.seq
                    ),
                },
                now,
            )
            .await?;
        } else if let Some(policy) = sp.filter(|_| current) {
            // The requester may hold the value even if their record never arrives:
            // rotate it then too. Under `after_incident` not at once, which would
            // lock the responders out mid-incident, but by the policy's maximum
            // delay; the requester's use, once uploaded, can bring it earlier
            // (incident resolved, or classified a drill).
            let (due, waits) = crate::ops::uses::plan_rotation(policy, now, r.at, now, false);
            let mut why = format!(
                "share released by {} on {} (record {})",
                who.name, d.id, r.seq
            );
            if waits {
                why.push_str(
                    ", rotating after the incident or at the latest at the policy's max_delay",
                );
            }
            self.mark_due(uow, &r.secret, r.version, due, &why).await?;
        }
        if current && sp.is_some_and(|s| s.rotate.is_some()) {
            rotating.insert(r.secret.clone());
        }
        Ok(())
    }
}
