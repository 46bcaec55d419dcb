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
    /// The on-call schedules I am on call for now, with until when.
    #[serde(default)]
    pub oncall: Vec<MyOnCall>,
}

/// A schedule the caller is on call for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MyOnCall {
    pub schedule: String,
    pub title: String,
    /// When that changes (`None`: not within the next 90 days, or for a synced
    /// schedule not within what was fetched from its provider).
    pub until: Option<DateTime<Utc>>,
    /// A synced schedule: when its provider was last read ("as of 14:02").
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
    /// A synced schedule whose provider could not be read lately: this is the last
    /// known state.
    #[serde(default)]
    pub stale: bool,
}

/// `POST /grants/{id}/ssh-certificate`: the public key the holder's device made for
/// this grant (one OpenSSH line, ed25519). The private key never leaves the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeyBody {
    pub public_key: String,
}

/// A certificate for a grant's key, for the hosts of one SSH integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshCertificateView {
    pub integration: String,
    /// The OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA…`).
    pub certificate: String,
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: DateTime<Utc>,
    pub valid_before: DateTime<Utc>,
    /// The hosts it is for and the account to log in as, for the command shown.
    pub hosts: Vec<String>,
    pub user: Option<String>,
}

/// A notification on its way to chat or a webhook (admins see these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// Also the `webhook-id` a webhook receiver sees (the same on every retry).
    pub id: String,
    pub channel: String,
    pub kind: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i64,
    /// When it is tried next (pending).
    pub next_attempt_at: DateTime<Utc>,
    /// The last failure, e.g. "the receiver answered HTTP 500" (never a URL or a
    /// secret).
    pub last_error: Option<String>,
    pub last_status: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The event's one-line message.
    pub message: String,
}

/// An on-call schedule and who is on call for it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub name: String,
    pub title: String,
    pub time_zone: String,
    pub on_call: Option<OnCallView>,
    /// Others on call at the same time (a synced schedule whose provider has
    /// several people on call at once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_on_call: Vec<OnCallView>,
    /// Overrides running now or to come.
    pub overrides: Vec<OverrideView>,
    /// A synced schedule: when its provider was last read.
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
    /// A synced schedule whose last refresh failed (or that has not been
    /// refreshed for a while): who is on call is the last known state.
    #[serde(default)]
    pub stale: bool,
    /// A synced schedule: where from and how its last refresh went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncView>,
}

/// How a synced schedule's refreshes go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncView {
    /// `pagerduty` or `opsgenie`.
    pub provider: String,
    pub last_attempt: Option<DateTime<Utc>>,
    /// Why the last attempt failed (never with the token in it).
    pub last_error: Option<String>,
    /// The provider's people on this schedule that the policy maps to nobody:
    /// they are nobody in Firedoor.
    #[serde(default)]
    pub unmapped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCallView {
    pub user: String,
    pub until: Option<DateTime<Utc>>,
    pub by_override: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideView {
    pub id: String,
    pub schedule: String,
    pub user: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub created_by: String,
    pub removed_at: Option<DateTime<Utc>>,
}

/// `POST /oncall/{schedule}/overrides`: `user` covers the schedule from
/// `starts_at` (default: now) until `ends_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    pub user: String,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The terms on which a bundle may be requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// For a break-glass flow: who is alerted when it is taken (its approvers, at
    /// every stage, and every admin), so the request form can say so. `None` for
    /// other flows (and from brokers that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub alerts: Option<AlertAudience>,
}

/// The people a break-glass request alerts, as the policy names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AlertAudience {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// On-call schedules: whoever is on call for them when it is taken.
    pub oncall: Vec<String>,
    /// Every admin is alerted as well.
    pub admins: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// The open incident this request is for (`inc_…`): its responders may request
    /// the bundles it opens, and the grant ends when it is resolved if the flow
    /// says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Request for this person instead of yourself (an incident commander for a
    /// responder): the flow's `on_behalf` must name you, and they must be allowed
    /// the bundle themselves. The grant is theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Decision {
    pub by: String,
    pub at: DateTime<Utc>,
    /// `approve` or `deny`.
    pub decision: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// The incident it was made for.
    #[serde(default)]
    pub incident_id: Option<String>,
    /// Who asked, when they asked on the requester's behalf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The approval stage it reached: 0 = the flow's approvers, then one per
    /// escalation.
    #[serde(default)]
    pub stage: u32,
    /// Who may decide it at the stage it reached (from the policy: the flow's
    /// approvers up to that stage), so a requester knows whom to ask.
    #[serde(default)]
    pub approvers: WhoApproves,
}

