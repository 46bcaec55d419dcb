//! SSH host sets: nothing is created on the hosts. A grant's access is the
//! certificate its holder's device asks for once the grant is active
//! (`POST /grants/{id}/ssh-certificate`, see `crate::ops::ssh`), valid until the
//! grant's expiry; a grant that ends early puts its certificates on the KRL hosts
//! load. Provisioning only describes what the grant gives.

use super::{Connector, ConnectorError, DeprovisionReport, Target};
use firedoor_core::api::CredentialItem;
use firedoor_core::ssh::SshHostSet;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::collections::BTreeMap;

pub struct SshConnector {
    pub host_sets: BTreeMap<String, SshHostSet>,
}

impl Connector for SshConnector {
    fn kind(&self) -> &'static str {
        "ssh"
    }
    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<CredentialItem, ConnectorError>> {
        async move {
            let set = self.host_sets.get(&t.resource.resource).ok_or_else(|| {
                ConnectorError(format!("no host set '{}'", t.resource.resource))
            })?;
            let access = set.permissions.get(&t.resource.permission).ok_or_else(|| {
                ConnectorError(format!(
                    "host set '{}' has no level '{}'",
                    t.resource.resource, t.resource.permission
                ))
            })?;
            Ok(CredentialItem {
                integration: t.resource.integration.clone(),
                kind: "ssh".into(),
                resource: t.resource.resource.clone(),
                username: set.user.clone().unwrap_or_default(),
                // No password: the device's own key, certified for this grant.
                secret: String::new(),
                host: set.hosts.first().cloned(),
                port: None,
                note: Some(format!(
                    "SSH certificate for {} on {} (your device makes a key for this grant and the broker certifies it until the grant ends)",
                    access.principals.join(", "),
                    if set.hosts.is_empty() {
                        t.resource.resource.clone()
                    } else {
                        set.hosts.join(", ")
                    }
                )),
            })
        }
        .boxed()
    }
    fn deprovision<'a>(
        &'a self,
        _t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<DeprovisionReport, ConnectorError>> {
        // The grant's certificates are revoked by its state (the KRL lists those of
        // grants no longer active); nothing lives on the hosts.
        async move { Ok(DeprovisionReport::default()) }.boxed()
    }
    fn extend<'a>(&'a self, _t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        // The device asks for a new certificate after an extension.
        async move { Ok(()) }.boxed()
    }
}
