//! Devices: register (then seal what the owner may unlock to it), list, revoke
//! (its envelopes deleted, what it held rotated), and a device's envelopes.

use crate::audit::Actor;
use crate::breakglass::MAX_DEVICES_PER_USER;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::devices::{DeviceRow, NewDevice};
use crate::store::{Ts, Tx};
use chrono::{DateTime, Utc};
use firedoor_core::access::{self, check_admin, AdminAction};
use firedoor_core::audit::{AuditEvent, SealedVersion};
use firedoor_core::breakglass::{
    decode_public_key, encode_public_key, fingerprint, DeviceView, Envelope, EnvelopeItem,
    EnvelopeList, RegisterDevice, GENESIS_HASH,
};
use firedoor_core::input;
use firedoor_core::policy::Principal;
use firedoor_core::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

impl Broker {
    /// Registers a device for `who`, then seals the secrets they may unlock to it.
    pub async fn register_device(
        &self,
        who: &Principal,
        body: RegisterDevice,
    ) -> Result<DeviceView> {
        let bad = |m: String| Error::rule(ErrorCode::InvalidRequest, m);
        let name = input::device_name(&body.name)?;
        let recipient = age::x25519::Recipient::from_str(body.recipient.trim()).map_err(|e| {
            bad(format!(
                "recipient: not an age X25519 recipient (age1…): {e}"
            ))
        })?;
        let vk = decode_public_key(&body.signing_key).map_err(|e| {
            bad(format!(
                "signing_key: expected the base64 of a 32-byte ed25519 public key: {e}"
            ))
        })?;
        let signing_key = encode_public_key(&vk);
        let id = format!("dev_{}", uuid::Uuid::new_v4().simple());
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let taken = uow.devices().id_by_signing_key(&signing_key).await?;
        if taken.is_some() {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "this signing key is already registered; a device registers once (list yours with GET /api/v1/devices)",
            ));
        }
        let active = uow.devices().count_active_of(&who.name).await?;
        if active >= MAX_DEVICES_PER_USER {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!("you already have {active} devices enrolled (the most is {MAX_DEVICES_PER_USER}); remove one first"),
            ));
        }
        uow.devices()
            .insert(&NewDevice {
                id: &id,
                user: &who.name,
                name: &name,
                recipient: &recipient.to_string(),
                signing_key: &signing_key,
                created_at: Ts(now),
                head_hash: GENESIS_HASH,
            })
            .await?;
        uow.record(
            &Actor::User(who.clone()),
            &id,
            AuditEvent::DeviceRegistered {
                user: who.name.clone(),
                name: name.clone(),
                recipient: recipient.to_string(),
                fingerprint: fingerprint(&vk),
            },
        );
        uow.commit().await?;
        let device = self
            .store
            .devices()
            .get(&id)
            .await?
            .ok_or_else(|| Error::not_found("device"))?;
        if let Err(e) = self.refresh_envelopes(who, &device).await {
            // The device is registered; its next envelope fetch seals again.
            tracing::warn!(device = %id, error = %e, "sealing envelopes for a new device");
        }
        // issue 14: quorum. Every holder's signed directory must list the new device,
        // so its requests and releases verify offline on the other people's devices.
        for sp in self.policy.unlockable_by(who).filter(|s| s.quorum > 1) {
            if let Err(e) = self
                .reseal_quorum_directory(&Actor::User(who.clone()), sp)
                .await
            {
                tracing::warn!(device = %id, secret = %sp.name, error = %e, "resealing a quorum secret for a new device");
            }
        }
        device.view()
    }

    /// The caller's active devices.
    pub async fn list_devices(&self, who: &Principal) -> Result<Vec<DeviceView>> {
        let rows = self.store.devices().active_of(&who.name).await?;
        rows.iter().map(DeviceRow::view).collect()
    }

    /// Every device of every user (admins, the CLI): the view and its revocation time.
    pub async fn all_devices(
        &self,
        actor: &Actor,
    ) -> Result<Vec<(DeviceView, Option<DateTime<Utc>>)>> {
        check_admin(actor, AdminAction::ListAllDevices)?;
        let rows = self.store.devices().all().await?;
        rows.iter()
            .map(|d| Ok((d.view()?, d.revoked_at.map(|t| t.0))))
            .collect()
    }

    /// Revokes a device (its owner or an admin): its envelopes are deleted at once.
    pub async fn revoke_device(&self, who: &Principal, id: &str) -> Result<()> {
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let d = uow
            .devices()
            .get(id)
            .await?
            .filter(|d| access::may_revoke_device(who, &d.user_name))
            .ok_or_else(|| Error::not_found("device"))?;
        if d.revoked_at.is_some() {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!("device {id} is already revoked"),
            ));
        }
        uow.devices().revoke(id, Ts(now)).await?;
        let held = self
            .retire_envelopes(&mut uow, id, now, "device_revoked")
            .await?;
        let dropped = held.len();
        let rotating: Vec<&str> = held.iter().map(String::as_str).collect();
        uow.record(
            &Actor::User(who.clone()),
            id,
            AuditEvent::DeviceRevoked {
                user: d.user_name.clone(),
                name: d.name.clone(),
                envelopes_deleted: dropped,
                rotating: rotating.iter().map(|s| s.to_string()).collect(),
            },
        );
        uow.commit().await?;
        if !held.is_empty() {
            self.wake_worker.notify_one();
        }
        Ok(())
    }

    /// A device is gone (revoked, or its owner disabled) and may be lost with its
    /// envelopes: whatever it held sealed is made due for rotation, so a copy of the
    /// laptop opens nothing that still works, and its envelopes are deleted. Returns
    /// the secrets it held.
    pub(crate) async fn retire_envelopes(
        &self,
        tx: &mut Tx,
        device_id: &str,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Vec<String>> {
        let held = tx.envelopes().held_by(device_id).await?;
        for (secret, version) in &held {
            self.mark_due(tx, secret, *version, now, reason).await?;
        }
        tx.envelopes().delete_for_device(device_id).await?;
        Ok(held.into_iter().map(|(s, _)| s).collect())
    }

    /// Loads a device of the caller's (404 for anyone else's, and for a revoked one
    /// unless `allow_revoked`).
    pub(crate) async fn own_device(
        &self,
        who: &Principal,
        id: &str,
        allow_revoked: bool,
    ) -> Result<DeviceRow> {
        let d = self
            .store
            .devices()
            .get(id)
            .await?
            .filter(|d| d.user_name == who.name)
            .ok_or_else(|| Error::not_found("device"))?;
        if d.revoked_at.is_some() && !allow_revoked {
            return Err(Error::rule(
                ErrorCode::NotFound,
                format!("device {id} was revoked; register this device again"),
            ));
        }
        Ok(d)
    }

    /// The envelopes of a device, sealed now where missing, of an old version or
    /// past half their validity; envelopes of secrets the owner may no longer unlock
    /// are dropped.
    pub async fn device_envelopes(&self, who: &Principal, id: &str) -> Result<EnvelopeList> {
        let d = self.own_device(who, id, false).await?;
        self.refresh_envelopes(who, &d).await?;
        let rows = self.store.envelopes().of_device(id).await?;
        let envelopes = rows
            .into_iter()
            .filter_map(|(secret, meta_json, signature, ciphertext)| {
                let sp = self.policy.secret(&secret)?;
                Some(EnvelopeItem {
                    name: secret,
                    title: sp.title.clone(),
                    description: sp.description.clone(),
                    envelope: Envelope {
                        meta_json,
                        signature,
                        ciphertext,
                    },
                })
            })
            .collect();
        Ok(EnvelopeList { envelopes })
    }

    /// Brings one device's envelopes up to date for its owner `who`.
    async fn refresh_envelopes(&self, who: &Principal, d: &DeviceRow) -> Result<()> {
        for _ in 0..5 {
            if self.refresh_envelopes_once(who, d).await? {
                return Ok(());
            }
        }
        Err(Error::rule(
            ErrorCode::Conflict,
            "people kept enrolling while this device's shares were being dealt; fetch the envelopes again",
        ))
    }

    /// One try of [`Self::refresh_envelopes`]: false if a quorum share was dealt
    /// from a split that changed meanwhile (nothing was stored; deal again).
    async fn refresh_envelopes_once(&self, who: &Principal, d: &DeviceRow) -> Result<bool> {
        let now = self.now();
        let have: BTreeMap<String, (i64, Ts)> = self
            .store
            .envelopes()
            .validity_of(&d.id)
            .await?
            .into_iter()
            .map(|(s, v, n)| (s, (v, n)))
            .collect();
        let stored: BTreeMap<String, (i64, Vec<u8>)> = self
            .store
            .secrets()
            .stored_values()
            .await?
            .into_iter()
            .map(|(n, v, val)| (n, (v, val)))
            .collect();
        let mut keep = BTreeSet::new();
        let mut to_seal = Vec::new();
        for sp in self.policy.unlockable_by(who) {
            let Some((version, sealed_value)) = stored.get(&sp.name) else {
                continue;
            };
            keep.insert(sp.name.clone());
            let fresh = match have.get(&sp.name) {
                Some((v, not_after)) if v == version => {
                    let left = not_after.0 - now;
                    left.num_seconds() * 2 >= sp.validity_secs
                }
                _ => false,
            };
            if !fresh {
                to_seal.push((sp, *version, sealed_value));
            }
        }
        let to_drop: Vec<&String> = have.keys().filter(|s| !keep.contains(*s)).collect();
        if to_seal.is_empty() && to_drop.is_empty() {
            return Ok(true);
        }
        let mut sealed = Vec::new();
        for (sp, version, sealed_value) in to_seal {
            let value = Arc::new(Zeroizing::new(self.key.open(sealed_value)?));
            let mut s = self
                .seal_many(sp, version, value, vec![d.target()], now)
                .await?;
            if let Some(s) = s.pop() {
                sealed.push((sp.name.clone(), s));
            }
        }
        let mut uow = self.uow_at(now).await?;
        let still = uow.devices().revoked_at(&d.id).await?;
        if !matches!(still, Some(None)) {
            return Ok(true); // revoked meanwhile
        }
        let mut done = Vec::new();
        for (secret, s) in &sealed {
            // Only if the secret is still at the version sealed: a rotation that
            // committed meanwhile installed fresher envelopes.
            let current = uow.secrets().version(secret).await?;
            if current != Some(s.version) {
                continue;
            }
            if Broker::stale_quorum_deal(&mut uow, secret, s.version, std::slice::from_ref(s))
                .await?
            {
                return Ok(false); // rolled back: deal again
            }
            Broker::store_envelope(&mut uow, secret, s).await?;
            done.push(SealedVersion {
                secret: secret.clone(),
                version: s.version,
            });
        }
        for secret in &to_drop {
            // The owner lost eligibility but may keep a copy: rotate what they held.
            if let Some((version, _)) = have.get(*secret) {
                self.mark_due(&mut uow, secret, *version, now, "eligibility_changed")
                    .await?;
            }
            uow.envelopes().delete(&d.id, secret).await?;
        }
        if done.is_empty() && to_drop.is_empty() {
            return Ok(true);
        }
        uow.record(
            &Actor::User(who.clone()),
            &d.id,
            AuditEvent::EnvelopesRefreshed {
                user: d.user_name.clone(),
                sealed: done,
                dropped: to_drop.iter().map(|s| s.to_string()).collect(),
            },
        );
        uow.commit().await?;
        Ok(true)
    }
}
