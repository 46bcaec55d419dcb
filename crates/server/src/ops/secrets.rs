//! Secrets: store a value (sealed to every eligible device), list, rotate (now,
//! when due, after a failure), and the demo's seeding.

use crate::audit::Actor;
use crate::breakglass::{RotationTrigger, MAX_SECRET_BYTES, ROTATED_VALUE_CHARS};
use crate::clock::ts;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::Ts;
use chrono::Duration;
use firedoor_core::access::{self, check_admin, AdminAction};
use firedoor_core::audit::AuditEvent;
use firedoor_core::breakglass::SecretView;
use firedoor_core::lifecycle::{self, CLAIM_LEASE_SECS};
use firedoor_core::policy::{Principal, SecretPolicy};
use firedoor_core::ErrorCode;
use rand::distributions::{Alphanumeric, DistString};
use std::sync::Arc;
use zeroize::Zeroizing;

impl Broker {
    // ------------------------------------------------------------------ secrets

    pub(crate) async fn secret_view(
        &self,
        sp: &SecretPolicy,
        show_errors: bool,
    ) -> Result<SecretView> {
        let row = self.store.secrets().get(&sp.name).await?;
        let version = row.as_ref().map(|r| r.version).unwrap_or(0);
        let sealed = self
            .store
            .envelopes()
            .count_sealed(&sp.name, version)
            .await?;
        Ok(SecretView {
            name: sp.name.clone(),
            title: sp.title.clone(),
            description: sp.description.clone(),
            version,
            updated_at: row.as_ref().and_then(|r| r.updated_at).map(|t| t.0),
            validity_secs: sp.validity_secs,
            rotated_by: sp.rotate.as_ref().map(|r| r.integration.clone()),
            rotation_due_at: row.as_ref().and_then(|r| r.rotation_due_at).map(|t| t.0),
            last_rotation_error: if show_errors {
                row.as_ref().and_then(|r| r.last_rotation_error.clone())
            } else {
                None
            },
            sealed_devices: if version > 0 { sealed } else { 0 },
        })
    }

    /// Admins see every secret of the policy; others those they may unlock.
    pub async fn list_secrets(&self, who: &Principal) -> Result<Vec<SecretView>> {
        let mut out = Vec::new();
        for sp in self.policy.secrets.values() {
            if access::may_see_secret(who, sp) {
                out.push(
                    self.secret_view(sp, access::sees_rotation_errors(who))
                        .await?,
                );
            }
        }
        Ok(out)
    }

    /// Every secret of the policy, with rotation errors (admins, the CLI).
    pub async fn all_secrets(&self, actor: &Actor) -> Result<Vec<SecretView>> {
        check_admin(actor, AdminAction::ListAllSecrets)?;
        let mut out = Vec::new();
        for sp in self.policy.secrets.values() {
            out.push(self.secret_view(sp, true).await?);
        }
        Ok(out)
    }

    /// Stores a new value of a secret (version + 1), seals it to every eligible
    /// device and clears a due rotation (admins, the CLI, the broker itself).
    pub async fn put_secret(&self, actor: &Actor, name: &str, value: &str) -> Result<SecretView> {
        check_admin(actor, AdminAction::PutSecret)?;
        let sp = self.secret_policy(name)?;
        if value.is_empty() || value.len() > MAX_SECRET_BYTES {
            return Err(Error::rule(
                ErrorCode::InvalidRequest,
                format!(
                    "value: {} bytes; a secret is 1 to {MAX_SECRET_BYTES} bytes",
                    value.len()
                ),
            ));
        }
        let plain = Arc::new(Zeroizing::new(value.as_bytes().to_vec()));
        for _ in 0..5 {
            let current = self.store.secrets().get(name).await?;
            let version = current.as_ref().map(|r| r.version).unwrap_or(0);
            let now = self.now();
            let targets = self.eligible_targets(sp).await?;
            let sealed = self
                .seal_many(sp, version + 1, plain.clone(), targets, now)
                .await?;
            let at_rest = self.key.seal(&plain)?;
            let mut uow = self.uow_at(now).await?;
            uow.secrets().ensure(name).await?;
            let row = uow
                .secrets()
                .get(name)
                .await?
                .ok_or_else(|| Error::not_found("secret"))?;
            if row.version != version {
                continue; // changed while sealing: seal again
            }
            if row.rotating_until.is_some_and(|u| u > Ts(now)) {
                return Err(Error::rule(
                    ErrorCode::Conflict,
                    format!("{name} is being rotated right now; try again in a moment"),
                ));
            }
            uow.secrets()
                .store_value(name, version, &at_rest, Ts(now))
                .await?;
            uow.record(
                actor,
                name,
                AuditEvent::SecretStored {
                    version: version + 1,
                    previous_version: version,
                    rotation_was_due: row.rotation_due_at.map(Ts::text),
                    bytes: value.len(),
                },
            );
            self.install_envelopes(&mut uow, sp, version + 1, &sealed, actor)
                .await?;
            uow.commit().await?;
            return self.secret_view(sp, true).await;
        }
        Err(Error::rule(
            ErrorCode::Conflict,
            format!("{name} kept changing while it was being stored; try again"),
        ))
    }

