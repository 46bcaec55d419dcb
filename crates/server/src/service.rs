//! Broker operations. Each one reads the facts inside a write transaction, asks
//! `firedoor_core::lifecycle` what the rules allow, and writes the new state, its
//! audit record and its live events in that same transaction with compare-and-set
//! updates. Calls to target systems happen outside transactions.

use crate::audit::{append, Actor};
use crate::clock::Clock;
use crate::connectors::{Connectors, Target};
use crate::error::{Error, Result};
use crate::store::grants::{GrantRow, NewGrant};
use crate::store::requests::{DecisionRow, NewRequest, RequestRow};
use crate::store::{Store, Ts, Tx};
use crate::vault::BrokerKey;
use chrono::{DateTime, Duration, Utc};
use firedoor_core::api::EventKind;
use firedoor_core::api::{
    ApproveBody, CreateRequest, CredentialItem, Credentials, Decision, DenyBody, EventView,
    ExtendBody, ExtendResult, GrantView, RequestView,
};
use firedoor_core::audit::{AuditEvent, GrantedResource};
use firedoor_core::lifecycle::{
    self, ApprovalOutcome, EndReason, GrantFacts, GrantState, RequestFacts, RequestKind,
    RequestState, CLAIM_LEASE_SECS, EXPIRING_SOON_SECS, MAX_PROVISION_ATTEMPTS,
};
use firedoor_core::notify::{self, Audience};
use firedoor_core::policy::{Bundle, Flow, Policy, Principal};
use firedoor_core::{access, input};
use firedoor_core::{ErrorCode, GrantId, RequestId};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Live events are kept this long unless configured (`serve --event-retention`).
pub const DEFAULT_EVENT_RETENTION_DAYS: i64 = 7;
/// How often the worker prunes live events.
pub const PRUNE_EVERY: Duration = Duration::minutes(10);

/// Everything the broker's operations share.
pub struct Broker {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub connectors: Connectors,
    pub clock: Arc<dyn Clock>,
    pub key: BrokerKey,
    /// Bumped after every commit that wrote live events.
    pub events: watch::Sender<u64>,
    /// Hands committed events to open streams (see [`crate::fanout`]).
    pub fanout: Arc<crate::fanout::Hub>,
    /// Wakes the background worker early.
    pub wake_worker: Notify,
    /// Set when the broker stops, so long-lived event streams end.
    pub closing: watch::Sender<bool>,
    /// Rate limit of security alerts for refused unlock uploads, per device.
    pub rejection_alerts: crate::breakglass::RejectionAlerts,
    /// How long live events are kept (default [`DEFAULT_EVENT_RETENTION_DAYS`]).
    pub event_retention: Duration,
    last_prune: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Who may authenticate changed; open event streams (see [`crate::access`]).
    pub access: crate::access::AccessState,
}

fn corrupt(what: &str, v: &str) -> Error {
    Error::Corrupt(format!("unknown {what} '{v}'"))
}

impl RequestRow {
    fn state(&self) -> Result<RequestState> {
        RequestState::parse(&self.state).ok_or_else(|| corrupt("request state", &self.state))
    }
    fn id(&self) -> Result<RequestId> {
        self.id.parse().map_err(|_| corrupt("request id", &self.id))
    }
    fn kind(&self) -> Result<RequestKind> {
        RequestKind::parse(&self.kind).ok_or_else(|| corrupt("request kind", &self.kind))
    }
}

impl GrantRow {
    fn state(&self) -> Result<GrantState> {
        GrantState::parse(&self.state).ok_or_else(|| corrupt("grant state", &self.state))
    }
    fn id(&self) -> Result<GrantId> {
        self.id.parse().map_err(|_| corrupt("grant id", &self.id))
    }
    fn facts(&self) -> Result<GrantFacts> {
        let expires_at = self.expires_at.0;
        Ok(GrantFacts {
            holder: self.holder.clone(),
            state: self.state()?,
            activated_at: match self.activated_at {
                Some(a) => a.0,
                None => expires_at - Duration::seconds(self.duration_secs),
            },
            expires_at,
        })
    }
}

/// A live event about to be stored for some recipients.
pub(crate) struct NewEvent<'a> {
    pub(crate) kind: EventKind,
    pub(crate) request_id: Option<RequestId>,
    pub(crate) grant_id: Option<GrantId>,
    pub(crate) bundle: Option<&'a str>,
    pub(crate) actor: Option<&'a str>,
    pub(crate) message: String,
}

pub(crate) async fn emit(
    tx: &mut Tx,
    recipients: &[String],
    e: NewEvent<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    let view = EventView {
        id: 0,
        kind: e.kind.as_str().to_string(),
        at: now,
        request_id: e.request_id,
        grant_id: e.grant_id,
        bundle: e.bundle.map(str::to_string),
        actor: e.actor.map(str::to_string),
        message: e.message,
    };
    let body = serde_json::to_string(&view).map_err(|e| Error::Corrupt(e.to_string()))?;
    let mut seen = std::collections::BTreeSet::new();
    for r in recipients {
        if !seen.insert(r) {
            continue;
        }
        tx.events()
            .insert(r, e.kind.as_str(), Ts(now), &body)
            .await?;
    }
    Ok(())
}

fn body_hash(body: &CreateRequest) -> String {
    let canonical = serde_json::to_string(body).unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Checks an Idempotency-Key header value.
pub fn check_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::rule(
            ErrorCode::InvalidRequest,
            "Idempotency-Key must be 1-200 visible ASCII characters",
        ));
    }
    Ok(())
}

impl Broker {
    /// A broker over an open store (no HTTP server, no worker: see
    /// [`crate::start`] for those).
    pub fn new(
        store: Store,
        policy: Policy,
        connectors: Connectors,
        clock: Arc<dyn Clock>,
        key: BrokerKey,
    ) -> Broker {
        let (events, _) = watch::channel(0u64);
        Broker {
            store,
            policy: Arc::new(policy),
            connectors,
            clock,
            key,
            events,
            wake_worker: Notify::new(),
            closing: watch::channel(false).0,
            rejection_alerts: Default::default(),
            access: crate::access::AccessState::default(),
            event_retention: Duration::days(DEFAULT_EVENT_RETENTION_DAYS),
            fanout: Arc::default(),
            last_prune: std::sync::Mutex::new(None),
        }
    }

