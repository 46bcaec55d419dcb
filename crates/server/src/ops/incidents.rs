//! Incidents open access: webhook deliveries from the policy's sources
//! (Alertmanager, PagerDuty) are authenticated, read into signals
//! ([`firedoor_core::incident`]) and applied in one unit of work: a rule's incident
//! opens (its responders are told, and may request its bundles), or is resolved
//! (grants made for it end after their flow's grace). A refused delivery is
//! answered with a 4xx and recorded in the audit log (at most once a minute per
//! source, with a count, so nobody can flood the log).

use super::{Notice, Uow};
use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::incidents::{IncidentRow, Opened};
use crate::store::Ts;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use firedoor_core::api::{EventKind, IncidentView};
use firedoor_core::audit::AuditEvent;
use firedoor_core::incident::{self, IncidentSource, Signal, SignalStatus, SourceKind};
use firedoor_core::notify::Audience;
use firedoor_core::policy::Principal;
use firedoor_core::ErrorCode;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How far a PagerDuty event's `occurred_at` may lie from the broker's clock: an
/// older one is a replay the de-duplication table may have forgotten.
pub const MAX_EVENT_AGE_SECS: i64 = 3600;

/// What a delivery did.
#[derive(Debug, Default, Serialize)]
pub struct Received {
    pub opened: Vec<String>,
    pub resolved: Vec<String>,
    /// Signals no rule matched, or news that changed nothing (a repeat).
    pub unchanged: usize,
}

/// When a source's refusal was last recorded, and how many came since.
type RefusalCount = (Option<DateTime<Utc>>, u64);

/// Refusals per source since the last audit record of one.
#[derive(Default)]
pub struct Refusals(Mutex<BTreeMap<String, RefusalCount>>);

impl Refusals {
    /// Counts a refusal; `Some(n)` when it is time to record (with `n` refusals).
    fn count(&self, source: &str, now: DateTime<Utc>) -> Option<u64> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(source.to_string()).or_insert((None, 0));
        e.1 += 1;
        if e.0.is_none_or(|t| now - t >= Duration::minutes(1)) {
            let n = e.1;
            *e = (Some(now), 0);
            Some(n)
        } else {
            None
        }
    }
}

fn refused(code: ErrorCode, m: impl Into<String>) -> Error {
    Error::rule(code, m)
}

