//! On-call: who is on call for the policy's schedules (see
//! [`firedoor_core::oncall`]), overrides added and removed by admins, and the
//! on-call facts a caller carries into every check ([`Principal::oncall`]).

use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::oncall::{NewOverride as StoredOverride, OverrideRow};
use crate::store::{Ts, Tx};
use chrono::{DateTime, Utc};
use firedoor_core::access::{check_admin, AdminAction};
use firedoor_core::api::{MyOnCall, NewOverride, OnCallView, OverrideView, ScheduleView};
use firedoor_core::audit::AuditEvent;
use firedoor_core::oncall::{self, Override};
use firedoor_core::policy::{Policy, Principal};
use firedoor_core::ErrorCode;

fn view(r: &OverrideRow) -> OverrideView {
    OverrideView {
        id: r.id.clone(),
        schedule: r.schedule.clone(),
        user: r.user_name.clone(),
        starts_at: r.starts_at.0,
        ends_at: r.ends_at.0,
        reason: r.reason.clone(),
        created_by: r.created_by.clone(),
        removed_at: r.removed_at.map(|t| t.0),
    }
}

/// Sets each of `users`' on-call schedules at `now` from the policy and the
/// overrides in force.
pub(crate) fn apply_roster(
    policy: &Policy,
    overrides: &[Override],
    now: DateTime<Utc>,
    users: &mut [Principal],
) {
    let roster = oncall::roster(policy.oncall.values(), overrides, now);
    for u in users {
        u.oncall = roster.get(&u.name).cloned().unwrap_or_default();
    }
}

/// The overrides that may apply at `now` or later, read where `on` reads (empty
/// without schedules: no read at all).
async fn overrides_on(
    mut on: crate::store::oncall::OnCall<'_>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Vec<Override>> {
    if policy.oncall.is_empty() {
        return Ok(Vec::new());
    }
    Ok(on
        .current(Ts(now))
        .await?
        .iter()
        .map(OverrideRow::to_override)
        .collect())
}

/// As [`overrides_on`], in a transaction.
pub(crate) async fn overrides_in(
    tx: &mut Tx,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Vec<Override>> {
    overrides_on(tx.oncall(), policy, now).await
}

impl Broker {
    async fn overrides(&self, now: DateTime<Utc>) -> Result<Vec<Override>> {
        overrides_on(self.store.oncall(), &self.policy, now).await
    }

    /// Fills in the schedules `p` is on call for at `now` (every signed-in call
    /// does this before its checks; a policy without schedules costs nothing).
    pub async fn with_on_call(&self, p: &mut Principal, now: DateTime<Utc>) -> Result<()> {
        if self.policy.oncall.is_empty() {
            return Ok(());
        }
        let overrides = self.overrides(now).await?;
        apply_roster(&self.policy, &overrides, now, std::slice::from_mut(p));
        Ok(())
    }

    /// The schedules `user` is on call for at `now`, with until when.
    pub async fn my_on_call(&self, user: &str, now: DateTime<Utc>) -> Result<Vec<MyOnCall>> {
        let overrides = self.overrides(now).await?;
        Ok(
            oncall::on_call_for(self.policy.oncall.values(), &overrides, user, now)
                .into_iter()
                .map(|(name, oc)| MyOnCall {
                    title: self
                        .policy
                        .oncall
                        .get(&name)
                        .map(|s| s.title.clone())
                        .unwrap_or_else(|| name.clone()),
                    schedule: name,
                    until: oc.until,
                })
                .collect(),
        )
    }

    /// Every schedule of the policy, who is on call now and the overrides to come.
    pub async fn schedules(&self) -> Result<Vec<ScheduleView>> {
        let now = self.now();
        let rows = if self.policy.oncall.is_empty() {
            Vec::new()
        } else {
            self.store.oncall().current(Ts(now)).await?
        };
        let overrides: Vec<Override> = rows.iter().map(OverrideRow::to_override).collect();
        Ok(self
            .policy
            .oncall
            .values()
            .map(|s| ScheduleView {
                name: s.name.clone(),
                title: s.title.clone(),
                time_zone: s.tz.name().to_string(),
                on_call: s.on_call(&overrides, now).map(|oc| OnCallView {
                    user: oc.user,
                    until: oc.until,
                    by_override: oc.by_override,
                }),
                overrides: rows
                    .iter()
                    .filter(|r| r.schedule == s.name)
                    .map(view)
                    .collect(),
            })
            .collect())
    }

    /// Adds an override (admins, the CLI): `body.user` covers `schedule` from
    /// `body.starts_at` (default now) until `body.ends_at`.
    pub async fn add_override(
        &self,
        actor: &Actor,
        schedule: &str,
        body: NewOverride,
    ) -> Result<OverrideView> {
        check_admin(actor, AdminAction::OverrideOnCall)?;
        let now = self.now();
        let starts_at = body.starts_at.unwrap_or(now);
        let reason = oncall::check_override(
            &self.policy.oncall,
            schedule,
            &body.user,
            starts_at,
            body.ends_at,
            body.reason.as_deref(),
            now,
        )?;
        let mut uow = self.uow_at(now).await?;
        match uow.users().disabled_at(&body.user).await? {
            None => {
                return Err(Error::rule(
                    ErrorCode::NotFound,
                    format!("no user named '{}'", body.user),
                ))
            }
            Some(Some(_)) => {
                return Err(Error::rule(
                    ErrorCode::Conflict,
                    format!("user '{}' is disabled", body.user),
                ))
            }
            Some(None) => {}
        }
        let id = format!("ovr_{}", uuid::Uuid::new_v4().simple());
        let by = actor.name();
        uow.oncall()
            .insert(&StoredOverride {
                id: &id,
                schedule,
                user: &body.user,
                starts_at: Ts(starts_at),
                ends_at: Ts(body.ends_at),
                reason: reason.as_deref(),
                created_by: &by,
                created_at: Ts(now),
            })
            .await?;
        uow.record(
            actor,
            &id,
            AuditEvent::OnCallOverrideAdded {
                schedule: schedule.to_string(),
                user: body.user.clone(),
                starts_at: Ts(starts_at).text(),
                ends_at: Ts(body.ends_at).text(),
                reason: reason.clone(),
            },
        );
        let row = uow
            .oncall()
            .load(&id)
            .await?
            .ok_or_else(|| Error::Corrupt("an override just stored is missing".into()))?;
        uow.commit().await?;
        Ok(view(&row))
    }

    /// Takes an override back (admins, the CLI).
    pub async fn remove_override(
        &self,
        actor: &Actor,
        schedule: &str,
        id: &str,
    ) -> Result<OverrideView> {
        check_admin(actor, AdminAction::OverrideOnCall)?;
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let row = uow
            .oncall()
            .load(id)
            .await?
            .filter(|r| r.schedule == schedule)
            .ok_or_else(|| Error::not_found("override"))?;
        if !uow.oncall().remove(id, Ts(now)).await? {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "the override was already removed",
            ));
        }
        uow.record(
            actor,
            id,
            AuditEvent::OnCallOverrideRemoved {
                schedule: row.schedule.clone(),
                user: row.user_name.clone(),
            },
        );
        uow.commit().await?;
        let mut v = view(&row);
        v.removed_at = Some(now);
        Ok(v)
    }
}
