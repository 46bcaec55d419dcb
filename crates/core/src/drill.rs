//! Break-glass drills (issue 14): every eligible device proves, on a schedule or on
//! demand, that it can still open its current envelope, without showing the secret.
//!
//! The proof: the device decrypts its envelope and computes
//! `HMAC-SHA256(key = plaintext, msg = domain ‖ drill id ‖ nonce ‖ secret ‖ version ‖
//! device id)` (each field length-prefixed), then signs the drill's fields and that
//! MAC with its ed25519 device key. The broker, which holds the value sealed at rest,
//! computes the same MAC and checks the signature against the device's enrolled key.
//!
//! - The MAC reveals nothing usable about the secret: HMAC is a PRF keyed by the
//!   secret, so without the key its output is indistinguishable from random, and the
//!   message is fixed by the broker's fresh random nonce. (A weak, guessable secret
//!   could be tested against a captured proof offline, as against any keyed hash:
//!   the broker neither stores nor logs proofs, only pass or fail.)
//! - It cannot be replayed: it is bound to the drill id and its 256-bit nonce, the
//!   secret, its version and the device id, so a proof answers exactly one device in
//!   one drill.
//! - It is the device's: the signature is checked against the key the device enrolled,
//!   so somebody else who knows the value (an admin) cannot pass the drill for it.
//!
//! Everything here is pure: keys, values and time are passed in.

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Domain separation of the MAC.
const PROOF_DOMAIN: &[u8] = b"firedoor drill proof v1\n";
/// Domain separation of the device's signature over an answer.
const ANSWER_DOMAIN: &[u8] = b"firedoor drill answer v1\n";
/// Bytes of a drill nonce (hex-encoded on the wire).
pub const NONCE_BYTES: usize = 32;
/// Failed answers one device may give in one drill; after that it is refused until
/// the next drill (a wrong proof is recorded every time).
pub const MAX_FAILED_ANSWERS: u32 = 5;

/// What a device answers, bound together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub drill_id: &'a str,
    /// Hex of [`NONCE_BYTES`] random bytes, chosen by the broker at the drill's start.
    pub nonce: &'a str,
    pub secret: &'a str,
    pub version: i64,
    pub device_id: &'a str,
}

impl Challenge<'_> {
    /// The challenge's fields, each length-prefixed, so no two challenges share bytes.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        let version = self.version.to_string();
        for part in [
            self.drill_id,
            self.nonce,
            self.secret,
            version.as_str(),
            self.device_id,
        ] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    /// The MAC of the challenge keyed by the secret's value (hex).
    pub fn proof(&self, value: &[u8]) -> String {
        hex::encode(self.mac(value).finalize().into_bytes())
    }

    fn mac(&self, value: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this never fails.
        #[allow(clippy::expect_used)]
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(value).expect("HMAC accepts any key length");
        m.update(PROOF_DOMAIN);
        m.update(&self.bytes());
        m
    }

    fn signed_bytes(&self, proof: &str) -> Vec<u8> {
        let mut buf = ANSWER_DOMAIN.to_vec();
        buf.extend_from_slice(&self.bytes());
        buf.extend_from_slice(&(proof.len() as u64).to_be_bytes());
        buf.extend_from_slice(proof.as_bytes());
        buf
    }

    /// The device's answer: the proof and its signature over the challenge.
    pub fn answer(&self, value: &[u8], device: &SigningKey) -> DrillAnswer {
        let proof = self.proof(value);
        let signature = base64::engine::general_purpose::STANDARD
            .encode(device.sign(&self.signed_bytes(&proof)).to_bytes());
        DrillAnswer {
            device_id: self.device_id.to_string(),
            version: self.version,
            proof,
            signature,
        }
    }

    /// Checks an answer against the value the broker holds and the device's key.
    /// The MAC is compared in constant time.
    pub fn verify(
        &self,
        answer: &DrillAnswer,
        value: &[u8],
        device: &VerifyingKey,
    ) -> Result<(), DrillProblem> {
        if answer.device_id != self.device_id || answer.version != self.version {
            return Err(DrillProblem::WrongChallenge);
        }
        let Ok(given) = hex::decode(&answer.proof) else {
            return Err(DrillProblem::Malformed);
        };
        let sig = base64::engine::general_purpose::STANDARD
            .decode(answer.signature.trim())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .ok_or(DrillProblem::Malformed)?;
        if device
            .verify_strict(
                &self.signed_bytes(&answer.proof),
                &Signature::from_bytes(&sig),
            )
            .is_err()
        {
            return Err(DrillProblem::BadSignature);
        }
        self.mac(value)
            .verify_slice(&given)
            .map_err(|_| DrillProblem::WrongProof)
    }
}