/// Equality of two byte strings in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Broker {
    fn source(&self, name: &str, kind: SourceKind) -> Result<&IncidentSource> {
        self.policy
            .incident_sources
            .get(name)
            .filter(|s| s.kind == kind)
            .ok_or_else(|| {
                refused(
                    ErrorCode::NotFound,
                    format!("no {} incident source named in the policy", kind.as_str()),
                )
            })
    }

    /// The source's secret(s) from its environment variable.
    fn secrets_of(source: &IncidentSource) -> Result<Vec<String>> {
        let v = std::env::var(&source.secret_env).unwrap_or_default();
        let list: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if list.is_empty() {
            tracing::warn!(source = %source.name, env = %source.secret_env, "incident source has no secret: its deliveries are refused");
            return Err(refused(
                ErrorCode::Unauthenticated,
                "this incident source is not set up on the broker",
            ));
        }
        Ok(list)
    }

    /// Records a refused delivery (rate-limited per source) and returns the error.
    async fn refuse(&self, source: &str, e: Error) -> Error {
        let now = self.now();
        if let Some(n) = self.webhook_refusals.count(source, now) {
            let reason = match &e {
                Error::Rule(r) => r.message.clone(),
                other => other.to_string(),
            };
            let write = async {
                let mut uow = self.uow_at(now).await?;
                uow.record(
                    &Actor::System,
                    source,
                    AuditEvent::IncidentWebhookRefused { reason, refused: n },
                );
                uow.commit().await
            };
            if let Err(err) = write.await {
                tracing::error!(error = %err, "recording a refused webhook delivery");
            }
        }
        e
    }

    /// `POST /hooks/alertmanager/{source}`: an Alertmanager webhook, with the
    /// source's secret as a bearer token or as basic auth `user:password`.
    pub async fn receive_alertmanager(
        &self,
        source: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<Received> {
        let src = self.source(source, SourceKind::Alertmanager)?;
        let checked = (|| {
            let secrets = Self::secrets_of(src)?;
            let given = match authorization.map(str::trim) {
                Some(h) if h.starts_with("Bearer ") => {
                    h["Bearer ".len()..].trim().as_bytes().to_vec()
                }
                Some(h) if h.starts_with("Basic ") => base64::engine::general_purpose::STANDARD
                    .decode(h["Basic ".len()..].trim())
                    .unwrap_or_default(),
                _ => {
                    return Err(refused(
                        ErrorCode::Unauthenticated,
                        "send the source's secret as Authorization: Bearer or Basic",
                    ))
                }
            };
            if !secrets.iter().any(|s| same(s.as_bytes(), &given)) {
                return Err(refused(
                    ErrorCode::Unauthenticated,
                    "the delivery's credentials are not this source's",
                ));
            }
            incident::parse_alertmanager(source, body)
                .map_err(|e| refused(ErrorCode::InvalidRequest, e.0))
        })();
        let signals = match checked {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(source, e).await),
        };
        self.apply_signals(signals, None).await
    }

    /// `POST /hooks/opsgenie/{source}`: an Opsgenie webhook with the source's secret
    /// in `X-Firedoor-Token` (a custom header of the integration) or as a bearer
    /// token. Repeats change nothing (an open incident stays open).
    pub async fn receive_opsgenie(
        &self,
        source: &str,
        token: Option<&str>,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<Received> {
        let src = self.source(source, SourceKind::Opsgenie)?;
        let checked = (|| {
            let secrets = Self::secrets_of(src)?;
            let given = token
                .or_else(|| authorization.and_then(|h| h.trim().strip_prefix("Bearer ")))
                .map(str::trim)
                .ok_or_else(|| {
                    refused(
                        ErrorCode::Unauthenticated,
                        "send the source's secret in X-Firedoor-Token (or Authorization: Bearer)",
                    )
                })?;
            if !secrets.iter().any(|s| same(s.as_bytes(), given.as_bytes())) {
                return Err(refused(
                    ErrorCode::Unauthenticated,
                    "the delivery's token is not this source's",
                ));
            }
            incident::parse_opsgenie(source, body)
                .map_err(|e| refused(ErrorCode::InvalidRequest, e.0))
        })();
        let signal = match checked {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(source, e).await),
        };
        self.apply_signals(signal.into_iter().collect(), None).await
    }

    /// `POST /hooks/pagerduty/{source}`: a PagerDuty v3 webhook, signed
    /// (`X-PagerDuty-Signature`, HMAC-SHA256 of the body with any of the source's
    /// secrets), each event applied once.
    pub async fn receive_pagerduty(
        &self,
        source: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Received> {
        let src = self.source(source, SourceKind::Pagerduty)?;
        let now = self.now();
        let checked = (|| {
            let secrets = Self::secrets_of(src)?;
            let sigs = incident::pagerduty_signatures(signature.unwrap_or_default());
            let good = secrets.iter().any(|secret| {
                sigs.iter().any(|sig| {
                    let Ok(sig) = hex::decode(sig) else {
                        return false;
                    };
                    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                        return false;
                    };
                    mac.update(body);
                    mac.verify_slice(&sig).is_ok()
                })
            });
            if !good {
                return Err(refused(
                    ErrorCode::Unauthenticated,
                    "X-PagerDuty-Signature does not match the body with this source's secret",
                ));
            }
            let e = incident::parse_pagerduty(source, body)
                .map_err(|e| refused(ErrorCode::InvalidRequest, e.0))?;
            if (now - e.occurred_at).num_seconds().abs() > MAX_EVENT_AGE_SECS {
                return Err(refused(
                    ErrorCode::InvalidRequest,
                    format!(
                        "the event occurred at {}, more than an hour from the broker's clock: refused as a replay",
                        e.occurred_at.to_rfc3339()
                    ),
                ));
            }
            Ok(e)
        })();
        let event = match checked {
            Ok(e) => e,
            Err(e) => return Err(self.refuse(source, e).await),
        };
        // A delivery id seen before is a replay (or PagerDuty's retry of one that
        // was applied): refused, recorded. The id is noted in the same unit of work
        // that applies the event, so a delivery that failed is not refused later.
        let delivery = Some((source, event.id.as_str()));
        match self
            .apply_signals(event.signal.into_iter().collect(), delivery)
            .await
        {
            Err(e @ Error::Rule(_)) => Err(self.refuse(source, e).await),
            other => other,
        }
    }

    /// Applies `signals` in one unit of work; with `delivery` (source, id), only if
    /// that delivery was not applied before (else `conflict`, nothing applied).
    async fn apply_signals(
        &self,
        signals: Vec<Signal>,
        delivery: Option<(&str, &str)>,
    ) -> Result<Received> {
        let now = self.now();
        let mut out = Received::default();
        let mut uow = self.uow_at(now).await?;
        if let Some((source, id)) = delivery {
            if !uow.incidents().first_delivery(source, id, Ts(now)).await? {
                return Err(refused(
                    ErrorCode::Conflict,
                    format!("event {id} was already received"),
                ));
            }
        }
        let mut ending = false;
        for s in &signals {
            let rules: Vec<_> = self
                .policy
                .incidents
                .values()
                .filter(|r| r.matches(s))
                .collect();
            if rules.is_empty() {
                out.unchanged += 1;
            }
            for rule in rules {
                match s.status {
                    SignalStatus::Triggered => {
                        let new_id = format!("inc_{}", uuid::Uuid::new_v4().simple());
                        let opened = uow
                            .incidents()
                            .open(&new_id, s, &rule.name, Ts(now))
                            .await?;
                        let (id, reopened) = match opened {
                            Opened::New(id) => (id, false),
                            Opened::Reopened(id) => (id, true),
                            Opened::AlreadyOpen(_) => {
                                out.unchanged += 1;
                                continue;
                            }
                        };
                        let responders: Vec<String> = uow
                            .users_now()
                            .await?
                            .iter()
                            .filter(|u| rule.responders.contains(u))
                            .map(|u| u.name.clone())
                            .collect();
                        uow.record(
                            &Actor::System,
                            &id,
                            AuditEvent::IncidentOpened {
                                source: s.source.clone(),
                                external_id: s.external_id.clone(),
                                rule: rule.name.clone(),
                                title: s.title.clone(),
                                bundles: rule.bundles.clone(),
                                responders: responders.clone(),
                                reopened,
                            },
                        );
                        let titles: Vec<String> =
                            rule.bundles.iter().map(|b| self.title(b)).collect();
                        uow.notify(
                            Audience::Members(&rule.responders),
                            Notice::new(
                                EventKind::IncidentOpened,
                                format!("{} — {} ready", s.title, titles.join(", ")),
                            )
                            .bundle(rule.bundles.first().map(String::as_str))
                            .incident(Some(&id)),
                        )
                        .await?;
                        out.opened.push(id);
                    }
                    SignalStatus::Resolved => {
                        let Some(id) = uow
                            .incidents()
                            .resolve(&s.source, &s.external_id, &rule.name, Ts(now))
                            .await?
                        else {
                            out.unchanged += 1;
                            continue;
                        };
                        let grants = self.end_with_incident(&mut uow, &id, &s.title, now).await?;
                        ending |= !grants.is_empty();
                        uow.record(
                            &Actor::System,
                            &id,
                            AuditEvent::IncidentResolved {
                                source: s.source.clone(),
                                external_id: s.external_id.clone(),
                                grants,
                            },
                        );
                        out.resolved.push(id);
                    }
                }
            }
        }
        uow.commit().await?;
        if ending {
            self.wake_worker.notify_one();
        }
        Ok(out)
    }

    /// Brings the end of every active grant made for incident `id` to its flow's
    /// grace after `now` (never later than it was); tells each holder. Returns the
    /// grants whose end moved.
    async fn end_with_incident(
        &self,
        uow: &mut Uow<'_>,
        id: &str,
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let mut moved = Vec::new();
        for (gid, flow, expires) in uow.incidents().active_grants(id).await? {
            let Some(grace) = self
                .policy
                .flows
                .get(&flow)
                .and_then(|f| f.incident_end_grace_secs)
            else {
                continue;
            };
            let Some(ends) = incident::end_after_resolution(expires.0, now, grace) else {
                continue;
            };
            if !uow.grants().cas_expiry(&gid, expires, Ts(ends)).await? {
                continue;
            }
            let Some(g) = uow.grants().load(&gid).await? else {
                continue;
            };
            uow.record(
                &Actor::System,
                &gid,
                AuditEvent::GrantShortened {
                    incident: id.to_string(),
                    from: expires.text(),
                    to: Ts(ends).text(),
                },
            );
            uow.notify(
                Audience::Person(&g.holder),
                Notice::new(
                    EventKind::IncidentResolved,
                    format!(
                        "{title} is resolved: your {} access ends at {} UTC",
                        self.title(&g.bundle),
                        ends.format("%H:%M")
                    ),
                )
                .grant(g.id().ok())
                .bundle(Some(&g.bundle))
                .incident(Some(id)),
            )
            .await?;
            moved.push(gid);
        }
        Ok(moved)
    }

    /// Whether `who` may request `bundle` for incident `id`: it is open, its rule
    /// opens the bundle and `who` is one of its responders. Returns the id.
    pub(crate) async fn check_incident(
        &self,
        uow: &mut Uow<'_>,
        id: &str,
        bundle: &str,
        who: &Principal,
    ) -> Result<String> {
        let row = uow
            .incidents()
            .load(id)
            .await?
            .ok_or_else(|| Error::not_found("incident"))?;
        incident::check_request(
            id,
            row.state == "open",
            self.policy.incidents.get(&row.rule),
            bundle,
            who,
        )?;
        Ok(row.id)
    }

    fn incident_view(&self, r: &IncidentRow, who: &Principal) -> IncidentView {
        let rule = self.policy.incidents.get(&r.rule);
        IncidentView {
            id: r.id.clone(),
            source: r.source.clone(),
            external_id: r.external_id.clone(),
            rule: r.rule.clone(),
            title: r.title.clone(),
            url: r.url.clone(),
            state: r.state.clone(),
            opened_at: r.opened_at.0,
            resolved_at: r.resolved_at.map(|t| t.0),
            bundles: rule.map(|r| r.bundles.clone()).unwrap_or_default(),
            responder: rule.is_some_and(|r| r.responders.contains(who)),
        }
    }

    /// Open incidents, then the latest resolved ones (at most 100), for anyone
    /// signed in: titles are what the pager already told the team.
    pub async fn incidents(&self, who: &Principal) -> Result<Vec<IncidentView>> {
        let rows = self.store.incidents().recent(100).await?;
        Ok(rows.iter().map(|r| self.incident_view(r, who)).collect())
    }
}
