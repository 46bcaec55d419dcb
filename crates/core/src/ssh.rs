//! SSH access: the broker is an OpenSSH user certificate authority. A grant of a
//! bundle with `kind = "ssh"` resources gets, for a public key the holder's device
//! made for it, a certificate for the principals of the bundle's permission levels,
//! valid from the grant's activation (less [`CLOCK_SKEW_SECS`]) to its expiry. A
//! certificate cannot be recalled, so a grant that ends early puts its certificates'
//! serials on a key revocation list (KRL, OpenSSH's `PROTOCOL.krl`) hosts load with
//! `RevokedKeys`.
//!
//! This module holds the rules and the wire formats, with no I/O: which principals a
//! grant gets, the certificate, and the KRL.

use serde::{Deserialize, Serialize};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{PrivateKey, PublicKey};
use std::collections::BTreeMap;

/// Certificates are valid from this long before the grant's activation, so a host
/// whose clock is a little behind the broker's accepts them at once.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// What one permission level of a host set gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshAccess {
    /// The certificate's principals (hosts map them to accounts with
    /// `AuthorizedPrincipalsFile`).
    pub principals: Vec<String>,
    /// OpenSSH extensions (default: `permit-pty` only: no port, agent or X11
    /// forwarding, no user rc).
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
    /// Critical options, e.g. `source-address = "10.0.0.0/8"`, `force-command`.
    #[serde(default)]
    pub critical_options: BTreeMap<String, String>,
    /// The account this level logs in as on the hosts (default: the host set's
    /// `user`); `ssh host-setup` writes its principals file.
    #[serde(default)]
    pub user: Option<String>,
}

impl SshHostSet {
    /// The account a level logs in as.
    pub fn account<'a>(&'a self, access: &'a SshAccess) -> Option<&'a str> {
        access.user.as_deref().or(self.user.as_deref())
    }

    /// Account -> the principals that may log in as it (the hosts'
    /// `AuthorizedPrincipalsFile` for each account).
    pub fn principals_files(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in self.permissions.values() {
            if let Some(u) = self.account(a) {
                let v = out.entry(u.to_string()).or_default();
                for p in &a.principals {
                    if !v.contains(p) {
                        v.push(p.clone());
                    }
                }
            }
        }
        out
    }
}

fn default_extensions() -> Vec<String> {
    vec!["permit-pty".to_string()]
}

/// Extensions OpenSSH knows.
pub const KNOWN_EXTENSIONS: &[&str] = &[
    "permit-pty",
    "permit-port-forwarding",
    "permit-agent-forwarding",
    "permit-X11-forwarding",
    "permit-user-rc",
    "no-touch-required",
    "verify-required",
];

/// Critical options OpenSSH knows (an unknown critical option makes hosts refuse
/// the certificate, so only these are allowed).
pub const KNOWN_CRITICAL_OPTIONS: &[&str] = &["force-command", "source-address", "verify-required"];

/// A set of hosts and what each permission level on them gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshHostSet {
    /// The hosts, shown to the requester (`payments-1.internal`, …).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The account engineers log in as, for the connection command shown.
    #[serde(default)]
    pub user: Option<String>,
    /// Permission level -> what it gives.
    pub permissions: BTreeMap<String, SshAccess>,
}

/// The certificate a grant's key gets: everything but the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Names user and grant: `firedoor:<user>:<grant>`; hosts log it.
    pub key_id: String,
    pub serial: u64,
    pub principals: Vec<String>,
    pub extensions: Vec<String>,
    pub critical_options: BTreeMap<String, String>,
    pub valid_after: i64,
    pub valid_before: i64,
}

/// The key id of a grant's certificates.
pub fn key_id(user: &str, grant: &str) -> String {
    format!("firedoor:{user}:{grant}")
}

