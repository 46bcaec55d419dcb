//! This device's break-glass keys: an age X25519 identity (envelopes are sealed to its
//! recipient) and an ed25519 signing key (signs the device's unlock chain).
//!
//! Both are made at enrolment and exist at rest only inside the [`SecretStore`] (the OS
//! keyring in the app), and there only wrapped: an age file encrypted with the user's
//! local unlock passphrase (age's scrypt recipient). A copied disk holds no key at all.
//! A logged-in session (the user's, borrowed, or malware running as the user) can read
//! the wrapped keys from the keyring, like the app does: what stands between it and the
//! secrets is the passphrase's strength (judged by zxcvbn at enrolment, see
//! [`crate::trust`]) and scrypt's cost per guess. The app's lock-out only limits guesses
//! made through the app, not guesses against a copy of the wrapped keys.
//!
//! Private halves live in zeroizing types ([`SigningKey`] and age's identity zeroize on
//! drop; the plaintext of the wrapped file is [`Zeroizing`]) and [`DeviceKeys`]'
//! `Debug` shows public halves only.
//!
//! [`SecretStore`]: crate::secrets::SecretStore

use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use firedoor_core::breakglass::encode_public_key;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// First line of the wrapped plaintext: names the format.
const KEYS_HEADER: &str = "firedoor device keys v1";
/// The calibrated work factor never goes below this (2^15 × 1 KiB = 32 MiB of memory
/// per derivation)...
pub const MIN_CALIBRATED_WORK_FACTOR: u8 = 15;
/// ...and no work factor is used or accepted above this (2^20 × 1 KiB = 1 GiB).
pub const MAX_WORK_FACTOR: u8 = 20;
/// What the calibration aims for: one derivation takes at least this long here.
pub const TARGET_UNWRAP_TIME: Duration = Duration::from_millis(500);

/// Why the wrapped keys could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceKeyError {
    /// The passphrase does not open the wrapped keys.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// Anything else: damaged, not ours, or asks for more work than we allow.
    #[error("the device keys cannot be read: {0}")]
    Unreadable(String),
}

/// The device's private keys, unwrapped. Drop it as soon as the operation is done.
pub struct DeviceKeys {
    age: age::x25519::Identity,
    signing: SigningKey,
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("recipient", &self.recipient())
            .field("signing_key", &self.signing_key_b64())
            .finish_non_exhaustive()
    }
}

impl DeviceKeys {
    /// Fresh keys from the OS random number generator.
    pub fn generate() -> DeviceKeys {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        DeviceKeys {
            age: age::x25519::Identity::generate(),
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public age recipient (`age1…`) envelopes are sealed to.
    pub fn recipient(&self) -> String {
        self.age.to_public().to_string()
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public signing key as sent to the broker (base64).
    pub fn signing_key_b64(&self) -> String {
        encode_public_key(&self.signing.verifying_key())
    }

    pub fn age_identity(&self) -> &age::x25519::Identity {
        &self.age
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Encrypts both private keys with `passphrase` (age scrypt, `N = 2^log_n`) into an
    /// ASCII-armoured age file, fit for a text-only secret store.
    pub fn wrap(&self, passphrase: &SecretString, log_n: u8) -> Result<String, DeviceKeyError> {
        if !(1..=MAX_WORK_FACTOR).contains(&log_n) {
            return Err(DeviceKeyError::Unreadable(format!(
                "work factor {log_n} is out of range"
            )));
        }
        let signing = Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(self.signing.to_bytes()),
        );
        let age_secret = self.age.to_string();
        let mut plain = Zeroizing::new(String::with_capacity(256));
        plain.push_str(KEYS_HEADER);
        plain.push_str("\nage: ");
        plain.push_str(age_secret.expose_secret());
        plain.push_str("\ned25519: ");
        plain.push_str(&signing);
        plain.push('\n');
        let mut r = age::scrypt::Recipient::new(passphrase.clone());
        r.set_work_factor(log_n);
        age::encrypt_and_armor(&r, plain.as_bytes())
            .map_err(|e| DeviceKeyError::Unreadable(format!("cannot wrap the keys: {e}")))
    }

    /// Opens keys made by [`DeviceKeys::wrap`]. `max_log_n` is the work factor recorded
    /// at enrolment: a wrapped file asking for more work (or more than
    /// [`MAX_WORK_FACTOR`]) is refused rather than tried.
    pub fn unwrap(
        wrapped: &str,
        passphrase: &SecretString,
        max_log_n: u8,
    ) -> Result<DeviceKeys, DeviceKeyError> {
        let mut id = age::scrypt::Identity::new(passphrase.clone());
        id.set_max_work_factor(max_log_n.min(MAX_WORK_FACTOR));
        let plain = Zeroizing::new(age::decrypt(&id, wrapped.as_bytes()).map_err(|e| match e {
            age::DecryptError::DecryptionFailed => DeviceKeyError::WrongPassphrase,
            age::DecryptError::ExcessiveWork { required, .. } => DeviceKeyError::Unreadable(
                format!("they ask for scrypt work factor {required}, more than the {max_log_n} recorded at enrolment"),
            ),
            other => DeviceKeyError::Unreadable(other.to_string()),
        })?);
        let text = std::str::from_utf8(&plain)
            .map_err(|_| DeviceKeyError::Unreadable("not text".into()))?;
        let mut lines = text.lines();
        if lines.next() != Some(KEYS_HEADER) {
            return Err(DeviceKeyError::Unreadable("unknown format".into()));
        }
        let mut age_line = None;
        let mut signing_line = None;
        for l in lines {
            if let Some(v) = l.strip_prefix("age: ") {
                age_line = Some(v);
            } else if let Some(v) = l.strip_prefix("ed25519: ") {
                signing_line = Some(v);
            }
        }
        let (Some(age_text), Some(signing_text)) = (age_line, signing_line) else {
            return Err(DeviceKeyError::Unreadable("a key is missing".into()));
        };
        let age = age::x25519::Identity::from_str(age_text)
            .map_err(|_| DeviceKeyError::Unreadable("the age identity is malformed".into()))?;
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(signing_text)
                .map_err(|_| DeviceKeyError::Unreadable("the signing key is malformed".into()))?,
        );
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| DeviceKeyError::Unreadable("the signing key is malformed".into()))?,
        );
        Ok(DeviceKeys {
            age,
            signing: SigningKey::from_bytes(&seed),
        })
    }
}

