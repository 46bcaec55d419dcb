//! Requests: create (with idempotency keys), approve, deny, cancel, read.

use super::Notice;
use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::{corrupt, Broker};
use crate::store::grants::NewGrant;
use crate::store::requests::{DecisionRow, NewRequest, RequestRow};
use crate::store::{Ts, Tx};
use chrono::{DateTime, Duration, Utc};
use firedoor_core::access;
use firedoor_core::api::{
    ApproveBody, ClientChannel, CreateRequest, Decision, DenyBody, EventKind, RequestView,
    WhoApproves,
};
use firedoor_core::audit::AuditEvent;
use firedoor_core::input;
use firedoor_core::lifecycle::{
    self, ApprovalOutcome, RequestFacts, RequestKind, RequestState, CLAIM_LEASE_SECS,
};
use firedoor_core::notify::Audience;
use firedoor_core::policy::{Bundle, Flow, Principal};
use firedoor_core::{ErrorCode, GrantId, RequestId};
use sha2::{Digest, Sha256};

impl RequestRow {
    pub(crate) fn state(&self) -> Result<RequestState> {
        RequestState::parse(&self.state).ok_or_else(|| corrupt("request state", &self.state))
    }
    pub(crate) fn id(&self) -> Result<RequestId> {
        self.id.parse().map_err(|_| corrupt("request id", &self.id))
    }
    pub(crate) fn kind(&self) -> Result<RequestKind> {
        RequestKind::parse(&self.kind).ok_or_else(|| corrupt("request kind", &self.kind))
    }
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
        requested_by: r.requested_by.clone(),
        stage: r.stage.max(0) as usize,
    })
}