/// Merges what several permission levels give into one certificate's contents:
/// every principal and extension (once, sorted), critical options joined; two
/// levels asking for different values of one critical option is an error.
pub fn merge_access<'a>(levels: impl IntoIterator<Item = &'a SshAccess>) -> Result<Merged, String> {
    let mut principals = std::collections::BTreeSet::new();
    let mut extensions = std::collections::BTreeSet::new();
    let mut options: BTreeMap<String, String> = BTreeMap::new();
    for a in levels {
        principals.extend(a.principals.iter().cloned());
        extensions.extend(a.extensions.iter().cloned());
        for (k, v) in &a.critical_options {
            if let Some(old) = options.get(k) {
                if old != v {
                    return Err(format!(
                        "the bundle's SSH levels set critical option {k} to both '{old}' and '{v}'"
                    ));
                }
            }
            options.insert(k.clone(), v.clone());
        }
    }
    Ok(Merged {
        principals: principals.into_iter().collect(),
        extensions: extensions.into_iter().collect(),
        critical_options: options,
    })
}

/// What several levels give together (see [`merge_access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub principals: Vec<String>,
    pub extensions: Vec<String>,
    pub critical_options: BTreeMap<String, String>,
}

/// Why a public key or certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("public_key is not an OpenSSH public key line (ssh-ed25519 AAAA…)")]
    NotAKey,
    #[error("public_key must be an ed25519 key made for this grant")]
    NotEd25519,
    #[error("the certificate could not be made: {0}")]
    Sign(String),
}

/// Reads the key a device sent: one OpenSSH public key line, ed25519 only.
pub fn parse_public_key(line: &str) -> Result<PublicKey, SshError> {
    let k = PublicKey::from_openssh(line.trim()).map_err(|_| SshError::NotAKey)?;
    if k.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(SshError::NotEd25519);
    }
    Ok(k)
}