    // ----------------------------------------------------------------- rotation

    /// Rotates a secret now through its connector (admins, CLI). Returns the
    /// secret's view after the attempt; a failed attempt shows in
    /// `last_rotation_error` and is retried by the worker.
    pub async fn rotate_secret_now(&self, actor: &Actor, name: &str) -> Result<SecretView> {
        check_admin(actor, AdminAction::RotateSecret)?;
        let sp = self.secret_policy(name)?;
        if sp.rotate.is_none() {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!(
                    "{name} has no rotate = {{ integration, role }} in the policy, so the broker cannot rotate it; \
                     store a new value instead (PUT /api/v1/secrets/{name} or `firedoor-server secret put {name}`)"
                ),
            ));
        }
        self.rotate(actor, sp, RotationTrigger::Manual).await?;
        self.secret_view(sp, true).await
    }

    /// Worker step: rotates every secret whose rotation is due; alerts once about
    /// due secrets that have no rotation connector.
    pub async fn rotate_due_secrets(&self) -> Result<()> {
        let due = self
            .store
            .secrets()
            .due_for_rotation(Ts(self.now()))
            .await?;
        for (name, attempts) in due {
            let Some(sp) = self.policy.secret(&name) else {
                continue;
            };
            let result = if sp.rotate.is_some() {
                self.rotate(&Actor::System, sp, RotationTrigger::Due)
                    .await
                    .map(|_| ())
            } else if attempts == 0 {
                self.alert_manual_rotation(sp).await
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::warn!(secret = %name, error = %e, "rotating a break-glass secret");
            }
        }
        Ok(())
    }

    /// A due secret without a rotation connector: one alert asking for a new value.
    async fn alert_manual_rotation(&self, sp: &SecretPolicy) -> Result<()> {
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let error = format!(
            "{} has no rotation connector: store a new value (`firedoor-server secret put {}`)",
            sp.name, sp.name
        );
        if !uow.secrets().flag_manual_rotation(&sp.name, &error).await? {
            return Ok(());
        }
        let row = uow.secrets().get(&sp.name).await?;
        uow.record(
            &Actor::System,
            &sp.name,
            AuditEvent::SecretRotationManual {
                error: error.clone(),
                version: row.as_ref().map(|r| r.version),
                reason: row.as_ref().and_then(|r| r.rotation_reason.clone()),
            },
        );
        self.security_alert(
            &mut uow,
            Some(&sp.name),
            None,
            format!(
                "SECURITY: {} was unlocked and must be changed by hand: set a new value on the target and store it (`firedoor-server secret put {}`)",
                sp.name, sp.name
            ),
)
.await?;
        uow.commit().await?;
        Ok(())
    }

    /// One rotation: claim it, keep (or make) the pending value, set it in the
    /// target, then promote it and reseal every eligible device in one transaction.
    /// `Ok(true)` if the rotation completed, `Ok(false)` if the target refused it
    /// (recorded, retried later with backoff) or, for a due rotation, if another
    /// worker holds it or has done it since this one found it due.
    async fn rotate(
        &self,
        actor: &Actor,
        sp: &SecretPolicy,
        trigger: RotationTrigger,
    ) -> Result<bool> {
        let name = sp.name.as_str();
        let Some(rot) = sp.rotate.as_ref() else {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!("{name} has no rotation connector"),
            ));
        };
        // 1. Claim the rotation and make sure a pending value is stored.
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        uow.secrets().ensure(name).await?;
        let lease = Ts(now + Duration::seconds(CLAIM_LEASE_SECS));
        let claimed = uow
            .secrets()
            .claim_rotation(name, Ts(now), lease, trigger)
            .await?;
        if !claimed && trigger == RotationTrigger::Due {
            // Another worker holds it or finished it since this one listed it.
            return Ok(false);
        }
        if !claimed {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!("{name} is already being rotated"),
            ));
        }
        let row = uow
            .secrets()
            .get(name)
            .await?
            .ok_or_else(|| Error::not_found("secret"))?;
        let pending: Zeroizing<Vec<u8>> = match &row.pending_value {
            // A retry (perhaps after a crash): the target may already have it.
            Some(p) => Zeroizing::new(self.key.open(p)?),
            None => {
                let v = Zeroizing::new(
                    Alphanumeric
                        .sample_string(&mut rand::rngs::OsRng, ROTATED_VALUE_CHARS)
                        .into_bytes(),
                );
                uow.secrets().set_pending(name, &self.key.seal(&v)?).await?;
                v
            }
        };
        let pending_sealed = uow.secrets().pending_value(name).await?;
        uow.commit().await?;
        let version = row.version;

        // 2. The target.
        let result = match self.connectors.get(&rot.integration) {
            Some(c) => {
                let text = std::str::from_utf8(&pending)
                    .map_err(|_| Error::Corrupt(format!("pending value of {name} is not UTF-8")))?;
                c.rotate_secret(&rot.role, text).await.map_err(|e| e.0)
            }
            None => Err(format!(
                "no connector for integration '{}'",
                rot.integration
            )),
        };
        if let Err(error) = result {
            self.record_rotation_failure(sp, version, &error).await?;
            return Ok(false);
        }
        // issue 14: uses — end the sessions made with the old password, if the
        // policy says so. The target has the new password already: a failure here
        // is audited and alerted, never a reason to keep the old value current.
        let sessions = if rot.end_sessions {
            Some(match self.connectors.get(&rot.integration) {
                Some(c) => c.end_sessions(&rot.role).await.map_err(|e| e.0),
                None => Err(format!(
                    "no connector for integration '{}'",
                    rot.integration
                )),
            })
        } else {
            None
        };

        // 3. Promote the pending value and reseal, in one transaction.
        let plain = Arc::new(pending);
        let targets = self.eligible_targets(sp).await?;
        let now = self.now();
        let sealed = self.seal_many(sp, version + 1, plain, targets, now).await?;
        let mut uow = self.uow_at(now).await?;
        let promoted = uow
            .secrets()
            .promote_pending(name, version, pending_sealed.as_deref(), Ts(now))
            .await?;
        if !promoted {
            drop(uow);
            // A value was stored by hand while the target was being changed: the
            // stored value wins; the target may hold the rotated value until the
            // next rotation.
            tracing::warn!(secret = %name, "rotation superseded by a value stored meanwhile");
            self.record_rotation_failure(
                sp,
                version,
                "a new value was stored while the rotation ran; the target may hold the rotated value (rotate again)",
            )
            .await?;
            return Ok(false);
        }
        uow.record(
            actor,
            name,
            AuditEvent::SecretRotated {
                from_version: version,
                to_version: version + 1,
                integration: rot.integration.clone(),
                role: rot.role.clone(),
                trigger: trigger.as_str().into(),
                reason: row.rotation_reason.clone(),
                attempts: row.rotation_attempts + 1,
            },
        );
        self.install_envelopes(&mut uow, sp, version + 1, &sealed, actor)
            .await?;
        if let Some(ended) = sessions {
            uow.record(
                actor,
                name,
                AuditEvent::RotationSessionsEnded {
                    integration: rot.integration.clone(),
                    role: rot.role.clone(),
                    version: version + 1,
                    sessions: ended.as_ref().ok().copied(),
                    error: ended.as_ref().err().cloned(),
                },
            );
            if let Err(e) = &ended {
                self.security_alert(
                    &mut uow,
                    Some(name),
                    None,
                    format!("SECURITY: {name} was rotated, but the open sessions of {} could not be ended: {e}", rot.role),
                )
                .await?;
            }
        }
        uow.commit().await?;
        tracing::info!(secret = %name, version = version + 1, devices = sealed.len(), "break-glass secret rotated");
        Ok(true)
    }

    async fn record_rotation_failure(
        &self,
        sp: &SecretPolicy,
        version: i64,
        error: &str,
    ) -> Result<()> {
        let now = self.now();
        tracing::warn!(secret = %sp.name, %error, "break-glass rotation failed; will retry");
        let mut uow = self.uow_at(now).await?;
        let row = uow.secrets().get(&sp.name).await?;
        let attempts = row.as_ref().map(|r| r.rotation_attempts).unwrap_or(0) + 1;
        let next = now + Duration::seconds(lifecycle::retry_backoff_secs(attempts));
        uow.secrets()
            .record_rotation_failure(&sp.name, attempts, Ts(next), error, Ts(now))
            .await?;
        uow.record(
            &Actor::System,
            &sp.name,
            AuditEvent::SecretRotationFailed {
                error: error.to_string(),
                attempts,
                next_attempt_at: ts(next),
                version,
                integration: sp.rotate.as_ref().map(|r| r.integration.clone()),
            },
        );
        if attempts == 1 {
            self.security_alert(
                &mut uow,
                Some(&sp.name),
                None,
                format!(
                    "SECURITY: rotating {} failed and is being retried: {error}",
                    sp.name
                ),
            )
            .await?;
        }
        uow.commit().await?;
        Ok(())
    }

    /// Demo: gives every secret of the policy that has no value one (through its
    /// rotation connector when it has one, so the target agrees). Prints nothing.
    pub async fn seed_missing_secrets(&self, actor: &Actor) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for sp in self.policy.secrets.values() {
            let version = self
                .store
                .secrets()
                .get(&sp.name)
                .await?
                .map(|r| r.version)
                .unwrap_or(0);
            if version > 0 {
                continue;
            }
            if sp.rotate.is_some() {
                self.rotate(actor, sp, RotationTrigger::Manual).await?;
            } else {
                let v = Zeroizing::new(
                    Alphanumeric.sample_string(&mut rand::rngs::OsRng, ROTATED_VALUE_CHARS),
                );
                self.put_secret(actor, &sp.name, &v).await?;
            }
            let v = self
                .store
                .secrets()
                .get(&sp.name)
                .await?
                .map(|r| r.version)
                .unwrap_or(0);
            out.push((sp.name.clone(), v));
        }
        Ok(out)
    }
}