/// Times one scrypt derivation (as age does it, r = 8, p = 1) at `N = 2^log_n`.
fn time_scrypt(log_n: u8) -> Duration {
    let mut r = age::scrypt::Recipient::new(SecretString::from("calibration"));
    r.set_work_factor(log_n);
    let start = Instant::now();
    let _ = age::encrypt(&r, b"x");
    start.elapsed()
}

/// The smallest scrypt work factor (log2 N) whose derivation takes at least `target`
/// on this machine: one derivation is measured at a low factor and scaled (scrypt's
/// cost doubles with each step). Kept within [`MIN_CALIBRATED_WORK_FACTOR`] and
/// [`MAX_WORK_FACTOR`]. Blocks for a few tens of milliseconds.
pub fn calibrate_work_factor(target: Duration) -> u8 {
    let mut log_n = 12u8;
    let mut took = time_scrypt(log_n);
    // Measure something long enough to be meaningful.
    while took < Duration::from_millis(20) && log_n < 16 {
        log_n += 1;
        took = time_scrypt(log_n);
    }
    while took < target && log_n < MAX_WORK_FACTOR {
        log_n += 1;
        took *= 2;
    }
    log_n.clamp(MIN_CALIBRATED_WORK_FACTOR, MAX_WORK_FACTOR)
}

/// A name people recognise for this device: the host name, else "this device".
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "this device".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wrap_unwrap_round_trip_and_wrong_passphrase_is_distinct() {
        let keys = DeviceKeys::generate();
        let pass = SecretString::from("correct horse");
        let wrapped = keys.wrap(&pass, 10).unwrap();
        assert!(wrapped.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!wrapped.contains("AGE-SECRET-KEY-"));
        let back = DeviceKeys::unwrap(&wrapped, &pass, 10).unwrap();
        assert_eq!(back.recipient(), keys.recipient());
        assert_eq!(back.verifying_key(), keys.verifying_key());

        let e = DeviceKeys::unwrap(&wrapped, &SecretString::from("wrong horse"), 10).unwrap_err();
        assert_eq!(e, DeviceKeyError::WrongPassphrase);
        // More work than recorded: refused, and not reported as a wrong passphrase.
        let e = DeviceKeys::unwrap(&wrapped, &pass, 9).unwrap_err();
        assert!(matches!(e, DeviceKeyError::Unreadable(_)), "{e:?}");
        // Damaged.
        let e = DeviceKeys::unwrap("garbage", &pass, 10).unwrap_err();
        assert!(matches!(e, DeviceKeyError::Unreadable(_)), "{e:?}");
    }

    #[test]
    fn debug_shows_no_private_key() {
        let keys = DeviceKeys::generate();
        let dbg = format!("{keys:?}");
        assert!(!dbg.contains("AGE-SECRET-KEY"), "{dbg}");
        assert!(dbg.contains(&keys.recipient()));
        let seed = base64::engine::general_purpose::STANDARD.encode(keys.signing.to_bytes());
        assert!(!dbg.contains(&seed), "{dbg}");
    }

    #[test]
    fn calibration_stays_in_bounds() {
        let f = calibrate_work_factor(Duration::from_millis(1));
        assert_eq!(f, MIN_CALIBRATED_WORK_FACTOR);
        let f = calibrate_work_factor(TARGET_UNWRAP_TIME);
        assert!(
            (MIN_CALIBRATED_WORK_FACTOR..=MAX_WORK_FACTOR).contains(&f),
            "{f}"
        );
    }
}
