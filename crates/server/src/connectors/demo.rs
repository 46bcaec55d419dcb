//! DEMO connector: provisions nothing real. It issues a random, clearly labelled
//! credential so the demo policy runs with no external system. It keeps the set of
//! live demo credentials in memory so tests can see provisioning and removal happen,
//! and the current value of each break-glass "role" it rotates, so tests can see
//! which value is live.

use super::{Connector, ConnectorError, DeprovisionReport, Target};
use firedoor_core::api::CredentialItem;
use futures::future::BoxFuture;
use futures::FutureExt;
use rand::distributions::{Alphanumeric, DistString};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

#[derive(Default)]
pub struct DemoConnector {
    live: Mutex<BTreeSet<String>>,
    secrets: Mutex<BTreeMap<String, String>>,
    fail_rotations: Mutex<Option<String>>,
}

impl DemoConnector {
    fn username(t: &Target<'_>) -> String {
        format!(
            "demo_{}_{}_{}",
            t.holder,
            &t.grant_id.uuid().simple().to_string()[..12],
            t.index
        )
    }
    /// Usernames currently provisioned.
    pub fn live(&self) -> BTreeSet<String> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// The value a break-glass role's password currently has in this (pretend)
    /// target, if it was ever rotated.
    pub fn live_secret(&self, role: &str) -> Option<String> {
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(role)
            .cloned()
    }
    /// Makes every rotation report `error` until called with `None` (tests). The
    /// value is applied all the same, as when a target takes a new password but the
    /// answer is lost: a correct broker retries with the same value.
    pub fn fail_rotations(&self, error: Option<&str>) {
        *self
            .fail_rotations
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = error.map(String::from);
    }
}

impl Connector for DemoConnector {
    fn kind(&self) -> &'static str {
        "demo"
    }
    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<CredentialItem, ConnectorError>> {
        async move {
            let username = Self::username(t);
            self.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(username.clone());
            Ok(CredentialItem {
                integration: t.resource.integration.clone(),
                kind: "demo".into(),
                resource: t.resource.resource.clone(),
                username,
                secret: format!(
                    "demo-{}",
                    Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
                ),
                host: None,
                port: None,
                note: Some(format!(
                    "DEMO credential: nothing real was provisioned ({} on {})",
                    t.resource.permission, t.resource.resource
                )),
            })
        }
        .boxed()
    }
    fn deprovision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<DeprovisionReport, ConnectorError>> {
        async move {
            self.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&Self::username(t));
            Ok(DeprovisionReport::default())
        }
        .boxed()
    }
    fn extend<'a>(&'a self, _t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move { Ok(()) }.boxed()
    }
    fn rotate_secret<'a>(
        &'a self,
        role: &'a str,
        new_value: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move {
            self.secrets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(role.to_string(), new_value.to_string());
            match self
                .fail_rotations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                Some(e) => Err(ConnectorError(e)),
                None => Ok(()),
            }
        }
        .boxed()
    }
}
