//! Access ends everywhere when a token or a person ends (design: "Security stance").
//!
//! - Event streams belong to one token: each stream re-checks its token against the
//!   store and the clock whenever who may authenticate changed ([`AccessState::bump`]:
//!   by this broker at once, and by [`watch_store`], which compares a fingerprint of
//!   revoked and expired tokens and disabled users every [`STREAM_RECHECK`], for what
//!   the CLI, another replica or the clock changed), and at least every
//!   [`STREAM_SAFETY_RECHECK`]; it ends when the token was revoked, expired, or its
//!   user was disabled. One cheap query per broker per tick, however many streams are
//!   open. At most [`MAX_STREAMS_PER_USER`] streams per user.
//! - Disabling a user revokes their tokens and devices, revokes their live grants
//!   through the connectors, cancels their pending requests and marks every secret
//!   sealed to one of their devices for rotation (as revoking a device does).
//! - The worker withdraws envelopes held by people who are no longer eligible
//!   (groups changed, policy changed at restart, user disabled) and marks the secret
//!   for rotation (at start, after any change made through this broker, and at least
//!   every [`ELIGIBILITY_CHECK_EVERY`] for changes the CLI wrote); and it rotates
//!   every secret at least every `max_age`.

use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::{Store, Ts};
use chrono::Duration;
use firedoor_core::audit::AuditEvent;
use firedoor_core::lifecycle::CLAIM_LEASE_SECS;
use firedoor_core::policy::Principal;
use firedoor_core::GrantId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Open event streams one user may have at once.
pub const MAX_STREAMS_PER_USER: usize = 8;
/// How often the broker looks for tokens or people that ended (see [`watch_store`]).
pub const STREAM_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);
/// Each open stream re-checks its own token at least this often anyway.
pub const STREAM_SAFETY_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Every [`STREAM_RECHECK`] until `stop`: compares the store's access fingerprint
/// (tokens revoked or expired by now, users disabled) with the last one and, when it
/// changed, tells open streams to re-check their token. Store errors are logged and
/// retried; streams still re-check on their own every [`STREAM_SAFETY_RECHECK`].
pub async fn watch_store(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut last: Option<(i64, i64)> = None;
    let mut tick = tokio::time::interval(STREAM_RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match broker
            .store
            .users()
            .access_fingerprint(Ts(broker.now()))
            .await
        {
            Ok(fp) => {
                if last.is_some_and(|l| l != fp) {
                    broker.access.bump();
                }
                last = Some(fp);
            }
            Err(e) => tracing::warn!(error = %e, "checking who may authenticate"),
        }
    }
}

/// Who may authenticate changed (bumped in this process), and the open streams.
pub struct AccessState {
    epoch: watch::Sender<u64>,
    streams: Arc<Mutex<HashMap<String, usize>>>,
    /// When the worker last compared envelope holders with who is eligible, and the
    /// epoch it saw then.
    last_check: Mutex<Option<(std::time::Instant, u64)>>,
}

/// The worker compares envelope holders with who is eligible at start, whenever
/// this broker changed who may authenticate, and at least this often (for changes
/// the CLI wrote to the store).
pub const ELIGIBILITY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for AccessState {
    fn default() -> Self {
        AccessState {
            epoch: watch::channel(0).0,
            streams: Arc::default(),
            last_check: Mutex::new(None),
        }
    }
}

impl AccessState {
    /// Tells open streams to re-check their token now.
    pub fn bump(&self) {
        self.epoch.send_modify(|e| *e = e.wrapping_add(1));
    }
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }
    /// Takes one of `user`'s stream slots; `None` when all are taken. The slot is
    /// freed when the returned guard is dropped (the stream ended or the client left).
    pub fn open_stream(&self, user: &str) -> Option<StreamSlot> {
        let mut m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(user.to_string()).or_insert(0);
        if *n >= MAX_STREAMS_PER_USER {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            user: user.to_string(),
            streams: self.streams.clone(),
        })
    }
    /// Whether the eligibility check is due now (and if so, records that it ran).
    fn eligibility_check_due(&self) -> bool {
        let epoch = *self.epoch.borrow();
        let mut last = self.last_check.lock().unwrap_or_else(|p| p.into_inner());
        let due = match *last {
            None => true,
            Some((at, seen)) => seen != epoch || at.elapsed() >= ELIGIBILITY_CHECK_EVERY,
        };
        if due {
            *last = Some((std::time::Instant::now(), epoch));
        }
        due
    }
    /// Open streams of `user` (tests, diagnostics).
    pub fn open_streams(&self, user: &str) -> usize {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .copied()
            .unwrap_or(0)
    }
}

/// One open event stream's slot.
pub struct StreamSlot {
    user: String,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// What disabling a user did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Disabled {
    pub user: String,
    pub tokens_revoked: u64,
    pub devices_revoked: usize,
    pub grants_revoked: usize,
    pub requests_cancelled: u64,
    /// Secrets marked for rotation because one of the user's devices held them.
    pub rotating: Vec<String>,
}

/// A user row with its disabled mark.
struct UserRow {
    principal: Principal,
    disabled: bool,
}

