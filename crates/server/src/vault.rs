//! The broker's own key: credentials issued for grants are kept encrypted at rest
//! (age, X25519) under it and wiped when the grant ends.

use crate::error::{Error, Result};
use age::secrecy::ExposeSecret;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

pub struct BrokerKey {
    identity: age::x25519::Identity,
    recipient: age::x25519::Recipient,
}

impl BrokerKey {
    /// Loads the key file, or creates it with mode 0600 if it does not exist.
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
            let text = std::fs::read_to_string(path)?;
            let line = text
                .lines()
                .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                .ok_or_else(|| {
                    Error::Config(format!("{}: no AGE-SECRET-KEY line", path.display()))
                })?;
            let identity = age::x25519::Identity::from_str(line.trim())
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            let recipient = identity.to_public();
            return Ok(BrokerKey {
                identity,
                recipient,
            });
        }
        let identity = age::x25519::Identity::generate();
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
            "# Firedoor broker key. Keep it secret: it decrypts issued credentials."
        )?;
        writeln!(f, "{}", identity.to_string().expose_secret())?;
        f.sync_all()?;
        let recipient = identity.to_public();
        Ok(BrokerKey {
            identity,
            recipient,
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
}
