//! Grants: provision, revoke, extend, credentials, read, and ending one in its
//! targets (`finish_end`).

use super::requests::cas_request;
use super::{Notice, Uow};
use crate::audit::Actor;
use crate::connectors::Target;
use crate::error::{Error, Result};
use crate::service::{corrupt, Broker};
use crate::store::grants::GrantRow;
use crate::store::requests::NewRequest;
use crate::store::{Ts, Tx};
use chrono::{DateTime, Duration, Utc};
use firedoor_core::access;
use firedoor_core::api::{
    CredentialItem, Credentials, EventKind, ExtendBody, ExtendResult, GrantView,
};
use firedoor_core::audit::{AuditEvent, GrantedResource};
use firedoor_core::lifecycle::{
    self, EndReason, GrantFacts, GrantState, RequestState, CLAIM_LEASE_SECS, MAX_PROVISION_ATTEMPTS,
};
use firedoor_core::notify::Audience;
use firedoor_core::policy::{Flow, Principal};
use firedoor_core::{ErrorCode, GrantId, RequestId};

impl GrantRow {
    pub(crate) fn state(&self) -> Result<GrantState> {
        GrantState::parse(&self.state).ok_or_else(|| corrupt("grant state", &self.state))
    }
    pub(crate) fn id(&self) -> Result<GrantId> {
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

/// Moves an active grant to `revoking`, leased to this broker for a while.
pub(crate) async fn claim_end(
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

/// What the connectors found left behind by a grant's accounts and did with it, as
/// recorded in the audit log.
fn leftover_values(leftovers: &[crate::connectors::Leftover]) -> Vec<serde_json::Value> {
    leftovers
        .iter()
        .filter_map(|l| serde_json::to_value(l).ok())
        .collect()
}

impl Broker {
    pub(crate) fn may_see_grant(&self, who: &Principal, g: &GrantRow) -> bool {
        access::may_see_grant(&self.policy, who, &g.holder, &g.flow)
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
            ssh: self.policy.bundle(&g.bundle).is_some_and(|b| {
                b.resources.iter().any(|r| {
                    matches!(
                        self.policy
                            .integrations
                            .get(&r.integration)
                            .map(|i| &i.kind),
                        Some(firedoor_core::policy::IntegrationKind::Ssh { .. })
                    )
                })
            }),
        })
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

    /// When a grant activating now ends: `expires`, or earlier if the incident its
    /// request was made for is resolved and its flow ends such grants (then also the
    /// incident and the end it would have had).
    async fn incident_end_at(
        &self,
        uow: &mut super::Uow<'_>,
        g: &crate::store::grants::GrantRow,
        expires: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, Option<(String, DateTime<Utc>)>)> {
        let Some(grace) = self
            .policy
            .flows
            .get(&g.flow)
            .and_then(|f| f.incident_end_grace_secs)
        else {
            return Ok((expires, None));
        };
        let Some(incident) = uow
            .requests()
            .load(&g.request_id)
            .await?
            .and_then(|r| r.incident_id)
        else {
            return Ok((expires, None));
        };
        let resolved = uow
            .incidents()
            .load(&incident)
            .await?
            .and_then(|i| i.resolved_at);
        match resolved
            .and_then(|at| firedoor_core::incident::end_after_resolution(expires, at.0, grace))
        {
            Some(ends) => Ok((ends, Some((incident, expires)))),
            None => Ok((expires, None)),
        }
    }

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
        let gid_s = gid.to_string();
        // Sealed before the unit of work begins: the seal (an X25519 exchange) is the
        // costliest step here and needs nothing the unit reads, unless the grant is
        // shortened for a resolved incident (rare: sealed again then).
        let seal = |expires_at: DateTime<Utc>, items: Vec<CredentialItem>| -> Result<_> {
            let creds = Credentials {
                grant_id: *gid,
                expires_at,
                items,
            };
            let json = serde_json::to_vec(&creds).map_err(|e| Error::Corrupt(e.to_string()))?;
            Ok((self.key.seal(&json)?, creds))
        };
        // Ok: the credentials, sealed; Err: why provisioning failed.
        let outcome = match failure {
            None => Ok(seal(expires, items)?),
            Some(error) => Err(error),
        };
        // This grant only (and its request's compare-and-set): see `Scope::Only`.
        let mut uow = self.uow_for(&[&gid_s], now).await?;
        // A failed attempt cleans up what it made, but never once the grant is no
        // longer provisioning (another replica's attempt may have made it active).
        // A successful one needs no read: activating is a compare-and-set.
        if outcome.is_err() && uow.grants().state(&gid_s).await?.as_deref() != Some("provisioning")
        {
            return Ok(()); // someone else finished it
        }
        let notice = |kind, message| {
            Notice::new(kind, message)
                .request(g.request_id.parse().ok())
                .grant(Some(*gid))
                .bundle(Some(&g.bundle))
        };
        match outcome {
            Ok((sealed, creds)) => {
                // Made for an incident that was resolved meanwhile (approved late,
                // provisioned slowly): it ends with the incident like the grants
                // already active did.
                let (expires, shortened) = self.incident_end_at(&mut uow, &g, expires).await?;
                let (sealed, creds) = if shortened.is_some() {
                    seal(expires, creds.items)?
                } else {
                    (sealed, creds)
                };
                if !uow
                    .grants()
                    .activate(&gid_s, Ts(start), Ts(expires), &sealed)
                    .await?
                {
                    return Ok(()); // someone else finished it
                }
                cas_request(
                    &mut uow,
                    &g.request_id,
                    RequestState::Approved,
                    RequestState::Active,
                    now,
                    None,
                )
                .await?;
                uow.record(
                    &Actor::System,
                    &gid_s,
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
                );
                if let Some((incident, from)) = shortened {
                    uow.record(
                        &Actor::System,
                        &gid_s,
                        AuditEvent::GrantShortened {
                            incident,
                            from: Ts(from).text(),
                            to: Ts(expires).text(),
                        },
                    );
                }
                uow.notify(
                    Audience::Person(&g.holder),
                    notice(
                        EventKind::GrantActive,
                        format!(
                            "{} is active until {}",
                            self.title(&g.bundle),
                            expires.format("%H:%M UTC")
                        ),
                    ),
                )
                .await?;
            }
            Err(error) => {
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
                    uow.grants()
                        .fail_provisioning(&gid_s, attempts, &error, Ts(now))
                        .await?;
                    cas_request(
                        &mut uow,
                        &g.request_id,
                        RequestState::Approved,
                        RequestState::Failed,
                        now,
                        Some(&error),
                    )
                    .await?;
                    uow.record(
                        &Actor::System,
                        &gid_s,
                        AuditEvent::GrantProvisionFailed {
                            error: error.clone(),
                            attempts,
                            last: true,
                        },
                    );
                    uow.notify(
                        Audience::Person(&g.holder),
                        notice(
                            EventKind::GrantFailed,
                            format!(
                                "{} could not be provisioned: {error}",
                                self.title(&g.bundle)
                            ),
                        ),
                    )
                    .await?;
                } else {
                    let next = now + Duration::seconds(lifecycle::retry_backoff_secs(attempts));
                    uow.grants()
                        .retry_provisioning(&gid_s, attempts, &error, Ts(next))
                        .await?;
                    uow.record(
                        &Actor::System,
                        &gid_s,
                        AuditEvent::GrantProvisionFailed {
                            error: error.clone(),
                            attempts,
                            last: false,
                        },
                    );
                }
            }
        }
        uow.commit().await
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
        let limit = limit.clamp(1, 1000);
        // Whoever may see only their own grants lists them with the holder's index.
        let scope = match scope {
            "all" if access::sees_only_own(&self.policy, who) => "mine",
            other => other,
        };
        let rows: Vec<GrantRow> = match scope {
            "mine" => {
                self.store
                    .grants()
                    .of_holder(&who.name, live, limit)
                    .await?
            }
            "all" => {
                let store = &self.store;
                super::first_kept(
                    limit as usize,
                    |after, n| async move {
                        let after = after.as_ref().map(|(at, id)| (*at, id.as_str()));
                        store.grants().page(live, after, n).await
                    },
                    |g: &GrantRow| (g.expires_at, g.id.clone()),
                    |g| self.may_see_grant(who, g),
                )
                .await?
            }
            other => {
                return Err(Error::rule(
                    ErrorCode::InvalidRequest,
                    format!("scope '{other}' is not one of mine, all"),
                ))
            }
        };
        rows.iter().map(|g| self.grant_view_of(g)).collect()
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
        let mut uow = self.uow_at(self.now()).await?;
        uow.record(&Actor::User(who.clone()), id, AuditEvent::CredentialsViewed);
        uow.commit().await?;
        Ok(creds)
    }