    pub async fn write_tx(&self) -> Result<Tx> {
        let timer = crate::metrics::store_timer("begin");
        let tx = self.store.begin().await?;
        timer.done();
        Ok(tx)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn bundle_and_flow(&self, bundle: &str) -> Result<(&Bundle, &Flow)> {
        let b = self.policy.bundle(bundle).ok_or_else(|| {
            if firedoor_core::policy::valid_name(bundle) {
                Error::rule(ErrorCode::NotFound, format!("no bundle named '{bundle}'"))
            } else {
                Error::rule(
                    ErrorCode::NotFound,
                    "no such bundle: bundle names are 1-64 of a-z, 0-9, '-' and '_'",
                )
            }
        })?;
        let f = self.policy.flow_for_bundle(bundle).ok_or_else(|| {
            Error::rule(
                ErrorCode::NotEligible,
                format!("bundle '{bundle}' is not governed by any access flow, so nobody can request it"),
            )
        })?;
        Ok((b, f))
    }

    fn flow(&self, name: &str) -> Result<&Flow> {
        self.policy.flows.get(name).ok_or_else(|| {
            Error::Corrupt(format!(
                "flow '{name}' of a stored request is no longer in the policy"
            ))
        })
    }

    fn title(&self, bundle: &str) -> String {
        self.policy
            .bundle(bundle)
            .map(|b| b.title.clone())
            .unwrap_or_else(|| bundle.to_string())
    }

    /// Who hears of an event for `audience` (see [`firedoor_core::notify`]), among
    /// the users the store holds now.
    pub(crate) async fn recipients(
        &self,
        tx: &mut Tx,
        audience: Audience<'_>,
    ) -> Result<Vec<String>> {
        let users = crate::auth::all_users(tx.users()).await?;
        Ok(notify::recipients(audience, &users))
    }

    pub fn events_changed(&self) {
        self.events.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn may_see_request(&self, who: &Principal, r: &RequestRow) -> bool {
        access::may_see_request(&self.policy, who, &r.requester, &r.flow)
    }

    fn may_see_grant(&self, who: &Principal, g: &GrantRow) -> bool {
        access::may_see_grant(&self.policy, who, &g.holder, &g.flow)
    }

    async fn request_view_of(&self, r: &RequestRow) -> Result<RequestView> {
        let decisions = self
            .store
            .requests()
            .decisions(&r.id)
            .await?
            .into_iter()
            .map(|(by, decision, comment, at)| Decision {
                by,
                at: at.0,
                decision,
                comment,
            })
            .collect();
        Ok(RequestView {
            id: r.id()?,
            kind: r.kind()?,
            bundle: r.bundle.clone(),
            bundle_title: self.title(&r.bundle),
            requester: r.requester.clone(),
            state: r.state()?,
            duration_secs: r.duration_secs,
            justification: r.justification.clone(),
            ticket: r.ticket.clone(),
            created_at: r.created_at.0,
            pending_until: r.pending_until.0,
            approvals_needed: r.approvals_needed as u32,
            decisions,
            grant_id: match &r.grant_id {
                Some(g) => Some(g.parse().map_err(|_| corrupt("grant id", g))?),
                None => None,
            },
            error: r.error.clone(),
        })
    }

    fn grant_view_of(&self, g: &GrantRow) -> Result<GrantView> {
        Ok(GrantView {
            id: g.id()?,
            request_id: g
                .request_id
                .parse()
                .map_err(|_| corrupt("request id", &g.request_id))?,
            bundle: g.bundle.clone(),
            bundle_title: self.title(&g.bundle),
            holder: g.holder.clone(),
            state: g.state()?,
            activated_at: g.activated_at.map(|t| t.0),
            expires_at: g.expires_at.0,
            ended_at: g.ended_at.map(|t| t.0),
            end_reason: g.end_reason.clone(),
            ended_by: g.ended_by.clone(),
            last_error: g.last_error.clone(),
            attempts: g.attempts,
            next_attempt_at: g.next_attempt_at.map(|t| t.0),
        })
    }

    async fn reload_request(&self, id: &str) -> Result<RequestView> {
        let r = self
            .store
            .requests()
            .load(id)
            .await?
            .ok_or_else(|| Error::not_found("request"))?;
        self.request_view_of(&r).await
    }

    async fn reload_grant(&self, id: &str) -> Result<GrantView> {
        let g = self
            .store
            .grants()
            .load(id)
            .await?
            .ok_or_else(|| Error::not_found("grant"))?;
        self.grant_view_of(&g)
    }

    // ---------------------------------------------------------------- requests

    /// Creates a request. With an idempotency key, a replay of the same body returns
    /// the request created the first time (`created` is then false).
    pub async fn create_request(
        &self,
        who: &Principal,
        body: CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(RequestView, bool)> {
        if let Some(k) = idempotency_key {
            check_idempotency_key(k)?;
        }
        let (bundle, flow) = self.bundle_and_flow(&body.bundle)?;
        let hash = body_hash(&body);
        let now = self.now();
        let mut tx = self.write_tx().await?;
        if let Some(key) = idempotency_key {
            let prior = tx.requests().by_idempotency_key(&who.name, key).await?;
            if let Some((id, prior_hash)) = prior {
                drop(tx);
                if prior_hash.as_deref() != Some(hash.as_str()) {
                    return Err(Error::rule(
                        ErrorCode::IdempotencyKeyReused,
                        "this Idempotency-Key was already used for a different request",
                    ));
                }
                return Ok((self.reload_request(&id).await?, false));
            }
        }
        let checked = lifecycle::check_new_request(
            flow,
            who,
            body.duration_secs,
            body.justification.as_deref(),
            body.ticket.as_deref(),
        )?;
        let id = RequestId::new();
        let state = if checked.auto_approved {
            RequestState::Approved
        } else {
            RequestState::Pending
        };
        tx.requests()
            .insert(&NewRequest {
                id: &id.to_string(),
                kind: "access",
                bundle: &bundle.name,
                flow: &flow.name,
                requester: &who.name,
                state,
                duration_secs: checked.duration_secs,
                justification: checked.justification.as_deref(),
                ticket: checked.ticket.as_deref(),
                created_at: Ts(now),
                pending_until: Ts(lifecycle::pending_deadline(flow, now)),
                approvals_needed: flow.approvals as i64,
                grant_id: None,
                idempotency_key,
                body_hash: Some(&hash),
            })
            .await?;
        let actor = Actor::User(who.clone());
        append(
            &mut tx,
            &actor,
            &id.to_string(),
            AuditEvent::RequestCreated {
                bundle: bundle.name.clone(),
                flow: flow.name.clone(),
                duration_secs: checked.duration_secs,
                justification: checked.justification.clone(),
                ticket: checked.ticket.clone(),
                break_glass: flow.break_glass,
            },
            now,
        )
        .await?;
        let mut grant = None;
        if checked.auto_approved {
            append(
                &mut tx,
                &Actor::System,
                &id.to_string(),
                AuditEvent::RequestAutoApproved {
                    flow: flow.name.clone(),
                },
                now,
            )
            .await?;
            grant = Some(
                self.insert_grant(
                    &mut tx,
                    &id,
                    bundle,
                    flow,
                    &who.name,
                    checked.duration_secs,
                    now,
                )
                .await?,
            );
            if flow.break_glass {
                let to = self
                    .recipients(
                        &mut tx,
                        Audience::BreakGlassTaken {
                            flow,
                            requester: &who.name,
                        },
                    )
                    .await?;
                emit(
                    &mut tx,
                    &to,
                    NewEvent {
                        kind: EventKind::RequestApproved,
                        request_id: Some(id),
                        grant_id: grant,
                        bundle: Some(&bundle.name),
                        actor: Some(&who.name),
                        message: format!(
                            "BREAK GLASS: {} took {} (automatic)",
                            who.name, bundle.title
                        ),
                    },
                    now,
                )
                .await?;
            }
        } else {
            let to = self
                .recipients(
                    &mut tx,
                    Audience::Approvers {
                        flow,
                        requester: &who.name,
                    },
                )
                .await?;
            emit(
                &mut tx,
                &to,
                NewEvent {
                    kind: EventKind::RequestAwaitingApproval,
                    request_id: Some(id),
                    grant_id: None,
                    bundle: Some(&bundle.name),
                    actor: Some(&who.name),
                    message: format!(
                        "{} requests {} for {}",
                        who.name,
                        bundle.title,
                        firedoor_core::duration::format_duration(checked.duration_secs)
                    ),
                },
                now,
            )
            .await?;
        }
        tx.commit().await?;
        self.events_changed();
        if let Some(g) = grant {
            self.provision(&g).await?;
        }
        Ok((self.reload_request(&id.to_string()).await?, true))
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_grant(
        &self,
        tx: &mut Tx,
        request: &RequestId,
        bundle: &Bundle,
        flow: &Flow,
        holder: &str,
        duration_secs: i64,
        now: DateTime<Utc>,
    ) -> Result<GrantId> {
        let gid = GrantId::new();
        let (gid_s, request_s) = (gid.to_string(), request.to_string());
        tx.grants()
            .insert(&NewGrant {
                id: &gid_s,
                request_id: &request_s,
                bundle: &bundle.name,
                flow: &flow.name,
                holder,
                duration_secs,
                expires_at: Ts(now + Duration::seconds(duration_secs)),
                next_attempt_at: Ts(now + Duration::seconds(CLAIM_LEASE_SECS)),
            })
            .await?;
        tx.requests().set_grant(&request_s, &gid_s, Ts(now)).await?;
        Ok(gid)
    }

    /// Reads a request the caller may see.
    pub async fn get_request(&self, who: &Principal, id: &str) -> Result<RequestView> {
        let r = self
            .store
            .requests()
            .load(id)
            .await?
            .filter(|r| self.may_see_request(who, r))
            .ok_or_else(|| Error::not_found("request"))?;
        self.request_view_of(&r).await
    }

    /// `mine`: the caller's requests; `awaiting_me`: pending requests the caller may
    /// approve and has not yet; `all`: everything the caller may see.
    pub async fn list_requests(
        &self,
        who: &Principal,
        scope: &str,
        state: Option<RequestState>,
        limit: i64,
    ) -> Result<Vec<RequestView>> {
        let limit = limit.clamp(1, 1000);
        let rows: Vec<RequestRow> = match scope {
            "mine" => {
                self.store
                    .requests()
                    .of_requester(&who.name, state, limit)
                    .await?
            }
            "awaiting_me" => {
                let rows = self
                    .store
                    .requests()
                    .awaiting_decision_by(&who.name, Ts(self.now()))
                    .await?;
                rows.into_iter()
                    .filter(|r| access::may_decide(&self.policy, who, &r.flow))
                    .take(limit as usize)
                    .collect()
            }
            "all" => {
                let rows = self.store.requests().all(state).await?;
                rows.into_iter()
                    .filter(|r| self.may_see_request(who, r))
                    .take(limit as usize)
                    .collect()
            }
            other => {
                return Err(Error::rule(
                    ErrorCode::InvalidRequest,
                    format!("scope '{other}' is not one of mine, awaiting_me, all"),
                ))
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.request_view_of(r).await?);
        }
        Ok(out)
    }

    fn facts(r: &RequestRow, approvals: &[DecisionRow]) -> Result<RequestFacts> {
        Ok(RequestFacts {
            requester: r.requester.clone(),
            state: r.state()?,
            created_at: r.created_at.0,
            approved_by: approvals
                .iter()
                .filter(|d| d.1 == "approve")
                .map(|d| d.0.clone())
                .collect(),
        })
    }

    /// Loads a request for a decision inside `tx`, hiding those the caller may not see.
    async fn load_for_decision(
        &self,
        tx: &mut Tx,
        who: &Principal,
        id: &str,
    ) -> Result<RequestRow> {
        tx.requests()
            .load(id)
            .await?
            .filter(|r| self.may_see_request(who, r))
            .ok_or_else(|| Error::not_found("request"))
    }

    /// Moves a request from one state to another only if it is still in `from`.
    async fn cas_request(
        tx: &mut Tx,
        id: &str,
        from: RequestState,
        to: RequestState,
        now: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<()> {
        debug_assert!(from.can_become(to));
        let done = tx
            .requests()
            .cas_state(id, from, to, Ts(now), error)
            .await?;
        if !done {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "the request changed at the same moment; reload it and try again",
            ));
        }
        Ok(())
    }

    pub async fn approve(
        &self,
        who: &Principal,
        id: &str,
        body: ApproveBody,
    ) -> Result<RequestView> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let r = self.load_for_decision(&mut tx, who, id).await?;
        let flow = self.flow(&r.flow)?;
        let decisions = tx.requests().decisions(id).await?;
        let outcome = lifecycle::check_approve(flow, &Self::facts(&r, &decisions)?, who, now)?;
        let comment = input::approval_comment(body.comment);
        tx.requests()
            .insert_approval(id, &who.name, comment.as_deref(), Ts(now))
            .await?;
        let actor = Actor::User(who.clone());
        append(
            &mut tx,
            &actor,
            id,
            AuditEvent::ApprovalRecorded {
                comment: comment.clone(),
            },
            now,
        )
        .await?;
        let rid = r.id()?;
        let mut grant = None;
        let mut extension = None;
        if outcome == ApprovalOutcome::Approved {
            Self::cas_request(
                &mut tx,
                id,
                RequestState::Pending,
                RequestState::Approved,
                now,
                None,
            )
            .await?;
            append(
                &mut tx,
                &actor,
                id,
                AuditEvent::RequestApproved {
                    approvals: decisions.len() + 1,
                },
                now,
            )
            .await?;
            match r.kind()? {
                RequestKind::Access => {
                    let (bundle, _) = self.bundle_and_flow(&r.bundle)?;
                    grant = Some(
                        self.insert_grant(
                            &mut tx,
                            &rid,
                            bundle,
                            flow,
                            &r.requester,
                            r.duration_secs,
                            now,
                        )
                        .await?,
                    );
                }
                RequestKind::Extension => {
                    let gid = r
                        .grant_id
                        .clone()
                        .ok_or_else(|| corrupt("extension without grant", id))?;
                    extension = Some(
                        self.apply_extension_in(&mut tx, &gid, flow, r.duration_secs, &actor, now)
                            .await?,
                    );
                }
            }
            let to = self
                .recipients(
                    &mut tx,
                    Audience::Decided {
                        flow,
                        requester: &r.requester,
                    },
                )
                .await?;
            emit(
                &mut tx,
                &to,
                NewEvent {
                    kind: EventKind::RequestApproved,
                    request_id: Some(rid),
                    grant_id: grant,
                    bundle: Some(&r.bundle),
                    actor: Some(&who.name),
                    message: format!(
                        "{} approved {}'s request for {}",
                        who.name,
                        r.requester,
                        self.title(&r.bundle)
                    ),
                },
                now,
            )
            .await?;
        }
        tx.commit().await?;
        if outcome == ApprovalOutcome::Approved {
            crate::metrics::decision_made("approved", r.created_at.0, now);
        }
        self.events_changed();
        if let Some(g) = grant {
            self.provision(&g).await?;
        }
        if let Some(gid) = extension {
            self.extend_in_targets(&gid).await;
        }
        self.reload_request(id).await
    }

    pub async fn deny(&self, who: &Principal, id: &str, body: DenyBody) -> Result<RequestView> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let r = self.load_for_decision(&mut tx, who, id).await?;
        let flow = self.flow(&r.flow)?;
        let decisions = tx.requests().decisions(id).await?;
        let reason = lifecycle::check_deny(
            flow,
            &Self::facts(&r, &decisions)?,
            who,
            body.reason.as_deref(),
            now,
        )?;
        tx.requests()
            .upsert_denial(id, &who.name, reason.as_deref(), Ts(now))
            .await?;
        Self::cas_request(
            &mut tx,
            id,
            RequestState::Pending,
            RequestState::Denied,
            now,
            None,
        )
        .await?;
        append(
            &mut tx,
            &Actor::User(who.clone()),
            id,
            AuditEvent::RequestDenied {
                reason: reason.clone(),
            },
            now,
        )
        .await?;
        let to = self
            .recipients(
                &mut tx,
                Audience::Decided {
                    flow,
                    requester: &r.requester,
                },
            )
            .await?;
        emit(
            &mut tx,
            &to,
            NewEvent {
                kind: EventKind::RequestDenied,
                request_id: Some(r.id()?),
                grant_id: None,
                bundle: Some(&r.bundle),
                actor: Some(&who.name),
                message: match &reason {
                    Some(why) => format!(
                        "{} denied the request for {}: {why}",
                        who.name,
                        self.title(&r.bundle)
                    ),
                    None => format!(
                        "{} denied the request for {}",
                        who.name,
                        self.title(&r.bundle)
                    ),
                },
            },
            now,
        )
        .await?;
        tx.commit().await?;
        crate::metrics::decision_made("denied", r.created_at.0, now);
        self.events_changed();
        self.reload_request(id).await
    }

    pub async fn cancel(&self, who: &Principal, id: &str) -> Result<RequestView> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let r = self.load_for_decision(&mut tx, who, id).await?;
        let decisions = tx.requests().decisions(id).await?;
        lifecycle::check_cancel(&Self::facts(&r, &decisions)?, who)?;
        Self::cas_request(
            &mut tx,
            id,
            RequestState::Pending,
            RequestState::Cancelled,
            now,
            None,
        )
        .await?;
        append(
            &mut tx,
            &Actor::User(who.clone()),
            id,
            AuditEvent::RequestCancelled,
            now,
        )
        .await?;
        tx.commit().await?;
        self.reload_request(id).await
    }

