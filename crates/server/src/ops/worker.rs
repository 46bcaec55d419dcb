//! The background worker's pass ([`Broker::run_due_work`]) and its steps: pending
//! requests time out, due grants expire, failed work is retried, holders hear
//! that a grant expires soon, then the access and secret steps, pruning, the
//! refresh of synced on-call schedules ([`crate::ops::oncall_sync`]) and the audit
//! stream to the policy's sinks ([`super::siem`]): those two wait on other
//! systems, with deadlines, so they come after everything that must be on time.

use super::grants::claim_end;
use super::requests::cas_request;
use super::Notice;
use crate::audit::Actor;
use crate::error::Result;
use crate::service::Broker;
use crate::store::Ts;
use chrono::{DateTime, Duration, Utc};
use firedoor_core::api::EventKind;
use firedoor_core::approval;
use firedoor_core::audit::AuditEvent;
use firedoor_core::lifecycle::{EndReason, RequestState, CLAIM_LEASE_SECS, EXPIRING_SOON_SECS};
use firedoor_core::notify::Audience;
use firedoor_core::GrantId;

impl Broker {
    /// One pass of the background worker at the clock's `now`: times out pending
    /// requests, expires due grants, retries failed work, sends expiring notices,
    /// refreshes synced on-call schedules that are due.
    pub async fn run_due_work(&self) -> Result<()> {
        let now = self.now();
        // Records a unit committed but could not chain (its round failed, or its
        // process died between the two) are chained here at the latest.
        self.store.chain_pending().await?;
        self.time_out_requests(now).await?;
        self.follow_up_pending(now).await?;
        self.expire_due_grants(now).await?;
        self.retry_due_work(now).await?;
        self.notify_expiring(now).await?;
        self.access_due_work().await?;
        // issue 14: uses — rotations waiting for an incident become due first.
        self.release_waiting_rotations(now).await?;
        self.rotate_due_secrets().await?;
        // issue 14: drills
        if let Err(e) = self.drill_due_work().await {
            tracing::warn!(error = %e, "drills and readiness step");
        }
        self.prune_events(now).await?;
        self.sync_on_call(now).await?;
        self.deliver_audit().await?;
        Ok(())
    }

    /// Pending requests past their deadline time out.
    async fn time_out_requests(&self, now: DateTime<Utc>) -> Result<()> {
        let stale = self
            .store
            .requests()
            .pending_past_deadline(Ts(now), 500)
            .await?;
        for r in stale {
            let mut uow = self.uow_at(now).await?;
            if cas_request(
                &mut uow,
                &r.id,
                RequestState::Pending,
                RequestState::TimedOut,
                now,
                None,
            )
            .await
            .is_err()
            {
                continue;
            }
            uow.record(
                &Actor::System,
                &r.id,
                AuditEvent::RequestTimedOut {
                    pending_until: r.pending_until.text(),
                },
            );
            uow.notify(
                Audience::Person(&r.requester),
                Notice::new(
                    EventKind::RequestTimedOut,
                    format!(
                        "your request for {} timed out without a decision",
                        self.title(&r.bundle)
                    ),
                )
                .request(r.id().ok())
                .bundle(Some(&r.bundle)),
            )
            .await?;
            if let Some(asker) = &r.requested_by {
                uow.copy_last_notice_to(asker);
            }
            uow.commit().await?;
        }
        Ok(())
    }

    /// Pending requests of flows that remind or escalate: a request whose next
    /// stage is due (or whose stage's approval window closed) escalates and its new
    /// approvers are asked; otherwise its current approvers are reminded once when
    /// `remind_after` has passed (see [`firedoor_core::approval`]).
    async fn follow_up_pending(&self, now: DateTime<Utc>) -> Result<()> {
        let flows: Vec<String> = self
            .policy
            .flows
            .values()
            .filter(|f| f.follows_up())
            .map(|f| f.name.clone())
            .collect();
        let pending = self
            .store
            .requests()
            .pending_in_flows(&flows, Ts(now), 500)
            .await?;
        for r in pending {
            let Some(flow) = self.policy.flows.get(&r.flow) else {
                continue;
            };
            let stage = r.stage.max(0) as usize;
            let (to, cause) = approval::stage_at(flow, r.created_at.0, stage, now);
            let since = r.stage_since.map_or(r.created_at.0, |t| t.0);
            let reminded = r.reminded_stage.is_some_and(|s| s >= r.stage);
            let remind = cause.is_none() && approval::reminder_due(flow, since, reminded, now);
            if cause.is_none() && !remind {
                continue;
            }
            let mut uow = self.uow_at(now).await?;
            let asker = r.requested_by.as_deref();
            let asked = self
                .asked_at(&mut uow, flow, to, &r.requester, asker)
                .await?;
            let waited = firedoor_core::duration::format_duration(
                (now - r.created_at.0).num_seconds().max(0),
            );
            let message = match cause {
                Some(_) => {
                    if !uow
                        .requests()
                        .cas_stage(&r.id, r.stage, to as i64, Ts(now))
                        .await?
                    {
                        continue;
                    }
                    uow.record(
                        &Actor::System,
                        &r.id,
                        AuditEvent::RequestEscalated {
                            from: stage,
                            to,
                            cause: cause.map(|c| c.as_str()).unwrap_or_default().to_string(),
                            asked: asked.clone(),
                        },
                    );
                    format!(
                        "Escalated to you: {} requests {} (no decision for {waited})",
                        r.requester,
                        self.title(&r.bundle)
                    )
                }
                None => {
                    if !uow.requests().mark_reminded(&r.id, r.stage).await? {
                        continue;
                    }
                    uow.record(
                        &Actor::System,
                        &r.id,
                        AuditEvent::RequestReminded {
                            stage,
                            asked: asked.clone(),
                        },
                    );
                    format!(
                        "Reminder: {} still waits for {} ({waited} so far)",
                        r.requester,
                        self.title(&r.bundle)
                    )
                }
            };
            let message = match asker {
                Some(a) => format!("{message}, asked by {a}"),
                None => message,
            };
            uow.notify_to(
                asked,
                Notice::new(EventKind::RequestAwaitingApproval, message)
                    .request(r.id().ok())
                    .bundle(Some(&r.bundle))
                    .actor(Some(asker.unwrap_or(&r.requester))),
            );
            uow.commit().await?;
        }
        Ok(())
    }

