//! Notifications outside the app: each event a channel of the policy takes
//! (`[notifications.NAME]`) becomes a delivery in the event's own transaction
//! ([`enqueue`], called by [`super::Uow::commit`]), so an event is never told in the
//! app and lost for chat, or the other way round. The worker sends due deliveries
//! ([`Broker::deliver_outbound`]): a Slack Block Kit message or a Standard Webhooks
//! signed JSON body, retried with backoff, dead-lettered after
//! [`outbound::MAX_ATTEMPTS`] (audited) until an admin sends it again.

use super::Notice;
use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::outbound::DeliveryRow;
use crate::store::{Ts, Tx};
use chrono::{DateTime, Duration, Utc};
use firedoor_core::access::{check_admin, AdminAction};
use firedoor_core::api::DeliveryView;
use firedoor_core::audit::AuditEvent;
use firedoor_core::outbound::{self, Channel, ChannelKind, Payload, PayloadData, RequestFacts};
use firedoor_core::policy::Policy;
use firedoor_core::webhooks;
use firedoor_core::ErrorCode;
use std::sync::OnceLock;

/// How long a worker holds a delivery it is sending before another may take it.
const LEASE_SECS: i64 = 60;
/// How long a receiver has to answer.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Delivered notifications are forgotten after this long.
pub const DELIVERED_RETENTION_DAYS: i64 = 7;

/// Stores a delivery of `notice` (told in the app to `recipients`) for each channel
/// that takes its kind, with the request it is about as it is in `tx` now.
pub(crate) async fn enqueue(
    tx: &mut Tx,
    policy: &Policy,
    recipients: &[String],
    notice: &Notice,
    now: DateTime<Utc>,
) -> Result<()> {
    let channels: Vec<&Channel> = policy
        .notifications
        .values()
        .filter(|c| c.takes(notice.kind))
        .collect();
    if channels.is_empty() {
        return Ok(());
    }
    let request = match notice.request_id {
        None => None,
        Some(id) => tx
            .requests()
            .load(&id.to_string())
            .await?
            .map(|r| RequestFacts {
                bundle_title: policy
                    .bundle(&r.bundle)
                    .map_or_else(|| r.bundle.clone(), |b| b.title.clone()),
                id: r.id,
                bundle: r.bundle,
                requester: r.requester,
                requested_by: r.requested_by,
                state: r.state,
                duration_secs: r.duration_secs,
                justification: r.justification,
                ticket: r.ticket,
                incident_id: r.incident_id,
                stage: r.stage.max(0) as u32,
            }),
    };
    let mut told = Vec::new();
    for r in recipients {
        if !told.contains(r) {
            told.push(r.clone());
        }
    }
    let payload = Payload {
        kind: notice.kind.as_str().to_string(),
        timestamp: now,
        data: PayloadData {
            message: notice.message.clone(),
            actor: notice.actor.clone(),
            bundle: notice.bundle.clone(),
            request_id: notice.request_id.map(|r| r.to_string()),
            grant_id: notice.grant_id.map(|g| g.to_string()),
            incident_id: notice.incident_id.clone(),
            recipients: told,
            request,
            app_link: None,
        },
    };
    let payload = Payload {
        data: PayloadData {
            app_link: outbound::app_link(&payload, outbound::DEFAULT_LINK_BASE),
            ..payload.data
        },
        ..payload
    };
    let body = serde_json::to_string(&payload).map_err(|e| Error::Corrupt(e.to_string()))?;
    for c in channels {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        tx.outbound()
            .insert(&id, &c.name, notice.kind.as_str(), &body, Ts(now))
            .await?;
    }
    Ok(())
}

/// Why an attempt failed, readable, without the URL or any secret.
struct Failure {
    error: String,
    status: Option<u16>,
    /// The receiver will never take it (or the channel cannot send): no retry.
    permanent: bool,
}

impl Failure {
    fn retry(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            status: None,
            permanent: false,
        }
    }
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// A reqwest error in words, with the URL (which may hold a token) taken out.
fn describe(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "the receiver did not answer in time"
    } else if e.is_connect() {
        "could not connect to the receiver"
    } else {
        "sending failed"
    };
    let e = e.without_url();
    let mut cause = String::new();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {cause}")
    }
}

/// Sends one delivery over `channel` at `now`.
async fn send(channel: &Channel, d: &DeliveryRow, now: DateTime<Utc>) -> Result<u16, Failure> {
    let url = match (&channel.url, &channel.url_env) {
        (Some(u), _) => u.clone(),
        (None, Some(env)) => match std::env::var(env) {
            Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => {
                return Err(Failure::retry(format!(
                    "{env} is not set: the channel has no URL"
                )))
            }
        },
        (None, None) => return Err(Failure::retry("the channel has no URL")),
    };
    let req = match channel.kind {
        ChannelKind::Slack => {
            let payload: Payload = serde_json::from_str(&d.payload).map_err(|e| Failure {
                error: format!("unreadable payload: {e}"),
                status: None,
                permanent: true,
            })?;
            http()
                .post(&url)
                .json(&outbound::slack_message(&payload, &channel.link_base))
        }
        ChannelKind::Webhook => {
            let env = channel.secret_env.as_deref().unwrap_or_default();
            let key = std::env::var(env)
                .map_err(|_| {
                    Failure::retry(format!("{env} is not set: the webhook cannot be signed"))
                })
                .and_then(|s| {
                    webhooks::parse_webhook_secret(&s)
                        .map_err(|e| Failure::retry(format!("{env}: {e}")))
                })?;
            let ts = now.timestamp();
            let sig = webhooks::standard_webhooks_signature(&key, &d.id, ts, d.payload.as_bytes());
            http()
                .post(&url)
                .header(webhooks::HEADER_ID, &d.id)
                .header(webhooks::HEADER_TIMESTAMP, ts.to_string())
                .header(webhooks::HEADER_SIGNATURE, sig)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(d.payload.clone())
        }
    };
    let resp = req.send().await.map_err(|e| Failure::retry(describe(e)))?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        Ok(status)
    } else {
        Err(Failure {
            error: format!("the receiver answered HTTP {status}"),
            status: Some(status),
            permanent: outbound::is_permanent(status),
        })
    }
}