    // ------------------------------------------------------------------ grants

    /// Provisions a grant that is in `provisioning`. On success the grant becomes
    /// active and its clock starts; on failure it is retried, then marked failed.
    pub async fn provision(&self, gid: &GrantId) -> Result<()> {
        let g = self
            .store
            .grants()
            .load(&gid.to_string())
            .await?
            .ok_or_else(|| Error::not_found("grant"))?;
        if g.state()? != GrantState::Provisioning {
            return Ok(());
        }
        let bundle = self.policy.bundle(&g.bundle).ok_or_else(|| {
            Error::Corrupt(format!("bundle '{}' is no longer in the policy", g.bundle))
        })?;
        let start = self.now();
        let expires = start + Duration::seconds(g.duration_secs);
        let mut items: Vec<CredentialItem> = Vec::new();
        let mut failure = None;
        for (index, res) in bundle.resources.iter().enumerate() {
            let target = Target {
                grant_id: *gid,
                index,
                holder: &g.holder,
                resource: res,
                expires_at: expires,
            };
            let Some(conn) = self.connectors.get(&res.integration) else {
                failure = Some(format!(
                    "no connector for integration '{}'",
                    res.integration
                ));
                break;
            };
            match conn.provision(&target).await {
                Ok(c) => items.push(c),
                Err(e) => {
                    failure = Some(e.0);
                    break;
                }
            }
        }
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let gid_s = gid.to_string();
        let still = tx.grants().state(&gid_s).await?;
        if still.as_deref() != Some("provisioning") {
            return Ok(()); // someone else finished it
        }
        match failure {
            None => {
                let creds = Credentials {
                    grant_id: *gid,
                    expires_at: expires,
                    items,
                };
                let sealed = self.key.seal(
                    &serde_json::to_vec(&creds).map_err(|e| Error::Corrupt(e.to_string()))?,
                )?;
                tx.grants()
                    .activate(&gid_s, Ts(start), Ts(expires), &sealed)
                    .await?;
                Self::cas_request(
                    &mut tx,
                    &g.request_id,
                    RequestState::Approved,
                    RequestState::Active,
                    now,
                    None,
                )
                .await?;
                append(
                    &mut tx,
                    &Actor::System,
                    &gid.to_string(),
                    AuditEvent::GrantActivated {
                        request: g.request_id.clone(),
                        holder: g.holder.clone(),
                        bundle: g.bundle.clone(),
                        activated_at: Ts(start).text(),
                        expires_at: Ts(expires).text(),
                        resources: creds
                            .items
                            .iter()
                            .map(|c| GrantedResource {
                                integration: c.integration.clone(),
                                resource: c.resource.clone(),
                                username: c.username.clone(),
                            })
                            .collect(),
                    },
                    now,
                )
                .await?;
                emit(
                    &mut tx,
                    std::slice::from_ref(&g.holder),
                    NewEvent {
                        kind: EventKind::GrantActive,
                        request_id: g.request_id.parse().ok(),
                        grant_id: Some(*gid),
                        bundle: Some(&g.bundle),
                        actor: None,
                        message: format!(
                            "{} is active until {}",
                            self.title(&g.bundle),
                            expires.format("%H:%M UTC")
                        ),
                    },
                    now,
                )
                .await?;
            }
            Some(error) => {
                tracing::warn!(grant = %gid, %error, "provisioning failed");
                // Leave nothing half-made behind.
                for (index, res) in bundle.resources.iter().enumerate() {
                    if let Some(conn) = self.connectors.get(&res.integration) {
                        let target = Target {
                            grant_id: *gid,
                            index,
                            holder: &g.holder,
                            resource: res,
                            expires_at: expires,
                        };
                        if let Err(e) = conn.deprovision(&target).await {
                            tracing::warn!(grant = %gid, error = %e, "cleanup after failed provisioning");
                        }
                    }
                }
                let attempts = g.attempts + 1;
                if attempts >= MAX_PROVISION_ATTEMPTS {
                    tx.grants()
                        .fail_provisioning(&gid_s, attempts, &error, Ts(now))
                        .await?;
                    Self::cas_request(
                        &mut tx,
                        &g.request_id,
                        RequestState::Approved,
                        RequestState::Failed,
                        now,
                        Some(&error),
                    )
                    .await?;
                    append(
                        &mut tx,
                        &Actor::System,
                        &gid.to_string(),
                        AuditEvent::GrantProvisionFailed {
                            error: error.clone(),
                            attempts,
                            last: true,
                        },
                        now,
                    )
                    .await?;
                    emit(
                        &mut tx,
                        std::slice::from_ref(&g.holder),
                        NewEvent {
                            kind: EventKind::GrantFailed,
                            request_id: g.request_id.parse().ok(),
                            grant_id: Some(*gid),
                            bundle: Some(&g.bundle),
                            actor: None,
                            message: format!(
                                "{} could not be provisioned: {error}",
                                self.title(&g.bundle)
                            ),
                        },
                        now,
                    )
                    .await?;
                } else {
                    let next = now + Duration::seconds(lifecycle::retry_backoff_secs(attempts));
                    tx.grants()
                        .retry_provisioning(&gid_s, attempts, &error, Ts(next))
                        .await?;
                    append(
                        &mut tx,
                        &Actor::System,
                        &gid.to_string(),
                        AuditEvent::GrantProvisionFailed {
                            error: error.clone(),
                            attempts,
                            last: false,
                        },
                        now,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        self.events_changed();
        Ok(())
    }

    pub async fn get_grant(&self, who: &Principal, id: &str) -> Result<GrantView> {
        let g = self
            .store
            .grants()
            .load(id)
            .await?
            .filter(|g| self.may_see_grant(who, g))
            .ok_or_else(|| Error::not_found("grant"))?;
        self.grant_view_of(&g)
    }

    /// `mine`: grants the caller holds; `all`: every grant the caller may see
    /// (their own, those of flows they approve, or all for admins). `live` keeps only
    /// grants whose access may still exist.
    pub async fn list_grants(
        &self,
        who: &Principal,
        scope: &str,
        live: bool,
        limit: i64,
    ) -> Result<Vec<GrantView>> {
        let limit = limit.clamp(1, 1000) as usize;
        let rows: Vec<GrantRow> = match scope {
            "mine" => self.store.grants().of_holder(&who.name).await?,
            "all" => self.store.grants().all().await?,
            other => {
                return Err(Error::rule(
                    ErrorCode::InvalidRequest,
                    format!("scope '{other}' is not one of mine, all"),
                ))
            }
        };
        let mut out = Vec::new();
        for g in rows.iter().filter(|g| self.may_see_grant(who, g)) {
            if live && !g.state()?.is_live() {
                continue;
            }
            out.push(self.grant_view_of(g)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The credentials of an active grant, for its holder only. Audited.
    pub async fn credentials(&self, who: &Principal, id: &str) -> Result<Credentials> {
        let row = self.store.grants().credentials(id).await?;
        let Some((holder, state, sealed)) = row else {
            return Err(Error::not_found("grant"));
        };
        if !access::may_view_credentials(who, &holder) {
            // Someone who may not see the grant learns nothing, not even that the
            // id exists: the same 404 as `GET /grants/{id}`.
            let visible = self
                .store
                .grants()
                .load(id)
                .await?
                .is_some_and(|g| self.may_see_grant(who, &g));
            if !visible {
                return Err(Error::not_found("grant"));
            }
            return Err(Error::rule(
                ErrorCode::Forbidden,
                "credentials are only shown to the grant's holder",
            ));
        }
        let sealed = match (state.as_str(), sealed) {
            ("active", Some(s)) => s,
            _ => {
                return Err(Error::rule(
                    ErrorCode::NoCredentials,
                    format!("the grant is {state}; it has no credentials to show"),
                ))
            }
        };
        let creds: Credentials = serde_json::from_slice(&self.key.open(&sealed)?)
            .map_err(|e| Error::Corrupt(format!("credentials of {id}: {e}")))?;
        let now = self.now();
        let mut tx = self.write_tx().await?;
        append(
            &mut tx,
            &Actor::User(who.clone()),
            id,
            AuditEvent::CredentialsViewed,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(creds)
    }

    pub async fn revoke(&self, who: &Principal, id: &str) -> Result<GrantView> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let g = tx
            .grants()
            .load(id)
            .await?
            .filter(|g| self.may_see_grant(who, g))
            .ok_or_else(|| Error::not_found("grant"))?;
        let flow = self.flow(&g.flow)?;
        lifecycle::check_revoke(flow, &g.facts()?, who)?;
        Self::claim_end(&mut tx, &g, EndReason::Revoked, &who.name, now).await?;
        append(
            &mut tx,
            &Actor::User(who.clone()),
            id,
            AuditEvent::GrantRevokeRequested {
                holder: g.holder.clone(),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        self.finish_end(&g.id()?).await?;
        self.reload_grant(id).await
    }

    /// Moves an active grant to `revoking`, leased to this broker for a while.
    async fn claim_end(
        tx: &mut Tx,
        g: &GrantRow,
        reason: EndReason,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let done = tx
            .grants()
            .claim_end(
                &g.id,
                reason,
                by,
                Ts(now + Duration::seconds(CLAIM_LEASE_SECS)),
            )
            .await?;
        if !done {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "the grant is no longer active",
            ));
        }
        Ok(())
    }

    /// Removes a revoking grant's access from its targets and records the end; on
    /// failure records `revoke_failed` with the error and a retry time.
    pub async fn finish_end(&self, gid: &GrantId) -> Result<()> {
        let Some(g) = self.store.grants().load(&gid.to_string()).await? else {
            return Err(Error::not_found("grant"));
        };
        let state = g.state()?;
        if !matches!(state, GrantState::Revoking | GrantState::RevokeFailed) {
            return Ok(());
        }
        crate::metrics::deprovision_attempt(state == GrantState::RevokeFailed);
        let reason = g
            .end_reason
            .as_deref()
            .and_then(EndReason::parse)
            .ok_or_else(|| corrupt("end reason", g.end_reason.as_deref().unwrap_or("")))?;
        let expires = g.expires_at.0;
        let mut failure = None;
        let mut leftovers = Vec::new();
        if let Some(bundle) = self.policy.bundle(&g.bundle) {
            for (index, res) in bundle.resources.iter().enumerate() {
                let target = Target {
                    grant_id: *gid,
                    index,
                    holder: &g.holder,
                    resource: res,
                    expires_at: expires,
                };
                let result = match self.connectors.get(&res.integration) {
                    Some(c) => c.deprovision(&target).await.map_err(|e| e.0),
                    None => Err(format!(
                        "no connector for integration '{}'",
                        res.integration
                    )),
                };
                match result {
                    Ok(report) => leftovers.extend(report.leftovers),
                    Err(e) => failure = Some(e),
                }
            }
        } else {
            failure = Some(format!(
                "bundle '{}' is no longer in the policy; cannot tell what to remove",
                g.bundle
            ));
        }
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let gid_s = gid.to_string();
        let mut ended_expired = false;
        match failure {
            None => {
                let fin = reason.final_grant_state();
                let done = tx.grants().end(&gid_s, fin, Ts(now)).await?;
                if !done {
                    return Ok(());
                }
                ended_expired = reason == EndReason::Expired;
                Self::cas_request(
                    &mut tx,
                    &g.request_id,
                    RequestState::Active,
                    reason.final_request_state(),
                    now,
                    None,
                )
                .await?;
                append(
                    &mut tx,
                    &Actor::System,
                    &gid_s,
                    AuditEvent::GrantEnded {
                        reason,
                        holder: g.holder.clone(),
                        by: g.ended_by.clone(),
                        expires_at: g.expires_at.text(),
                        attempts: g.attempts + 1,
                        leftovers: leftover_values(&leftovers),
                    },
                    now,
                )
                .await?;
                emit(
                    &mut tx,
                    std::slice::from_ref(&g.holder),
                    NewEvent {
                        kind: match reason {
                            EndReason::Revoked => EventKind::GrantRevoked,
                            EndReason::Expired => EventKind::GrantExpired,
                        },
                        request_id: g.request_id.parse().ok(),
                        grant_id: Some(*gid),
                        bundle: Some(&g.bundle),
                        actor: g.ended_by.as_deref(),
                        message: match reason {
                            EndReason::Revoked => format!(
                                "{} was revoked by {}",
                                self.title(&g.bundle),
                                g.ended_by.as_deref().unwrap_or("someone")
                            ),
                            EndReason::Expired => format!("{} expired", self.title(&g.bundle)),
                        },
                    },
                    now,
                )
                .await?;
            }
            Some(error) => {
                tracing::warn!(grant = %gid, %error, "deprovisioning failed; will retry");
                crate::metrics::deprovision_failed(reason.as_str());
                let attempts = g.attempts + 1;
                let next = now + Duration::seconds(lifecycle::retry_backoff_secs(attempts));
                tx.grants()
                    .end_failed(&gid_s, attempts, &error, Ts(next))
                    .await?;
                append(
                    &mut tx,
                    &Actor::System,
                    &gid_s,
                    AuditEvent::GrantRevokeFailed {
                        error: error.clone(),
                        attempts,
                        next_attempt_at: Ts(next).text(),
                        leftovers: leftover_values(&leftovers),
                    },
                    now,
                )
                .await?;
                if state == GrantState::Revoking {
                    let to = self
                        .recipients(&mut tx, Audience::HolderAndAdmins(&g.holder))
                        .await?;
                    emit(
                        &mut tx,
                        &to,
                        NewEvent {
                            kind: EventKind::GrantRevokeFailed,
                            request_id: g.request_id.parse().ok(),
                            grant_id: Some(*gid),
                            bundle: Some(&g.bundle),
                            actor: None,
                            message: format!(
                                "removing {} failed and is being retried: {error}",
                                self.title(&g.bundle)
                            ),
                        },
                        now,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        if ended_expired {
            crate::metrics::expiry_revoked(expires, now);
        }
        self.events_changed();
        Ok(())
    }

    /// Extends an active grant: at once for automatic flows, otherwise through a new
    /// extension request that approvers decide.
    pub async fn extend(
        &self,
        who: &Principal,
        id: &str,
        body: ExtendBody,
    ) -> Result<ExtendResult> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let g = tx
            .grants()
            .load(id)
            .await?
            .filter(|g| self.may_see_grant(who, g))
            .ok_or_else(|| Error::not_found("grant"))?;
        let flow = self.flow(&g.flow)?;
        let facts = g.facts()?;
        lifecycle::check_extension(flow, &facts, who, body.duration_secs, now)?;
        let extra = body.duration_secs.unwrap_or(flow.default_duration_secs);
        let actor = Actor::User(who.clone());
        if flow.is_automatic() {
            self.apply_extension_in(&mut tx, &g.id, flow, extra, &actor, now)
                .await?;
            tx.commit().await?;
            self.events_changed();
            let gid = g.id()?;
            self.extend_in_targets(&gid).await;
            return Ok(ExtendResult {
                grant: self.reload_grant(id).await?,
                request: None,
            });
        }
        let checked = lifecycle::check_new_request(
            flow,
            who,
            Some(extra),
            body.justification.as_deref(),
            None,
        )?;
        let rid = RequestId::new();
        tx.requests()
            .insert(&NewRequest {
                id: &rid.to_string(),
                kind: "extension",
                bundle: &g.bundle,
                flow: &flow.name,
                requester: &who.name,
                state: RequestState::Pending,
                duration_secs: extra,
                justification: checked.justification.as_deref(),
                ticket: None,
                created_at: Ts(now),
                pending_until: Ts(lifecycle::pending_deadline(flow, now)),
                approvals_needed: flow.approvals as i64,
                grant_id: Some(&g.id),
                idempotency_key: None,
                body_hash: None,
            })
            .await?;
        append(
            &mut tx,
            &actor,
            &rid.to_string(),
            AuditEvent::ExtensionRequested {
                grant: g.id.clone(),
                duration_secs: extra,
                justification: checked.justification.clone(),
            },
            now,
        )
        .await?;
        let to = self
            .recipients(
                &mut tx,
                Audience::Approvers {
                    flow,
                    requester: &who.name,
                },
            )
            .await?;
        emit(
            &mut tx,
            &to,
            NewEvent {
                kind: EventKind::RequestAwaitingApproval,
                request_id: Some(rid),
                grant_id: g.id().ok(),
                bundle: Some(&g.bundle),
                actor: Some(&who.name),
                message: format!(
                    "{} asks to extend {} by {}",
                    who.name,
                    self.title(&g.bundle),
                    firedoor_core::duration::format_duration(extra)
                ),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        self.events_changed();
        Ok(ExtendResult {
            grant: self.reload_grant(id).await?,
            request: Some(self.reload_request(&rid.to_string()).await?),
        })
    }

    /// Adds `extra` seconds to an active grant inside `tx` (compare-and-set on its
    /// current expiry). Returns the grant id.
    async fn apply_extension_in(
        &self,
        tx: &mut Tx,
        gid: &str,
        flow: &Flow,
        extra: i64,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<GrantId> {
        let g = tx
            .grants()
            .load(gid)
            .await?
            .ok_or_else(|| Error::not_found("grant"))?;
        let facts = g.facts()?;
        if facts.state != GrantState::Active || now >= facts.expires_at {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "the grant is no longer active; nothing to extend",
            ));
        }
        let new_expiry = lifecycle::apply_extension(flow, &facts, extra)?;
        let done = tx
            .grants()
            .cas_expiry(gid, g.expires_at, Ts(new_expiry))
            .await?;
        if !done {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "the grant changed at the same moment; try again",
            ));
        }
        append(
            tx,
            actor,
            gid,
            AuditEvent::GrantExtended {
                from: g.expires_at.text(),
                to: Ts(new_expiry).text(),
                added_secs: extra,
            },
            now,
        )
        .await?;
        emit(
            tx,
            std::slice::from_ref(&g.holder),
            NewEvent {
                kind: EventKind::GrantExtended,
                request_id: g.request_id.parse().ok(),
                grant_id: g.id().ok(),
                bundle: Some(&g.bundle),
                actor: Some(&actor.name()),
                message: format!(
                    "{} now lasts until {}",
                    self.title(&g.bundle),
                    new_expiry.format("%H:%M UTC")
                ),
            },
            now,
        )
        .await?;
        g.id()
    }

    /// Moves the backstop expiry in target systems after an extension. A failure
    /// is recorded on the grant; the broker's own expiry stays authoritative.
    async fn extend_in_targets(&self, gid: &GrantId) {
        let Ok(Some(g)) = self.store.grants().load(&gid.to_string()).await else {
            return;
        };
        let Some(bundle) = self.policy.bundle(&g.bundle) else {
            return;
        };
        let expires = g.expires_at.0;
        for (index, res) in bundle.resources.iter().enumerate() {
            let target = Target {
                grant_id: *gid,
                index,
                holder: &g.holder,
                resource: res,
                expires_at: expires,
            };
            if let Some(c) = self.connectors.get(&res.integration) {
                if let Err(e) = c.extend(&target).await {
                    tracing::warn!(grant = %gid, error = %e, "moving the backstop expiry failed");
                    let _ = self
                        .store
                        .grants()
                        .set_last_error(
                            &gid.to_string(),
                            &format!("extending in {}: {}", res.integration, e.0),
                        )
                        .await;
                }
            }
        }
    }

    // ------------------------------------------------------------ worker steps

    /// One pass of the background worker at the clock's `now`: times out pending
    /// requests, expires due grants, retries failed work, sends expiring notices.
    pub async fn run_due_work(&self) -> Result<()> {
        let now = self.now();
        let stale = self
            .store
            .requests()
            .pending_past_deadline(Ts(now), 500)
            .await?;
        for r in stale {
            let mut tx = self.write_tx().await?;
            if Self::cas_request(
                &mut tx,
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
            append(
                &mut tx,
                &Actor::System,
                &r.id,
                AuditEvent::RequestTimedOut {
                    pending_until: r.pending_until.text(),
                },
                now,
            )
            .await?;
            emit(
                &mut tx,
                std::slice::from_ref(&r.requester),
                NewEvent {
                    kind: EventKind::RequestTimedOut,
                    request_id: r.id().ok(),
                    grant_id: None,
                    bundle: Some(&r.bundle),
                    actor: None,
                    message: format!(
                        "your request for {} timed out without a decision",
                        self.title(&r.bundle)
                    ),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            self.events_changed();
        }

        let due = self.store.grants().due_to_expire(Ts(now), 500).await?;
        for g in due {
            let mut tx = self.write_tx().await?;
            if Self::claim_end(&mut tx, &g, EndReason::Expired, "system", now)
                .await
                .is_err()
            {
                continue;
            }
            tx.commit().await?;
            if let Ok(gid) = g.id() {
                self.finish_end(&gid).await?;
            }
        }

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

        let soon = self
            .store
            .grants()
            .expiring_unnotified(Ts(now + Duration::seconds(EXPIRING_SOON_SECS)), 500)
            .await?;
        for g in soon {
            let mut tx = self.write_tx().await?;
            if !tx.grants().mark_expiring_notified(&g.id).await? {
                continue;
            }
            let left = (g.expires_at.0 - now).num_seconds().max(0);
            emit(
                &mut tx,
                std::slice::from_ref(&g.holder),
                NewEvent {
                    kind: EventKind::GrantExpiring,
                    request_id: g.request_id.parse().ok(),
                    grant_id: g.id().ok(),
                    bundle: Some(&g.bundle),
                    actor: None,
                    message: format!(
                        "{} expires in {}",
                        self.title(&g.bundle),
                        firedoor_core::duration::format_duration(left.max(1))
                    ),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            self.events_changed();
        }

        self.access_due_work().await?;
        self.rotate_due_secrets().await?;
        self.prune_events(now).await?;
        Ok(())
    }

    /// After a restart nothing is in flight: work claimed before a crash is due now.
    pub async fn release_leases(&self) -> Result<()> {
        self.store.grants().release_leases(Ts(self.now())).await?;
        self.release_secret_leases().await?;
        Ok(())
    }

    /// Live events for `user` after `after`, oldest first.
    /// Worker step: at most every [`PRUNE_EVERY`], deletes live events older than
    /// the retention (streams resuming below them are told to resync).
    pub async fn prune_events(&self, now: DateTime<Utc>) -> Result<u64> {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now - t < PRUNE_EVERY) {
                return Ok(0);
            }
            *last = Some(now);
        }
        let before = now - self.event_retention;
        let mut tx = self.write_tx().await?;
        let n = tx.events().prune(Ts(before)).await?;
        tx.commit().await?;
        if n > 0 {
            tracing::info!(events = n, before = %Ts(before).text(), "pruned live events past their retention");
        }
        Ok(n)
    }

    pub async fn events_after(&self, user: &str, after: i64, limit: i64) -> Result<Vec<EventView>> {
        let rows = self.store.events().after(user, after, limit).await?;
        rows.into_iter()
            .map(|(id, body)| {
                let mut e: EventView = serde_json::from_str(&body)
                    .map_err(|e| Error::Corrupt(format!("event {id}: {e}")))?;
                e.id = id;
                Ok(e)
            })
            .collect()
    }
}

/// What the connectors found left behind by a grant's accounts and did with it, as
/// recorded in the audit log.
fn leftover_values(leftovers: &[crate::connectors::Leftover]) -> Vec<serde_json::Value> {
    leftovers
        .iter()
        .filter_map(|l| serde_json::to_value(l).ok())
        .collect()
}
