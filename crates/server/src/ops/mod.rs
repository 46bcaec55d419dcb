//! The broker's operations, one file per aggregate. Each operation is written once
//! against a unit of work ([`Uow`]): it reads and writes through the store's write
//! transaction, collects the audit records and the notices (live events for their
//! recipients) of what it did, and [`Uow::commit`] appends the records, stores the
//! events, commits, then publishes on the [`EventBus`]. No operation appends,
//! emits, commits and wakes streams by hand.

pub mod devices;
pub mod drills;
pub mod grants;
pub mod incidents;
pub mod oncall;
pub mod oncall_sync;
pub mod outbound;
pub mod requests;
pub mod secrets;
pub mod siem;
pub mod ssh;
pub mod sso;
pub mod unlocks;
pub mod users;
pub mod worker;
// issue 14: uses
pub mod uses;

use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::postgres::PendingEvent;
use crate::store::{Ts, Tx};
use chrono::{DateTime, Utc};
use firedoor_core::api::{EventKind, EventView};
use firedoor_core::audit::AuditEvent;
use firedoor_core::notify::{self, Audience};
use firedoor_core::policy::{Policy, Principal};
use firedoor_core::{GrantId, RequestId};
use std::sync::Arc;
use tokio::sync::watch;

/// Where committed live events are published within this process: open event
/// streams wake and read what is new. (Other replicas hear of it through the store:
/// on PostgreSQL, [`Tx::commit`] sends a NOTIFY when events were written.)
pub trait EventBus: Send + Sync {
    /// Live events were committed.
    fn published(&self);
}

