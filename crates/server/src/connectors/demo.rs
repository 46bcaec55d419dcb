//! DEMO connector: provisions nothing real. It issues a random, clearly labelled
//! credential so the demo policy runs with no external system. It keeps the set of
//! live demo credentials in memory so tests can see provisioning and removal happen.

use super::{Connector, ConnectorError, Target};
use firedoor_core::api::CredentialItem;
use futures::future::BoxFuture;
use futures::FutureExt;
use rand::distributions::{Alphanumeric, DistString};
use std::collections::BTreeSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct DemoConnector {
    live: Mutex<BTreeSet<String>>,
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
    fn deprovision<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move {
            self.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&Self::username(t));
            Ok(())
        }
        .boxed()
    }
    fn extend<'a>(&'a self, _t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move { Ok(()) }.boxed()
    }
}