/// The people and groups a policy names as approvers. `users` leaves out the
/// requester and whoever asked on their behalf (they cannot approve it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WhoApproves {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// On-call schedules: whoever is on call for one of them may approve.
    #[serde(default)]
    pub oncall: Vec<String>,
}

/// An incident a source reported and a rule of the policy matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct IncidentView {
    pub id: String,
    pub source: String,
    pub external_id: String,
    pub rule: String,
    pub title: String,
    pub url: Option<String>,
    /// `open` or `resolved`.
    pub state: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The bundles it opens to its responders.
    pub bundles: Vec<String>,
    /// Whether the caller is one of its responders (now).
    pub responder: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// The bundle gives SSH access: the holder's device makes a key and asks for a
    /// certificate (`POST /grants/{id}/ssh-certificate`) once the grant is active.
    #[serde(default)]
    pub ssh: bool,
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Credentials {
    pub grant_id: GrantId,
    pub expires_at: DateTime<Utc>,
    pub items: Vec<CredentialItem>,
}

/// A live event, as sent on the event stream (the SSE `data:` line) and stored.
/// The kind of a live event (the SSE `event:` name and [`EventView::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A request waits for the recipient's decision (to approvers).
    RequestAwaitingApproval,
    /// A request was approved (to the requester and approvers; a break-glass one
    /// taken automatically: to approvers and admins).
    RequestApproved,
    RequestDenied,
    RequestTimedOut,
    GrantActive,
    /// A grant expires within `lifecycle::EXPIRING_SOON_SECS`.
    GrantExpiring,
    GrantRevoked,
    GrantExpired,
    /// Removing a grant's access failed and is retried (to the holder and admins).
    GrantRevokeFailed,
    GrantExtended,
    /// Provisioning failed for good.
    GrantFailed,
    /// A break-glass secret was unlocked (to admins and its alert audience).
    BreakGlassUnlocked,
    /// A rejected unlock chain, a failed or manual rotation (to admins).
    SecurityAlert,
    /// A secret's envelopes changed: fetch them again (to their holders).
    EnvelopesChanged,
    /// An incident opened bundles to the recipient (a responder): one click requests.
    IncidentOpened,
    /// The incident a grant was made for is resolved: the grant ends soon.
    IncidentResolved,
    /// The stream resumed (`Last-Event-ID`) below what the broker still keeps:
    /// events in between were pruned, so the client must reload its state instead
    /// of trusting it saw everything. Sent first, never stored.
    Resync,
}

impl EventKind {
    /// Every kind, in the order of [`EVENT_KINDS`], then [`EventKind::Resync`].
    pub const ALL: &'static [EventKind] = &[
        EventKind::RequestAwaitingApproval,
        EventKind::RequestApproved,
        EventKind::RequestDenied,
        EventKind::RequestTimedOut,
        EventKind::GrantActive,
        EventKind::GrantExpiring,
        EventKind::GrantRevoked,
        EventKind::GrantExpired,
        EventKind::GrantRevokeFailed,
        EventKind::GrantExtended,
        EventKind::GrantFailed,
        EventKind::BreakGlassUnlocked,
        EventKind::SecurityAlert,
        EventKind::EnvelopesChanged,
        EventKind::IncidentOpened,
        EventKind::IncidentResolved,
        EventKind::Resync,
    ];

    /// The name on the wire and in the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::RequestAwaitingApproval => "request_awaiting_approval",
            EventKind::RequestApproved => "request_approved",
            EventKind::RequestDenied => "request_denied",
            EventKind::RequestTimedOut => "request_timed_out",
            EventKind::GrantActive => "grant_active",
            EventKind::GrantExpiring => "grant_expiring",
            EventKind::GrantRevoked => "grant_revoked",
            EventKind::GrantExpired => "grant_expired",
            EventKind::GrantRevokeFailed => "grant_revoke_failed",
            EventKind::GrantExtended => "grant_extended",
            EventKind::GrantFailed => "grant_failed",
            EventKind::BreakGlassUnlocked => "break_glass_unlocked",
            EventKind::SecurityAlert => "security_alert",
            EventKind::EnvelopesChanged => "envelopes_changed",
            EventKind::IncidentOpened => "incident_opened",
            EventKind::IncidentResolved => "incident_resolved",
            EventKind::Resync => "resync",
        }
    }

    /// The kind named `s`, if it is one.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of the event a stream sends first when it resumes below what the
