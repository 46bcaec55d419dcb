//! Stable error codes shared by the broker's HTTP API, the client and the UI.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. The string form is part of the public API:
/// tests pin every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    InvalidJson,
    InvalidRequest,
    InvalidDuration,
    JustificationRequired,
    TicketRequired,
    SelfApproval,
    AlreadyDecided,
    Conflict,
    IdempotencyKeyReused,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    NotEligible,
    NoCredentials,
    /// An uploaded offline-unlock chain has a gap, an edit or a bad signature.
    ChainRejected,
    /// The caller already has as many open event streams as a user may.
    TooManyStreams,
    /// Single sign-on is not configured on this broker.
    SsoNotConfigured,
    /// An ID token was refused (signature, issuer, audience, time, nonce).
    InvalidIdToken,
    /// An SSO session has ended (`session_max` passed, or it was revoked): sign in
    /// again.
    SessionExpired,
    /// The OpenID Provider could not be reached or answered nonsense.
    IdpUnavailable,
    // issue 14: drills
    /// A drill answer was refused: the proof does not match, or its signature does
    /// not verify for that drill and device.
    DrillProofRejected,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidDuration => "invalid_duration",
            ErrorCode::JustificationRequired => "justification_required",
            ErrorCode::TicketRequired => "ticket_required",
            ErrorCode::SelfApproval => "self_approval",
            ErrorCode::AlreadyDecided => "already_decided",
            ErrorCode::Conflict => "conflict",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NotEligible => "not_eligible",
            ErrorCode::NoCredentials => "no_credentials",
            ErrorCode::ChainRejected => "chain_rejected",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::SsoNotConfigured => "sso_not_configured",
            ErrorCode::InvalidIdToken => "invalid_id_token",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::IdpUnavailable => "idp_unavailable",
            ErrorCode::DrillProofRejected => "drill_proof_rejected",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthenticated | ErrorCode::InvalidIdToken | ErrorCode::SessionExpired => {
                401
            }
            ErrorCode::SsoNotConfigured => 404,
            ErrorCode::IdpUnavailable => 502,
            ErrorCode::Forbidden | ErrorCode::SelfApproval | ErrorCode::NotEligible => 403,
            ErrorCode::NotFound | ErrorCode::NoCredentials => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::AlreadyDecided | ErrorCode::IdempotencyKeyReused => {
                409
            }
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::ChainRejected | ErrorCode::DrillProofRejected => 422,
            ErrorCode::TooManyStreams => 429,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidDuration
            | ErrorCode::JustificationRequired
            | ErrorCode::TicketRequired => 400,
            ErrorCode::Internal => 500,
        }
    }
}

impl ErrorCode {
    /// The code named `s` (its wire name), if it is one.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        use serde::de::IntoDeserializer;
        let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            s.into_deserializer();
        ErrorCode::deserialize(d).ok()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule of the domain refused an action. Carries a stable code and a message fit to
/// show a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub code: ErrorCode,
    pub message: String,
}

impl RuleError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RuleError {
            code,
            message: message.into(),
        }
    }
}

/// Why an action of the desktop console failed: a code the UI can switch on. The
/// broker's [`ErrorCode`]s pass through as they are (`not_found`, `forbidden`, …);
/// the rest are the app's own. The string form is what the UI receives, and is
/// pinned by tests like [`ErrorCode`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ConsoleErrorCode {
    /// The broker cannot be reached (or an action that needs it was tried offline).
    Offline,
    /// The broker's answer was not what this app understands.
    BadAnswer,
    /// The broker answered an error without a `{code, message}` body.
    HttpError,
    /// The broker answered with a code this app does not know (a newer broker); the
    /// message keeps the broker's text and code.
    BrokerError,
    /// A broker URL is not a URL this app accepts.
    InvalidUrl,
    /// A broker URL is plain `http://` to a host other than this machine.
    InsecureUrl,
    /// One of the broker URLs serves another broker (another signing key or token).
    WrongBroker,
    /// The local cache (SQLite) failed.
    Cache,
    /// The OS keyring failed (or holds something damaged).
    Keyring,
    Clipboard,
    /// Demo mode: the in-process broker could not be stopped or started.
    Demo,
    /// A demo-only action outside demo mode.
    NotDemo,
    /// The action needs a signed-in session.
    SignedOut,
    /// What was typed is not acceptable (e.g. an empty break-glass reason).
    Validation,
    WeakPassphrase,
    WrongPassphrase,
    /// Too many wrong passphrases: unlocking waits (the message says how long).
    LockedOut,
    /// This device is not enrolled for offline break glass.
    NotEnrolled,
    /// The device keys in the keyring cannot be read.
    KeysUnreadable,
    /// The local signed unlock chain does not verify.
    ChainBroken,
    /// Unlock records still wait for the broker's acknowledgement.
    PendingRecords,
    EnvelopeInvalid,
    EnvelopeExpired,
    /// The broker sent an older envelope than one already held.
    EnvelopeRolledBack,
    /// The broker presents a signing key other than the pinned one.
    BrokerKeyChanged,
    /// The fingerprint confirmed is not the broker's new key.
    FingerprintMismatch,
    /// There is no broker key change to confirm.
    NoKeyChange,
    /// The command line: the arguments are not what the command takes.
    Usage,
    /// The command line: this machine's data directory cannot be found or made.
    DataDir,
    /// The command line: reading the terminal or stdin, or writing stdout, failed.
    Io,
    /// The command line: credentials cannot be written in the format asked for.
    Format,
    /// The grant is not active (revoked, expired, or not yet started).
    NotActive,
    /// There is no ssh-agent to put a key in (`SSH_AUTH_SOCK` is not set).
    NoSshAgent,
    /// The ssh-agent refused or failed a request.
    SshAgent,
    /// Single sign-on: nobody finished signing in at the IdP in time.
    SsoTimeout,
    /// Single sign-on failed at the IdP or on the way back (the message says how).
    Sso,
    /// Starting at login could not be turned on or off.
    Autostart,
    // issue 14: quorum
    /// A two-person unlock request or share release failed a check (another
    /// request, envelope or version, expired, not from an eligible co-holder, replayed).
    QuorumRefused,
    /// Fewer shares than the quorum: nothing opens yet (the message says how many).
    QuorumIncomplete,
    /// A code of the broker's (also used by the app for the same meaning, e.g.
    /// `internal`, `invalid_request`, `not_found`, `unauthenticated`).
    #[serde(untagged)]
    Broker(ErrorCode),
}

