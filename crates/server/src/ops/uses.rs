//! Break-glass uses (issue 14): every unlock becomes a use that stays open until
//! it is classified (see [`firedoor_core::uses`]), and the rotation timing of the
//! secret it opened: right away (the default) or `after_incident` (when the
//! linked incident is resolved in the broker, or at `max_delay`, whichever comes
//! first). The planned time is the secret's `rotation_due_at` and the wait is a
//! flag on the use, both stored: a restart loses neither, and the worker's
//! [`Broker::release_waiting_rotations`] makes the rotation due when the incident
//! is resolved.

use crate::audit::Actor;
use crate::clock::ts;
use crate::error::{Error, Result};
use crate::ops::Uow;
use crate::service::Broker;
use crate::store::uses::{NewUse, UseRow};
use crate::store::{Ts, Tx};
use chrono::{DateTime, Duration, Utc};
use firedoor_core::audit::AuditEvent;
use firedoor_core::policy::{Principal, RotateWhen, SecretPolicy};
use firedoor_core::uses::{self, ClassifyUse, UseKind, UseView};
use firedoor_core::ErrorCode;
use std::collections::BTreeMap;

/// Uses listed at most.
pub const MAX_USES_LISTED: i64 = 500;

/// Waiting uses by (secret, version): the released ones (id, cause) and how many
/// still wait.
type Waiting = BTreeMap<(String, i64), (Vec<(String, String)>, usize)>;

/// An unlock to record as a use.
pub(crate) struct Unlocked<'a> {
    pub secret: &'a str,
    pub version: i64,
    pub user: &'a str,
    pub mode: &'a str,
    pub device_id: Option<&'a str>,
    pub seq: Option<i64>,
    pub reason: &'a str,
    pub at: DateTime<Utc>,
    pub incident: Option<&'a str>,
    /// Whether it opened the secret's current value (only then is a rotation
    /// planned).
    pub current: bool,
    /// What made the rotation due, for the secret's record.
    pub due_reason: String,
}

/// A broker incident an incident reference matched: (id, state).
type Matched = Option<(String, String)>;

/// When the rotation after an unlock is due, and whether it waits for an incident.
/// `base`: when it would be due by default (offline: now; online: the policy's
/// `rotate_after_online` later). `after_incident`: at most `max_delay` after the
/// unlock (its time as the device recorded it, but never before `now` nor later
/// than `max_delay` from `now`, so a device's clock cannot push it out), earlier
/// if the linked incident is resolved already.
pub fn plan_rotation(
    sp: &SecretPolicy,
    base: DateTime<Utc>,
    unlocked_at: DateTime<Utc>,
    now: DateTime<Utc>,
    incident_resolved: bool,
) -> (DateTime<Utc>, bool) {
    match sp.rotate.as_ref() {
        Some(r) if r.when == RotateWhen::AfterIncident && !incident_resolved => {
            let max = Duration::seconds(r.max_delay_secs);
            let latest = (unlocked_at + max).clamp(now, now + max);
            (latest.max(base), true)
        }
        _ => (base, false),
    }
}

impl Broker {
    /// The broker incident `text` names: an `inc_…` id must exist (else 404); any
    /// other text matches an incident's provider id if one has it, or stays an
    /// external reference (`None`).
    pub(crate) async fn match_incident(&self, tx: &mut Tx, text: &str) -> Result<Matched> {
        if text.starts_with("inc_") {
            return match tx.incidents().load(text).await? {
                Some(r) => Ok(Some((r.id, r.state))),
                None => Err(Error::rule(
                    ErrorCode::NotFound,
                    format!("no incident {text} in the broker (give the provider's incident id for an incident the broker does not know)"),
                )),
            };
        }
        tx.uses().incident_by_external_id(text).await
    }