/// Why an answer was refused. Never says anything about the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DrillProblem {
    #[error("the proof is not hex or the signature is not an ed25519 signature")]
    Malformed,
    #[error("the answer names another device or version than the one asked")]
    WrongChallenge,
    #[error("the signature does not verify for this drill and device: the answer was made for another drill, or signed by another key")]
    BadSignature,
    #[error("the proof does not match: this device's envelope did not open to the current value, or the proof was made for another drill")]
    WrongProof,
}

impl DrillProblem {
    /// The stable name recorded in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillProblem::Malformed => "malformed",
            DrillProblem::WrongChallenge => "wrong_challenge",
            DrillProblem::BadSignature => "bad_signature",
            DrillProblem::WrongProof => "wrong_proof",
        }
    }
}

// ---- HTTP shapes ------------------------------------------------------------------

/// `POST /v1/drills` (admins): start a drill of one secret, or of every secret that
/// has a value (`all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartDrill {
    pub secret: String,
}

/// `POST /v1/drills/{id}/answers`: a device's proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillAnswer {
    pub device_id: String,
    /// The envelope version the device opened (must be the current one).
    pub version: i64,
    /// Hex HMAC-SHA256, see the module documentation.
    pub proof: String,
    /// Base64 ed25519 signature by the device key.
    pub signature: String,
}

/// One device asked in a drill, and how it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DrillDevice {
    pub device_id: String,
    pub device_name: String,
    pub user: String,
    pub passed_at: Option<DateTime<Utc>>,
    /// Wrong answers given.
    pub failures: u32,
    pub last_failure_at: Option<DateTime<Utc>>,
}

/// A drill, as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DrillView {
    pub id: String,
    pub secret: String,
    /// The secret's version when the drill started.
    pub version: i64,
    /// `manual` or `schedule`.
    pub trigger: String,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// `open` until the deadline, then `closed`.
    pub state: String,
    pub devices: Vec<DrillDevice>,
}

/// A drill waiting on one of the caller's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDrill {
    pub id: String,
    pub secret: String,
    pub title: String,
    pub version: i64,
    pub nonce: String,
    pub deadline: DateTime<Utc>,
}

/// `GET /v1/devices/{id}/drills`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDrills {
    pub drills: Vec<PendingDrill>,
}

/// The broker's answer to a correct proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillPassed {
    pub drill_id: String,
    pub secret: String,
    pub version: i64,
    pub device_id: String,
    pub passed_at: DateTime<Utc>,
}

/// Where one device stands for one secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DeviceReadiness {
    pub device_id: String,
    pub device_name: String,
    /// The version of the envelope it holds (`None`: none).
    pub version: Option<i64>,
    pub not_after: Option<DateTime<Utc>>,
    /// Holds the current version, valid beyond the "expiring soon" margin.
    pub fresh: bool,
    pub expiring_soon: bool,
    /// In the last drill of the secret that asked it: `passed`, `failed` (a wrong
    /// proof and no pass), `missed` (no answer by the deadline), `pending` (the
    /// drill is still open); `not_asked` if no drill asked it yet.
    pub drill: String,
    pub passed_at: Option<DateTime<Utc>>,
    /// Counts towards the secret's ready holders: fresh, and it did not fail or
    /// miss the last closed drill that asked it.
    pub ready: bool,
}

/// Where one eligible person stands for one secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HolderReadiness {
    pub user: String,
    pub devices: Vec<DeviceReadiness>,
    /// At least one device is ready.
    pub ready: bool,
    pub on_call: bool,
}

/// The last drill of a secret, in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DrillSummary {
    pub id: String,
    pub state: String,
    pub version: i64,
    pub started_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub asked: u32,
    pub passed: u32,
    pub failed: u32,
}