impl ConsoleErrorCode {
    /// Every code of the app's own (not the broker's), in declaration order.
    pub const OWN: &'static [ConsoleErrorCode] = &[
        ConsoleErrorCode::Offline,
        ConsoleErrorCode::BadAnswer,
        ConsoleErrorCode::HttpError,
        ConsoleErrorCode::BrokerError,
        ConsoleErrorCode::InvalidUrl,
        ConsoleErrorCode::InsecureUrl,
        ConsoleErrorCode::WrongBroker,
        ConsoleErrorCode::Cache,
        ConsoleErrorCode::Keyring,
        ConsoleErrorCode::Clipboard,
        ConsoleErrorCode::Demo,
        ConsoleErrorCode::NotDemo,
        ConsoleErrorCode::SignedOut,
        ConsoleErrorCode::Validation,
        ConsoleErrorCode::WeakPassphrase,
        ConsoleErrorCode::WrongPassphrase,
        ConsoleErrorCode::LockedOut,
        ConsoleErrorCode::NotEnrolled,
        ConsoleErrorCode::KeysUnreadable,
        ConsoleErrorCode::ChainBroken,
        ConsoleErrorCode::PendingRecords,
        ConsoleErrorCode::EnvelopeInvalid,
        ConsoleErrorCode::EnvelopeExpired,
        ConsoleErrorCode::EnvelopeRolledBack,
        ConsoleErrorCode::BrokerKeyChanged,
        ConsoleErrorCode::FingerprintMismatch,
        ConsoleErrorCode::NoKeyChange,
        ConsoleErrorCode::Usage,
        ConsoleErrorCode::DataDir,
        ConsoleErrorCode::Io,
        ConsoleErrorCode::Format,
        ConsoleErrorCode::NotActive,
        ConsoleErrorCode::NoSshAgent,
        ConsoleErrorCode::SshAgent,
        ConsoleErrorCode::SsoTimeout,
        ConsoleErrorCode::Sso,
        ConsoleErrorCode::Autostart,
        // issue 14: quorum
        ConsoleErrorCode::QuorumRefused,
        ConsoleErrorCode::QuorumIncomplete,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleErrorCode::Offline => "offline",
            ConsoleErrorCode::BadAnswer => "bad_answer",
            ConsoleErrorCode::HttpError => "http_error",
            ConsoleErrorCode::BrokerError => "broker_error",
            ConsoleErrorCode::InvalidUrl => "invalid_url",
            ConsoleErrorCode::InsecureUrl => "insecure_url",
            ConsoleErrorCode::WrongBroker => "wrong_broker",
            ConsoleErrorCode::Cache => "cache",
            ConsoleErrorCode::Keyring => "keyring",
            ConsoleErrorCode::Clipboard => "clipboard",
            ConsoleErrorCode::Demo => "demo",
            ConsoleErrorCode::NotDemo => "not_demo",
            ConsoleErrorCode::SignedOut => "signed_out",
            ConsoleErrorCode::Validation => "validation",
            ConsoleErrorCode::WeakPassphrase => "weak_passphrase",
            ConsoleErrorCode::WrongPassphrase => "wrong_passphrase",
            ConsoleErrorCode::LockedOut => "locked_out",
            ConsoleErrorCode::NotEnrolled => "not_enrolled",
            ConsoleErrorCode::KeysUnreadable => "keys_unreadable",
            ConsoleErrorCode::ChainBroken => "chain_broken",
            ConsoleErrorCode::PendingRecords => "pending_records",
            ConsoleErrorCode::EnvelopeInvalid => "envelope_invalid",
            ConsoleErrorCode::EnvelopeExpired => "envelope_expired",
            ConsoleErrorCode::EnvelopeRolledBack => "envelope_rolled_back",
            ConsoleErrorCode::BrokerKeyChanged => "broker_key_changed",
            ConsoleErrorCode::FingerprintMismatch => "fingerprint_mismatch",
            ConsoleErrorCode::NoKeyChange => "no_key_change",
            ConsoleErrorCode::Usage => "usage",
            ConsoleErrorCode::DataDir => "data_dir",
            ConsoleErrorCode::Io => "io",
            ConsoleErrorCode::Format => "format",
            ConsoleErrorCode::NotActive => "not_active",
            ConsoleErrorCode::NoSshAgent => "no_ssh_agent",
            ConsoleErrorCode::SshAgent => "ssh_agent",
            ConsoleErrorCode::SsoTimeout => "sso_timeout",
            ConsoleErrorCode::Sso => "sso",
            ConsoleErrorCode::Autostart => "autostart",
            // issue 14: quorum
            ConsoleErrorCode::QuorumRefused => "quorum_refused",
            ConsoleErrorCode::QuorumIncomplete => "quorum_incomplete",
            ConsoleErrorCode::Broker(c) => c.as_str(),
        }
    }

    /// The code named `s`: the app's own, else the broker's.
    pub fn parse(s: &str) -> Option<ConsoleErrorCode> {
        ConsoleErrorCode::OWN
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .or_else(|| ErrorCode::parse(s).map(ConsoleErrorCode::Broker))
    }
}

