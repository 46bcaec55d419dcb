//! issue 14: drills and readiness. A drill asks every eligible enrolled device of a
//! secret to prove that it opens its current envelope without showing the secret
//! (see [`firedoor_core::drill`]); the broker checks each proof against the value
//! it holds sealed, records who passed, and closes the drill at its deadline.
//! Readiness tells, per secret, who could open it today; a secret with fewer ready
//! holders than its policy requires raises an alert once per transition.

use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::ops::Notice;
use crate::service::Broker;
use crate::store::drills::{DrillDeviceRow, DrillRow};
use crate::store::Ts;
use chrono::{DateTime, Duration, Utc};
use firedoor_core::access::{self, check_admin, AdminAction};
use firedoor_core::api::EventKind;
use firedoor_core::audit::AuditEvent;
use firedoor_core::breakglass::{decode_public_key, EnvelopeMeta};
use firedoor_core::drill::{
    expiring_soon_secs, Challenge, DeviceReadiness, DrillAnswer, DrillDevice, DrillPassed,
    DrillSummary, DrillView, HolderReadiness, OnCallGap, PendingDrill, PendingDrills, Readiness,
    SecretReadiness, MAX_FAILED_ANSWERS, NONCE_BYTES,
};
use firedoor_core::notify::Audience;
use firedoor_core::policy::{Principal, SecretPolicy};
use firedoor_core::quorum;
use firedoor_core::ErrorCode;
use rand::RngCore;
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

/// Drills listed at most.
const MAX_LISTED: i64 = 200;

impl DrillDeviceRow {
    fn view(&self) -> DrillDevice {
        DrillDevice {
            device_id: self.device_id.clone(),
            device_name: self.device_name.clone(),
            user: self.user_name.clone(),
            passed_at: self.passed_at.map(|t| t.0),
            failures: self.failures.max(0) as u32,
            last_failure_at: self.last_failure_at.map(|t| t.0),
        }
    }
}

fn state_of(d: &DrillRow) -> &'static str {
    if d.closed_at.is_some() {
        "closed"
    } else {
        "open"
    }
}

fn summary(d: &DrillRow, devices: &[DrillDeviceRow]) -> DrillSummary {
    DrillSummary {
        id: d.id.clone(),
        state: state_of(d).into(),
        version: d.version,
        started_at: d.started_at.0,
        deadline: d.deadline.0,
        asked: devices.len() as u32,
        passed: devices.iter().filter(|x| x.passed_at.is_some()).count() as u32,
        failed: devices
            .iter()
            .filter(|x| x.passed_at.is_none() && x.failures > 0)
            .count() as u32,
    }
}

impl Broker {
    async fn drill_view(&self, d: &DrillRow) -> Result<DrillView> {
        let devices = self.store.drills().devices(&d.id).await?;
        Ok(DrillView {
            id: d.id.clone(),
            secret: d.secret.clone(),
            version: d.version,
            trigger: d.kind.clone(),
            started_by: d.started_by.clone(),
            started_at: d.started_at.0,
            deadline: d.deadline.0,
            state: state_of(d).into(),
            devices: devices.iter().map(DrillDeviceRow::view).collect(),
        })
    }

    /// Starts a drill of `name`, or of every secret that has a value and no open
    /// drill (`all`) (admins, the CLI).
    pub async fn start_drill(&self, actor: &Actor, name: &str) -> Result<Vec<DrillView>> {
        check_admin(actor, AdminAction::StartDrill)?;
        if name == "all" {
            let mut out = Vec::new();
            for sp in self.policy.secrets.values() {
                let has_value = self
                    .store
                    .secrets()
                    .get(&sp.name)
                    .await?
                    .is_some_and(|r| r.version > 0);
                if !has_value || self.store.drills().open_of(&sp.name).await?.is_some() {
                    continue;
                }
                out.push(self.start_one(actor, sp, "manual").await?);
            }
            if out.is_empty() {
                return Err(Error::rule(
                    ErrorCode::Conflict,
                    "no secret to drill: none has a value without a drill already open",
                ));
            }
            return Ok(out);
        }
        let sp = self.secret_policy(name)?;
        Ok(vec![self.start_one(actor, sp, "manual").await?])
    }