/// One secret's readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SecretReadiness {
    pub name: String,
    pub title: String,
    /// 0 while no value is stored (then nobody can be ready, and no alert is raised).
    pub version: i64,
    /// People ready to open it (see [`DeviceReadiness::ready`]).
    pub ready: u32,
    /// max(unlock quorum, `min_ready`).
    pub required: u32,
    /// `ready < required` for a secret that has a value.
    pub below: bool,
    /// Everyone who may unlock it, ready or not.
    pub holders: Vec<HolderReadiness>,
    /// People on call now without a fresh envelope of it (`eligible`: whether they
    /// may unlock it at all).
    pub on_call_without_envelope: Vec<OnCallGap>,
    pub last_drill: Option<DrillSummary>,
    /// When the next scheduled drill starts (`None`: no `drill_every`).
    pub next_drill_at: Option<DateTime<Utc>>,
    /// Uses of this secret nobody has classified yet (drill / incident / other):
    /// they stay here until someone does.
    #[serde(default)]
    pub open_uses: Vec<crate::uses::UseView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OnCallGap {
    pub user: String,
    pub eligible: bool,
}

/// `GET /v1/readiness`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Readiness {
    pub at: DateTime<Utc>,
    pub secrets: Vec<SecretReadiness>,
}

/// How long before its `not_after` an envelope counts as expiring soon: a quarter of
/// its validity, at most a day.
pub fn expiring_soon_secs(validity_secs: i64) -> i64 {
    (validity_secs / 4).min(86_400)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ch<'a>(drill: &'a str, nonce: &'a str) -> Challenge<'a> {
        Challenge {
            drill_id: drill,
            nonce,
            secret: "db",
            version: 3,
            device_id: "dev_1",
        }
    }

    #[test]
    fn a_proof_verifies_and_is_bound_to_its_drill_device_and_value() {
        let dev = SigningKey::from_bytes(&[7; 32]);
        let pk = dev.verifying_key();
        let value = b"hunter2-correct-value";
        let c = ch("drl_1", "aa");
        let a = c.answer(value, &dev);
        assert_eq!(c.verify(&a, value, &pk), Ok(()));
        assert_eq!(a.proof.len(), 64, "hex SHA-256");
        assert!(!a.proof.contains("hunter2"));
        // Another drill (id or nonce): the same answer does not pass.
        assert_eq!(
            ch("drl_2", "aa").verify(&a, value, &pk),
            Err(DrillProblem::BadSignature)
        );
        assert_eq!(
            ch("drl_1", "bb").verify(&a, value, &pk),
            Err(DrillProblem::BadSignature)
        );
        // A proof freshly signed for another drill but computed for this one.
        let mut moved = ch("drl_2", "aa").answer(value, &dev);
        moved.proof = a.proof.clone();
        assert!(ch("drl_2", "aa").verify(&moved, value, &pk).is_err());
        // The wrong value, signed properly: wrong proof.
        let wrong = c.answer(b"not it", &dev);
        assert_eq!(c.verify(&wrong, value, &pk), Err(DrillProblem::WrongProof));
        // Another device's key.
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            c.verify(&c.answer(value, &other), value, &pk),
            Err(DrillProblem::BadSignature)
        );
        // Another device id or version in the answer.
        let mut t = a.clone();
        t.device_id = "dev_2".into();
        assert_eq!(c.verify(&t, value, &pk), Err(DrillProblem::WrongChallenge));
        let mut t = a.clone();
        t.proof = "zz".into();
        assert_eq!(c.verify(&t, value, &pk), Err(DrillProblem::Malformed));
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let a = Challenge {
            drill_id: "ab",
            nonce: "c",
            secret: "s",
            version: 1,
            device_id: "d",
        };
        let b = Challenge {
            drill_id: "a",
            nonce: "bc",
            ..a.clone()
        };
        assert_ne!(a.proof(b"v"), b.proof(b"v"));
    }

    #[test]
    fn expiring_soon_is_a_quarter_of_validity_at_most_a_day() {
        assert_eq!(expiring_soon_secs(3600), 900);
        assert_eq!(expiring_soon_secs(7 * 86_400), 86_400);
    }
}
