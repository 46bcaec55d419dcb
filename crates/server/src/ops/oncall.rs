//! On-call: who is on call for the policy's schedules (see
//! [`firedoor_core::oncall`]), overrides added and removed by admins, and the
//! on-call facts a caller carries into every check ([`Principal::oncall`]). Synced
//! schedules read their last fetched shifts from the store (kept fresh by
//! [`crate::ops::oncall_sync`]); the decision is the core's, at the time given.

use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::oncall::{NewOverride as StoredOverride, OverrideRow, SyncRow};
use crate::store::Ts;
use chrono::{DateTime, Utc};
use firedoor_core::access::{check_admin, AdminAction};
use firedoor_core::api::{MyOnCall, NewOverride, OnCallView, OverrideView, ScheduleView, SyncView};
use firedoor_core::audit::AuditEvent;
use firedoor_core::oncall::{self, Fetched, Override, Schedule, Synced};
use firedoor_core::policy::{Policy, Principal};
use firedoor_core::ErrorCode;
use std::borrow::Cow;
use std::collections::BTreeMap;

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

/// What decides who is on call besides the policy: the overrides that may apply
/// at `now` or later, and the synced schedules' caches.
#[derive(Default)]
pub(crate) struct OnCallFacts {
    pub overrides: Vec<OverrideRow>,
    pub sync: BTreeMap<String, SyncRow>,
}

impl OnCallFacts {
    /// The facts from their rows; synced schedules' rows only where `policy` has
    /// synced schedules.
    fn new(
        policy: &Policy,
        overrides: Vec<OverrideRow>,
        sync: impl IntoIterator<Item = SyncRow>,
    ) -> OnCallFacts {
        let sync = if has_synced(policy) {
            sync.into_iter().map(|r| (r.schedule.clone(), r)).collect()
        } else {
            BTreeMap::new()
        };
        OnCallFacts { overrides, sync }
    }

    fn overrides(&self) -> Vec<Override> {
        self.overrides
            .iter()
            .map(OverrideRow::to_override)
            .collect()
    }

    /// What was last fetched for a synced schedule, mapped by the policy's users
    /// table now, and the provider's people it maps to nobody. `None`: never
    /// fetched, fetched for another provider schedule (the policy changed), or
    /// unreadable: nobody is on call for it.
    fn synced(&self, s: &Schedule) -> Option<(Synced, Vec<String>)> {
        let spec = s.sync.as_ref()?;
        let row = self.sync.get(&s.name)?;
        if row.source != spec.source() {
            return None;
        }
        match serde_json::from_str::<Fetched>(row.fetched_json.as_deref()?) {
            Ok(f) => Some(spec.map(&f)),
            Err(e) => {
                tracing::error!(schedule = %s.name, error = %e, "unreadable cache of a synced on-call schedule: nobody is on call for it until the next refresh");
                None
            }
        }
    }

    /// The policy's schedules as these facts have them: synced ones with their
    /// last fetched shifts attached, declared ones as they are.
    pub fn schedules<'p>(&self, policy: &'p Policy) -> Vec<Cow<'p, Schedule>> {
        policy
            .oncall
            .values()
            .map(|s| match s.sync {
                Some(_) => Cow::Owned(s.with_synced(self.synced(s).map(|(synced, _)| synced))),
                None => Cow::Borrowed(s),
            })
            .collect()
    }

    /// A synced schedule's "as of" and whether it is stale at `now`.
    fn freshness(&self, s: &Schedule, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, bool) {
        let Some(spec) = &s.sync else {
            return (None, false);
        };
        let row = self.sync.get(&s.name).filter(|r| r.source == spec.source());
        let fetched_at = row.and_then(|r| r.fetched_at).map(|t| t.0);
        let failed = row.is_some_and(|r| r.last_error.is_some());
        (
            fetched_at,
            oncall::sync_is_stale(spec, fetched_at, failed, now),
        )
    }
}

/// Sets each of `users`' on-call schedules at `now` from the policy and `facts`.
pub(crate) fn apply_roster(
    policy: &Policy,
    facts: &OnCallFacts,
    now: DateTime<Utc>,
    users: &mut [Principal],
) {
    let schedules = facts.schedules(policy);
    let roster = oncall::roster(
        schedules.iter().map(|s| s.as_ref()),
        &facts.overrides(),
        now,
    );
    for u in users {
        u.oncall = roster.get(&u.name).cloned().unwrap_or_default();
    }
}

/// Whether any of the policy's schedules is synced from a provider.
fn has_synced(policy: &Policy) -> bool {
    policy.oncall.values().any(|s| s.sync.is_some())
}