    /// Records an unlock as an open use, plans its secret's rotation and audits
    /// both (classification pending). Returns the use id and the planned
    /// rotation time (`None` without a rotation connector or for an old version).
    pub(crate) async fn open_use(
        &self,
        uow: &mut Uow<'_>,
        actor: &Actor,
        u: Unlocked<'_>,
        base: DateTime<Utc>,
    ) -> Result<(String, Option<DateTime<Utc>>)> {
        let now = uow.now();
        let sp = self.policy.secret(u.secret);
        // A reference on a device record that does not read as an incident id
        // links nothing (the record itself was accepted and is kept as signed).
        let reference = u.incident.and_then(|t| uses::check_incident_ref(t).ok());
        let matched = match &reference {
            // An unknown `inc_…` id on a record links nothing (it stays the
            // reference given); a store error is an error.
            Some(r) => match self.match_incident(uow, r).await {
                Ok(m) => m,
                Err(Error::Rule(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let resolved = matched.as_ref().is_some_and(|(_, s)| s == "resolved");
        let mut waits = false;
        let mut rotates_at = None;
        if let (Some(sp), true) = (sp, u.current) {
            let (due, w) = plan_rotation(sp, base, u.at, now, resolved);
            waits = w;
            self.mark_due(uow, u.secret, u.version, due, &u.due_reason)
                .await?;
            if sp.rotate.is_some() {
                rotates_at = uow
                    .secrets()
                    .get(u.secret)
                    .await?
                    .and_then(|r| r.rotation_due_at)
                    .map(|t| t.0);
            }
        }
        let id = format!("use_{}", uuid::Uuid::new_v4().simple());
        uow.uses()
            .insert(&NewUse {
                id: &id,
                secret: u.secret,
                version: u.version,
                user: u.user,
                mode: u.mode,
                device_id: u.device_id,
                seq: u.seq,
                reason: u.reason,
                unlocked_at: Ts(u.at),
                recorded_at: Ts(now),
                incident_ref: reference.as_deref(),
                incident_id: matched.as_ref().map(|(i, _)| i.as_str()),
                rotation_waits: waits,
            })
            .await?;
        uow.record(
            actor,
            &id,
            AuditEvent::BreakGlassUseOpened {
                secret: u.secret.to_string(),
                version: u.version,
                user: u.user.to_string(),
                mode: u.mode.to_string(),
                incident: reference,
                rotation: rotation_of(sp).to_string(),
                rotates_at: rotates_at.map(ts),
            },
        );
        Ok((id, rotates_at))
    }

    async fn use_view(&self, r: &UseRow, who: Option<&Principal>) -> Result<UseView> {
        let sp = self.policy.secret(&r.secret);
        let secret = self.store.secrets().get(&r.secret).await?;
        let rotated = secret.as_ref().is_some_and(|s| s.version > r.version);
        let rotates_at = match (&secret, sp.and_then(|s| s.rotate.as_ref())) {
            (Some(s), Some(_)) if s.version == r.version => s.rotation_due_at.map(|t| t.0),
            _ => None,
        };
        let incident_state = match &r.incident_id {
            Some(i) => self.store.incidents().load(i).await?.map(|x| x.state),
            None => None,
        };
        Ok(UseView {
            id: r.id.clone(),
            secret: r.secret.clone(),
            version: r.version,
            user: r.user_name.clone(),
            mode: r.mode.clone(),
            device_id: r.device_id.clone(),
            reason: r.reason.clone(),
            unlocked_at: r.unlocked_at.0,
            recorded_at: r.recorded_at.0,
            open: r.kind.is_none(),
            kind: r.kind.as_deref().and_then(parse_kind),
            incident: r.incident_ref.clone(),
            incident_id: r.incident_id.clone(),
            incident_state,
            note: r.note.clone(),
            classified_by: r.classified_by.clone(),
            classified_at: r.classified_at.map(|t| t.0),
            rotation: rotation_of(sp).to_string(),
            rotates_at,
            rotated,
            rotation_waits: r.rotation_waits != 0 && !rotated,
            may_classify: who.is_some_and(|p| {
                uses::may_classify_use(p, &r.user_name, sp, r.kind.is_some()).is_ok()
            }),
        })
    }

    /// The uses `who` may see (their own; security sees every use of their
    /// secrets, admins all), open ones first; only open ones if `open_only`.
    pub async fn list_uses(&self, who: &Principal, open_only: bool) -> Result<Vec<UseView>> {
        let rows = self.store.uses().recent(open_only, MAX_USES_LISTED).await?;
        let mut out = Vec::new();
        for r in &rows {
            if uses::may_see_use(who, &r.user_name, self.policy.secret(&r.secret)) {
                out.push(self.use_view(r, Some(who)).await?);
            }
        }
        Ok(out)
    }

    /// Every use (the CLI: an operator sees all), open ones first.
    pub async fn all_uses(&self, actor: &Actor, open_only: bool) -> Result<Vec<UseView>> {
        if !actor.is_admin() {
            return Err(Error::rule(
                ErrorCode::Forbidden,
                "only admins may list every break-glass use",
            ));
        }
        let rows = self.store.uses().recent(open_only, MAX_USES_LISTED).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.use_view(r, actor.principal()).await?);
        }
        Ok(out)
    }

    /// Open (unclassified) uses, for the readiness view: every one, newest first.
    pub async fn open_uses(&self) -> Result<Vec<UseView>> {
        self.all_uses(&Actor::System, true).await
    }

    /// Classifies (or, for security, reclassifies) a use. Audited with what it
    /// replaced; a drill or other use no longer holds back its secret's rotation.
    pub async fn classify_use(
        &self,
        actor: &Actor,
        id: &str,
        body: ClassifyUse,
    ) -> Result<UseView> {
        let checked = body
            .check()
            .map_err(|m| Error::rule(ErrorCode::InvalidRequest, m))?;
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let row = uow
            .uses()
            .load(id)
            .await?
            .ok_or_else(|| Error::not_found("break-glass use"))?;
        let sp = self.policy.secret(&row.secret);
        if let Some(p) = actor.principal() {
            if !uses::may_see_use(p, &row.user_name, sp) {
                return Err(Error::rule(
                    ErrorCode::Forbidden,
                    "only the person who unlocked, admins or the secret's security audience may classify this use",
                ));
            }
            uses::may_classify_use(p, &row.user_name, sp, row.kind.is_some())
                .map_err(|m| Error::rule(ErrorCode::Forbidden, m))?;
        }
        let matched = match &checked.incident {
            Some(i) => self.match_incident(&mut uow, i).await?,
            None => None,
        };
        let incident_id = matched.as_ref().map(|(i, _)| i.as_str());
        let changed = uow
            .uses()
            .classify(
                id,
                row.kind.as_deref(),
                checked.kind.as_str(),
                checked.incident.as_deref(),
                incident_id,
                checked.note.as_deref(),
                &actor.name(),
                Ts(now),
            )
            .await?;
        if !changed {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "this use was classified by someone else meanwhile; look again",
            ));
        }
        uow.record(
            actor,
            id,
            AuditEvent::BreakGlassUseClassified {
                secret: row.secret.clone(),
                user: row.user_name.clone(),
                kind: checked.kind.as_str().to_string(),
                incident: checked.incident.clone(),
                incident_id: incident_id.map(String::from),
                note: checked.note.clone(),
                previous: row.kind.clone(),
            },
        );
        uow.commit().await?;
        self.wake_worker.notify_one();
        let row = self
            .store
            .uses()
            .load(id)
            .await?
            .ok_or_else(|| Error::not_found("break-glass use"))?;
        self.use_view(&row, actor.principal()).await
    }