    /// One drill: a fresh nonce, every eligible enrolled device asked.
    async fn start_one(&self, actor: &Actor, sp: &SecretPolicy, kind: &str) -> Result<DrillView> {
        let now = self.now();
        let targets = self.eligible_targets(sp).await?;
        let mut uow = self.uow_at(now).await?;
        let version = uow
            .secrets()
            .get(&sp.name)
            .await?
            .map(|r| r.version)
            .unwrap_or(0);
        if version == 0 {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!(
                    "{} has no value yet: store one first (`firedoor-server secret put {}`)",
                    sp.name, sp.name
                ),
            ));
        }
        if let Some(open) = uow.drills().open_of(&sp.name).await? {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!(
                    "drill {} of {} is open until {}; a secret has one drill at a time",
                    open.id,
                    sp.name,
                    open.deadline.text()
                ),
            ));
        }
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let row = DrillRow {
            id: format!("drl_{}", uuid::Uuid::new_v4().simple()),
            secret: sp.name.clone(),
            version,
            nonce: hex::encode(nonce),
            kind: kind.to_string(),
            started_by: actor.name(),
            started_at: Ts(now),
            deadline: Ts(now + Duration::seconds(sp.drill_window_secs)),
            closed_at: None,
        };
        uow.drills().insert(&row).await?;
        let mut users = BTreeSet::new();
        for t in &targets {
            uow.drills().ask(&row.id, &t.device_id, &t.user).await?;
            users.insert(t.user.clone());
        }
        uow.record(
            actor,
            &row.id,
            AuditEvent::DrillStarted {
                secret: sp.name.clone(),
                version,
                trigger: kind.to_string(),
                deadline: row.deadline.text(),
                devices: targets.len(),
                users: users.len(),
            },
        );
        // The asked people's apps fetch envelopes and pending drills on this event.
        uow.notify_to(
            users.into_iter().collect(),
            Notice::new(
                EventKind::EnvelopesChanged,
                format!(
                    "Drill: prove your break-glass access to {} (no secret is shown) before {}",
                    sp.title,
                    row.deadline.0.format("%Y-%m-%d %H:%M UTC")
                ),
            )
            .bundle(Some(&sp.name)),
        );
        uow.commit().await?;
        tracing::info!(drill = %row.id, secret = %sp.name, devices = targets.len(), "drill started");
        self.drill_view(&row).await
    }

    /// The newest drills (admins, the CLI).
    pub async fn list_drills(&self, actor: &Actor) -> Result<Vec<DrillView>> {
        check_admin(actor, AdminAction::StartDrill)?;
        let rows = self.store.drills().recent(MAX_LISTED).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.drill_view(r).await?);
        }
        Ok(out)
    }

    /// Drills waiting on one of the caller's devices.
    pub async fn pending_drills(&self, who: &Principal, device_id: &str) -> Result<PendingDrills> {
        let d = self.own_device(who, device_id, false).await?;
        let now = self.now();
        let rows = self.store.drills().pending_for(&d.id, Ts(now)).await?;
        Ok(PendingDrills {
            drills: rows
                .into_iter()
                .filter(|r| {
                    self.policy
                        .secret(&r.secret)
                        .is_some_and(|sp| sp.may_unlock(who))
                })
                .map(|r| PendingDrill {
                    title: self
                        .policy
                        .secret(&r.secret)
                        .map(|s| s.title.clone())
                        .unwrap_or_default(),
                    id: r.id,
                    secret: r.secret,
                    version: r.version,
                    nonce: r.nonce,
                    deadline: r.deadline.0,
                })
                .collect(),
        })
    }

    /// A device's answer to a drill: checked against the value the broker holds
    /// and the device's enrolled key. A wrong answer is recorded and refused
    /// (`drill_proof_rejected`); a device that passed already is told so again.
    pub async fn answer_drill(
        &self,
        who: &Principal,
        drill_id: &str,
        answer: DrillAnswer,
    ) -> Result<DrillPassed> {
        if answer.proof.len() > 128 || answer.signature.len() > 128 || answer.device_id.len() > 64 {
            return Err(Error::rule(
                ErrorCode::InvalidRequest,
                "proof, signature or device_id is too long",
            ));
        }
        let d = self.own_device(who, &answer.device_id, false).await?;
        let now = self.now();
        let not_found = || Error::not_found("drill");
        let drill = self
            .store
            .drills()
            .get(drill_id)
            .await?
            .ok_or_else(not_found)?;
        let entry = self
            .store
            .drills()
            .entry(drill_id, &d.id)
            .await?
            .ok_or_else(not_found)?;
        let sp = self.secret_policy(&drill.secret)?;
        if !sp.may_unlock(who) {
            return Err(not_found());
        }
        let passed = |at: DateTime<Utc>| DrillPassed {
            drill_id: drill.id.clone(),
            secret: drill.secret.clone(),
            version: answer.version,
            device_id: d.id.clone(),
            passed_at: at,
        };
        if let Some(at) = entry.passed_at {
            return Ok(passed(at.0));
        }
        if drill.closed_at.is_some() || drill.deadline.0 <= now {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!(
                    "drill {} ended at {}; wait for the next one",
                    drill.id,
                    drill.deadline.text()
                ),
            ));
        }
        if entry.failures >= i64::from(MAX_FAILED_ANSWERS) {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!(
                    "this device gave {MAX_FAILED_ANSWERS} wrong answers in drill {}; it is recorded as failed",
                    drill.id
                ),
            ));
        }
        let key = decode_public_key(&d.signing_key)
            .map_err(|e| Error::Corrupt(format!("device {}: {e}", d.id)))?;
        let row = self
            .store
            .secrets()
            .get(&drill.secret)
            .await?
            .ok_or_else(|| Error::not_found("secret"))?;
        let verdict: std::result::Result<(), (String, String)> = if answer.version != row.version {
            Err((
                "stale_version".into(),
                format!(
                    "this device answered with version {} of {}, the current version is {}: sync to fetch its current envelope, then answer again",
                    answer.version, drill.secret, row.version
                ),
            ))
        } else {
            let sealed = row
                .value
                .as_deref()
                .ok_or_else(|| Error::not_found("secret"))?;
            let value = Zeroizing::new(self.key.open(sealed)?);
            // A quorum secret's envelope holds the person's share, not the value:
            // the proof is keyed by what the device opens.
            let opened = if sp.quorum > 1 {
                self.share_of_device(sp, row.version, &d.id, &value).await?
            } else {
                Some(value)
            };
            match opened {
                None => Err((
                    "no_share".into(),
                    format!(
                        "this device holds no share of version {} of {}: sync to fetch its current envelope, then answer again",
                        row.version, drill.secret
                    ),
                )),
                Some(value) => Challenge {
                    drill_id: &drill.id,
                    nonce: &drill.nonce,
                    secret: &drill.secret,
                    version: row.version,
                    device_id: &d.id,
                }
                .verify(&answer, &value, &key)
                .map_err(|p| (p.as_str().to_string(), p.to_string())),
            }
        };
        let mut uow = self.uow_at(now).await?;
        let actor = Actor::User(who.clone());
        match verdict {
            Ok(()) => {
                if !uow.drills().pass(&drill.id, &d.id, Ts(now)).await? {
                    drop(uow);
                    let at = self
                        .store
                        .drills()
                        .entry(&drill.id, &d.id)
                        .await?
                        .and_then(|e| e.passed_at)
                        .map_or(now, |t| t.0);
                    return Ok(passed(at));
                }
                uow.record(
                    &actor,
                    &drill.id,
                    AuditEvent::DrillPassed {
                        secret: drill.secret.clone(),
                        version: row.version,
                        device: d.id.clone(),
                        user: who.name.clone(),
                    },
                );
                uow.commit().await?;
                Ok(passed(now))
            }
            Err((problem, message)) => {
                let failures = uow.drills().fail(&drill.id, &d.id, Ts(now)).await?;
                uow.record(
                    &actor,
                    &drill.id,
                    AuditEvent::DrillFailed {
                        secret: drill.secret.clone(),
                        version: row.version,
                        device: d.id.clone(),
                        user: who.name.clone(),
                        problem,
                        failures: failures.max(0) as u32,
                    },
                );
                uow.commit().await?;
                Err(Error::rule(
                    ErrorCode::DrillProofRejected,
                    format!("drill not passed: {message}"),
                ))
            }
        }
    }

    /// The plaintext of the quorum share sealed to `device_id` at `version`: the
    /// same split the broker dealt, derived again from the broker key (shares are
    /// never stored). `None` when the device holds no share of that version.
    async fn share_of_device(
        &self,
        sp: &SecretPolicy,
        version: i64,
        device_id: &str,
        value: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let index = self
            .store
            .envelopes()
            .of_device(device_id)
            .await?
            .into_iter()
            .filter(|(secret, ..)| secret == &sp.name)
            .filter_map(|(_, meta, ..)| serde_json::from_str::<EnvelopeMeta>(&meta).ok())
            .filter(|m| m.version == version)
            .find_map(|m| m.quorum.map(|q| q.index));
        let Some(index) = index else {
            return Ok(None);
        };
        let seed = quorum::split_seed(self.key.signing_key(), &sp.name, version);
        let dealt = quorum::deal(value, sp.quorum, &seed, &[index]);
        Ok(dealt
            .shares
            .into_iter()
            .find(|(i, _)| *i == index)
            .map(|(_, share)| Zeroizing::new(share.as_bytes().to_vec())))
    }

    /// Worker step: closes drills past their deadline, starts the scheduled drills
    /// that are due, then checks every secret's readiness (alerting on a change).
    pub async fn drill_due_work(&self) -> Result<()> {
        let now = self.now();
        self.close_due_drills(now).await?;
        for sp in self.policy.secrets.values() {
            let Some(every) = sp.drill_every_secs else {
                continue;
            };
            let has_value = self
                .store
                .secrets()
                .get(&sp.name)
                .await?
                .is_some_and(|r| r.version > 0);
            if !has_value {
                continue;
            }
            let due = match self.store.drills().latest(&sp.name).await? {
                None => true,
                Some(last) => {
                    last.closed_at.is_some() && last.started_at.0 + Duration::seconds(every) <= now
                }
            };
            if due {
                if let Err(e) = self.start_one(&Actor::System, sp, "schedule").await {
                    tracing::warn!(secret = %sp.name, error = %e, "starting a scheduled drill");
                }
            }
        }
        self.check_readiness(now).await
    }

    async fn close_due_drills(&self, now: DateTime<Utc>) -> Result<()> {
        let due = self.store.drills().due_to_close(Ts(now)).await?;
        for d in due {
            let mut uow = self.uow_at(now).await?;
            if !uow.drills().close(&d.id, Ts(now)).await? {
                continue;
            }
            let devices = uow.drills().devices(&d.id).await?;
            let s = summary(&d, &devices);
            uow.record(
                &Actor::System,
                &d.id,
                AuditEvent::DrillClosed {
                    secret: d.secret.clone(),
                    asked: s.asked,
                    passed: s.passed,
                    failed: s.failed,
                    missed: s.asked - s.passed - s.failed,
                },
            );
            uow.commit().await?;
        }
        Ok(())
    }

    /// Compares each alerting secret's ready holders with what it requires, and on
    /// a change (or the first check finding it below) audits it and alerts the
    /// admins and the secret's alert audience (their outbound channels included).
    async fn check_readiness(&self, now: DateTime<Utc>) -> Result<()> {
        let secrets: Vec<&SecretPolicy> = self
            .policy
            .secrets
            .values()
            .filter(|sp| sp.readiness_alerts())
            .collect();
        if secrets.is_empty() {
            return Ok(());
        }
        let all = self.compute_readiness(&secrets, now).await?;
        for (sp, r) in secrets.into_iter().zip(all) {
            if r.version == 0 {
                continue;
            }
            let was = self.store.drills().below(&sp.name).await?;
            if was == Some(r.below) || (was.is_none() && !r.below) {
                if was.is_none() {
                    self.store
                        .drills()
                        .set_below(&sp.name, false, i64::from(r.ready), Ts(now))
                        .await?;
                }
                continue;
            }
            let mut uow = self.uow_at(now).await?;
            // Another replica may have recorded the change meanwhile.
            if uow.drills().below(&sp.name).await? != was {
                continue;
            }
            uow.drills()
                .set_below(&sp.name, r.below, i64::from(r.ready), Ts(now))
                .await?;
            let (event, message) = if r.below {
                (
                    AuditEvent::ReadinessBelow {
                        ready: r.ready,
                        required: r.required,
                        version: r.version,
                    },
                    format!(
                        "SECURITY: {} has {} of {} required people ready to open it offline (fresh envelope, drill not failed): see `firedoor-server readiness`",
                        sp.name, r.ready, r.required
                    ),
                )
            } else {
                (
                    AuditEvent::ReadinessRestored {
                        ready: r.ready,
                        required: r.required,
                        version: r.version,
                    },
                    format!(
                        "{} has {} of {} required people ready again",
                        sp.name, r.ready, r.required
                    ),
                )
            };
            uow.record(&Actor::System, &sp.name, event);
            uow.notify(
                Audience::Admins,
                Notice::new(EventKind::SecurityAlert, message).bundle(Some(&sp.name)),
            )
            .await?;
            let users: Vec<String> = uow
                .users_now()
                .await?
                .iter()
                .filter(|u| sp.alert.contains(u))
                .map(|u| u.name.clone())
                .collect();
            for u in users {
                uow.copy_last_notice_to(&u);
            }
            uow.commit().await?;
            tracing::warn!(secret = %sp.name, ready = r.ready, required = r.required, below = r.below, "break-glass readiness changed");
        }
        Ok(())
    }

    /// `GET /readiness`: the secrets `who` may see the readiness of (admins: all;
    /// others: those whose alert audience they are in). Forbidden if none.
    pub async fn readiness(&self, actor: &Actor) -> Result<Readiness> {
        let secrets: Vec<&SecretPolicy> = self
            .policy
            .secrets
            .values()
            .filter(|sp| match actor.principal() {
                Some(p) => access::may_see_readiness(p, sp),
                None => actor.is_admin(),
            })
            .collect();
        if secrets.is_empty() && !actor.is_admin() {
            return Err(Error::rule(
                ErrorCode::Forbidden,
                "readiness is for admins and the secrets' alert audiences (security)",
            ));
        }
        let now = self.now();
        let mut secrets = self.compute_readiness(&secrets, now).await?;
        let open = self.open_uses().await?;
        for s in &mut secrets {
            s.open_uses = open
                .iter()
                .filter(|u| u.secret == s.name)
                .cloned()
                .collect();
        }
        Ok(Readiness { at: now, secrets })
    }

    async fn compute_readiness(
        &self,
        secrets: &[&SecretPolicy],
        now: DateTime<Utc>,
    ) -> Result<Vec<SecretReadiness>> {
        let disabled: BTreeSet<String> = self
            .store
            .users()
            .all_with_state()
            .await?
            .into_iter()
            .filter(|(_, _, _, d)| d.is_some())
            .map(|(n, ..)| n)
            .collect();
        let mut users: Vec<Principal> = crate::auth::all_users(self.store.users())
            .await?
            .into_iter()
            .filter(|u| !disabled.contains(&u.name))
            .collect();
        if !self.policy.oncall.is_empty() {
            let facts = self.on_call_facts(now).await?;
            crate::ops::oncall::apply_roster(&self.policy, &facts, now, &mut users);
        }
        let devices = self.store.devices().all().await?;
        let held = self.store.drills().envelopes_held().await?;
        let mut out = Vec::with_capacity(secrets.len());
        for sp in secrets {
            let version = self
                .store
                .secrets()
                .get(&sp.name)
                .await?
                .map(|r| r.version)
                .unwrap_or(0);
            let soon = Duration::seconds(expiring_soon_secs(sp.validity_secs));
            let envelopes: BTreeMap<&str, (i64, Ts)> = held
                .iter()
                .filter(|h| h.0 == sp.name)
                .map(|h| (h.1.as_str(), (h.4, h.5)))
                .collect();
            let last_closed: BTreeMap<String, DrillDeviceRow> = self
                .store
                .drills()
                .last_closed_entries(&sp.name)
                .await?
                .into_iter()
                .map(|e| (e.device_id.clone(), e))
                .collect();
            let latest = self.store.drills().latest(&sp.name).await?;
            let latest_entries = match &latest {
                Some(d) => self.store.drills().devices(&d.id).await?,
                None => Vec::new(),
            };
            let latest_by_device: BTreeMap<&str, &DrillDeviceRow> = latest_entries
                .iter()
                .map(|e| (e.device_id.as_str(), e))
                .collect();
            let mut holders = Vec::new();
            let mut gaps = Vec::new();
            for u in users.iter() {
                let eligible = sp.may_unlock(u);
                let mut devs = Vec::new();
                for dv in devices
                    .iter()
                    .filter(|d| d.user_name == u.name && d.revoked_at.is_none())
                {
                    let env = envelopes.get(dv.id.as_str()).copied();
                    let fresh =
                        version > 0 && env.is_some_and(|(v, na)| v == version && na.0 - soon > now);
                    let expiring_soon = env.is_some_and(|(_, na)| na.0 > now && na.0 - soon <= now);
                    // The drill result shown: the latest drill if it asked this
                    // device, else the last closed one that did.
                    let shown = latest_by_device
                        .get(dv.id.as_str())
                        .map(|e| (*e, latest.as_ref().is_some_and(|d| d.closed_at.is_none())))
                        .or_else(|| last_closed.get(&dv.id).map(|e| (e, false)));
                    let drill = match shown {
                        None => "not_asked",
                        Some((e, _)) if e.passed_at.is_some() => "passed",
                        Some((e, _)) if e.failures > 0 => "failed",
                        Some((_, true)) => "pending",
                        Some(_) => "missed",
                    };
                    // Readiness counts only closed drills: an open one does not
                    // make anyone unready before its deadline.
                    let failed_closed = last_closed
                        .get(&dv.id)
                        .is_some_and(|e| e.passed_at.is_none());
                    devs.push(DeviceReadiness {
                        device_id: dv.id.clone(),
                        device_name: dv.name.clone(),
                        version: env.map(|e| e.0),
                        not_after: env.map(|e| e.1 .0),
                        fresh,
                        expiring_soon,
                        drill: drill.into(),
                        passed_at: shown.and_then(|(e, _)| e.passed_at).map(|t| t.0),
                        ready: eligible && fresh && !failed_closed,
                    });
                }
                let ready = devs.iter().any(|d| d.ready);
                let on_call = !u.oncall.is_empty();
                if on_call && !devs.iter().any(|d| d.fresh) {
                    gaps.push(OnCallGap {
                        user: u.name.clone(),
                        eligible,
                    });
                }
                if eligible {
                    holders.push(HolderReadiness {
                        user: u.name.clone(),
                        devices: devs,
                        ready,
                        on_call,
                    });
                }
            }
            let ready = holders.iter().filter(|h| h.ready).count() as u32;
            let required = sp.required_ready();
            let next_drill_at = sp.drill_every_secs.map(|every| match &latest {
                Some(d) => d.started_at.0 + Duration::seconds(every),
                None => now,
            });
            out.push(SecretReadiness {
                name: sp.name.clone(),
                title: sp.title.clone(),
                version,
                ready,
                required,
                below: version > 0 && ready < required,
                holders,
                on_call_without_envelope: gaps,
                last_drill: latest.as_ref().map(|d| summary(d, &latest_entries)),
                next_drill_at,
                open_uses: Vec::new(),
            });
        }
        Ok(out)
    }
}