/// Moves a request from one state to another only if it is still in `from`.
pub(crate) async fn cas_request(
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

/// Inserts the grant of an approved access request (in `provisioning`, leased to
/// this broker for a while) and links the request to it.
#[allow(clippy::too_many_arguments)]
async fn insert_grant(
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

/// Whoever asked on the requester's behalf hears of the decision too (a copy of
/// the notice just collected for the requester).
fn tell_asker(uow: &mut super::Uow<'_>, r: &RequestRow) {
    if let Some(asker) = &r.requested_by {
        uow.copy_last_notice_to(asker);
    }
}

impl Broker {
    /// `name` as a principal now (groups, on call), if they exist and are not
    /// disabled.
    async fn active_user_now(&self, uow: &mut super::Uow<'_>, name: &str) -> Result<Principal> {
        let disabled = uow.users().disabled_at(name).await?;
        if !matches!(disabled, Some(None)) {
            return Err(Error::rule(
                ErrorCode::NotEligible,
                format!("on_behalf_of: there is no active user named '{name}'"),
            ));
        }
        uow.users_now()
            .await?
            .iter()
            .find(|u| u.name == name)
            .cloned()
            .ok_or_else(|| Error::not_found("user"))
    }

    /// The people asked to decide at `stage` (names, for the audit).
    pub(crate) async fn asked_at(
        &self,
        uow: &mut super::Uow<'_>,
        flow: &Flow,
        stage: usize,
        requester: &str,
        asker: Option<&str>,
    ) -> Result<Vec<String>> {
        Ok(firedoor_core::notify::recipients(
            Audience::Approvers {
                flow,
                requester,
                stage,
                asker,
            },
            uow.users_now().await?,
        ))
    }

    pub(crate) fn may_see_request(&self, who: &Principal, r: &RequestRow) -> bool {
        access::may_see_request(&self.policy, who, &r.requester, &r.flow)
            || r.requested_by.as_deref() == Some(who.name.as_str())
    }

    fn request_view(&self, r: &RequestRow, decisions: Vec<DecisionRow>) -> Result<RequestView> {
        let decisions = decisions
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
            incident_id: r.incident_id.clone(),
            requested_by: r.requested_by.clone(),
            stage: r.stage.max(0) as u32,
            approvers: self.who_approves(r),
        })
    }

    /// Who may decide `r` at the stage it reached: everyone the flow's stages up to
    /// it name (see `Flow::may_decide_at`), the requester and asker left out.
    fn who_approves(&self, r: &RequestRow) -> WhoApproves {
        let mut who = WhoApproves::default();
        let Some(flow) = self.policy.flows.get(&r.flow) else {
            return who;
        };
        let last = (r.stage.max(0) as usize).min(flow.stage_count().saturating_sub(1));
        for stage in 0..=last {
            let a = flow.stage_approvers(stage);
            let add = |to: &mut Vec<String>, names: &[String]| {
                for n in names {
                    if !to.contains(n) {
                        to.push(n.clone());
                    }
                }
            };
            add(&mut who.users, &a.users);
            add(&mut who.groups, &a.groups);
            add(&mut who.oncall, &a.oncall);
        }
        who.users
            .retain(|u| *u != r.requester && Some(u.as_str()) != r.requested_by.as_deref());
        who
    }

    pub(crate) async fn reload_request(&self, id: &str) -> Result<RequestView> {
        let (r, decisions) = self
            .store
            .requests()
            .load_with_decisions(id)
            .await?
            .ok_or_else(|| Error::not_found("request"))?;
        self.request_view(&r, decisions)
    }

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
        // A new request touches nothing another writer could be deciding; two
        // creations under one Idempotency-Key take turns (see `Scope::Only`).
        let idem_lock = idempotency_key.map(|k| format!("idempotency:{}:{k}", who.name));
        let items: Vec<&str> = idem_lock.iter().map(String::as_str).collect();
        let mut uow = self.uow_for(&items, now).await?;
        if let Some(key) = idempotency_key {
            let prior = uow.requests().by_idempotency_key(&who.name, key).await?;
            if let Some((id, prior_hash)) = prior {
                drop(uow);
                if prior_hash.as_deref() != Some(hash.as_str()) {
                    return Err(Error::rule(
                        ErrorCode::IdempotencyKeyReused,
                        "this Idempotency-Key was already used for a different request",
                    ));
                }
                return Ok((self.reload_request(&id).await?, false));
            }
        }
        // On someone's behalf: the flow lets the asker, and the request is then
        // checked as theirs (as they are now: on call counts).
        let asker = who;
        let for_whom = match body.on_behalf_of.as_deref() {
            None => None,
            Some(name) => {
                lifecycle::check_on_behalf(flow, asker, name)?;
                Some(self.active_user_now(&mut uow, name).await?)
            }
        };
        let who = for_whom.as_ref().unwrap_or(asker);
        // For an incident: open, opening this bundle, and the requester one of its
        // responders (as they are now: on call counts).
        let incident = match body.incident.as_deref() {
            None => None,
            Some(i) => Some(self.check_incident(&mut uow, i, &bundle.name, who).await?),
        };
        let checked = lifecycle::check_new_request_as(
            flow,
            who,
            incident.is_some(),
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
        // Stages whose approval window is closed now are passed at once.
        let (stage, skipped) = if checked.auto_approved {
            (0, None)
        } else {
            firedoor_core::approval::stage_at(flow, now, 0, now)
        };
        let asked_by = for_whom.as_ref().map(|_| asker.name.as_str());
        uow.requests()
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
                incident_id: incident.as_deref(),
                requested_by: asked_by,
                stage: stage as i64,
            })
            .await?;
        let actor = Actor::User(asker.clone());
        uow.record(
            &actor,
            &id.to_string(),
            AuditEvent::RequestCreated {
                bundle: bundle.name.clone(),
                flow: flow.name.clone(),
                duration_secs: checked.duration_secs,
                justification: checked.justification.clone(),
                ticket: checked.ticket.clone(),
                break_glass: flow.break_glass,
                incident: incident.clone(),
                on_behalf_of: for_whom.as_ref().map(|p| p.name.clone()),
            },
        );
        if let Some(cause) = skipped {
            let asked = self
                .asked_at(&mut uow, flow, stage, &who.name, asked_by)
                .await?;
            uow.record(
                &Actor::System,
                &id.to_string(),
                AuditEvent::RequestEscalated {
                    from: 0,
                    to: stage,
                    cause: cause.as_str().to_string(),
                    asked,
                },
            );
        }
        let mut grant = None;
        if checked.auto_approved {
            uow.record(
                &Actor::System,
                &id.to_string(),
                AuditEvent::RequestAutoApproved {
                    flow: flow.name.clone(),
                    on_call: (flow.auto_approve_on_call && !flow.is_automatic())
                        .then(|| flow.requesters.oncall.iter().find(|s| who.on_call_for(s)))
                        .flatten()
                        .cloned(),
                    incident: incident.clone().filter(|_| {
                        !flow.approves_automatically(who) && flow.auto_approve_incident
                    }),
                },
            );
            grant = Some(
                insert_grant(
                    &mut uow,
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
                uow.notify(
                    Audience::BreakGlassTaken {
                        flow,
                        requester: &who.name,
                    },
                    Notice::new(
                        EventKind::RequestApproved,
                        format!(
                            "BREAK GLASS: {} took {} (automatic)",
                            who.name, bundle.title
                        ),
                    )
                    .request(Some(id))
                    .grant(grant)
                    .bundle(Some(&bundle.name))
                    .actor(Some(&who.name)),
                )
                .await?;
            }
        } else {
            let message = match asked_by {
                None => format!(
                    "{} requests {} for {}",
                    who.name,
                    bundle.title,
                    firedoor_core::duration::format_duration(checked.duration_secs)
                ),
                Some(a) => format!(
                    "{a} requests {} for {} on behalf of {}",
                    bundle.title,
                    firedoor_core::duration::format_duration(checked.duration_secs),
                    who.name,
                ),
            };
            uow.notify(
                Audience::Approvers {
                    flow,
                    requester: &who.name,
                    stage,
                    asker: asked_by,
                },
                Notice::new(EventKind::RequestAwaitingApproval, message)
                    .request(Some(id))
                    .bundle(Some(&bundle.name))
                    .actor(Some(&asker.name)),
            )
            .await?;
        }
        uow.commit().await?;
        if let Some(g) = grant {
            self.provision(&g).await?;
        }
        Ok((self.reload_request(&id.to_string()).await?, true))
    }

    /// Reads a request the caller may see.
    pub async fn get_request(&self, who: &Principal, id: &str) -> Result<RequestView> {
        let (r, decisions) = self
            .store
            .requests()
            .load_with_decisions(id)
            .await?
            .filter(|(r, _)| self.may_see_request(who, r))
            .ok_or_else(|| Error::not_found("request"))?;
        self.request_view(&r, decisions)
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
        // Whoever may see only their own requests (theirs, or made on their behalf)
        // lists them with the requester's index.
        let scope = match scope {
            "all" if access::sees_only_own(&self.policy, who) => "mine",
            other => other,
        };
        let rows: Vec<(RequestRow, Vec<DecisionRow>)> = match scope {
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
                    .filter(|(r, _)| {
                        self.policy
                            .flows
                            .get(&r.flow)
                            .is_some_and(|f| f.may_decide_at(who, r.stage.max(0) as usize))
                    })
                    .take(limit as usize)
                    .collect()
            }
            "all" => {
                let store = &self.store;
                super::first_kept(
                    limit as usize,
                    |after, n| async move {
                        let after = after.as_ref().map(|(at, id)| (*at, id.as_str()));
                        store.requests().page(state, after, n).await
                    },
                    |(r, _): &(RequestRow, Vec<DecisionRow>)| (r.created_at, r.id.clone()),
                    |(r, _)| self.may_see_request(who, r),
                )
                .await?
            }
            other => {
                return Err(Error::rule(
                    ErrorCode::InvalidRequest,
                    format!("scope '{other}' is not one of mine, awaiting_me, all"),
                ))
            }
        };
        rows.into_iter()
            .map(|(r, decisions)| self.request_view(&r, decisions))
            .collect()
    }

    /// Loads a request and its decisions for a decision inside `tx`, hiding those the
    /// caller may not see.
    async fn load_for_decision(
        &self,
        tx: &mut Tx,
        who: &Principal,
        id: &str,
    ) -> Result<(RequestRow, Vec<DecisionRow>)> {
        tx.requests()
            .load_with_decisions(id)
            .await?
            .filter(|(r, _)| self.may_see_request(who, r))
            .ok_or_else(|| Error::not_found("request"))
    }

    pub async fn approve(
        &self,
        who: &Principal,
        id: &str,
        body: ApproveBody,
    ) -> Result<RequestView> {
        self.approve_via(who, id, body, None).await
    }

    /// As [`Broker::approve`], recording where the approver acted (`channel`, from
    /// the client's `X-Firedoor-Client` header) in the audit record.
    pub async fn approve_via(
        &self,
        who: &Principal,
        id: &str,
        body: ApproveBody,
        channel: Option<ClientChannel>,
    ) -> Result<RequestView> {
        let now = self.now();
        // This request only: two approvers on two replicas take turns on it, so
        // each sees the other's approval (see `Scope::Only`).
        let mut uow = self.uow_for(&[id], now).await?;
        let (r, decisions) = self.load_for_decision(&mut uow, who, id).await?;
        if let Some(gid) = r
            .grant_id
            .as_deref()
            .filter(|_| matches!(r.kind(), Ok(RequestKind::Extension)))
        {
            // An extension request changes its grant too.
            uow.lock_item(gid).await?;
        }
        let flow = self.flow(&r.flow)?;
        let outcome = lifecycle::check_approve(flow, &facts(&r, &decisions)?, who, now)?;
        let comment = input::approval_comment(body.comment);
        uow.requests()
            .insert_approval(id, &who.name, comment.as_deref(), Ts(now))
            .await?;
        let actor = Actor::User(who.clone());
        uow.record(
            &actor,
            id,
            AuditEvent::ApprovalRecorded {
                comment: comment.clone(),
                channel: channel.map(|c| c.as_str().to_string()),
            },
        );
        let rid = r.id()?;
        let mut grant = None;
        let mut extension = None;
        if outcome == ApprovalOutcome::Approved {
            cas_request(
                &mut uow,
                id,
                RequestState::Pending,
                RequestState::Approved,
                now,
                None,
            )
            .await?;
            uow.record(
                &actor,
                id,
                AuditEvent::RequestApproved {
                    approvals: decisions.len() + 1,
                },
            );
            match r.kind()? {
                RequestKind::Access => {
                    let (bundle, _) = self.bundle_and_flow(&r.bundle)?;
                    grant = Some(
                        insert_grant(
                            &mut uow,
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
                        self.apply_extension_in(&mut uow, &gid, flow, r.duration_secs, &actor)
                            .await?,
                    );
                }
            }
            uow.notify(
                Audience::Decided {
                    flow,
                    requester: &r.requester,
                },
                Notice::new(
                    EventKind::RequestApproved,
                    format!(
                        "{} approved {}'s request for {}",
                        who.name,
                        r.requester,
                        self.title(&r.bundle)
                    ),
                )
                .request(Some(rid))
                .grant(grant)
                .bundle(Some(&r.bundle))
                .actor(Some(&who.name)),
            )
            .await?;
            tell_asker(&mut uow, &r);
        }
        uow.commit().await?;
        if outcome == ApprovalOutcome::Approved {
            crate::metrics::decision_made("approved", r.created_at.0, now);
        }
        if let Some(g) = grant {
            self.provision(&g).await?;
        }
        if let Some(gid) = extension {
            self.extend_in_targets(&gid).await;
        }
        self.reload_request(id).await
    }

    pub async fn deny(&self, who: &Principal, id: &str, body: DenyBody) -> Result<RequestView> {
        self.deny_via(who, id, body, None).await
    }

    /// As [`Broker::deny`], recording where the approver acted (see
    /// [`Broker::approve_via`]).
    pub async fn deny_via(
        &self,
        who: &Principal,
        id: &str,
        body: DenyBody,
        channel: Option<ClientChannel>,
    ) -> Result<RequestView> {
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let (r, decisions) = self.load_for_decision(&mut uow, who, id).await?;
        let flow = self.flow(&r.flow)?;
        let reason = lifecycle::check_deny(
            flow,
            &facts(&r, &decisions)?,
            who,
            body.reason.as_deref(),
            now,
        )?;
        uow.requests()
            .upsert_denial(id, &who.name, reason.as_deref(), Ts(now))
            .await?;
        cas_request(
            &mut uow,
            id,
            RequestState::Pending,
            RequestState::Denied,
            now,
            None,
        )
        .await?;
        uow.record(
            &Actor::User(who.clone()),
            id,
            AuditEvent::RequestDenied {
                reason: reason.clone(),
                channel: channel.map(|c| c.as_str().to_string()),
            },
        );
        let title = self.title(&r.bundle);
        uow.notify(
            Audience::Decided {
                flow,
                requester: &r.requester,
            },
            Notice::new(
                EventKind::RequestDenied,
                match &reason {
                    Some(why) => format!("{} denied the request for {title}: {why}", who.name),
                    None => format!("{} denied the request for {title}", who.name),
                },
            )
            .request(Some(r.id()?))
            .bundle(Some(&r.bundle))
            .actor(Some(&who.name)),
        )
        .await?;
        tell_asker(&mut uow, &r);
        uow.commit().await?;
        crate::metrics::decision_made("denied", r.created_at.0, now);
        self.reload_request(id).await
    }

    pub async fn cancel(&self, who: &Principal, id: &str) -> Result<RequestView> {
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let (r, decisions) = self.load_for_decision(&mut uow, who, id).await?;
        lifecycle::check_cancel(&facts(&r, &decisions)?, who)?;
        cas_request(
            &mut uow,
            id,
            RequestState::Pending,
            RequestState::Cancelled,
            now,
            None,
        )
        .await?;
        uow.record(&Actor::User(who.clone()), id, AuditEvent::RequestCancelled);
        uow.commit().await?;
        self.reload_request(id).await
    }
}