    /// Worker step: rotations waiting for incidents. A waiting use is released when
    /// its linked broker incident is resolved or it was classified a drill or
    /// other; when every waiting use of a secret's version is released, the
    /// rotation is due now (audited). Uses whose value was replaced stop waiting.
    pub async fn release_waiting_rotations(&self, now: DateTime<Utc>) -> Result<()> {
        let waiting = self.store.uses().waiting().await?;
        if waiting.is_empty() {
            return Ok(());
        }
        let mut groups = Waiting::new();
        let mut stale = Vec::new();
        for u in waiting {
            let version = self.store.secrets().version(&u.secret).await?;
            if version != Some(u.version) {
                stale.push(u.id.clone());
                continue;
            }
            let cause = match u.kind.as_deref() {
                Some(k @ ("drill" | "other")) => Some(format!("classified {k}")),
                _ => match &u.incident_id {
                    Some(i) => self
                        .store
                        .incidents()
                        .load(i)
                        .await?
                        .filter(|r| r.state == "resolved")
                        .map(|_| format!("incident {i} resolved")),
                    None => None,
                },
            };
            let g = groups.entry((u.secret.clone(), u.version)).or_default();
            match cause {
                Some(c) => g.0.push((u.id.clone(), c)),
                None => g.1 += 1,
            }
        }
        if !stale.is_empty() {
            let mut tx = self.store.begin().await?;
            for id in &stale {
                tx.uses().stop_waiting(id).await?;
            }
            tx.commit().await?;
        }
        for ((secret, version), (released, still)) in groups {
            if released.is_empty() || still > 0 {
                continue;
            }
            let mut uow = self.uow_at(now).await?;
            let ids: Vec<String> = released.iter().map(|(i, _)| i.clone()).collect();
            // Another use of this version may have arrived since the list was read.
            if !uow
                .uses()
                .others_waiting(&secret, version, &ids)
                .await?
                .is_empty()
            {
                continue;
            }
            let mut causes: Vec<String> = released.iter().map(|(_, c)| c.clone()).collect();
            causes.sort();
            causes.dedup();
            let cause = causes.join("; ");
            for id in &ids {
                uow.uses().stop_waiting(id).await?;
            }
            self.mark_due(
                &mut uow,
                &secret,
                version,
                now,
                &format!("rotation released: {cause}"),
            )
            .await?;
            uow.record(
                &Actor::System,
                &secret,
                AuditEvent::RotationReleased {
                    version,
                    cause,
                    uses: ids,
                },
            );
            uow.commit().await?;
        }
        Ok(())
    }
}

