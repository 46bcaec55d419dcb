//! The app as a witness of the broker's audit log. At every sync the console fetches
//! the broker's signed audit head (`GET /audit/head`), checks its signature with the
//! broker key pinned at sign-in, and checks that it extends the head it saw last:
//! its seq is not lower, and the broker's signed hash at the seq seen earlier
//! (`GET /audit/heads/{seq}`) is unchanged (see
//! [`firedoor_core::audit::check_extends`]). The latest good head is kept in the
//! cache per broker + user, under the keys that survive sign-out.
//!
//! A head that does not extend it (the broker's database was truncated or restored
//! from an older copy, or rewritten) is a security alert: it is shown in
//! [`crate::console::AppStatus::audit_alert`] and `last_error`, and raised once as a
//! local `security_alert` event, which the desktop shell notifies like the broker's
//! own security alerts. The head seen stays as it was, so the alert stays until the
//! broker's log extends it again.

use crate::breakglass::Account;
use crate::console::{Change, Console, Live, Result};
use crate::{Client, ClientError};
use chrono::Utc;
use firedoor_core::api::EventView;
use firedoor_core::audit::{check_extends, SignedHead};

const K_AUDIT_HEAD: &str = "audit_head";
const K_AUDIT_ALERT: &str = "audit_alert";

impl Console {
    /// The standing audit alert of the signed-in account, if any.
    pub(crate) async fn audit_alert(&self, live: &Live) -> Result<Option<String>> {
        let Some(s) = live.session.as_ref() else {
            return Ok(None);
        };
        let a = Account::new(&s.url, &s.user);
        Ok(self.cache.get(&a.key(K_AUDIT_ALERT)).await?)
    }

    /// Forgets the head seen (and its alert), when the user accepted a new broker key.
    pub(crate) async fn forget_audit_head(&self, a: &Account) -> Result<()> {
        self.cache
            .set_many(&[(&a.key(K_AUDIT_HEAD), None), (&a.key(K_AUDIT_ALERT), None)])
            .await?;
        Ok(())
    }

    /// Fetches and checks the broker's audit head (see the module docs). Returns the
    /// alert, if the head does not extend the one seen.
    pub(crate) async fn check_audit_head(&self, c: &Client) -> Result<Option<String>> {
        let Some(a) = ({
            let live = self.live.lock().await;
            live.session.as_ref().map(|s| Account::new(&s.url, &s.user))
        }) else {
            return Ok(None);
        };
        let (pin, key_changed) = self.pinned(&a).await.unwrap_or((None, false));
        let Some(pin) = pin else {
            tracing::info!("no broker key pinned: the audit head is not checked");
            return Ok(None);
        };
        if key_changed {
            // The broker presents another key than the pinned one: break glass already
            // stops and asks the user to compare fingerprints. Its heads are judged once
            // the user has decided.
            tracing::info!(
                "the broker key changed and is not confirmed: the audit head is not checked"
            );
            return Ok(None);
        }
        let new = match c.audit_head().await {
            Ok(h) => h,
            Err(ClientError::Api { status: 404, .. }) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch the broker's audit head");
                return Ok(None);
            }
        };
        let seen: Option<SignedHead> = self
            .cache
            .get(&a.key(K_AUDIT_HEAD))
            .await?
            .and_then(|v| serde_json::from_str(&v).ok());
        let verdict = match &seen {
            None if new.signature_valid(&pin.key) => Ok(()),
            None => Err(format!(
                "the broker's audit head (record {}) is not signed by the broker key this app pinned",
                new.seq
            )),
            Some(seen) => {
                let at_seen = if new.seq > seen.seq {
                    c.audit_head_at(seen.seq).await.ok()
                } else {
                    None
                };
                check_extends(seen, &new, at_seen.as_ref(), &pin.key).map_err(|e| {
                    format!(
                        "The broker's audit log was rolled back or rewritten: this app saw it signed up to record {} and {e}.",
                        seen.seq
                    )
                })
            }
        };
        match verdict {
            Ok(()) => {
                let body = serde_json::to_string(&new).unwrap_or_default();
                self.cache
                    .set_many(&[
                        (&a.key(K_AUDIT_HEAD), Some(&body)),
                        (&a.key(K_AUDIT_ALERT), None),
                    ])
                    .await?;
                Ok(None)
            }
            Err(message) => {
                let before = self.cache.get(&a.key(K_AUDIT_ALERT)).await?;
                if before.as_deref() != Some(message.as_str()) {
                    tracing::error!(alert = %message, "AUDIT LOG ROLLBACK");
                    self.cache
                        .set(&a.key(K_AUDIT_ALERT), Some(&message))
                        .await?;
                    self.changed(Change::Event(EventView {
                        id: 0,
                        incident_id: None,
                        kind: "security_alert".into(),
                        at: Utc::now(),
                        request_id: None,
                        grant_id: None,
                        bundle: None,
                        actor: None,
                        message: message.clone(),
                    }));
                }
                Ok(Some(message))
            }
        }
    }
}
