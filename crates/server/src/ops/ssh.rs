//! The broker as an SSH user certificate authority: a grant's holder gets a
//! certificate for the key their device made for the grant (`issue_ssh_certificate`),
//! hosts fetch the CA keys and the key revocation list (`ssh_ca_keys`, `ssh_krl`),
//! admins rotate a CA (`rotate_ssh_ca`). The CA private keys are sealed under the
//! broker key in the store, like break-glass secrets; the first one of an
//! integration is made when it is first needed.

use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::ssh::{CaRow, NewCert};
use crate::store::Ts;
use chrono::{DateTime, Duration, Utc};
use firedoor_core::access::{check_admin, AdminAction};
use firedoor_core::api::{SshCertificateView, SshKeyBody};
use firedoor_core::audit::AuditEvent;
use firedoor_core::lifecycle::GrantState;
use firedoor_core::policy::{IntegrationKind, Principal};
use firedoor_core::ssh::{self as rules, SshAccess, SshHostSet};
use firedoor_core::ErrorCode;
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};
use std::collections::BTreeMap;

/// At most this many certificates per grant and integration (a device asks once,
/// and again after an extension): bounds what the KRL must list.
pub const MAX_CERTS_PER_GRANT: usize = 20;

fn fingerprint(k: &PublicKey) -> String {
    k.fingerprint(HashAlg::Sha256).to_string()
}

impl Broker {
    fn ssh_host_sets(&self, integration: &str) -> Result<&BTreeMap<String, SshHostSet>> {
        match self.policy.integrations.get(integration).map(|i| &i.kind) {
            Some(IntegrationKind::Ssh { host_sets }) => Ok(host_sets),
            _ => Err(Error::not_found("SSH integration")),
        }
    }