async fn users_with_state(store: &Store) -> Result<Vec<UserRow>> {
    let rows = store.users().all_with_state().await?;
    rows.into_iter()
        .map(|(name, groups_json, admin, disabled_at)| {
            let groups: Vec<String> = serde_json::from_str(&groups_json)
                .map_err(|e| Error::Corrupt(format!("groups of user {name}: {e}")))?;
            Ok(UserRow {
                principal: Principal {
                    name,
                    groups,
                    admin: admin != 0,
                    oncall: Vec::new(),
                },
                disabled: disabled_at.is_some(),
            })
        })
        .collect()
}

/// Whether `name` is disabled (unknown users count as not disabled).
pub async fn is_disabled(store: &Store, name: &str) -> Result<bool> {
    Ok(matches!(
        store.users().disabled_at(name).await?,
        Some(Some(_))
    ))
}

impl Broker {
    /// Worker step: deletes envelopes whose holder may no longer unlock the secret
    /// (device revoked, user disabled or no longer in its unlock audience, policy
    /// changed) and marks the secret for rotation, since they may keep a copy.
    /// At start this compares who holds envelopes with who is eligible now.
    pub async fn withdraw_ineligible_envelopes(&self) -> Result<Vec<String>> {
        // Holders first, then the users: a holder's user exists before their device
        // and is never deleted, so every holder is found as they are now. (Read the
        // other way round, a user added, enrolled and sealed for between the two
        // reads looked unknown, and their fresh envelope was withdrawn.)
        let held = self.store.envelopes().holders().await?;
        let users: BTreeMap<String, UserRow> = users_with_state(&self.store)
            .await?
            .into_iter()
            .map(|u| (u.principal.name.clone(), u))
            .collect();
        // secret -> (device, user, version) no longer eligible
        let mut gone: BTreeMap<String, Vec<(String, String, i64)>> = BTreeMap::new();
        for (secret, device, user, version, revoked) in held {
            let Some(sp) = self.policy.secret(&secret) else {
                continue; // not served any more; nothing to rotate it with
            };
            let eligible = revoked.is_none()
                && users
                    .get(&user)
                    .is_some_and(|u| !u.disabled && sp.may_unlock(&u.principal));
            if !eligible {
                gone.entry(secret)
                    .or_default()
                    .push((device, user, version));
            }
        }
        let mut withdrawn = Vec::new();
        for (secret, holders) in gone {
            let now = self.now();
            let mut uow = self.uow_at(now).await?;
            let mut deleted = 0;
            for (device, _, version) in &holders {
                if uow
                    .envelopes()
                    .delete_version(device, &secret, *version)
                    .await?
                {
                    deleted += 1;
                    self.mark_due(&mut uow, &secret, *version, now, "eligibility_changed")
                        .await?;
                }
            }
            if deleted == 0 {
                continue;
            }
            let users: BTreeSet<&str> = holders.iter().map(|h| h.1.as_str()).collect();
            uow.record(
                &Actor::System,
                &secret,
                AuditEvent::EnvelopesWithdrawn {
                    devices: holders.iter().map(|h| h.0.clone()).collect(),
                    users: users.iter().map(|u| u.to_string()).collect(),
                    reason: "eligibility_changed".into(),
                },
            );
            uow.commit().await?;
            withdrawn.push(secret);
        }
        Ok(withdrawn)
    }

    /// Worker step: marks for rotation every secret whose value is older than its
    /// `max_age`.
    pub async fn mark_aged_secrets(&self) -> Result<()> {
        let now = self.now();
        let rows = self.store.secrets().not_due().await?;
        for (name, version, updated_at) in rows {
            let Some(sp) = self.policy.secret(&name) else {
                continue;
            };
            let Some(updated) = updated_at else {
                continue;
            };
            let due = updated.0 + Duration::seconds(sp.max_age_secs);
            if due > now {
                continue;
            }
            let mut uow = self.uow_at(now).await?;
            self.mark_due(&mut uow, &name, version, due, "max_age")
                .await?;
            uow.commit().await?;
        }
        Ok(())
    }

    /// Worker step: grants that became active for a user who is disabled (a
    /// provisioning that finished after the disable) are revoked.
    async fn revoke_grants_of_disabled(&self) -> Result<()> {
        if !self.store.access().disabled_hold_live_grants().await? {
            return Ok(());
        }
        let now = self.now();
        let grants = {
            let mut uow = self.uow_at(now).await?;
            let g = uow
                .access()
                .revoke_live_grants_of_disabled(Ts(now + Duration::seconds(CLAIM_LEASE_SECS)))
                .await?;
            uow.commit().await?;
            g
        };
        for id in grants {
            if let Ok(gid) = id.parse::<GrantId>() {
                self.finish_end(&gid).await?;
            }
        }
        Ok(())
    }

    /// The worker's access steps (see the module's doc).
    pub async fn access_due_work(&self) -> Result<()> {
        self.revoke_grants_of_disabled().await?;
        if self.access.eligibility_check_due() {
            self.withdraw_ineligible_envelopes().await?;
        }
        self.mark_aged_secrets().await?;
        Ok(())
    }
}
