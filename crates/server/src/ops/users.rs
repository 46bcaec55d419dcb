//! Users: sign-out (revoke one's own token), disable, set groups. See
//! [`crate::access`] for what ending a token or a person does to open streams.

use crate::access::Disabled;
use crate::audit::Actor;
use crate::auth::Session;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::Ts;
use chrono::Duration;
use firedoor_core::access::{check_admin, AdminAction};
use firedoor_core::audit::AuditEvent;
use firedoor_core::lifecycle::CLAIM_LEASE_SECS;
use firedoor_core::policy::valid_name;
use firedoor_core::{ErrorCode, GrantId};
use std::collections::BTreeSet;

fn check_groups(groups: &[String]) -> Result<Vec<String>> {
    for g in groups {
        if !valid_name(g) {
            return Err(Error::rule(
                ErrorCode::InvalidRequest,
                format!("'{g}' is not a valid group name: use 1-64 of a-z, 0-9, '-' and '_'"),
            ));
        }
    }
    if groups.len() > 100 {
        return Err(Error::rule(
            ErrorCode::InvalidRequest,
            "a user is in at most 100 groups",
        ));
    }
    let mut g = groups.to_vec();
    g.sort();
    g.dedup();
    Ok(g)
}

impl Broker {
    /// Revokes the token a request came with (sign-out).
    pub async fn revoke_own_token(&self, s: &Session) -> Result<()> {
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        if !uow.users().revoke_token(&s.token_id, Ts(now)).await? {
            return Err(Error::rule(ErrorCode::Conflict, "token is already revoked"));
        }
        let actor = Actor::User(s.principal.clone());
        uow.record(
            &actor,
            &s.token_id,
            AuditEvent::TokenRevoked {
                user: s.principal.name.clone(),
                by: Some("sign_out".into()),
            },
        );
        // Signed in through SSO: the session behind the token ends too.
        if let Some(session) = uow.sso().session_of_token(&s.token_id).await? {
            self.revoke_session_in(&mut uow, &actor, &session, &s.principal.name, "sign_out")
                .await?;
        }
        uow.commit().await?;
        self.access.bump();
        Ok(())
    }

    /// Disables a user: every token and device revoked, live grants revoked through
    /// the connectors, pending requests cancelled, and every secret one of their
    /// devices held marked for rotation.
    ///
    /// `revoke_now`: revoke grants from this process at once (the broker); the CLI,
    /// which has no connectors, leaves them `revoking` and due now, so the running
    /// broker's worker revokes them on its next pass (or at its next start).
    pub async fn disable_user(
        &self,
        actor: &Actor,
        name: &str,
        revoke_now: bool,
    ) -> Result<Disabled> {
        check_admin(actor, AdminAction::DisableUser)?;
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        match uow.users().disabled_at(name).await? {
            None => return Err(Error::not_found("user")),
            Some(Some(_)) => {
                return Err(Error::rule(
                    ErrorCode::Conflict,
                    format!("user '{name}' is already disabled"),
                ))
            }
            Some(None) => {}
        }
        uow.users().set_disabled(name, Ts(now)).await?;
        let tokens_revoked = uow.users().revoke_tokens_of(name, Ts(now)).await?;
        // Their SSO sessions end: no refresh brings a token back.
        for session in uow.sso().open_sessions_of(name).await? {
            self.revoke_session_in(&mut uow, actor, &session, name, "user_disabled")
                .await?;
        }

        // Devices, as `revoke_device` does: what they held is rotated.
        let devices = uow.devices().active_ids_of(name).await?;
        let mut rotating = BTreeSet::new();
        for id in &devices {
            rotating.extend(
                self.retire_envelopes(&mut uow, id, now, "user_disabled")
                    .await?,
            );
            uow.devices().revoke(id, Ts(now)).await?;
        }

        // Live grants: claimed for revocation (the same state change as a revoke).
        let lease = if revoke_now {
            now + Duration::seconds(CLAIM_LEASE_SECS)
        } else {
            now
        };
        let grants = uow
            .access()
            .revoke_live_grants_of(name, &actor.name(), Ts(lease))
            .await?;
        let requests_cancelled = uow
            .access()
            .cancel_pending_requests_of(name, Ts(now))
            .await?;
        let out = Disabled {
            user: name.to_string(),
            tokens_revoked,
            devices_revoked: devices.len(),
            grants_revoked: grants.len(),
            requests_cancelled,
            rotating: rotating.into_iter().collect(),
        };
        uow.record(
            actor,
            name,
            AuditEvent::UserDisabled {
                tokens_revoked: out.tokens_revoked,
                devices: devices.clone(),
                grants: grants.clone(),
                requests_cancelled: out.requests_cancelled,
                rotating: out.rotating.clone(),
            },
        );
        uow.commit().await?;
        self.access.bump();
        if revoke_now {
            for id in &grants {
                if let Ok(gid) = id.parse::<GrantId>() {
                    if let Err(e) = self.finish_end(&gid).await {
                        tracing::warn!(grant = %id, error = %e, "revoking a disabled user's grant; the worker retries");
                    }
                }
            }
            self.wake_worker.notify_one();
        }
        Ok(out)
    }

    /// Replaces a user's groups. Envelopes the user may no longer hold are
    /// withdrawn and their secrets rotated by the worker: at once in this process
    /// when `withdraw_now` (the broker), within a worker pass when the CLI, which has
    /// no worker, changed them.
    pub async fn set_groups(
        &self,
        actor: &Actor,
        name: &str,
        groups: &[String],
        withdraw_now: bool,
    ) -> Result<Vec<String>> {
        check_admin(actor, AdminAction::SetGroups)?;
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let groups = self.set_groups_in(&mut uow, actor, name, groups).await?;
        uow.commit().await?;
        self.groups_changed(withdraw_now).await?;
        Ok(groups)
    }

    /// Replaces a user's groups inside `uow` and records it: the one path every
    /// change of groups takes (an admin's, an SSO sign-in's). After the commit, call
    /// [`Broker::groups_changed`]. Whoever calls it has checked that `actor` may.
    pub(crate) async fn set_groups_in(
        &self,
        uow: &mut super::Uow<'_>,
        actor: &Actor,
        name: &str,
        groups: &[String],
    ) -> Result<Vec<String>> {
        let groups = check_groups(groups)?;
        let Some(before) = uow.users().groups_json(name).await? else {
            return Err(Error::not_found("user"));
        };
        let before: Vec<String> = serde_json::from_str(&before)
            .map_err(|e| Error::Corrupt(format!("groups of user {name}: {e}")))?;
        let groups_json =
            serde_json::to_string(&groups).map_err(|e| Error::Corrupt(e.to_string()))?;
        uow.users().set_groups_json(name, &groups_json).await?;
        uow.record(
            actor,
            name,
            AuditEvent::UserGroupsChanged {
                from: before,
                to: groups.clone(),
            },
        );
        Ok(groups)
    }

    /// After a commit that changed someone's groups: open streams re-check who they
    /// serve, and envelopes the user may no longer hold are withdrawn (their
    /// secrets rotated by the worker) at once when `withdraw_now` (the broker), or
    /// within a worker pass (the CLI, which has no worker).
    pub(crate) async fn groups_changed(&self, withdraw_now: bool) -> Result<()> {
        self.access.bump();
        if withdraw_now {
            self.withdraw_ineligible_envelopes().await?;
            self.wake_worker.notify_one();
        }
        Ok(())
    }
}