/// The in-process bus: a counter streams watch ([`Broker::events`]).
impl EventBus for watch::Sender<u64> {
    fn published(&self) {
        self.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// A live event, before it is stored for its recipients.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: EventKind,
    pub request_id: Option<RequestId>,
    pub grant_id: Option<GrantId>,
    /// The bundle (or, for break-glass events, the secret) it is about.
    pub bundle: Option<String>,
    pub actor: Option<String>,
    pub message: String,
    pub incident_id: Option<String>,
}

impl Notice {
    pub fn new(kind: EventKind, message: String) -> Notice {
        Notice {
            kind,
            request_id: None,
            grant_id: None,
            bundle: None,
            actor: None,
            message,
            incident_id: None,
        }
    }
    pub fn incident(mut self, id: Option<&str>) -> Notice {
        self.incident_id = id.map(str::to_string);
        self
    }
    pub fn request(mut self, id: Option<RequestId>) -> Notice {
        self.request_id = id;
        self
    }
    pub fn grant(mut self, id: Option<GrantId>) -> Notice {
        self.grant_id = id;
        self
    }
    pub fn bundle(mut self, bundle: Option<&str>) -> Notice {
        self.bundle = bundle.map(str::to_string);
        self
    }
    pub fn actor(mut self, actor: Option<&str>) -> Notice {
        self.actor = actor.map(str::to_string);
        self
    }
}

/// What a stream sends for `notice` (stored once per recipient).
fn notice_body(notice: &Notice, now: DateTime<Utc>) -> Result<String> {
    let view = EventView {
        id: 0,
        incident_id: notice.incident_id.clone(),
        kind: notice.kind.as_str().to_string(),
        at: now,
        request_id: notice.request_id,
        grant_id: notice.grant_id,
        bundle: notice.bundle.clone(),
        actor: notice.actor.clone(),
        message: notice.message.clone(),
    };
    serde_json::to_string(&view).map_err(|e| Error::Corrupt(e.to_string()))
}

/// Each recipient once, in order.
fn distinct(recipients: &[String]) -> Vec<&str> {
    let mut seen = std::collections::BTreeSet::new();
    recipients
        .iter()
        .filter(|r| seen.insert(r.as_str()))
        .map(String::as_str)
        .collect()
}

/// Rows read by a page at a time that are at least this many: a caller who may see
/// few rows of a long list reads it in few steps.
const MIN_PAGE: usize = 100;

/// The first `limit` rows of a list that `keep` lets through, read a page at a
/// time: `page(after, n)` reads at most `n` rows after the one whose key (as `key`
/// gives it) is `after`, or from the start. Stops at the first page that is not full.
pub(crate) async fn first_kept<R, Fut>(
    limit: usize,
    mut page: impl FnMut(Option<(Ts, String)>, i64) -> Fut,
    key: impl Fn(&R) -> (Ts, String),
    mut keep: impl FnMut(&R) -> bool,
) -> Result<Vec<R>>
where
    Fut: std::future::Future<Output = Result<Vec<R>>>,
{
    let size = limit.max(MIN_PAGE);
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let rows = page(after.take(), size as i64).await?;
        let full = rows.len() == size;
        after = rows.last().map(&key);
        for r in rows {
            if keep(&r) {
                out.push(r);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

/// Stores one copy of `notice` per recipient (each once), stamped `now`.
pub(crate) async fn store_notice(
    tx: &mut Tx,
    recipients: &[String],
    notice: &Notice,
    now: DateTime<Utc>,
) -> Result<()> {
    let body = notice_body(notice, now)?;
    let to = distinct(recipients);
    if tx.is_postgres() {
        for r in to {
            tx.pend_event(PendingEvent {
                recipient: r.to_string(),
                kind: notice.kind.as_str().to_string(),
                at: now,
                body: body.clone(),
            });
        }
        return Ok(());
    }
    tx.events()
        .insert_for(&to, notice.kind.as_str(), Ts(now), &body)
        .await
}

/// One operation's unit of work: the store's write transaction (reach it through
/// `Deref`), the audit records and notices the operation collected, and the bus to
/// publish on after the commit. Dropped without [`Uow::commit`], nothing of it
/// happened.
pub struct Uow<'b> {
    tx: Tx,
    bus: &'b dyn EventBus,
    now: DateTime<Utc>,
    records: Vec<(Actor, String, AuditEvent)>,
    notices: Vec<(Vec<String>, Notice)>,
    /// The users the store holds, read once for the first audience resolved.
    users: Option<Vec<Principal>>,
    /// The policy, for who is on call when an audience is resolved.
    policy: Arc<Policy>,
}

impl<'b> Uow<'b> {
    /// A unit of work over `tx`; its records and events are stamped `now`.
    pub fn new(tx: Tx, bus: &'b dyn EventBus, policy: Arc<Policy>, now: DateTime<Utc>) -> Uow<'b> {
        Uow {
            tx,
            bus,
            now,
            records: Vec::new(),
            notices: Vec::new(),
            users: None,
            policy,
        }
    }

    /// When the operation happens (its records' and events' time).
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Records `event` about `subject`, done by `actor` (appended at commit, in the
    /// order recorded).
    pub fn record(&mut self, actor: &Actor, subject: &str, event: AuditEvent) {
        self.records
            .push((actor.clone(), subject.to_string(), event));
    }

    /// The users the store holds, as they are at this unit's time (those on call
    /// then are in the audiences their schedules name). Once per unit, from the
    /// store's directory (one read of its version while this process's copy is
    /// current, see [`crate::store::directory`]).
    pub async fn users_now(&mut self) -> Result<&[Principal]> {
        if self.users.is_none() {
            let dir = self.tx.directory(Ts(self.now)).await?;
            let mut users = crate::auth::principals(&dir.users)?;
            let facts = oncall::facts_from(&dir, &self.policy, self.now);
            oncall::apply_roster(&self.policy, &facts, self.now, &mut users);
            self.users = Some(users);
        }
        Ok(self.users.as_deref().unwrap_or_default())
    }

    /// Tells `audience` (see [`firedoor_core::notify`]), among the users the store
    /// holds now, of `notice` (stored at commit).
    pub async fn notify(&mut self, audience: Audience<'_>, notice: Notice) -> Result<()> {
        let to = match audience {
            // One person: no need to read the users.
            Audience::Person(p) => vec![p.to_string()],
            _ => notify::recipients(audience, self.users_now().await?),
        };
        self.notify_to(to, notice);
        Ok(())
    }

    /// Tells `person` too of the notice collected last.
    pub fn copy_last_notice_to(&mut self, person: &str) {
        if let Some((to, _)) = self.notices.last_mut() {
            to.push(person.to_string());
        }
    }

    /// Tells exactly `recipients` of `notice` (stored at commit).
    pub fn notify_to(&mut self, recipients: Vec<String>, notice: Notice) {
        self.notices.push((recipients, notice));
    }

    /// Appends the audit records, stores the events, commits, then publishes on the
    /// bus if any notice was collected.
    ///
    /// On PostgreSQL the records and events go to pending tables in the unit's own
    /// transaction and are chained after its commit (see [`Tx::commit`]).
    pub async fn commit(self) -> Result<()> {
        let Uow {
            mut tx,
            bus,
            now,
            records,
            notices,
            policy,
            ..
        } = self;
        for (actor, subject, event) in records {
            crate::audit::append(&mut tx, &actor, &subject, event, now).await?;
        }
        for (to, notice) in &notices {
            store_notice(&mut tx, to, notice, now).await?;
            outbound::enqueue(&mut tx, &policy, to, notice, now).await?;
        }
        // On PostgreSQL the chaining round that gives the events their ids sends a
        // NOTIFY, which wakes this replica's streams as it wakes the others'.
        let local = !tx.is_postgres();
        tx.commit().await?;
        if local && !notices.is_empty() {
            bus.published();
        }
        Ok(())
    }
}

impl std::ops::Deref for Uow<'_> {
    type Target = Tx;
    fn deref(&self) -> &Tx {
        &self.tx
    }
}

impl std::ops::DerefMut for Uow<'_> {
    fn deref_mut(&mut self) -> &mut Tx {
        &mut self.tx
    }
}

impl Broker {
    /// Begins a unit of work happening at `now`.
    pub async fn uow_at(&self, now: DateTime<Utc>) -> Result<Uow<'_>> {
        Ok(Uow::new(
            self.write_tx().await?,
            &self.events,
            self.policy.clone(),
            now,
        ))
    }

    /// Begins a unit of work happening at `now` that touches only the requests or
    /// grants named in `items` besides appending audit records and events (see
    /// [`crate::store::Scope::Only`]): on PostgreSQL it runs beside other such
    /// units of other items.
    pub async fn uow_for(&self, items: &[&str], now: DateTime<Utc>) -> Result<Uow<'_>> {
        let scope = crate::store::Scope::Only(items.iter().map(|s| s.to_string()).collect());
        Ok(Uow::new(
            self.write_tx_in(scope).await?,
            &self.events,
            self.policy.clone(),
            now,
        ))
    }

    /// The bus committed live events are published on.
    pub fn bus(&self) -> &dyn EventBus {
        &self.events
    }
}
