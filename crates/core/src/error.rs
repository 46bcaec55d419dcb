//! Stable error codes shared by the broker's HTTP API, the client and the UI.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. The string form is part of the public API:
/// tests pin every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
            ErrorCode::ChainRejected => 422,
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