fn view(d: DeliveryRow) -> DeliveryView {
    let message = serde_json::from_str::<Payload>(&d.payload)
        .map(|p| p.data.message)
        .unwrap_or_default();
    DeliveryView {
        id: d.id,
        channel: d.channel,
        kind: d.kind,
        state: d.state,
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at.0,
        last_error: d.last_error,
        last_status: d.last_status,
        created_at: d.created_at.0,
        updated_at: d.updated_at.0,
        message,
    }
}

impl Broker {
    /// Sends the deliveries due at `now` (at most 50 a pass), each leased first so
    /// another broker does not send it too.
    pub async fn deliver_outbound(&self, now: DateTime<Utc>) -> Result<()> {
        let due = self.store.outbound().due(Ts(now), 50).await?;
        for d in due {
            let lease = Ts(now + Duration::seconds(LEASE_SECS));
            if !self
                .store
                .outbound()
                .claim(&d.id, d.next_attempt_at, lease)
                .await?
            {
                continue;
            }
            let outcome = match self.policy.notifications.get(&d.channel) {
                Some(c) => send(c, &d, now).await,
                None => Err(Failure {
                    error: "the channel is no longer in the policy".into(),
                    status: None,
                    permanent: true,
                }),
            };
            let attempts = d.attempts + 1;
            let done = self.now();
            match outcome {
                Ok(status) => {
                    self.store
                        .outbound()
                        .attempted(
                            &d.id,
                            "delivered",
                            attempts,
                            Ts(done),
                            None,
                            Some(status as i64),
                            Ts(done),
                        )
                        .await?;
                }
                Err(f) if f.permanent || attempts >= outbound::MAX_ATTEMPTS => {
                    tracing::warn!(delivery = %d.id, channel = %d.channel, attempts, error = %f.error, "notification given up");
                    let mut uow = self.uow_at(done).await?;
                    uow.outbound()
                        .attempted(
                            &d.id,
                            "dead",
                            attempts,
                            Ts(done),
                            Some(&f.error),
                            f.status.map(i64::from),
                            Ts(done),
                        )
                        .await?;
                    uow.record(
                        &Actor::System,
                        &d.id,
                        AuditEvent::NotificationDeadLettered {
                            channel: d.channel.clone(),
                            kind: d.kind.clone(),
                            attempts,
                            error: f.error.clone(),
                        },
                    );
                    uow.commit().await?;
                }
                Err(f) => {
                    tracing::info!(delivery = %d.id, channel = %d.channel, attempts, error = %f.error, "notification will be retried");
                    self.store
                        .outbound()
                        .attempted(
                            &d.id,
                            "pending",
                            attempts,
                            Ts(outbound::next_attempt(attempts, done)),
                            Some(&f.error),
                            f.status.map(i64::from),
                            Ts(done),
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Forgets deliveries done more than [`DELIVERED_RETENTION_DAYS`] ago.
    pub(crate) async fn prune_outbound(&self, now: DateTime<Utc>) -> Result<u64> {
        self.store
            .outbound()
            .prune_delivered(Ts(now - Duration::days(DELIVERED_RETENTION_DAYS)))
            .await
    }

    /// Deliveries (in `state` if given: `pending`, `delivered`, `dead`), newest
    /// first. Admins only.
    pub async fn deliveries(
        &self,
        actor: &Actor,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryView>> {
        check_admin(actor, AdminAction::ManageNotifications)?;
        if let Some(s) = state {
            if !["pending", "delivered", "dead"].contains(&s) {
                return Err(Error::rule(
                    ErrorCode::InvalidRequest,
                    format!("state '{s}' is not one of pending, delivered, dead"),
                ));
            }
        }
        let rows = self
            .store
            .outbound()
            .list(state, limit.clamp(1, 1000))
            .await?;
        Ok(rows.into_iter().map(view).collect())
    }

    /// Sends a dead delivery again (from now, attempts counted afresh). Admins only;
    /// audited.
    pub async fn retry_delivery(&self, actor: &Actor, id: &str) -> Result<DeliveryView> {
        check_admin(actor, AdminAction::ManageNotifications)?;
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let d = uow
            .outbound()
            .load(id)
            .await?
            .ok_or_else(|| Error::not_found("delivery"))?;
        if !uow.outbound().revive(id, Ts(now)).await? {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!(
                    "the delivery is {}, not dead: only a dead one is sent again",
                    d.state
                ),
            ));
        }
        uow.record(
            actor,
            id,
            AuditEvent::NotificationRetried {
                channel: d.channel.clone(),
                kind: d.kind.clone(),
            },
        );
        // As revived, read in the unit: once committed, the sender may already be
        // delivering it.
        let revived = uow
            .outbound()
            .load(id)
            .await?
            .ok_or_else(|| Error::not_found("delivery"))?;
        uow.commit().await?;
        Ok(view(revived))
    }
}