impl From<ErrorCode> for ConsoleErrorCode {
    fn from(c: ErrorCode) -> Self {
        ConsoleErrorCode::Broker(c)
    }
}

impl std::fmt::Display for ConsoleErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares the wire name, so tests read `assert_eq!(e.code, "offline")`.
impl PartialEq<&str> for ConsoleErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_codes_keep_their_wire_names() {
        for c in ConsoleErrorCode::OWN {
            let json = serde_json::to_string(c).expect("serialises");
            assert_eq!(
                json,
                format!("\"{}\"", c.as_str()),
                "serde and as_str agree"
            );
            let back: ConsoleErrorCode = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, *c);
            assert_eq!(ConsoleErrorCode::parse(c.as_str()), Some(*c));
            assert!(
                ErrorCode::parse(c.as_str()).is_none(),
                "{c} must not shadow a broker code: the UI could not tell them apart"
            );
        }
        let names: Vec<&str> = ConsoleErrorCode::OWN.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "offline",
                "bad_answer",
                "http_error",
                "broker_error",
                "invalid_url",
                "insecure_url",
                "wrong_broker",
                "cache",
                "keyring",
                "clipboard",
                "demo",
                "not_demo",
                "signed_out",
                "validation",
                "weak_passphrase",
                "wrong_passphrase",
                "locked_out",
                "not_enrolled",
                "keys_unreadable",
                "chain_broken",
                "pending_records",
                "envelope_invalid",
                "envelope_expired",
                "envelope_rolled_back",
                "broker_key_changed",
                "fingerprint_mismatch",
                "no_key_change",
                "usage",
                "data_dir",
                "io",
                "format",
                "not_active",
                "no_ssh_agent",
                "ssh_agent",
                "sso_timeout",
                "sso",
                "autostart",
                // issue 14: quorum
                "quorum_refused",
                "quorum_incomplete",
            ],
            "the UI switches on these names: they must not change"
        );
    }

    #[test]
    fn broker_codes_pass_through_a_console_code_unchanged() {
        for name in ["not_found", "forbidden", "internal", "self_approval"] {
            let broker = ErrorCode::parse(name).expect("a broker code");
            let c = ConsoleErrorCode::from(broker);
            assert_eq!(
                serde_json::to_string(&c).expect("serialises"),
                format!("\"{name}\"")
            );
            let back: ConsoleErrorCode =
                serde_json::from_str(&format!("\"{name}\"")).expect("parses");
            assert_eq!(back, ConsoleErrorCode::Broker(broker));
            assert_eq!(ConsoleErrorCode::parse(name), Some(c));
            assert!(c == name);
        }
        assert_eq!(ConsoleErrorCode::parse("no_such_code"), None);
        assert!(serde_json::from_str::<ConsoleErrorCode>("\"no_such_code\"").is_err());
    }
}