/// The on-call facts at `now`, read where `on` reads (empty without schedules: no
/// read at all; no cache read without synced schedules).
async fn facts_on(
    mut on: crate::store::oncall::OnCall<'_>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<OnCallFacts> {
    if policy.oncall.is_empty() {
        return Ok(OnCallFacts::default());
    }
    let overrides = on.current(Ts(now)).await?;
    let sync = if has_synced(policy) {
        on.sync_rows().await?
    } else {
        Vec::new()
    };
    Ok(OnCallFacts::new(policy, overrides, sync))
}

/// The on-call facts at `now` from a directory (see [`crate::store::directory`]):
/// what [`facts_on`] reads, without reading.
pub(crate) fn facts_from(
    dir: &crate::store::directory::Directory,
    policy: &Policy,
    now: DateTime<Utc>,
) -> OnCallFacts {
    if policy.oncall.is_empty() {
        return OnCallFacts::default();
    }
    OnCallFacts::new(policy, dir.overrides_at(Ts(now)), dir.sync.iter().cloned())
}

fn on_call_view(oc: oncall::OnCall) -> OnCallView {
    OnCallView {
        user: oc.user,
        until: oc.until,
        by_override: oc.by_override,
    }
}

impl Broker {
    pub(crate) async fn on_call_facts(&self, now: DateTime<Utc>) -> Result<OnCallFacts> {
        facts_on(self.store.oncall(), &self.policy, now).await
    }

    /// Fills in the schedules `p` is on call for at `now` (every signed-in call
    /// does this before its checks; a policy without schedules costs nothing), for
    /// a caller whose token check read the store's directory `version` (see
    /// [`crate::store::directory`]): no read while this process's copy is of that
    /// version.
    pub async fn with_on_call_as_of(
        &self,
        p: &mut Principal,
        now: DateTime<Utc>,
        version: i64,
    ) -> Result<()> {
        if self.policy.oncall.is_empty() {
            return Ok(());
        }
        let dir = self.store.directory_as_of(version, Ts(now)).await?;
        let facts = facts_from(&dir, &self.policy, now);
        apply_roster(&self.policy, &facts, now, std::slice::from_mut(p));
        Ok(())
    }

    /// The schedules `user` is on call for at `now`, with until when (and, for
    /// synced ones, as of when).
    pub async fn my_on_call(&self, user: &str, now: DateTime<Utc>) -> Result<Vec<MyOnCall>> {
        let facts = self.on_call_facts(now).await?;
        let schedules = facts.schedules(&self.policy);
        Ok(oncall::on_call_for(
            schedules.iter().map(|s| s.as_ref()),
            &facts.overrides(),
            user,
            now,
        )
        .into_iter()
        .filter_map(|(name, oc)| {
            let s = self.policy.oncall.get(&name)?;
            let (as_of, stale) = facts.freshness(s, now);
            Some(MyOnCall {
                title: s.title.clone(),
                schedule: name,
                until: oc.until,
                as_of,
                stale,
            })
        })
        .collect())
    }

    /// Every schedule of the policy, who is on call now and the overrides to come;
    /// for synced ones, as of when and how their refreshes go.
    pub async fn schedules(&self) -> Result<Vec<ScheduleView>> {
        let now = self.now();
        let facts = self.on_call_facts(now).await?;
        let overrides = facts.overrides();
        Ok(facts
            .schedules(&self.policy)
            .iter()
            .map(|s| {
                let mut on_call = s.on_call_all(&overrides, now).into_iter().map(on_call_view);
                let (as_of, stale) = facts.freshness(s, now);
                let sync = s.sync.as_ref().map(|spec| {
                    let row = facts
                        .sync
                        .get(&s.name)
                        .filter(|r| r.source == spec.source());
                    SyncView {
                        provider: spec.provider.as_str().to_string(),
                        last_attempt: row.and_then(|r| r.last_attempt).map(|t| t.0),
                        last_error: row.and_then(|r| r.last_error.clone()),
                        unmapped: facts.synced(s).map(|(_, u)| u).unwrap_or_default(),
                    }
                });
                ScheduleView {
                    name: s.name.clone(),
                    title: s.title.clone(),
                    time_zone: s.tz.name().to_string(),
                    on_call: on_call.next(),
                    also_on_call: on_call.collect(),
                    overrides: facts
                        .overrides
                        .iter()
                        .filter(|r| r.schedule == s.name)
                        .map(view)
                        .collect(),
                    as_of,
                    stale,
                    sync,
                }
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
