//! issue 14: drills on this device, as more methods of [`Console`]. A drill proves
//! that this device's sealed copy of a secret still opens, without showing the
//! secret to anyone: the passphrase unwraps the device keys (the same re-auth and
//! lock-out as an unlock), the cached envelope is checked exactly as for an offline
//! unlock (broker signature against the pinned key, binding to this device and
//! user, no older version than seen, validity window) and opened in memory, and
//! only a MAC of its plaintext bound to the drill's nonce (see
//! [`firedoor_core::drill`]), signed by the device key, goes to the broker.
//!
//! No unlock record is written for a drill: nobody sees the secret, so nothing was
//! used that security must hear of or that must be rotated (a record would start a
//! rotation and a security alert, as for a real use). The broker audits the drill
//! itself (`drill_passed` / `drill_failed`).

use super::{check_binding, fmt_time, key_change, key_changed_error, pin_of};
use crate::console::{is_network, Console, ConsoleError, ConsoleErrorCode, Result};
use chrono::{DateTime, Utc};
use firedoor_core::drill::Challenge;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A drill waiting on this device, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DrillTask {
    pub id: String,
    pub secret: String,
    pub title: String,
    pub version: i64,
    pub deadline: DateTime<Utc>,
}

/// What a drill answer came to. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DrillOutcome {
    pub drill_id: String,
    pub secret: String,
    pub title: String,
    pub version: i64,
    pub passed_at: DateTime<Utc>,
    pub message: String,
}

impl Console {
    /// The drills waiting on this device (the broker must be reachable: a drill is
    /// answered online). Empty when this device is not enrolled.
    pub async fn pending_drills(&self) -> Result<Vec<DrillTask>> {
        let (c, a, _) = self.signed_in_account().await?;
        let Some(enr) = self.enrolment(&a).await? else {
            return Ok(Vec::new());
        };
        let list = c
            .pending_drills(&enr.device_id)
            .await
            .map_err(ConsoleError::from)?;
        Ok(list
            .drills
            .into_iter()
            .map(|d| DrillTask {
                id: d.id,
                secret: d.secret,
                title: d.title,
                version: d.version,
                deadline: d.deadline,
            })
            .collect())
    }

    /// Readiness per secret (admins and the secrets' alert audiences; the broker
    /// decides who may see what).
    pub async fn readiness(&self) -> Result<firedoor_core::drill::Readiness> {
        let (c, _, _) = self.signed_in_account().await?;
        c.readiness().await.map_err(ConsoleError::from)
    }

    /// Answers drill `drill_id`: re-authenticates with the passphrase (5 wrong ones
    /// in 15 minutes lock break glass out, as for an unlock), refreshes this device's
    /// sealed copies, opens the copy of the drilled secret in memory, and sends the
    /// broker a signed proof bound to the drill. The secret is never returned.
    pub async fn answer_drill(
        &self,
        drill_id: &str,
        passphrase: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<DrillOutcome> {
        let (c, a, user) = self.signed_in_account().await?;
        let Some(enr) = self.enrolment(&a).await? else {
            return Err(ConsoleError::new(
                ConsoleErrorCode::NotEnrolled,
                "This device is not enrolled for break glass, so it has nothing to prove. Enrol it first.",
            ));
        };
        // The drill (its nonce) and fresh sealed copies come from the broker.
        let pending = c
            .pending_drills(&enr.device_id)
            .await
            .map_err(ConsoleError::from)?;
        let Some(drill) = pending.drills.into_iter().find(|d| d.id == drill_id) else {
            return Err(ConsoleError::new(
                firedoor_core::ErrorCode::NotFound,
                "No such drill waits on this device (it ended, or this device already passed it).",
            ));
        };
        if let Some(problem) = self.sync_break_glass(&c).await? {
            tracing::warn!(%problem, "refreshing sealed copies before a drill");
        }
        let _turn = self.break_glass_turn.lock().await;
        let mut state = self.load_state(&a).await?;
        if let Some(ch) = key_change(&state) {
            return Err(key_changed_error(&ch));
        }
        let keys = self
            .open_device_keys(&a, &enr, &mut state, passphrase, now)
            .await?;
        let title = drill.title.clone();
        let invalid = |why: String| {
            ConsoleError::new(
                ConsoleErrorCode::EnvelopeInvalid,
                format!("Drill not passed: the sealed copy of {title} cannot be used: {why}."),
            )
        };
        let cached = self.cache.envelope(&drill.secret).await?.ok_or_else(|| {
            ConsoleError::new(
                ConsoleErrorCode::EnvelopeInvalid,
                format!(
                    "Drill not passed: this device holds no sealed copy of {title}. Sync, or ask an admin why none is sealed to it."
                ),
            )
        })?;
        let envelope = cached.envelope.map_err(&invalid)?;
        let pin = pin_of(&state)?
            .ok_or_else(|| invalid("no broker signing key is pinned; sign in again".into()))?;
        let meta = envelope
            .verify(&pin.key)
            .map_err(|e| invalid(e.to_string()))?;
        check_binding(&meta, &drill.secret, &enr, &user).map_err(&invalid)?;
        if let Some(floor) = state.floor(&drill.secret).filter(|f| meta.version < *f) {
            return Err(invalid(format!(
                "it is version {}, older than version {floor} this device has seen",
                meta.version
            )));
        }
        meta.check_window(now).map_err(|e| match e {
            firedoor_core::breakglass::BreakGlassError::Expired(t) => ConsoleError::new(
                ConsoleErrorCode::EnvelopeExpired,
                format!(
                    "Drill not passed: the sealed copy of {title} expired at {}.",
                    fmt_time(t)
                ),
            ),
            e => invalid(e.to_string()),
        })?;
        let plain = Zeroizing::new(
            age::decrypt(keys.age_identity(), envelope.ciphertext.as_bytes())
                .map_err(|e| invalid(format!("this device's key does not open it ({e})")))?,
        );
        let answer = Challenge {
            drill_id: &drill.id,
            nonce: &drill.nonce,
            secret: &drill.secret,
            version: meta.version,
            device_id: &enr.device_id,
        }
        .answer(&plain, keys.signing_key());
        drop(plain);
        drop(keys);
        let passed = match c.answer_drill(&drill.id, &answer).await {
            Ok(p) => p,
            Err(e) if is_network(&e) => {
                let ce = ConsoleError::from(e);
                self.mark_offline(&ce.message).await;
                return Err(ce);
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(drill = %drill.id, secret = %drill.secret, "drill passed");
        Ok(DrillOutcome {
            drill_id: passed.drill_id,
            secret: drill.secret,
            title: title.clone(),
            version: meta.version,
            passed_at: passed.passed_at,
            message: format!(
                "Drill passed: this device opened its sealed copy of {title} (version {}) and proved it to the broker. No secret was shown.",
                meta.version
            ),
        })
    }
}