    pub async fn revoke(&self, who: &Principal, id: &str) -> Result<GrantView> {
        let now = self.now();
        let mut uow = self.uow_for(&[id], now).await?;
        let g = uow
            .grants()
            .load(id)
            .await?
            .filter(|g| self.may_see_grant(who, g))
            .ok_or_else(|| Error::not_found("grant"))?;
        let flow = self.flow(&g.flow)?;
        lifecycle::check_revoke(flow, &g.facts()?, who)?;
        claim_end(&mut uow, &g, EndReason::Revoked, &who.name, now).await?;
        uow.record(
            &Actor::User(who.clone()),
            id,
            AuditEvent::GrantRevokeRequested {
                holder: g.holder.clone(),
            },
        );
        uow.commit().await?;
        self.finish_end(&g.id()?).await?;
        self.reload_grant(id).await
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
        let gid_s = gid.to_string();
        let mut uow = self.uow_for(&[&gid_s], now).await?;
        let mut ended_expired = false;
        let notice = |kind, message| {
            Notice::new(kind, message)
                .request(g.request_id.parse().ok())
                .grant(Some(*gid))
                .bundle(Some(&g.bundle))
        };
        match failure {
            None => {
                let fin = reason.final_grant_state();
                let done = uow.grants().end(&gid_s, fin, Ts(now)).await?;
                if !done {
                    return Ok(());
                }
                ended_expired = reason == EndReason::Expired;
                cas_request(
                    &mut uow,
                    &g.request_id,
                    RequestState::Active,
                    reason.final_request_state(),
                    now,
                    None,
                )
                .await?;
                uow.record(
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
                );
                let (kind, message) = match reason {
                    EndReason::Revoked => (
                        EventKind::GrantRevoked,
                        format!(
                            "{} was revoked by {}",
                            self.title(&g.bundle),
                            g.ended_by.as_deref().unwrap_or("someone")
                        ),
                    ),
                    EndReason::Expired => (
                        EventKind::GrantExpired,
                        format!("{} expired", self.title(&g.bundle)),
                    ),
                };
                uow.notify(
                    Audience::Person(&g.holder),
                    notice(kind, message).actor(g.ended_by.as_deref()),
                )
                .await?;
            }
            Some(error) => {
                tracing::warn!(grant = %gid, %error, "deprovisioning failed; will retry");
                crate::metrics::deprovision_failed(reason.as_str());
                let attempts = g.attempts + 1;
                let next = now + Duration::seconds(lifecycle::retry_backoff_secs(attempts));
                uow.grants()
                    .end_failed(&gid_s, attempts, &error, Ts(next))
                    .await?;
                uow.record(
                    &Actor::System,
                    &gid_s,
                    AuditEvent::GrantRevokeFailed {
                        error: error.clone(),
                        attempts,
                        next_attempt_at: Ts(next).text(),
                        leftovers: leftover_values(&leftovers),
                    },
                );
                if state == GrantState::Revoking {
                    uow.notify(
                        Audience::HolderAndAdmins(&g.holder),
                        notice(
                            EventKind::GrantRevokeFailed,
                            format!(
                                "removing {} failed and is being retried: {error}",
                                self.title(&g.bundle)
                            ),
                        ),
                    )
                    .await?;
                }
            }
        }
        uow.commit().await?;
        if ended_expired {
            crate::metrics::expiry_revoked(expires, now);
        }
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
        let mut uow = self.uow_at(now).await?;
        let g = uow
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
        if flow.approves_automatically(who) {
            self.apply_extension_in(&mut uow, &g.id, flow, extra, &actor)
                .await?;
            uow.commit().await?;
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
        uow.requests()
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
                incident_id: None,
                requested_by: None,
                stage: 0,
            })
            .await?;
        uow.record(
            &actor,
            &rid.to_string(),
            AuditEvent::ExtensionRequested {
                grant: g.id.clone(),
                duration_secs: extra,
                justification: checked.justification.clone(),
            },
        );
        uow.notify(
            Audience::Approvers {
                flow,
                requester: &who.name,
                stage: 0,
                asker: None,
            },
            Notice::new(
                EventKind::RequestAwaitingApproval,
                format!(
                    "{} asks to extend {} by {}",
                    who.name,
                    self.title(&g.bundle),
                    firedoor_core::duration::format_duration(extra)
                ),
            )
            .request(Some(rid))
            .grant(g.id().ok())
            .bundle(Some(&g.bundle))
            .actor(Some(&who.name)),
        )
        .await?;
        uow.commit().await?;
        Ok(ExtendResult {
            grant: self.reload_grant(id).await?,
            request: Some(self.reload_request(&rid.to_string()).await?),
        })
    }

    /// Adds `extra` seconds to an active grant in `uow` (compare-and-set on its
    /// current expiry). Returns the grant id.
    pub(crate) async fn apply_extension_in(
        &self,
        uow: &mut Uow<'_>,
        gid: &str,
        flow: &Flow,
        extra: i64,
        actor: &Actor,
    ) -> Result<GrantId> {
        let now = uow.now();
        let g = uow
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
        let done = uow
            .grants()
            .cas_expiry(gid, g.expires_at, Ts(new_expiry))
            .await?;
        if !done {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "the grant changed at the same moment; try again",
            ));
        }
        uow.record(
            actor,
            gid,
            AuditEvent::GrantExtended {
                from: g.expires_at.text(),
                to: Ts(new_expiry).text(),
                added_secs: extra,
            },
        );
        uow.notify(
            Audience::Person(&g.holder),
            Notice::new(
                EventKind::GrantExtended,
                format!(
                    "{} now lasts until {}",
                    self.title(&g.bundle),
                    new_expiry.format("%H:%M UTC")
                ),
            )
            .request(g.request_id.parse().ok())
            .grant(g.id().ok())
            .bundle(Some(&g.bundle))
            .actor(Some(&actor.name())),
        )
        .await?;
        g.id()
    }

    /// Moves the backstop expiry in target systems after an extension. A failure
    /// is recorded on the grant; the broker's own expiry stays authoritative.
    pub(crate) async fn extend_in_targets(&self, gid: &GrantId) {
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
}