    /// Active grants past their expiry are claimed and ended in their targets.
    async fn expire_due_grants(&self, now: DateTime<Utc>) -> Result<()> {
        let due = self.store.grants().due_to_expire(Ts(now), 500).await?;
        for g in due {
            let mut uow = self.uow_at(now).await?;
            if claim_end(&mut uow, &g, EndReason::Expired, "system", now)
                .await
                .is_err()
            {
                continue;
            }
            uow.commit().await?;
            if let Ok(gid) = g.id() {
                self.finish_end(&gid).await?;
            }
        }
        Ok(())
    }

    /// Provisioning and deprovisioning due for another attempt (or whose lease ran
    /// out) are leased, then run.
    async fn retry_due_work(&self, now: DateTime<Utc>) -> Result<()> {
        let retry = self.store.grants().due_retries(Ts(now), 100).await?;
        for (id, state) in retry {
            let Ok(gid) = id.parse::<GrantId>() else {
                continue;
            };
            // Take the lease before working, so a second broker does not do it too.
            let taken = self
                .store
                .grants()
                .claim_retry(
                    &id,
                    &state,
                    Ts(now),
                    Ts(now + Duration::seconds(CLAIM_LEASE_SECS)),
                )
                .await?;
            if !taken {
                continue;
            }
            if state == "provisioning" {
                self.provision(&gid).await?;
            } else {
                self.finish_end(&gid).await?;
            }
        }
        Ok(())
    }

    /// Holders hear once that their grant expires soon.
    async fn notify_expiring(&self, now: DateTime<Utc>) -> Result<()> {
        let soon = self
            .store
            .grants()
            .expiring_unnotified(Ts(now + Duration::seconds(EXPIRING_SOON_SECS)), 500)
            .await?;
        for g in soon {
            let mut uow = self.uow_at(now).await?;
            if !uow.grants().mark_expiring_notified(&g.id).await? {
                continue;
            }
            let left = (g.expires_at.0 - now).num_seconds().max(0);
            uow.notify(
                Audience::Person(&g.holder),
                Notice::new(
                    EventKind::GrantExpiring,
                    format!(
                        "{} expires in {}",
                        self.title(&g.bundle),
                        firedoor_core::duration::format_duration(left.max(1))
                    ),
                )
                .request(g.request_id.parse().ok())
                .grant(g.id().ok())
                .bundle(Some(&g.bundle)),
            )
            .await?;
            uow.commit().await?;
        }
        Ok(())
    }

    /// After a restart nothing is in flight: work claimed before a crash is due now.
    pub async fn release_leases(&self) -> Result<()> {
        let mut tx = self.store.begin().await?;
        tx.grants().release_leases(Ts(self.now())).await?;
        tx.secrets().release_leases().await?;
        tx.audit_sinks().release_leases().await?;
        tx.commit().await
    }

    /// Worker step: at most every [`crate::service::PRUNE_EVERY`], deletes live
    /// events older than the retention (streams resuming below them are told to
    /// resync).
    pub async fn prune_events(&self, now: DateTime<Utc>) -> Result<u64> {
        if !self.prune_due(now) {
            return Ok(0);
        }
        let before = now - self.event_retention;
        let mut uow = self.uow_at(now).await?;
        let n = uow.events().prune(Ts(before)).await?;
        uow.commit().await?;
        self.prune_outbound(now).await?;
        // A delivery's event is accepted only within MAX_EVENT_AGE_SECS of the
        // broker's clock, so its id need not be remembered for long after.
        let handled = now - Duration::seconds(24 * super::incidents::MAX_EVENT_AGE_SECS);
        self.store.incidents().prune_deliveries(Ts(handled)).await?;
        if n > 0 {
            tracing::info!(events = n, before = %Ts(before).text(), "pruned live events past their retention");
        }
        Ok(n)
    }
}
