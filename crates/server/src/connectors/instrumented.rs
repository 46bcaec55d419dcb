//! A connector wrapper that times every call to a target system and counts the
//! failures, by integration and operation (see [`crate::metrics`]).

use super::{Connector, ConnectorError, Connectors, DeprovisionReport, Target};
use firedoor_core::api::CredentialItem;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;

/// Wraps every connector of `connectors` so its calls are measured.
pub fn wrap(connectors: Connectors) -> Connectors {
    connectors
        .into_iter()
        .map(|(name, inner)| {
            let c: Arc<dyn Connector> = Arc::new(Instrumented {
                integration: name.clone(),
                inner,
            });
            (name, c)
        })
        .collect()
}

struct Instrumented {
    integration: String,
    inner: Arc<dyn Connector>,
}

impl Instrumented {
    fn timed<'a, T: Send + 'a>(
        &'a self,
        operation: &'static str,
        call: BoxFuture<'a, Result<T, ConnectorError>>,
    ) -> BoxFuture<'a, Result<T, ConnectorError>> {
        Box::pin(async move {
            let start = Instant::now();
            let out = call.await;
            crate::metrics::connector_call(
                &self.integration,
                operation,
                start.elapsed(),
                out.is_ok(),
            );
            out
        })
    }
}

impl Connector for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<CredentialItem, ConnectorError>> {
        self.timed("provision", self.inner.provision(t))
    }
    fn deprovision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<DeprovisionReport, ConnectorError>> {
        self.timed("deprovision", self.inner.deprovision(t))
    }
    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        self.timed("check", self.inner.check())
    }
    fn extend<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        self.timed("extend", self.inner.extend(t))
    }
    fn rotate_secret<'a>(
        &'a self,
        role: &'a str,
        new_value: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        self.timed("rotate_secret", self.inner.rotate_secret(role, new_value))
    }
    fn end_sessions<'a>(&'a self, role: &'a str) -> BoxFuture<'a, Result<u64, ConnectorError>> {
        self.timed("end_sessions", self.inner.end_sessions(role))
    }
}
