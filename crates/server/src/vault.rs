//! The broker's own keys, kept together in one 0600 file (`broker.key`):
//!
//! - an age X25519 identity (`AGE-SECRET-KEY-…`): credentials issued for grants and
//!   break-glass secret values are kept encrypted at rest under it;
//! - an ed25519 signing key (`FIREDOOR-SIGNING-KEY-<base64 of 32 bytes>`): it signs
//!   break-glass envelopes; apps pin its public half (`GET /api/v1/broker`).
//!
//! A key file written before break glass existed has no signing line: it is added on
//! the next start, keeping the file's mode.

use crate::error::{Error, Result};
use age::secrecy::ExposeSecret;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use zeroize::Zeroizing;

/// Prefix of the signing key's line in the key file.
pub const SIGNING_KEY_PREFIX: &str = "FIREDOOR-SIGNING-KEY-";

pub struct BrokerKey {
    identity: age::x25519::Identity,
    recipient: age::x25519::Recipient,
    signing: SigningKey,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn new_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

fn signing_line(key: &SigningKey) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{SIGNING_KEY_PREFIX}{}",
        b64().encode(key.to_bytes())
    ))
}

fn parse_signing_line(path: &Path, line: &str) -> Result<SigningKey> {
    let bad = |why: &str| {
        Error::Config(format!(
            "{}: the {SIGNING_KEY_PREFIX} line is {why}",
            path.display()
        ))
    };
    let text = line.trim().trim_start_matches(SIGNING_KEY_PREFIX);
    let bytes = Zeroizing::new(b64().decode(text).map_err(|_| bad("not base64"))?);
    let arr: Zeroizing<[u8; 32]> = Zeroizing::new(
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("not 32 bytes"))?,
    );
    Ok(SigningKey::from_bytes(&arr))
}

impl BrokerKey {
    /// Loads the key file, or creates it with mode 0600 if it does not exist. A key
    /// file without a signing key gets one appended.
    pub fn load_or_create(path: &Path) -> Result<BrokerKey> {
        if path.exists() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(Error::Config(format!(
                        "{}: the broker key is readable by others (mode {mode:o}); run chmod 600 on it",
                        path.display()
                    )));
                }
            }
            let text = Zeroizing::new(std::fs::read_to_string(path)?);
            let line = text
                .lines()
                .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                .ok_or_else(|| {
                    Error::Config(format!("{}: no AGE-SECRET-KEY line", path.display()))
                })?;
            let identity = age::x25519::Identity::from_str(line.trim())
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            let recipient = identity.to_public();
            let signing = match text.lines().find(|l| l.starts_with(SIGNING_KEY_PREFIX)) {
                Some(l) => parse_signing_line(path, l)?,
                None => {
                    let key = new_signing_key();
                    // Appending keeps the file's mode (checked above to be private).
                    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
                    let sep = if text.ends_with('\n') || text.is_empty() {
                        ""
                    } else {
                        "\n"
                    };
                    writeln!(
                        f,
                        "{sep}# Signs break-glass envelopes; apps pin its public half."
                    )?;
                    writeln!(f, "{}", signing_line(&key).as_str())?;
                    f.sync_all()?;
                    tracing::info!(path = %path.display(), "added an envelope signing key to the broker key file");
                    key
                }
            };
            return Ok(BrokerKey {
                identity,
                recipient,
                signing,
            });
        }
        let identity = age::x25519::Identity::generate();
        let signing = new_signing_key();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path)?;
        writeln!(
            f,
            "# Firedoor broker key. Keep it secret: it decrypts issued credentials and signs break-glass envelopes."
        )?;
        writeln!(f, "{}", identity.to_string().expose_secret())?;
        writeln!(f, "{}", signing_line(&signing).as_str())?;
        f.sync_all()?;
        let recipient = identity.to_public();
        Ok(BrokerKey {
            identity,
            recipient,
            signing,
        })
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        age::encrypt(&self.recipient, plaintext)
            .map_err(|e| Error::Corrupt(format!("sealing: {e}")))
    }

    pub fn open(&self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        age::decrypt(&self.identity, ciphertext)
            .map_err(|e| Error::Corrupt(format!("unsealing: {e}")))
    }

    /// The key that signs break-glass envelopes.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn old_key_files_gain_a_signing_key_and_keep_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.key");
        // A key file as written before break glass: comment and age identity only.
        let id = age::x25519::Identity::generate();
        std::fs::write(
            &path,
            format!("# old\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k1 = BrokerKey::load_or_create(&path).unwrap();
        let sealed = k1.seal(b"x").unwrap();
        assert_eq!(
            age::decrypt(&id, &sealed).unwrap(),
            b"x",
            "the age identity is unchanged"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(SIGNING_KEY_PREFIX))
                .count(),
            1
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "still private");
        let k2 = BrokerKey::load_or_create(&path).unwrap();
        assert_eq!(
            k1.verifying_key(),
            k2.verifying_key(),
            "the same signing key on the next start"
        );

        let fresh = dir.path().join("new.key");
        let k3 = BrokerKey::load_or_create(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            BrokerKey::load_or_create(&fresh).unwrap().verifying_key(),
            k3.verifying_key()
        );
        assert_ne!(k3.verifying_key(), k1.verifying_key());

        std::fs::write(
            &fresh,
            format!(
                "{}\nFIREDOOR-SIGNING-KEY-AAAA\n",
                id.to_string().expose_secret()
            ),
        )
        .unwrap();
        let e = BrokerKey::load_or_create(&fresh).err().unwrap();
        assert!(e.to_string().contains("not 32 bytes"), "{e}");
    }
}
