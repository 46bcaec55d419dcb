//! JSON shapes of the broker's HTTP API, shared by the broker and its clients.
//! Request bodies refuse unknown fields so a typo is an error, not a silent default.

use crate::ids::{GrantId, RequestId};
use crate::lifecycle::{GrantState, RequestKind, RequestState};
use crate::policy::ResourceGrant;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every 4xx/5xx body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// The broker's clock, so clients can correct for their own clock's offset.
    pub time: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub name: String,
    pub groups: Vec<String>,
    pub admin: bool,
    pub time: DateTime<Utc>,
}

/// The terms on which a bundle may be requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTerms {
    pub flow: String,
    /// 0 means approved automatically.
    pub approvals: u32,
    pub default_duration_secs: i64,
    pub max_duration_secs: i64,
    pub justification_required: bool,
    pub ticket_required: bool,
    pub pending_ttl_secs: i64,
    pub break_glass: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleView {
    pub name: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub resources: Vec<ResourceGrant>,
    pub terms: FlowTerms,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub bundle: String,
    /// Defaults to the flow's default duration.
    #[serde(default)]
    pub duration_secs: Option<i64>,
    #[serde(default)]
    pub justification: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyBody {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// Seconds to add; defaults to the flow's default duration.
    #[serde(default)]
    pub duration_secs: Option<i64>,
    #[serde(default)]
    pub justification: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: String,
    pub at: DateTime<Utc>,
    /// `approve` or `deny`.
    pub decision: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub id: RequestId,
    pub kind: RequestKind,
    pub bundle: String,
    pub bundle_title: String,
    pub requester: String,
    pub state: RequestState,
    pub duration_secs: i64,
    pub justification: Option<String>,
    pub ticket: Option<String>,
    pub created_at: DateTime<Utc>,
    /// A pending request times out at this moment.
    pub pending_until: DateTime<Utc>,
    pub approvals_needed: u32,
    pub decisions: Vec<Decision>,
    /// For access requests once approved; for extensions, the grant extended.
    pub grant_id: Option<GrantId>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub id: GrantId,
    pub request_id: RequestId,
    pub bundle: String,
    pub bundle_title: String,
    pub holder: String,
    pub state: GrantState,
    pub activated_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `revoked` or `expired` once the grant is ending or has ended.
    pub end_reason: Option<String>,
    pub ended_by: Option<String>,
    /// The last provisioning or deprovisioning error, if any.
    pub last_error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The answer to an extension: applied at once (automatic flows) or a new request
/// waiting for approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtendResult {
    pub grant: GrantView,
    pub request: Option<RequestView>,
}

/// One credential for one resource of a grant. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialItem {
    pub integration: String,
    /// `postgres` or `demo`.
    pub kind: String,
    pub resource: String,
    pub username: String,
    pub secret: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub note: Option<String>,
}

impl fmt::Debug for CredentialItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialItem")
            .field("integration", &self.integration)
            .field("kind", &self.kind)
            .field("resource", &self.resource)
            .field("username", &self.username)
            .field("secret", &"[redacted]")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub grant_id: GrantId,
    pub expires_at: DateTime<Utc>,
    pub items: Vec<CredentialItem>,
}

/// A live event, as sent on the event stream (the SSE `data:` line) and stored.
/// The kind of the event a stream sends first when it resumes (`Last-Event-ID`)
/// below what the broker still keeps: events in between were pruned, so the
/// client must reload its state instead of trusting it saw everything.
pub const RESYNC_EVENT: &str = "resync";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub id: i64,
    /// `request_awaiting_approval`, `request_approved`, `request_denied`,
    /// `request_timed_out`, `grant_active`, `grant_expiring`, `grant_revoked`,
    /// `grant_expired`, `grant_revoke_failed`, `grant_extended`, `grant_failed`,
    /// `break_glass_unlocked` (to admins and the secret's alert audience),
    /// `security_alert` (a rejected unlock chain, a failed rotation: to admins),
    /// `envelopes_changed` (to holders of a secret's envelopes after a rotation),
    /// [`RESYNC_EVENT`] (the stream resumed below ids already pruned: reload
    /// state, some events are gone). Break-glass events name the secret in `bundle`.
    pub kind: String,
    pub at: DateTime<Utc>,
    pub request_id: Option<RequestId>,
    pub grant_id: Option<GrantId>,
    pub bundle: Option<String>,
    /// The other party: the requester for an approver, the decider for a requester.
    pub actor: Option<String>,
    pub message: String,
}

/// The known event kinds.
pub const EVENT_KINDS: &[&str] = &[
    "request_awaiting_approval",
    "request_approved",
    "request_denied",
    "request_timed_out",
    "grant_active",
    "grant_expiring",
    "grant_revoked",
    "grant_expired",
    "grant_revoke_failed",
    "grant_extended",
    "grant_failed",
    "break_glass_unlocked",
    "security_alert",
    "envelopes_changed",
];
