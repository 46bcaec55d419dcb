//! Anything else: the team's own endpoint provisions, deprovisions, extends and
//! rotates. Each call is a JSON POST signed per Standard Webhooks (the headers
//! `webhook-id`, `webhook-timestamp`, `webhook-signature`; during a secret rotation
//! signed with both secrets), with `webhook-id` = `Idempotency-Key` = grant, resource
//! and action, the same on every retry, so the endpoint can tell a retry from a new
//! call. A failure (no answer in time, a non-2xx) goes the way of every connector's:
//! provisioning is retried then fails, deprovisioning becomes `revoke_failed` and
//! is retried with backoff until it succeeds.

use super::{Connector, ConnectorError, DeprovisionReport, Target};
use firedoor_core::api::CredentialItem;
use firedoor_core::webhooks;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

pub struct WebhookConnector {
    pub name: String,
    pub url: String,
    pub secret_env: String,
    pub previous_secret_env: Option<String>,
    pub timeout: Duration,
    http: reqwest::Client,
}

/// What the endpoint may answer to a provisioning call.
#[derive(Debug, Default, Deserialize)]
struct Provisioned {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    link: Option<String>,
}

impl WebhookConnector {
    pub fn new(
        name: &str,
        url: &str,
        secret_env: &str,
        previous_secret_env: Option<&str>,
    ) -> Result<WebhookConnector, ConnectorError> {
        let timeout = Duration::from_secs(10);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConnectorError(format!("integration '{name}': {e}")))?;
        Ok(WebhookConnector {
            name: name.to_string(),
            url: url.to_string(),
            secret_env: secret_env.to_string(),
            previous_secret_env: previous_secret_env.map(str::to_string),
            timeout,
            http,
        })
    }

    /// The signing keys: the current secret, then the previous one if set.
    fn keys(&self) -> Result<Vec<zeroize::Zeroizing<Vec<u8>>>, ConnectorError> {
        let read = |env: &str| -> Result<zeroize::Zeroizing<Vec<u8>>, ConnectorError> {
            let v = std::env::var(env).map_err(|_| {
                ConnectorError(format!(
                    "{env} is not set: calls to the endpoint cannot be signed"
                ))
            })?;
            webhooks::parse_webhook_secret(&v).map_err(|e| ConnectorError(format!("{env}: {e}")))
        };
        let mut keys = vec![read(&self.secret_env)?];
        if let Some(prev) = &self.previous_secret_env {
            if std::env::var(prev).is_ok_and(|v| !v.trim().is_empty()) {
                keys.push(read(prev)?);
            }
        }
        Ok(keys)
    }

    /// POSTs `body` for `action` on `t`; the response body on a 2xx. `absent_ok`:
    /// a 404 or 410 counts as done (nothing to remove).
    async fn call(
        &self,
        action: &str,
        t: &Target<'_>,
        body: serde_json::Value,
        absent_ok: bool,
    ) -> Result<Vec<u8>, ConnectorError> {
        let id = format!("{}-{}-{action}", t.grant_id, t.index);
        self.post(&id, body, absent_ok).await
    }

    async fn post(
        &self,
        id: &str,
        body: serde_json::Value,
        absent_ok: bool,
    ) -> Result<Vec<u8>, ConnectorError> {
        let body = serde_json::to_vec(&body).map_err(|e| ConnectorError(e.to_string()))?;
        let ts = chrono::Utc::now().timestamp();
        let signature = self
            .keys()?
            .iter()
            .map(|k| webhooks::standard_webhooks_signature(k, id, ts, &body))
            .collect::<Vec<_>>()
            .join(" ");
        let resp = self
            .http
            .post(&self.url)
            .header(webhooks::HEADER_ID, id)
            .header(webhooks::HEADER_TIMESTAMP, ts.to_string())
            .header(webhooks::HEADER_SIGNATURE, signature)
            .header("Idempotency-Key", id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    format!(
                        "the endpoint did not answer within {} s",
                        self.timeout.as_secs()
                    )
                } else if e.is_connect() {
                    "could not connect to the endpoint".to_string()
                } else {
                    "the call to the endpoint failed".to_string()
                };
                ConnectorError(format!("{} ({}): {what}", self.name, "webhook"))
            })?;
        let status = resp.status();
        if status.is_success() || (absent_ok && matches!(status.as_u16(), 404 | 410)) {
            Ok(resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
        } else {
            Err(ConnectorError(format!(
                "{} (webhook): the endpoint answered HTTP {}",
                self.name,
                status.as_u16()
            )))
        }
    }

    fn body(action: &str, t: &Target<'_>) -> serde_json::Value {
        json!({
            "action": action,
            "grant_id": t.grant_id.to_string(),
            "index": t.index,
            "user": t.holder,
            "integration": t.resource.integration,
            "resource": t.resource.resource,
            "permission": t.resource.permission,
            "expires_at": t.expires_at,
        })
    }
}

impl Connector for WebhookConnector {
    fn kind(&self) -> &'static str {
        "webhook"
    }
    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<CredentialItem, ConnectorError>> {
        async move {
            let answer = self.call("provision", t, Self::body("provision", t), false).await?;
            let p: Provisioned = if answer.iter().all(u8::is_ascii_whitespace) {
                Provisioned::default()
            } else {
                serde_json::from_slice(&answer).map_err(|_| {
                    ConnectorError(format!(
                        "{} (webhook): the endpoint's answer to provision is not the JSON expected ({{username, secret, host, port, note, link}}, all optional)",
                        self.name
                    ))
                })?
            };
            let note = match (p.note, p.link) {
                (Some(n), Some(l)) => Some(format!("{n} ({l})")),
                (Some(n), None) => Some(n),
                (None, Some(l)) => Some(l),
                (None, None) => None,
            };
            Ok(CredentialItem {
                integration: t.resource.integration.clone(),
                kind: "webhook".into(),
                resource: t.resource.resource.clone(),
                username: p.username.unwrap_or_else(|| t.holder.to_string()),
                secret: p.secret.unwrap_or_default(),
                host: p.host,
                port: p.port,
                note,
            })
        }
        .boxed()
    }
    fn deprovision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<DeprovisionReport, ConnectorError>> {
        async move {
            self.call("deprovision", t, Self::body("deprovision", t), true)
                .await?;
            Ok(DeprovisionReport::default())
        }
        .boxed()
    }
    fn extend<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move {
            // One id per new end, so a second extension is not taken for a retry.
            let id = format!(
                "{}-{}-extend-{}",
                t.grant_id,
                t.index,
                t.expires_at.timestamp()
            );
            self.post(&id, Self::body("extend", t), false).await?;
            Ok(())
        }
        .boxed()
    }
    fn rotate_secret<'a>(
        &'a self,
        role: &'a str,
        new_value: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move {
            // The same value on a retry: the id names the value's hash, not the value.
            use sha2::{Digest, Sha256};
            let h = hex::encode(&Sha256::digest(new_value.as_bytes())[..8]);
            let id = format!("rotate-{role}-{h}");
            self.post(
                &id,
                json!({ "action": "rotate", "role": role, "new_value": new_value }),
                false,
            )
            .await?;
            Ok(())
        }
        .boxed()
    }
}