fn rotation_of(sp: Option<&SecretPolicy>) -> &'static str {
    sp.and_then(|s| s.rotate.as_ref())
        .map(|r| r.when.as_str())
        .unwrap_or("manual")
}

fn parse_kind(k: &str) -> Option<UseKind> {
    match k {
        "drill" => Some(UseKind::Drill),
        "incident" => Some(UseKind::Incident),
        "other" => Some(UseKind::Other),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn after_incident_waits_at_most_max_delay_from_the_unlock() {
        let src = "[integrations.pg]\nkind = \"demo\"\n\n[secrets.s]\nunlock = { users = [\"alice\"] }\nrotate = { integration = \"pg\", role = \"bg\", when = \"after_incident\", max_delay = \"12h\" }\n";
        let p = firedoor_core::policy::parse_policy("t.toml", src).unwrap();
        let sp = p.secret("s").unwrap();
        let now = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let h = Duration::hours;
        // Unlocked 2 h before the record arrived: due 10 h from now, waiting.
        assert_eq!(
            plan_rotation(sp, now, now - h(2), now, false),
            (now + h(10), true)
        );
        // Unlocked 20 h ago: due now (still waiting for nothing longer).
        assert_eq!(plan_rotation(sp, now, now - h(20), now, false), (now, true));
        // A device clock in the future cannot push it past max_delay from now.
        assert_eq!(
            plan_rotation(sp, now, now + h(100), now, false),
            (now + h(12), true)
        );
        // The incident is resolved already: the default timing.
        assert_eq!(plan_rotation(sp, now, now, now, true), (now, false));
        // Immediate rotation (the default) never waits.
        let src = src.replace(", when = \"after_incident\", max_delay = \"12h\"", "");
        let p = firedoor_core::policy::parse_policy("t.toml", &src).unwrap();
        assert_eq!(
            plan_rotation(p.secret("s").unwrap(), now + h(1), now, now, false),
            (now + h(1), false)
        );
    }
}