/// broker still keeps (see [`EventKind::Resync`]).
pub const RESYNC_EVENT: &str = EventKind::Resync.as_str();

/// A live event, as sent on the event stream (the SSE `data:` line) and stored.
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
    /// The incident it is about (`incident_opened`, `incident_resolved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
}

/// The known kinds of stored events (every [`EventKind`] but `resync`).
pub const EVENT_KINDS: &[&str] = &[
    EventKind::RequestAwaitingApproval.as_str(),
    EventKind::RequestApproved.as_str(),
    EventKind::RequestDenied.as_str(),
    EventKind::RequestTimedOut.as_str(),
    EventKind::GrantActive.as_str(),
    EventKind::GrantExpiring.as_str(),
    EventKind::GrantRevoked.as_str(),
    EventKind::GrantExpired.as_str(),
    EventKind::GrantRevokeFailed.as_str(),
    EventKind::GrantExtended.as_str(),
    EventKind::GrantFailed.as_str(),
    EventKind::BreakGlassUnlocked.as_str(),
    EventKind::SecurityAlert.as_str(),
    EventKind::EnvelopesChanged.as_str(),
    EventKind::IncidentOpened.as_str(),
    EventKind::IncidentResolved.as_str(),
];

#[cfg(test)]
mod event_kind_tests {
    use super::*;

    #[test]
    fn kinds_keep_their_wire_names() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
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
                "incident_opened",
                "incident_resolved",
                "resync",
            ],
            "clients match on these names: they must not change"
        );
        assert_eq!(&names[..names.len() - 1], EVENT_KINDS);
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(EventKind::parse("nope"), None);
        assert_eq!(RESYNC_EVENT, "resync");
    }
}

// issue 14: report — where an approval or denial came from.

/// The header a client sends with an approval or a denial to say where the person
/// acted; the broker checks it against [`ClientChannel`] and records it in the audit
/// record (reports show it).
pub const CLIENT_CHANNEL_HEADER: &str = "X-Firedoor-Client";

/// Where an approver acted: the desktop app's window, its desktop notification's
/// action button, the command line, or a chat integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientChannel {
    App,
    Notification,
    Cli,
    Chat,
}

impl ClientChannel {
    pub const ALL: [ClientChannel; 4] = [
        ClientChannel::App,
        ClientChannel::Notification,
        ClientChannel::Cli,
        ClientChannel::Chat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientChannel::App => "app",
            ClientChannel::Notification => "notification",
            ClientChannel::Cli => "cli",
            ClientChannel::Chat => "chat",
        }
    }

    /// The channel named `text` (exactly one of the fixed names).
    pub fn parse(text: &str) -> Option<ClientChannel> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

#[cfg(test)]
mod channel_tests {
    use super::ClientChannel;

    #[test]
    fn channels_parse_only_the_fixed_names() {
        for c in ClientChannel::ALL {
            assert_eq!(ClientChannel::parse(c.as_str()), Some(c));
        }
        for bad in ["", "App", "app ", "email", "cli\n", "<script>"] {
            assert_eq!(ClientChannel::parse(bad), None, "{bad:?}");
        }
    }
}