/// Signs a user certificate for `key` with the CA key `ca`; the OpenSSH line
/// (`ssh-ed25519-cert-v01@openssh.com AAAA… key_id`).
pub fn issue(
    ca: &PrivateKey,
    key: &PublicKey,
    spec: &CertSpec,
    nonce: [u8; 32],
) -> Result<String, SshError> {
    let sign = |e: ssh_key::Error| SshError::Sign(e.to_string());
    let mut b = Builder::new(
        nonce.to_vec(),
        key.key_data().clone(),
        spec.valid_after.max(0) as u64,
        spec.valid_before.max(0) as u64,
    )
    .map_err(sign)?;
    b.serial(spec.serial)
        .map_err(sign)?
        .key_id(spec.key_id.clone())
        .map_err(sign)?
        .cert_type(CertType::User)
        .map_err(sign)?
        .comment(spec.key_id.clone())
        .map_err(sign)?;
    for p in &spec.principals {
        b.valid_principal(p.clone()).map_err(sign)?;
    }
    for e in &spec.extensions {
        b.extension(e.clone(), "").map_err(sign)?;
    }
    for (k, v) in &spec.critical_options {
        b.critical_option(k.clone(), v.clone()).map_err(sign)?;
    }
    let cert = b.sign(ca).map_err(sign)?;
    cert.to_openssh().map_err(sign)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// `PROTOCOL.krl`: the magic, format version 1.
const KRL_MAGIC: u64 = 0x5353_484b_524c_0a00;
const KRL_FORMAT_VERSION: u32 = 1;
const KRL_SECTION_CERTIFICATES: u8 = 1;
const KRL_SECTION_CERT_SERIAL_LIST: u8 = 0x20;

/// An OpenSSH key revocation list revoking, for each CA key, the certificate
/// serials given. `version` must grow with every change (hosts and tools compare
/// it); `generated` is Unix seconds. Unsigned: hosts fetch it over TLS.
pub fn krl(
    revoked: &[(&PublicKey, Vec<u64>)],
    version: u64,
    generated: i64,
    comment: &str,
) -> Result<Vec<u8>, SshError> {
    let mut out = Vec::new();
    put_u64(&mut out, KRL_MAGIC);
    put_u32(&mut out, KRL_FORMAT_VERSION);
    put_u64(&mut out, version);
    put_u64(&mut out, generated.max(0) as u64);
    put_u64(&mut out, 0); // flags
    put_string(&mut out, b""); // reserved
    put_string(&mut out, comment.as_bytes());
    for (ca, serials) in revoked {
        if serials.is_empty() {
            continue;
        }
        let blob = ca.to_bytes().map_err(|e| SshError::Sign(e.to_string()))?;
        let mut section = Vec::new();
        put_string(&mut section, &blob);
        put_string(&mut section, b""); // reserved
        let mut list = Vec::new();
        let mut sorted = serials.clone();
        sorted.sort_unstable();
        sorted.dedup();
        for s in sorted {
            put_u64(&mut list, s);
        }
        section.push(KRL_SECTION_CERT_SERIAL_LIST);
        put_string(&mut section, &list);
        out.push(KRL_SECTION_CERTIFICATES);
        put_string(&mut out, &section);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ssh_key::rand_core::OsRng;

    fn ca() -> PrivateKey {
        PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap()
    }

    #[test]
    fn a_certificate_carries_exactly_what_the_levels_give() {
        let ca = ca();
        let key = PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let login = SshAccess {
            principals: vec!["payments-oncall".into()],
            extensions: default_extensions(),
            critical_options: [("source-address".to_string(), "10.0.0.0/8".to_string())].into(),
            user: None,
        };
        let m = merge_access([&login]).unwrap();
        let spec = CertSpec {
            key_id: key_id("alice", "grt_1"),
            serial: 7,
            principals: m.principals,
            extensions: m.extensions,
            critical_options: m.critical_options,
            valid_after: 1_900_000_000,
            valid_before: 1_900_003_600,
        };
        let line = issue(&ca, key.public_key(), &spec, [1; 32]).unwrap();
        assert!(line.starts_with("ssh-ed25519-cert-v01@openssh.com "));
        let cert = ssh_key::Certificate::from_openssh(&line).unwrap();
        assert_eq!(cert.serial(), 7);
        assert_eq!(cert.key_id(), "firedoor:alice:grt_1");
        assert_eq!(cert.valid_principals(), ["payments-oncall".to_string()]);
        assert_eq!(cert.valid_after(), 1_900_000_000);
        assert_eq!(cert.valid_before(), 1_900_003_600);
        assert!(cert.extensions().contains_key("permit-pty"));
        assert!(!cert.extensions().contains_key("permit-port-forwarding"));
        assert_eq!(
            cert.critical_options()
                .get("source-address")
                .map(String::as_str),
            Some("10.0.0.0/8")
        );
        assert_eq!(cert.signature_key(), ca.public_key().key_data());
    }

    #[test]
    fn levels_that_disagree_on_a_critical_option_are_refused() {
        let a = SshAccess {
            principals: vec!["a".into()],
            extensions: vec![],
            critical_options: [("force-command".to_string(), "uptime".to_string())].into(),
            user: None,
        };
        let mut b = a.clone();
        b.critical_options
            .insert("force-command".into(), "id".into());
        assert!(merge_access([&a, &b]).is_err());
    }

    #[test]
    fn only_ed25519_public_keys_are_taken() {
        let k = PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let line = k.public_key().to_openssh().unwrap();
        assert!(parse_public_key(&line).is_ok());
        assert_eq!(parse_public_key("ssh-ed25519 nope"), Err(SshError::NotAKey));
        assert_eq!(
            parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----"),
            Err(SshError::NotAKey)
        );
    }

    #[test]
    fn a_krl_starts_with_the_magic_and_lists_serials_per_ca() {
        let ca = ca();
        let k = krl(
            &[(ca.public_key(), vec![9, 3, 3])],
            5,
            1_900_000_000,
            "firedoor",
        )
        .unwrap();
        assert_eq!(&k[..8], b"SSHKRL\n\0");
        assert_eq!(&k[8..12], &1u32.to_be_bytes());
        assert_eq!(&k[12..20], &5u64.to_be_bytes());
        // Serials sorted and once each, at the end.
        assert_eq!(
            &k[k.len() - 16..],
            &[3u64.to_be_bytes(), 9u64.to_be_bytes()].concat()[..]
        );
        // Nothing revoked: the header alone.
        let empty = krl(&[(ca.public_key(), vec![])], 6, 1_900_000_000, "").unwrap();
        assert_eq!(empty.len(), 8 + 4 + 8 + 8 + 8 + 4 + 4);
    }
}