    /// The CA keys of `integration` (making the first if there is none), in
    /// `uow`.
    async fn cas_in(
        &self,
        uow: &mut super::Uow<'_>,
        integration: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<CaRow>> {
        let cas = uow.ssh().cas(integration).await?;
        if !cas.is_empty() {
            return Ok(cas);
        }
        let row = self.new_ca(integration, now)?;
        uow.ssh().insert_ca(&row).await?;
        uow.record(
            &Actor::System,
            &row.id,
            AuditEvent::SshCaCreated {
                integration: integration.to_string(),
                fingerprint: fingerprint(
                    &PublicKey::from_openssh(&row.public_key)
                        .map_err(|e| Error::Corrupt(format!("new CA key: {e}")))?,
                ),
                signs_from: row.signs_from.text(),
                retiring: vec![],
            },
        );
        Ok(vec![row])
    }

    /// A fresh ed25519 CA key for `integration`, sealed, signing from `signs_from`.
    fn new_ca(&self, integration: &str, signs_from: DateTime<Utc>) -> Result<CaRow> {
        let key = PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519)
            .map_err(|e| Error::Corrupt(format!("SSH CA key: {e}")))?;
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| Error::Corrupt(format!("SSH CA key: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::Corrupt(format!("SSH CA key: {e}")))?;
        Ok(CaRow {
            id: format!("sshca_{}", uuid::Uuid::new_v4().simple()),
            integration: integration.to_string(),
            public_key: format!("{public} firedoor-{integration}"),
            sealed_private: self.key.seal(private.as_bytes())?,
            signs_from: Ts(signs_from),
            retire_after: None,
            created_at: Ts(self.now()),
        })
    }

    fn open_ca(&self, row: &CaRow) -> Result<PrivateKey> {
        let bytes = zeroize::Zeroizing::new(self.key.open(&row.sealed_private)?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::Corrupt(format!("SSH CA {} is not text", row.id)))?;
        PrivateKey::from_openssh(text)
            .map_err(|e| Error::Corrupt(format!("SSH CA {}: {e}", row.id)))
    }

    /// Certifies the key `body.public_key` for the active grant `id` of `who`: one
    /// certificate per SSH integration of the grant's bundle, for the principals of
    /// its levels there, valid from the activation (less the clock skew margin) to
    /// the grant's expiry. Audited.
    pub async fn issue_ssh_certificate(
        &self,
        who: &Principal,
        id: &str,
        body: SshKeyBody,
    ) -> Result<Vec<SshCertificateView>> {
        let key = rules::parse_public_key(&body.public_key)
            .map_err(|e| Error::rule(ErrorCode::InvalidRequest, e.to_string()))?;
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let g = uow
            .grants()
            .load(id)
            .await?
            .filter(|g| self.may_see_grant(who, g))
            .ok_or_else(|| Error::not_found("grant"))?;
        if g.holder != who.name {
            return Err(Error::rule(
                ErrorCode::Forbidden,
                "only the grant's holder gets a certificate for it",
            ));
        }
        if g.state()? != GrantState::Active || g.expires_at.0 <= now {
            return Err(Error::rule(
                ErrorCode::NoCredentials,
                format!("the grant is {}; it gets no certificate", g.state),
            ));
        }
        let bundle = self.policy.bundle(&g.bundle).ok_or_else(|| {
            Error::Corrupt(format!("bundle '{}' is no longer in the policy", g.bundle))
        })?;
        // The SSH levels of the bundle, per integration.
        let mut per: BTreeMap<&str, Vec<(&SshHostSet, &SshAccess)>> = BTreeMap::new();
        for r in &bundle.resources {
            if let Ok(sets) = self.ssh_host_sets(&r.integration) {
                if let Some(set) = sets.get(&r.resource) {
                    if let Some(a) = set.permissions.get(&r.permission) {
                        per.entry(r.integration.as_str())
                            .or_default()
                            .push((set, a));
                    }
                }
            }
        }
        if per.is_empty() {
            return Err(Error::rule(
                ErrorCode::InvalidRequest,
                format!("{} gives no SSH access", self.title(&g.bundle)),
            ));
        }
        let activated = g.activated_at.map_or(now, |t| t.0);
        let valid_after = activated - Duration::seconds(rules::CLOCK_SKEW_SECS);
        let valid_before = g.expires_at.0;
        let mut out = Vec::new();
        for (integration, levels) in per {
            let issued = uow.ssh().certs_of(&g.id, integration).await?;
            if issued as usize >= MAX_CERTS_PER_GRANT {
                return Err(Error::rule(
                    ErrorCode::Conflict,
                    format!("this grant already has {issued} certificates for {integration}; no more are issued"),
                ));
            }
            let rules::Merged {
                principals,
                extensions,
                critical_options,
            } = rules::merge_access(levels.iter().map(|(_, a)| *a))
                .map_err(|m| Error::rule(ErrorCode::InvalidRequest, m))?;
            let cas = self.cas_in(&mut uow, integration, now).await?;
            let signer = cas
                .iter()
                .rev()
                .find(|c| c.signs_from.0 <= now)
                .or_else(|| cas.first())
                .ok_or_else(|| Error::Corrupt(format!("{integration} has no CA key")))?;
            let ca = self.open_ca(signer)?;
            let serial = uow
                .ssh()
                .insert_cert(&NewCert {
                    grant_id: &g.id,
                    integration,
                    ca_id: &signer.id,
                    fingerprint: &fingerprint(&key),
                    principals: &principals.join(","),
                    valid_after: Ts(valid_after),
                    valid_before: Ts(valid_before),
                    issued_at: Ts(now),
                })
                .await?;
            let spec = rules::CertSpec {
                key_id: rules::key_id(&g.holder, &g.id),
                serial: serial as u64,
                principals: principals.clone(),
                extensions,
                critical_options,
                valid_after: valid_after.timestamp(),
                valid_before: valid_before.timestamp(),
            };
            let mut nonce = [0u8; 32];
            OsRng.fill_bytes(&mut nonce);
            let certificate =
                rules::issue(&ca, &key, &spec, nonce).map_err(|e| Error::Corrupt(e.to_string()))?;
            uow.record(
                &Actor::User(who.clone()),
                &g.id,
                AuditEvent::SshCertificateIssued {
                    integration: integration.to_string(),
                    serial,
                    principals: principals.clone(),
                    valid_before: Ts(valid_before).text(),
                    fingerprint: fingerprint(&key),
                },
            );
            let (set, access) = levels[0];
            out.push(SshCertificateView {
                integration: integration.to_string(),
                certificate,
                serial: serial as u64,
                key_id: spec.key_id,
                principals,
                valid_after,
                valid_before,
                hosts: set.hosts.clone(),
                user: set.account(access).map(str::to_string),
            });
        }
        uow.commit().await?;
        Ok(out)
    }

    /// The CA public keys hosts of `integration` trust (`TrustedUserCAKeys`), one
    /// OpenSSH line each: the signing one and any being rotated in or out.
    pub async fn ssh_ca_keys(&self, integration: &str) -> Result<String> {
        self.ssh_host_sets(integration)?;
        let now = self.now();
        let mut cas = self.store.ssh().cas(integration).await?;
        if cas.is_empty() {
            let mut uow = self.uow_at(now).await?;
            cas = self.cas_in(&mut uow, integration, now).await?;
            uow.commit().await?;
        }
        Ok(cas
            .iter()
            .filter(|c| c.retire_after.is_none_or(|t| t.0 > now))
            .map(|c| format!("{}\n", c.public_key))
            .collect())
    }

    /// The key revocation list hosts load (`RevokedKeys`): every certificate still
    /// valid whose grant is no longer active, per CA.
    pub async fn ssh_krl(&self) -> Result<Vec<u8>> {
        let now = self.now();
        let cas = self.store.ssh().all_cas().await?;
        let revoked = self.store.ssh().revoked(Ts(now)).await?;
        let mut keys = Vec::new();
        for c in &cas {
            let serials: Vec<u64> = revoked
                .iter()
                .filter(|(ca, _)| *ca == c.id)
                .map(|(_, s)| *s as u64)
                .collect();
            if serials.is_empty() {
                continue;
            }
            let pk = PublicKey::from_openssh(&c.public_key)
                .map_err(|e| Error::Corrupt(format!("SSH CA {}: {e}", c.id)))?;
            keys.push((pk, serials));
        }
        let refs: Vec<(&PublicKey, Vec<u64>)> = keys.iter().map(|(k, s)| (k, s.clone())).collect();
        rules::krl(
            &refs,
            now.timestamp().max(0) as u64,
            now.timestamp(),
            "firedoor",
        )
        .map_err(|e| Error::Corrupt(e.to_string()))
    }

    /// Starts a CA rotation for `integration`: a new key, published to hosts at
    /// once and signing after `overlap_secs`; the keys it replaces stay published
    /// until no certificate they signed can still be valid. Admins; audited.
    pub async fn rotate_ssh_ca(
        &self,
        actor: &Actor,
        integration: &str,
        overlap_secs: i64,
    ) -> Result<String> {
        check_admin(actor, AdminAction::RotateSshCa)?;
        self.ssh_host_sets(integration)?;
        if !(0..=90 * 86_400).contains(&overlap_secs) {
            return Err(Error::rule(
                ErrorCode::InvalidDuration,
                "the overlap is between 0 and 90 days",
            ));
        }
        let now = self.now();
        let mut uow = self.uow_at(now).await?;
        let old = self.cas_in(&mut uow, integration, now).await?;
        let signs_from = now + Duration::seconds(overlap_secs);
        let longest = self
            .policy
            .flows
            .values()
            .map(|f| f.max_duration_secs)
            .max()
            .unwrap_or(0);
        let retire = Ts(signs_from + Duration::seconds(longest + rules::CLOCK_SKEW_SECS));
        let mut retiring = Vec::new();
        for c in old.iter().filter(|c| c.retire_after.is_none()) {
            uow.ssh().retire_after(&c.id, retire).await?;
            retiring.push(c.id.clone());
        }
        let row = self.new_ca(integration, signs_from)?;
        uow.ssh().insert_ca(&row).await?;
        let pk = PublicKey::from_openssh(&row.public_key)
            .map_err(|e| Error::Corrupt(format!("new CA key: {e}")))?;
        uow.record(
            actor,
            &row.id,
            AuditEvent::SshCaCreated {
                integration: integration.to_string(),
                fingerprint: fingerprint(&pk),
                signs_from: row.signs_from.text(),
                retiring,
            },
        );
        uow.commit().await?;
        Ok(row.id)
    }
}
