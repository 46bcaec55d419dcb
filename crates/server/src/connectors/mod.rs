//! Connectors make grants real in target systems. Each integration of the policy gets
//! one. Provisioning and deprovisioning are idempotent: names derive from the grant
//! id, so a retry after a crash finds (and replaces or removes) what an earlier
//! attempt left behind.

pub mod demo;
pub mod instrumented;
pub mod mysql;
pub mod postgres;
pub mod ssh;
pub mod webhook;

use chrono::{DateTime, Utc};
use firedoor_core::api::CredentialItem;
use firedoor_core::policy::{IntegrationKind, Policy, ResourceGrant};
use firedoor_core::GrantId;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a connector is asked to provision or remove.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub grant_id: GrantId,
    /// Position of the resource in the bundle, so names stay unique per grant.
    pub index: usize,
    pub holder: &'a str,
    pub resource: &'a ResourceGrant,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectorError(pub String);

/// An object a grant's account created in the target system and left behind, and
/// what the connector did with it. Recorded in the audit record of the revoke or
/// expiry, so it says who made what, where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Leftover {
    pub integration: String,
    /// The database (or other container) it is in.
    pub database: String,
    /// e.g. `function`, `table`, `view`, `sequence`.
    pub kind: String,
    /// The object's qualified name (with argument types for routines).
    pub identity: String,
    /// The grant's account that created (owned) it.
    pub created_by: String,
    /// What was done, e.g. `made SECURITY INVOKER, EXECUTE revoked, reassigned to firedoor_orphans`.
    pub action: String,
}

/// What deprovisioning found and did beyond removing the access itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeprovisionReport {
    pub leftovers: Vec<Leftover>,
}

pub trait Connector: Send + Sync + 'static {
    /// A short label for logs and the audit log.
    fn kind(&self) -> &'static str;
    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<CredentialItem, ConnectorError>>;
    /// Removes the access. Succeeds if there is nothing (left) to remove. Reports the
    /// objects the grant's account left behind and what was done with them.
    fn deprovision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<DeprovisionReport, ConnectorError>>;
    /// Checked when the broker starts: refuses a setup the broker must not run with
    /// (e.g. a PostgreSQL admin that is a superuser). A target that cannot be reached
    /// is not an error here.
    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }
    /// Moves the backstop expiry in the target system after an extension.
    fn extend<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>>;
    /// Sets a break-glass secret: `role`'s password becomes `new_value`. Must be
    /// idempotent (a retry after a crash sends the same value again) and must never
    /// put `new_value` in an error message or a log line.
    fn rotate_secret<'a>(
        &'a self,
        role: &'a str,
        new_value: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        let _ = (role, new_value);
        Box::pin(async move {
            Err(ConnectorError(format!(
                "this integration ({}) cannot rotate secrets",
                self.kind()
            )))
        })
    }
    /// issue 14: uses — ends the open sessions of `role` (made with its old
    /// password) after a rotation; returns how many. Only PostgreSQL does (the
    /// policy refuses `end_sessions` for other integrations).
    fn end_sessions<'a>(&'a self, role: &'a str) -> BoxFuture<'a, Result<u64, ConnectorError>> {
        let _ = role;
        Box::pin(async move {
            Err(ConnectorError(format!(
                "this integration ({}) cannot end sessions",
                self.kind()
            )))
        })
    }
}

pub type Connectors = BTreeMap<String, Arc<dyn Connector>>;

/// Builds one connector per integration of the policy. Fails if one cannot be set up
/// (e.g. its admin URL variable is missing).
pub fn from_policy(policy: &Policy) -> Result<Connectors, ConnectorError> {
    let mut out: Connectors = BTreeMap::new();
    for (name, integ) in &policy.integrations {
        let c: Arc<dyn Connector> = match &integ.kind {
            IntegrationKind::Demo => Arc::new(demo::DemoConnector::default()),
            IntegrationKind::Ssh { host_sets } => Arc::new(ssh::SshConnector {
                host_sets: host_sets.clone(),
            }),
            IntegrationKind::Webhook {
                url,
                secret_env,
                previous_secret_env,
            } => Arc::new(webhook::WebhookConnector::new(
                name,
                url,
                secret_env,
                previous_secret_env.as_deref(),
            )?),
            IntegrationKind::Postgres {
                url_env,
                connect_host,
                ..
            } => {
                let url = std::env::var(url_env).map_err(|_| {
                    ConnectorError(format!(
                        "integration '{name}': environment variable {url_env} (the admin connection URL) is not set"
                    ))
                })?;
                Arc::new(postgres::PostgresConnector::new(
                    name,
                    &url,
                    connect_host.clone(),
                    integ.kind.clone(),
                )?)
            }
            IntegrationKind::Mysql {
                url_env,
                connect_host,
                ..
            } => {
                let url = std::env::var(url_env).map_err(|_| {
                    ConnectorError(format!(
                        "integration '{name}': environment variable {url_env} (the admin connection URL) is not set"
                    ))
                })?;
                // What the bundles grant where, so the admin's privileges are checked
                // at start against what the policy will ask of it.
                let databases: Vec<(String, String)> = policy
                    .bundles
                    .values()
                    .flat_map(|b| &b.resources)
                    .filter(|r| &r.integration == name)
                    .map(|r| (r.resource.clone(), r.permission.clone()))
                    .collect();
                Arc::new(mysql::MysqlConnector::new(
                    name,
                    &url,
                    connect_host.clone(),
                    integ.kind.clone(),
                    &databases,
                )?)
            }
        };
        out.insert(name.clone(), c);
    }
    Ok(out)
}
