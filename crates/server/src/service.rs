//! The broker's app struct ([`Broker`]): the store, policy, connectors, clock and
//! keys its operations share, and the helpers they use. The operations themselves
//! are in [`crate::ops`], one file per aggregate, each written against a unit of
//! work ([`crate::ops::Uow`]).

use crate::clock::Clock;
use crate::connectors::Connectors;
use crate::error::{Error, Result};
use crate::store::{Store, Tx};
use crate::vault::BrokerKey;
use chrono::{DateTime, Duration, Utc};
use firedoor_core::api::EventView;
use firedoor_core::policy::{Bundle, Flow, Policy};
use firedoor_core::ErrorCode;
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Live events are kept this long unless configured (`serve --event-retention`).
pub const DEFAULT_EVENT_RETENTION_DAYS: i64 = 7;
/// How often the worker prunes live events.
pub const PRUNE_EVERY: Duration = Duration::minutes(10);

/// Everything the broker's operations share.
pub struct Broker {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub connectors: Connectors,
    pub clock: Arc<dyn Clock>,
    pub key: BrokerKey,
    /// Bumped after every commit that wrote live events.
    pub events: watch::Sender<u64>,
    /// Hands committed events to open streams (see [`crate::fanout`]).
    pub fanout: Arc<crate::fanout::Hub>,
    /// Wakes the background worker early.
    pub wake_worker: Notify,
    /// Set when the broker stops, so long-lived event streams end.
    pub closing: watch::Sender<bool>,
    /// Rate limit of security alerts for refused unlock uploads, per device.
    pub rejection_alerts: crate::breakglass::RejectionAlerts,
    /// How long live events are kept (default [`DEFAULT_EVENT_RETENTION_DAYS`]).
    pub event_retention: Duration,
    last_prune: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Who may authenticate changed; open event streams (see [`crate::access`]).
    pub access: crate::access::AccessState,
    /// Refused incident webhook deliveries, per source (their audit records are
    /// rate-limited).
    pub webhook_refusals: crate::ops::incidents::Refusals,
    /// Synced on-call schedules: one refresh pass at a time in this process, and
    /// the unmapped provider users already logged.
    pub(crate) oncall_sync: crate::ops::oncall_sync::SyncTurn,
    /// Single sign-on: the IdP's discovery document and keys, cached.
    pub(crate) sso: crate::ops::sso::SsoState,
}

pub(crate) fn corrupt(what: &str, v: &str) -> Error {
    Error::Corrupt(format!("unknown {what} '{v}'"))
}

pub use crate::ops::requests::check_idempotency_key;

impl Broker {
    /// A broker over an open store (no HTTP server, no worker: see
    /// [`crate::start`] for those).
    pub fn new(
        store: Store,
        policy: Policy,
        connectors: Connectors,
        clock: Arc<dyn Clock>,
        key: BrokerKey,
    ) -> Broker {
        let (events, _) = watch::channel(0u64);
        Broker {
            store,
            policy: Arc::new(policy),
            connectors,
            clock,
            key,
            events,
            wake_worker: Notify::new(),
            closing: watch::channel(false).0,
            rejection_alerts: Default::default(),
            access: crate::access::AccessState::default(),
            event_retention: Duration::days(DEFAULT_EVENT_RETENTION_DAYS),
            fanout: Arc::default(),
            last_prune: std::sync::Mutex::new(None),
            webhook_refusals: Default::default(),
            oncall_sync: Default::default(),
            sso: Default::default(),
        }
    }

    pub async fn write_tx(&self) -> Result<Tx> {
        self.write_tx_in(crate::store::Scope::Everything).await
    }

    /// A write transaction that keeps other writers out of `scope` only (timed as
    /// `begin`).
    pub async fn write_tx_in(&self, scope: crate::store::Scope) -> Result<Tx> {
        let timer = crate::metrics::store_timer("begin");
        let tx = self.store.begin_in(scope).await?;
        timer.done();
        Ok(tx)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn bundle_and_flow(&self, bundle: &str) -> Result<(&Bundle, &Flow)> {
        let b = self.policy.bundle(bundle).ok_or_else(|| {
            if firedoor_core::policy::valid_name(bundle) {
                Error::rule(ErrorCode::NotFound, format!("no bundle named '{bundle}'"))
            } else {
                Error::rule(
                    ErrorCode::NotFound,
                    "no such bundle: bundle names are 1-64 of a-z, 0-9, '-' and '_'",
                )
            }
        })?;
        let f = self.policy.flow_for_bundle(bundle).ok_or_else(|| {
            Error::rule(
                ErrorCode::NotEligible,
                format!("bundle '{bundle}' is not governed by any access flow, so nobody can request it"),
            )
        })?;
        Ok((b, f))
    }

    pub(crate) fn flow(&self, name: &str) -> Result<&Flow> {
        self.policy.flows.get(name).ok_or_else(|| {
            Error::Corrupt(format!(
                "flow '{name}' of a stored request is no longer in the policy"
            ))
        })
    }

    pub(crate) fn title(&self, bundle: &str) -> String {
        self.policy
            .bundle(bundle)
            .map(|b| b.title.clone())
            .unwrap_or_else(|| bundle.to_string())
    }

    /// Wakes this process's event streams (see [`crate::ops::EventBus`]).
    pub fn events_changed(&self) {
        self.bus().published();
    }

    /// Whether pruning live events is due at `now` (at most every
    /// [`PRUNE_EVERY`]); if so, records that it runs now.
    pub(crate) fn prune_due(&self, now: DateTime<Utc>) -> bool {
        let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now - t < PRUNE_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    pub async fn events_after(&self, user: &str, after: i64, limit: i64) -> Result<Vec<EventView>> {
        let rows = self.store.events().after(user, after, limit).await?;
        rows.into_iter()
            .map(|(id, body)| {
                let mut e: EventView = serde_json::from_str(&body)
                    .map_err(|e| Error::Corrupt(format!("event {id}: {e}")))?;
                e.id = id;
                Ok(e)
            })
            .collect()
    }
}
