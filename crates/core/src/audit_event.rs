//! The audit log's events, typed: one variant per thing that is recorded, with the
//! facts it records. [`AuditEvent::action`] names the record's `action` and
//! [`AuditEvent::details`] builds its `details` JSON, which is hashed and signed as
//! stored: the shapes here are exactly those earlier versions wrote (a test pins
//! every one), so existing chains still verify and new records look the same.
//!
//! Times are carried as the text they are stored as (RFC 3339, UTC, microseconds
//! unless a variant says otherwise), since that text is what the hash covers.

use crate::audit::AuditAction;
use crate::lifecycle::EndReason;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// One resource of an activated grant, as recorded (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantedResource {
    pub integration: String,
    pub resource: String,
    pub username: String,
}

/// A secret and the version sealed to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SealedVersion {
    pub secret: String,
    pub version: i64,
}

/// One audit event (the subject of the record is passed alongside it).
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEvent {
    /// The broker started serving (subject `broker`). `extra` facts (e.g. the
    /// demo's) are merged in and win over the named fields.
    BrokerStarted {
        version: String,
        listen: String,
        /// `none`, `rustls` or `behind_tls_proxy`.
        tls: String,
        bundles: usize,
        flows: usize,
        secrets: usize,
        signing_key: String,
        extra: Map<String, Value>,
    },
    /// A user was added (subject: the user).
    UserAdded {
        groups: Vec<String>,
        admin: bool,
    },
    /// A token was issued (subject: the token id).
    TokenIssued {
        user: String,
        expires_at: String,
    },
    /// A token was revoked (subject: the token id); `by` is `sign_out` when its
    /// holder signed out.
    TokenRevoked {
        user: String,
        by: Option<String>,
    },
    /// An access request was created (subject: the request).
    RequestCreated {
        bundle: String,
        flow: String,
        duration_secs: i64,
        justification: Option<String>,
        ticket: Option<String>,
        break_glass: bool,
        /// The incident it is for (recorded only when there is one).
        incident: Option<String>,
        /// The person it is for, when the actor asked on their behalf (recorded only
        /// then).
        on_behalf_of: Option<String>,
    },
    /// An extension of a grant was requested (action `request_created`, subject:
    /// the new request).
    ExtensionRequested {
        grant: String,
        duration_secs: i64,
        justification: Option<String>,
    },
    /// One approval was recorded (subject: the request). `channel`: where the
    /// approver acted (`app`, `notification`, `cli`, `chat`; see
    /// [`crate::api::ClientChannel`]), recorded only when the client said so.
    ApprovalRecorded {
        comment: Option<String>,
        channel: Option<String>,
    },
    /// The request has all the approvals it needs (subject: the request).
    RequestApproved {
        approvals: usize,
    },
    /// The request's flow approves automatically (subject: the request): it needs
    /// no approval, or the requester was on call for schedule `on_call`.
    RequestAutoApproved {
        flow: String,
        on_call: Option<String>,
        /// The incident whose responder asked (recorded only when there is one).
        incident: Option<String>,
    },
    /// `channel` as for [`AuditEvent::ApprovalRecorded`] (recorded only when known).
    RequestDenied {
        reason: Option<String>,
        channel: Option<String>,
    },
    RequestCancelled,
    RequestTimedOut {
        pending_until: String,
    },
    /// Provisioning succeeded (subject: the grant).
    GrantActivated {
        request: String,
        holder: String,
        bundle: String,
        activated_at: String,
        expires_at: String,
        resources: Vec<GrantedResource>,
    },
    GrantProvisionFailed {
        error: String,
        attempts: i64,
        /// No more attempts.
        last: bool,
    },
    /// `from` and `to` are expiry times.
    GrantExtended {
        from: String,
        to: String,
        added_secs: i64,
    },
    GrantRevokeRequested {
        holder: String,
    },
    /// The grant's access was removed (action `grant_revoked` or `grant_expired`
    /// by `reason`). `leftovers`: what the connectors found left behind by the
    /// grant's accounts and did with it (recorded only when there is some).
    GrantEnded {
        reason: EndReason,
        holder: String,
        by: Option<String>,
        expires_at: String,
        attempts: i64,
        leftovers: Vec<Value>,
    },
    GrantRevokeFailed {
        error: String,
        attempts: i64,
        next_attempt_at: String,
        leftovers: Vec<Value>,
    },
    CredentialsViewed,
    /// Subject: the device.
    DeviceRegistered {
        user: String,
        name: String,
        recipient: String,
        fingerprint: String,
    },
    /// Subject: the device.
    DeviceRevoked {
        user: String,
        name: String,
        envelopes_deleted: usize,
        rotating: Vec<String>,
    },
    /// A value was stored by hand (subject: the secret).
    SecretStored {
        version: i64,
        previous_version: i64,
        rotation_was_due: Option<String>,
        bytes: usize,
    },
    SecretRotated {
        from_version: i64,
        to_version: i64,
        integration: String,
        role: String,
        /// `due` or `manual`.
        trigger: String,
        reason: Option<String>,
        attempts: i64,
    },
    /// A rotation attempt failed and is retried (action `secret_rotation_failed`).
    SecretRotationFailed {
        error: String,
        attempts: i64,
        next_attempt_at: String,
        version: i64,
        integration: Option<String>,
    },
    /// A due secret has no rotation connector: someone must store a new value
    /// (action `secret_rotation_failed`).
    SecretRotationManual {
        error: String,
        version: Option<i64>,
        reason: Option<String>,
    },
    /// Every envelope of a secret was replaced (subject: the secret).
    EnvelopesSealed {
        version: i64,
        devices: usize,
        users: usize,
        not_after: String,
    },
    /// One device's envelopes were brought up to date (action `envelopes_sealed`,
    /// subject: the device).
    EnvelopesRefreshed {
        user: String,
        sealed: Vec<SealedVersion>,
        dropped: Vec<String>,
    },
    /// Envelopes of people no longer eligible were deleted (subject: the secret).
    EnvelopesWithdrawn {
        devices: Vec<String>,
        users: Vec<String>,
        reason: String,
    },
    /// A device's record of an offline unlock (subject: the secret). `at` is the
    /// device's time in `to_rfc3339` form.
    OfflineUnlock {
        device: String,
        device_name: String,
        seq: u64,
        version: i64,
        reason: String,
        at: String,
        hash: String,
        current_version: Option<i64>,
        eligible: bool,
    },
    /// The broker released a secret's value (action `break_glass_online_unlock`,
    /// source `broker`, subject: the secret).
    OnlineUnlock {
        version: i64,
        reason: String,
        device: Option<String>,
        rotates_at: Option<String>,
    },
    /// A device's record of an online unlock the broker already audited (action
    /// `break_glass_online_unlock`, source `device_record`).
    OnlineUnlockRecorded {
        device: String,
        seq: u64,
        version: i64,
        reason: String,
        at: String,
        hash: String,
    },
    /// An upload of a device's unlock chain was refused (subject: the device).
    UnlockChainRejected {
        user: String,
        device_name: String,
        problem: String,
        records: usize,
        head_seq: i64,
        head_hash: String,
        alerted: bool,
    },
    /// Subject: the user.
    UserDisabled {
        tokens_revoked: u64,
        devices: Vec<String>,
        grants: Vec<String>,
        requests_cancelled: u64,
        rotating: Vec<String>,
    },
    /// Subject: the user.
    UserGroupsChanged {
        from: Vec<String>,
        to: Vec<String>,
    },
    /// Someone covers an on-call schedule for a while (subject: the override id).
    OnCallOverrideAdded {
        schedule: String,
        user: String,
        starts_at: String,
        ends_at: String,
        reason: Option<String>,
    },
    /// An override was taken back (subject: the override id).
    OnCallOverrideRemoved {
        schedule: String,
        user: String,
    },
    /// A source reported an incident a rule matches (subject: the incident id).
    IncidentOpened {
        source: String,
        external_id: String,
        rule: String,
        title: String,
        bundles: Vec<String>,
        responders: Vec<String>,
        reopened: bool,
    },
    /// The incident was resolved (subject: the incident id); the active grants made
    /// for it now end at `ends_at` (each flow's grace).
    IncidentResolved {
        source: String,
        external_id: String,
        grants: Vec<String>,
    },
    /// A webhook delivery was refused (subject: the source name). `refused` counts
    /// the refusals since the last record (they are recorded at most once a minute
    /// per source, so nobody can flood the log).
    IncidentWebhookRefused {
        reason: String,
        refused: u64,
    },
    /// A grant's end moved earlier because `incident`, which it was made for, was
    /// resolved (subject: the grant).
    GrantShortened {
        incident: String,
        from: String,
        to: String,
    },
    /// Nobody decided in time, or the stage's approval window closed: the request
    /// went from stage `from` to `to` (subject: the request). `cause`:
    /// `no_decision` or `outside_window`.
    RequestEscalated {
        from: usize,
        to: usize,
        cause: String,
        asked: Vec<String>,
    },
    /// The approvers of stage `stage` were reminded (subject: the request).
    RequestReminded {
        stage: usize,
        asked: Vec<String>,
    },
    /// A notification was given up (subject: the delivery id).
    NotificationDeadLettered {
        channel: String,
        kind: String,
        attempts: i64,
        error: String,
    },
    /// An admin sent a dead notification again (subject: the delivery id).
    NotificationRetried {
        channel: String,
        kind: String,
    },
    /// A certificate for the holder's device key (subject: the grant).
    SshCertificateIssued {
        integration: String,
        serial: i64,
        principals: Vec<String>,
        valid_before: String,
        fingerprint: String,
    },
    /// A certificate authority key (subject: its id). `signs_from` later than now:
    /// a rotation, with hosts trusting both keys until then.
    SshCaCreated {
        integration: String,
        fingerprint: String,
        signs_from: String,
        retiring: Vec<String>,
    },
    /// A synced on-call schedule's provider could not be read, where the attempt
    /// before succeeded (subject: the schedule). Who is on call stays the last
    /// known state. Recorded once per outage, not for every failed attempt.
    OnCallSyncFailed {
        provider: String,
        error: String,
    },
    /// A synced on-call schedule's provider was read again after `failures`
    /// failed attempts (subject: the schedule).
    OnCallSyncRecovered {
        provider: String,
        failures: i64,
        /// When the last successful read before the outage was (`None`: never).
        stale_since: Option<String>,
    },
    /// Someone signed in through the OpenID Provider (subject: the SSO session).
    /// `created`: the user was new; `groups`: their Firedoor groups now.
    SsoSignedIn {
        user: String,
        groups: Vec<String>,
        admin: bool,
        created: bool,
        expires_at: String,
    },
    /// A session's refresh token was exchanged for a new one and a new access
    /// token (subject: the session).
    SsoRefreshed {
        user: String,
        token: String,
    },
    /// A session ended early (subject: the session): `sign_out`, `user_disabled`
    /// or `refresh_replayed` (a used refresh token came back: someone copied it).
    SsoSessionRevoked {
        user: String,
        reason: String,
        tokens_revoked: u64,
    },
    // issue 14: drills
    /// A drill of a secret began (subject: the drill): `trigger` is `manual` or
    /// `schedule`; `devices` were asked.
    DrillStarted {
        secret: String,
        version: i64,
        trigger: String,
        deadline: String,
        devices: usize,
        users: usize,
    },
    /// A device proved it opens its envelope (subject: the drill).
    DrillPassed {
        secret: String,
        version: i64,
        device: String,
        user: String,
    },
    /// A device's answer was refused (subject: the drill): `problem` is a stable
    /// name (`wrong_proof`, `bad_signature`, `wrong_challenge`, `malformed`,
    /// `stale_version`); never any part of the proof.
    DrillFailed {
        secret: String,
        version: i64,
        device: String,
        user: String,
        problem: String,
        failures: u32,
    },
    /// A drill reached its deadline (subject: the drill).
    DrillClosed {
        secret: String,
        asked: u32,
        passed: u32,
        failed: u32,
        missed: u32,
    },
    /// A secret has fewer ready holders than required (subject: the secret).
    ReadinessBelow {
        ready: u32,
        required: u32,
        version: i64,
    },
    /// A secret has enough ready holders again (subject: the secret).
    ReadinessRestored {
        ready: u32,
        required: u32,
        version: i64,
    },
    // issue 14: uses
    /// A break-glass use was recorded, classification pending (subject: the use
    /// id). `rotation`: `immediate` or `after_incident`; `rotates_at`: the planned
    /// rotation (none without a rotation connector).
    BreakGlassUseOpened {
        secret: String,
        version: i64,
        user: String,
        mode: String,
        incident: Option<String>,
        rotation: String,
        rotates_at: Option<String>,
    },
    /// A use was classified (subject: the use id); `previous` is the kind it had
    /// (a reclassification), `incident_id` the broker incident it matched.
    BreakGlassUseClassified {
        secret: String,
        user: String,
        kind: String,
        incident: Option<String>,
        incident_id: Option<String>,
        note: Option<String>,
        previous: Option<String>,
    },
    /// A rotation that waited for an incident is due now (subject: the secret).
    RotationReleased {
        version: i64,
        /// Why: `incident <id> resolved`, or `classified drill|other`.
        cause: String,
        uses: Vec<String>,
    },
    /// A rotation ended (or failed to end) the role's open sessions (subject: the
    /// secret).
    RotationSessionsEnded {
        integration: String,
        role: String,
        version: i64,
        sessions: Option<u64>,
        error: Option<String>,
    },
    // issue 14: quorum
    /// A device's record of a two-person (m-of-n) offline unlock: opened from its own
    /// share and the shares `releasers` released to request `request_hash` (action
    /// `break_glass_quorum_unlock`, subject: the secret). `consistent` is false (and
    /// `problem` says why) when the record does not show enough eligible people.
    QuorumUnlock {
        device: String,
        device_name: String,
        seq: u64,
        version: i64,
        reason: String,
        at: String,
        hash: String,
        current_version: Option<i64>,
        eligible: bool,
        quorum: u8,
        share_set: String,
        request_hash: String,
        releasers: Vec<String>,
        releases: Vec<String>,
        consistent: bool,
        problem: Option<String>,
    },
    /// A device's record that it released its share to someone else's request (no
    /// secret was shown on it; action `break_glass_share_released`, subject: the
    /// secret).
    QuorumShareReleased {
        device: String,
        device_name: String,
        seq: u64,
        version: i64,
        requester: String,
        requester_device: String,
        request_hash: String,
        release: String,
        reason: String,
        at: String,
        hash: String,
        current_version: Option<i64>,
        eligible: bool,
    },
}

impl AuditEvent {
    /// The record's `action`.
    pub fn action(&self) -> AuditAction {
        use AuditEvent as E;
        match self {
            E::BrokerStarted { .. } => AuditAction::BrokerStarted,
            E::UserAdded { .. } => AuditAction::UserAdded,
            E::TokenIssued { .. } => AuditAction::TokenIssued,
            E::TokenRevoked { .. } => AuditAction::TokenRevoked,
            E::SsoSignedIn { .. } => AuditAction::SsoSignedIn,
            E::SsoRefreshed { .. } => AuditAction::SsoRefreshed,
            E::SsoSessionRevoked { .. } => AuditAction::SsoSessionRevoked,
            // issue 14: uses
            E::BreakGlassUseOpened { .. } => AuditAction::BreakGlassUseOpened,
            E::BreakGlassUseClassified { .. } => AuditAction::BreakGlassUseClassified,
            E::RotationReleased { .. } => AuditAction::RotationReleased,
            E::RotationSessionsEnded { .. } => AuditAction::RotationSessionsEnded,
            E::RequestCreated { .. } | E::ExtensionRequested { .. } => AuditAction::RequestCreated,
            E::ApprovalRecorded { .. } => AuditAction::ApprovalRecorded,
            E::RequestApproved { .. } | E::RequestAutoApproved { .. } => {
                AuditAction::RequestApproved
            }
            E::RequestDenied { .. } => AuditAction::RequestDenied,
            E::RequestCancelled => AuditAction::RequestCancelled,
            E::RequestTimedOut { .. } => AuditAction::RequestTimedOut,
            E::GrantActivated { .. } => AuditAction::GrantActivated,
            E::GrantProvisionFailed { .. } => AuditAction::GrantProvisionFailed,
            E::GrantExtended { .. } => AuditAction::GrantExtended,
            E::GrantRevokeRequested { .. } => AuditAction::GrantRevokeRequested,
            E::GrantEnded { reason, .. } => match reason {
                EndReason::Revoked => AuditAction::GrantRevoked,
                EndReason::Expired => AuditAction::GrantExpired,
            },
            E::GrantRevokeFailed { .. } => AuditAction::GrantRevokeFailed,
            E::CredentialsViewed => AuditAction::CredentialsViewed,
            E::DeviceRegistered { .. } => AuditAction::DeviceRegistered,
            E::DeviceRevoked { .. } => AuditAction::DeviceRevoked,
            E::SecretStored { .. } => AuditAction::SecretStored,
            E::SecretRotated { .. } => AuditAction::SecretRotated,
            E::SecretRotationFailed { .. } | E::SecretRotationManual { .. } => {
                AuditAction::SecretRotationFailed
            }
            E::EnvelopesSealed { .. } | E::EnvelopesRefreshed { .. } => {
                AuditAction::EnvelopesSealed
            }
            E::EnvelopesWithdrawn { .. } => AuditAction::EnvelopesWithdrawn,
            E::OfflineUnlock { .. } => AuditAction::BreakGlassOfflineUnlock,
            E::OnlineUnlock { .. } | E::OnlineUnlockRecorded { .. } => {
                AuditAction::BreakGlassOnlineUnlock
            }
            E::UnlockChainRejected { .. } => AuditAction::UnlockChainRejected,
            E::UserDisabled { .. } => AuditAction::UserDisabled,
            E::UserGroupsChanged { .. } => AuditAction::UserGroupsChanged,
            E::OnCallOverrideAdded { .. } => AuditAction::OnCallOverrideAdded,
            E::OnCallOverrideRemoved { .. } => AuditAction::OnCallOverrideRemoved,
            E::IncidentOpened { .. } => AuditAction::IncidentOpened,
            E::IncidentResolved { .. } => AuditAction::IncidentResolved,
            E::IncidentWebhookRefused { .. } => AuditAction::IncidentWebhookRefused,
            E::OnCallSyncFailed { .. } => AuditAction::OnCallSyncFailed,
            E::OnCallSyncRecovered { .. } => AuditAction::OnCallSyncRecovered,
            E::GrantShortened { .. } => AuditAction::GrantShortened,
            E::RequestEscalated { .. } => AuditAction::RequestEscalated,
            E::RequestReminded { .. } => AuditAction::RequestReminded,
            E::NotificationDeadLettered { .. } => AuditAction::NotificationDeadLettered,
            E::NotificationRetried { .. } => AuditAction::NotificationRetried,
            E::SshCertificateIssued { .. } => AuditAction::SshCertificateIssued,
            E::SshCaCreated { .. } => AuditAction::SshCaCreated,
            // issue 14: drills
            E::DrillStarted { .. } => AuditAction::DrillStarted,
            E::DrillPassed { .. } => AuditAction::DrillPassed,
            E::DrillFailed { .. } => AuditAction::DrillFailed,
            E::DrillClosed { .. } => AuditAction::DrillClosed,
            E::ReadinessBelow { .. } => AuditAction::ReadinessBelow,
            E::ReadinessRestored { .. } => AuditAction::ReadinessRestored,
            // issue 14: quorum
            E::QuorumUnlock { .. } => AuditAction::BreakGlassQuorumUnlock,
            E::QuorumShareReleased { .. } => AuditAction::BreakGlassShareReleased,
        }
    }

    /// The record's `details`, as stored (serde_json keeps keys sorted, so the
    /// text is canonical).
    pub fn details(&self) -> Value {
        use AuditEvent as E;
        match self {
            E::BrokerStarted {
                version,
                listen,
                tls,
                bundles,
                flows,
                secrets,
                signing_key,
                extra,
            } => {
                let mut d = json!({
                    "version": version, "listen": listen, "tls": tls, "bundles": bundles,
                    "flows": flows, "secrets": secrets, "signing_key": signing_key,
                });
                if let Some(m) = d.as_object_mut() {
                    m.extend(extra.clone());
                }
                d
            }
            E::UserAdded { groups, admin } => json!({ "groups": groups, "admin": admin }),
            E::TokenIssued { user, expires_at } => {
                json!({ "user": user, "expires_at": expires_at })
            }
            E::SsoSignedIn {
                user,
                groups,
                admin,
                created,
                expires_at,
            } => json!({
                "user": user, "groups": groups, "admin": admin, "created": created,
                "expires_at": expires_at,
            }),
            E::SsoRefreshed { user, token } => json!({ "user": user, "token": token }),
            E::SsoSessionRevoked {
                user,
                reason,
                tokens_revoked,
            } => json!({ "user": user, "reason": reason, "tokens_revoked": tokens_revoked }),
            E::TokenRevoked { user, by } => match by {
                Some(by) => json!({ "user": user, "by": by }),
                None => json!({ "user": user }),
            },
            E::RequestCreated {
                bundle,
                flow,
                duration_secs,
                justification,
                ticket,
                break_glass,
                incident,
                on_behalf_of,
            } => {
                let mut d = json!({
                    "bundle": bundle, "flow": flow, "duration_secs": duration_secs,
                    "justification": justification, "ticket": ticket, "break_glass": break_glass,
                });
                if let Some(i) = incident {
                    d["incident"] = json!(i);
                }
                if let Some(u) = on_behalf_of {
                    d["on_behalf_of"] = json!(u);
                }
                d
            }
            E::ExtensionRequested {
                grant,
                duration_secs,
                justification,
            } => json!({ "kind": "extension", "grant": grant, "duration_secs": duration_secs,
                "justification": justification }),
            E::ApprovalRecorded { comment, channel } => {
                let mut d = json!({ "comment": comment });
                if let Some(c) = channel {
                    d["channel"] = json!(c);
                }
                d
            }
            E::RequestApproved { approvals } => json!({ "approvals": approvals }),
            E::RequestAutoApproved {
                flow,
                on_call,
                incident,
            } => {
                let mut d = json!({ "automatic": true, "flow": flow });
                if let Some(schedule) = on_call {
                    d["on_call"] = json!(schedule);
                }
                if let Some(i) = incident {
                    d["incident"] = json!(i);
                }
                d
            }
            E::RequestDenied { reason, channel } => {
                let mut d = json!({ "reason": reason });
                if let Some(c) = channel {
                    d["channel"] = json!(c);
                }
                d
            }
            E::RequestCancelled | E::CredentialsViewed => json!({}),
            E::RequestTimedOut { pending_until } => json!({ "pending_until": pending_until }),
            E::GrantActivated {
                request,
                holder,
                bundle,
                activated_at,
                expires_at,
                resources,
            } => json!({ "request": request, "holder": holder, "bundle": bundle,
                "activated_at": activated_at, "expires_at": expires_at, "resources": resources }),
            E::GrantProvisionFailed {
                error,
                attempts,
                last,
            } => json!({ "error": error, "attempts": attempts, "final": last }),
            E::GrantExtended {
                from,
                to,
                added_secs,
            } => json!({ "from": from, "to": to, "added_secs": added_secs }),
            E::GrantRevokeRequested { holder } => json!({ "holder": holder }),
            E::GrantEnded {
                holder,
                by,
                expires_at,
                attempts,
                leftovers,
                ..
            } => with_leftovers(
                json!({ "holder": holder, "by": by, "expires_at": expires_at, "attempts": attempts }),
                leftovers,
            ),
            E::GrantRevokeFailed {
                error,
                attempts,
                next_attempt_at,
                leftovers,
            } => with_leftovers(
                json!({ "error": error, "attempts": attempts, "next_attempt_at": next_attempt_at }),
                leftovers,
            ),
            E::DeviceRegistered {
                user,
                name,
                recipient,
                fingerprint,
            } => json!({ "user": user, "name": name, "recipient": recipient,
                "fingerprint": fingerprint }),
            E::DeviceRevoked {
                user,
                name,
                envelopes_deleted,
                rotating,
            } => json!({ "user": user, "name": name, "envelopes_deleted": envelopes_deleted,
                "rotating": rotating }),
            E::SecretStored {
                version,
                previous_version,
                rotation_was_due,
                bytes,
            } => json!({ "version": version, "previous_version": previous_version,
                "rotation_was_due": rotation_was_due, "bytes": bytes }),
            E::SecretRotated {
                from_version,
                to_version,
                integration,
                role,
                trigger,
                reason,
                attempts,
            } => json!({ "from_version": from_version, "to_version": to_version,
                "integration": integration, "role": role, "trigger": trigger,
                "reason": reason, "attempts": attempts }),
            E::SecretRotationFailed {
                error,
                attempts,
                next_attempt_at,
                version,
                integration,
            } => json!({ "error": error, "attempts": attempts, "next_attempt_at": next_attempt_at,
                "version": version, "integration": integration }),
            E::SecretRotationManual {
                error,
                version,
                reason,
            } => json!({ "error": error, "manual": true, "version": version, "reason": reason }),
            E::EnvelopesSealed {
                version,
                devices,
                users,
                not_after,
            } => json!({ "version": version, "devices": devices, "users": users,
                "not_after": not_after }),
            E::EnvelopesRefreshed {
                user,
                sealed,
                dropped,
            } => json!({ "user": user, "sealed": sealed, "dropped": dropped }),
            E::EnvelopesWithdrawn {
                devices,
                users,
                reason,
            } => json!({ "devices": devices, "users": users, "reason": reason }),
            E::OfflineUnlock {
                device,
                device_name,
                seq,
                version,
                reason,
                at,
                hash,
                current_version,
                eligible,
            } => json!({
                "device": device, "device_name": device_name, "seq": seq, "version": version,
                "reason": reason, "at": at, "hash": hash,
                "current_version": current_version, "eligible": eligible,
            }),
            E::OnlineUnlock {
                version,
                reason,
                device,
                rotates_at,
            } => json!({ "source": "broker", "version": version, "reason": reason,
                "device": device, "rotates_at": rotates_at }),
            E::OnlineUnlockRecorded {
                device,
                seq,
                version,
                reason,
                at,
                hash,
            } => json!({
                "source": "device_record", "device": device, "seq": seq, "version": version,
                "reason": reason, "at": at, "hash": hash,
            }),
            E::UnlockChainRejected {
                user,
                device_name,
                problem,
                records,
                head_seq,
                head_hash,
                alerted,
            } => json!({ "user": user, "device_name": device_name, "problem": problem,
                "records": records, "head_seq": head_seq, "head_hash": head_hash,
                "alerted": alerted }),
            E::UserDisabled {
                tokens_revoked,
                devices,
                grants,
                requests_cancelled,
                rotating,
            } => json!({
                "tokens_revoked": tokens_revoked,
                "devices": devices,
                "grants": grants,
                "requests_cancelled": requests_cancelled,
                "rotating": rotating,
            }),
            E::UserGroupsChanged { from, to } => json!({ "from": from, "to": to }),
            E::OnCallOverrideAdded {
                schedule,
                user,
                starts_at,
                ends_at,
                reason,
            } => json!({ "schedule": schedule, "user": user, "starts_at": starts_at,
                "ends_at": ends_at, "reason": reason }),
            E::OnCallOverrideRemoved { schedule, user } => {
                json!({ "schedule": schedule, "user": user })
            }
            E::IncidentOpened {
                source,
                external_id,
                rule,
                title,
                bundles,
                responders,
                reopened,
            } => json!({ "source": source, "external_id": external_id, "rule": rule,
                "title": title, "bundles": bundles, "responders": responders,
                "reopened": reopened }),
            E::IncidentResolved {
                source,
                external_id,
                grants,
            } => json!({ "source": source, "external_id": external_id, "grants": grants }),
            E::IncidentWebhookRefused { reason, refused } => {
                json!({ "reason": reason, "refused": refused })
            }
            E::GrantShortened { incident, from, to } => {
                json!({ "incident": incident, "from": from, "to": to })
            }
            E::RequestEscalated {
                from,
                to,
                cause,
                asked,
            } => json!({ "from": from, "to": to, "cause": cause, "asked": asked }),
            E::RequestReminded { stage, asked } => json!({ "stage": stage, "asked": asked }),
            E::NotificationDeadLettered {
                channel,
                kind,
                attempts,
                error,
            } => json!({ "channel": channel, "kind": kind, "attempts": attempts, "error": error }),
            E::NotificationRetried { channel, kind } => json!({ "channel": channel, "kind": kind }),
            E::SshCertificateIssued {
                integration,
                serial,
                principals,
                valid_before,
                fingerprint,
            } => json!({ "integration": integration, "serial": serial, "principals": principals,
                "valid_before": valid_before, "fingerprint": fingerprint }),
            E::SshCaCreated {
                integration,
                fingerprint,
                signs_from,
                retiring,
            } => json!({ "integration": integration, "fingerprint": fingerprint,
                "signs_from": signs_from, "retiring": retiring }),
            E::OnCallSyncFailed { provider, error } => {
                json!({ "provider": provider, "error": error })
            }
            E::OnCallSyncRecovered {
                provider,
                failures,
                stale_since,
            } => json!({ "provider": provider, "failures": failures, "stale_since": stale_since }),
            // issue 14: drills
            E::DrillStarted {
                secret,
                version,
                trigger,
                deadline,
                devices,
                users,
            } => json!({ "secret": secret, "version": version, "trigger": trigger,
                "deadline": deadline, "devices": devices, "users": users }),
            E::DrillPassed {
                secret,
                version,
                device,
                user,
            } => json!({ "secret": secret, "version": version, "device": device, "user": user }),
            E::DrillFailed {
                secret,
                version,
                device,
                user,
                problem,
                failures,
            } => json!({ "secret": secret, "version": version, "device": device, "user": user,
                "problem": problem, "failures": failures }),
            E::DrillClosed {
                secret,
                asked,
                passed,
                failed,
                missed,
            } => json!({ "secret": secret, "asked": asked, "passed": passed, "failed": failed,
                "missed": missed }),
            E::ReadinessBelow {
                ready,
                required,
                version,
            }
            | E::ReadinessRestored {
                ready,
                required,
                version,
            } => json!({ "ready": ready, "required": required, "version": version }),
            // issue 14: uses
            E::BreakGlassUseOpened {
                secret,
                version,
                user,
                mode,
                incident,
                rotation,
                rotates_at,
            } => json!({ "secret": secret, "version": version, "user": user, "mode": mode,
                "incident": incident, "classification": "pending", "rotation": rotation,
                "rotates_at": rotates_at }),
            E::BreakGlassUseClassified {
                secret,
                user,
                kind,
                incident,
                incident_id,
                note,
                previous,
            } => json!({ "secret": secret, "user": user, "kind": kind, "incident": incident,
                "incident_id": incident_id, "note": note, "previous": previous }),
            E::RotationReleased {
                version,
                cause,
                uses,
            } => json!({ "version": version, "cause": cause, "uses": uses }),
            E::RotationSessionsEnded {
                integration,
                role,
                version,
                sessions,
                error,
            } => json!({ "integration": integration, "role": role, "version": version,
                "sessions": sessions, "error": error }),
            // issue 14: quorum
            E::QuorumUnlock {
                device,
                device_name,
                seq,
                version,
                reason,
                at,
                hash,
                current_version,
                eligible,
                quorum,
                share_set,
                request_hash,
                releasers,
                releases,
                consistent,
                problem,
            } => json!({
                "device": device, "device_name": device_name, "seq": seq, "version": version,
                "reason": reason, "at": at, "hash": hash,
                "current_version": current_version, "eligible": eligible,
                "quorum": quorum, "share_set": share_set, "request_hash": request_hash,
                "releasers": releasers, "releases": releases,
                "consistent": consistent, "problem": problem,
            }),
            E::QuorumShareReleased {
                device,
                device_name,
                seq,
                version,
                requester,
                requester_device,
                request_hash,
                release,
                reason,
                at,
                hash,
                current_version,
                eligible,
            } => json!({
                "device": device, "device_name": device_name, "seq": seq, "version": version,
                "requester": requester, "requester_device": requester_device,
                "request_hash": request_hash, "release": release, "reason": reason,
                "at": at, "hash": hash, "current_version": current_version,
                "eligible": eligible,
            }),
        }
    }
}

/// Adds the connectors' report of what a grant left behind, if there is any.
fn with_leftovers(mut details: Value, leftovers: &[Value]) -> Value {
    if !leftovers.is_empty() {
        details["leftovers"] = json!(leftovers);
    }
    details
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    /// Each variant against the `details` the broker wrote before this type existed:
    /// the `json!` expressions below are those of the call sites it replaced, fed
    /// the same values. The stored text must be byte for byte the same.
    #[test]
    fn every_variant_writes_the_details_earlier_versions_wrote() {
        let t = s("2026-01-02T03:04:05.000006Z");
        let leftover = json!({ "integration": "pg", "database": "app", "kind": "table",
            "identity": "public.t", "created_by": "fd_x", "action": "reassigned" });
        let mut extra = Map::new();
        extra.insert(s("demo"), json!(true));
        extra.insert(s("tls"), json!("demo-override"));
        let cases: Vec<(AuditEvent, &str, Value)> = vec![
            (
                AuditEvent::BrokerStarted {
                    version: s("0.1.0"),
                    listen: s("127.0.0.1:0"),
                    tls: s("none"),
                    bundles: 3,
                    flows: 2,
                    secrets: 1,
                    signing_key: s("ab:cd"),
                    extra: extra.clone(),
                },
                "broker_started",
                {
                    let mut d = json!({ "version": "0.1.0", "listen": "127.0.0.1:0", "tls": "none",
                        "bundles": 3, "flows": 2, "secrets": 1, "signing_key": "ab:cd" });
                    if let (Some(d), Some(extra)) = (d.as_object_mut(), json!(extra).as_object()) {
                        d.extend(extra.clone());
                    }
                    d
                },
            ),
            (
                AuditEvent::UserAdded {
                    groups: vec![s("eng")],
                    admin: false,
                },
                "user_added",
                json!({ "groups": ["eng"], "admin": false }),
            ),
            (
                AuditEvent::TokenIssued {
                    user: s("ann"),
                    expires_at: t.clone(),
                },
                "token_issued",
                json!({ "user": "ann", "expires_at": t }),
            ),
            (
                AuditEvent::SsoSignedIn {
                    user: s("ann"),
                    groups: vec![s("oncall")],
                    admin: false,
                    created: true,
                    expires_at: t.clone(),
                },
                "sso_signed_in",
                json!({ "user": "ann", "groups": ["oncall"], "admin": false, "created": true, "expires_at": t }),
            ),
            (
                AuditEvent::SsoRefreshed {
                    user: s("ann"),
                    token: s("tok_1"),
                },
                "sso_refreshed",
                json!({ "user": "ann", "token": "tok_1" }),
            ),
            (
                AuditEvent::SsoSessionRevoked {
                    user: s("ann"),
                    reason: s("refresh_replayed"),
                    tokens_revoked: 2,
                },
                "sso_session_revoked",
                json!({ "user": "ann", "reason": "refresh_replayed", "tokens_revoked": 2 }),
            ),
            (
                AuditEvent::TokenRevoked {
                    user: s("ann"),
                    by: None,
                },
                "token_revoked",
                json!({ "user": "ann" }),
            ),
            (
                AuditEvent::TokenRevoked {
                    user: s("ann"),
                    by: Some(s("sign_out")),
                },
                "token_revoked",
                json!({ "user": "ann", "by": "sign_out" }),
            ),
            (
                AuditEvent::RequestCreated {
                    bundle: s("prod-read"),
                    incident: None,
                    on_behalf_of: None,
                    flow: s("prod"),
                    duration_secs: 3600,
                    justification: Some(s("INC-1")),
                    ticket: None,
                    break_glass: false,
                },
                "request_created",
                json!({ "bundle": "prod-read", "flow": "prod", "duration_secs": 3600,
                    "justification": Some("INC-1"), "ticket": None::<String>, "break_glass": false }),
            ),
            (
                AuditEvent::ExtensionRequested {
                    grant: s("grt_1"),
                    duration_secs: 600,
                    justification: None,
                },
                "request_created",
                json!({ "kind": "extension", "grant": "grt_1", "duration_secs": 600, "justification": None::<String> }),
            ),
            (
                AuditEvent::ApprovalRecorded {
                    comment: Some(s("ok")),
                    channel: None,
                },
                "approval_recorded",
                json!({ "comment": Some("ok") }),
            ),
            (
                AuditEvent::ApprovalRecorded {
                    comment: None,
                    channel: Some(s("notification")),
                },
                "approval_recorded",
                json!({ "comment": None::<String>, "channel": "notification" }),
            ),
            (
                AuditEvent::RequestApproved { approvals: 2 },
                "request_approved",
                json!({ "approvals": 2 }),
            ),
            (
                AuditEvent::RequestAutoApproved {
                    flow: s("bg"),
                    on_call: None,
                    incident: None,
                },
                "request_approved",
                json!({ "automatic": true, "flow": "bg" }),
            ),
            (
                AuditEvent::RequestAutoApproved {
                    flow: s("payments"),
                    on_call: Some(s("payments-primary")),
                    incident: None,
                },
                "request_approved",
                json!({ "automatic": true, "flow": "payments", "on_call": "payments-primary" }),
            ),
            (
                AuditEvent::RequestDenied {
                    reason: None,
                    channel: None,
                },
                "request_denied",
                json!({ "reason": None::<String> }),
            ),
            (
                AuditEvent::RequestDenied {
                    reason: Some(s("no")),
                    channel: Some(s("cli")),
                },
                "request_denied",
                json!({ "reason": "no", "channel": "cli" }),
            ),
            (AuditEvent::RequestCancelled, "request_cancelled", json!({})),
            (
                AuditEvent::RequestTimedOut {
                    pending_until: t.clone(),
                },
                "request_timed_out",
                json!({ "pending_until": t }),
            ),
            (
                AuditEvent::GrantActivated {
                    request: s("req_1"),
                    holder: s("ann"),
                    bundle: s("prod-read"),
                    activated_at: t.clone(),
                    expires_at: t.clone(),
                    resources: vec![GrantedResource {
                        integration: s("pg"),
                        resource: s("app"),
                        username: s("fd_ann"),
                    }],
                },
                "grant_activated",
                json!({ "request": "req_1", "holder": "ann", "bundle": "prod-read",
                    "activated_at": t, "expires_at": t,
                    "resources": vec![json!({"integration": "pg", "resource": "app", "username": "fd_ann"})] }),
            ),
            (
                AuditEvent::GrantProvisionFailed {
                    error: s("boom"),
                    attempts: 3,
                    last: true,
                },
                "grant_provision_failed",
                json!({ "error": "boom", "attempts": 3, "final": true }),
            ),
            (
                AuditEvent::GrantExtended {
                    from: t.clone(),
                    to: t.clone(),
                    added_secs: 60,
                },
                "grant_extended",
                json!({ "from": t, "to": t, "added_secs": 60 }),
            ),
            (
                AuditEvent::GrantRevokeRequested { holder: s("ann") },
                "grant_revoke_requested",
                json!({ "holder": "ann" }),
            ),
            (
                AuditEvent::GrantEnded {
                    reason: EndReason::Revoked,
                    holder: s("ann"),
                    by: Some(s("lee")),
                    expires_at: t.clone(),
                    attempts: 1,
                    leftovers: vec![],
                },
                "grant_revoked",
                json!({ "holder": "ann", "by": Some("lee"), "expires_at": t, "attempts": 1 }),
            ),
            (
                AuditEvent::GrantEnded {
                    reason: EndReason::Expired,
                    holder: s("ann"),
                    by: Some(s("system")),
                    expires_at: t.clone(),
                    attempts: 2,
                    leftovers: vec![leftover.clone()],
                },
                "grant_expired",
                json!({ "holder": "ann", "by": Some("system"), "expires_at": t, "attempts": 2,
                    "leftovers": [leftover.clone()] }),
            ),
            (
                AuditEvent::GrantRevokeFailed {
                    error: s("down"),
                    attempts: 1,
                    next_attempt_at: t.clone(),
                    leftovers: vec![],
                },
                "grant_revoke_failed",
                json!({ "error": "down", "attempts": 1, "next_attempt_at": t }),
            ),
            (
                AuditEvent::CredentialsViewed,
                "credentials_viewed",
                json!({}),
            ),
            (
                AuditEvent::DeviceRegistered {
                    user: s("ann"),
                    name: s("laptop"),
                    recipient: s("age1x"),
                    fingerprint: s("ff"),
                },
                "device_registered",
                json!({ "user": "ann", "name": "laptop", "recipient": "age1x", "fingerprint": "ff" }),
            ),
            (
                AuditEvent::DeviceRevoked {
                    user: s("ann"),
                    name: s("laptop"),
                    envelopes_deleted: 1,
                    rotating: vec![s("db")],
                },
                "device_revoked",
                json!({ "user": "ann", "name": "laptop", "envelopes_deleted": 1, "rotating": ["db"] }),
            ),
            (
                AuditEvent::SecretStored {
                    version: 2,
                    previous_version: 1,
                    rotation_was_due: None,
                    bytes: 12,
                },
                "secret_stored",
                json!({ "version": 2, "previous_version": 1, "rotation_was_due": None::<String>, "bytes": 12 }),
            ),
            (
                AuditEvent::SecretRotated {
                    from_version: 1,
                    to_version: 2,
                    integration: s("pg"),
                    role: s("fd_bg"),
                    trigger: s("due"),
                    reason: Some(s("online unlock by ann")),
                    attempts: 1,
                },
                "secret_rotated",
                json!({ "from_version": 1, "to_version": 2, "integration": "pg", "role": "fd_bg",
                    "trigger": "due", "reason": Some("online unlock by ann"), "attempts": 1 }),
            ),
            (
                AuditEvent::SecretRotationFailed {
                    error: s("refused"),
                    attempts: 1,
                    next_attempt_at: t.clone(),
                    version: 1,
                    integration: Some(s("pg")),
                },
                "secret_rotation_failed",
                json!({ "error": "refused", "attempts": 1, "next_attempt_at": t, "version": 1,
                    "integration": Some("pg") }),
            ),
            (
                AuditEvent::SecretRotationManual {
                    error: s("by hand"),
                    version: Some(1),
                    reason: None,
                },
                "secret_rotation_failed",
                json!({ "error": "by hand", "manual": true, "version": Some(1), "reason": None::<String> }),
            ),
            (
                AuditEvent::EnvelopesSealed {
                    version: 2,
                    devices: 3,
                    users: 2,
                    not_after: t.clone(),
                },
                "envelopes_sealed",
                json!({ "version": 2, "devices": 3, "users": 2, "not_after": t }),
            ),
            (
                AuditEvent::EnvelopesRefreshed {
                    user: s("ann"),
                    sealed: vec![SealedVersion {
                        secret: s("db"),
                        version: 2,
                    }],
                    dropped: vec![s("old")],
                },
                "envelopes_sealed",
                json!({ "user": "ann", "sealed": vec![json!({ "secret": "db", "version": 2 })],
                    "dropped": ["old"] }),
            ),
            (
                AuditEvent::EnvelopesWithdrawn {
                    devices: vec![s("dev_1")],
                    users: vec![s("ann")],
                    reason: s("eligibility_changed"),
                },
                "envelopes_withdrawn",
                json!({ "devices": ["dev_1"], "users": ["ann"], "reason": "eligibility_changed" }),
            ),
            (
                AuditEvent::OfflineUnlock {
                    device: s("dev_1"),
                    device_name: s("laptop"),
                    seq: 4,
                    version: 2,
                    reason: s("INC-9"),
                    at: s("2026-01-02T03:04:05+00:00"),
                    hash: s("aa"),
                    current_version: Some(2),
                    eligible: true,
                },
                "break_glass_offline_unlock",
                json!({ "device": "dev_1", "device_name": "laptop", "seq": 4u64, "version": 2,
                    "reason": "INC-9", "at": "2026-01-02T03:04:05+00:00", "hash": "aa",
                    "current_version": Some(2), "eligible": true }),
            ),
            (
                AuditEvent::OnlineUnlock {
                    version: 2,
                    reason: s("INC-9"),
                    device: None,
                    rotates_at: Some(t.clone()),
                },
                "break_glass_online_unlock",
                json!({ "source": "broker", "version": 2, "reason": "INC-9",
                    "device": None::<String>, "rotates_at": Some(t.clone()) }),
            ),
            (
                AuditEvent::OnlineUnlockRecorded {
                    device: s("dev_1"),
                    seq: 5,
                    version: 2,
                    reason: s("INC-9"),
                    at: s("2026-01-02T03:04:05+00:00"),
                    hash: s("bb"),
                },
                "break_glass_online_unlock",
                json!({ "source": "device_record", "device": "dev_1", "seq": 5u64, "version": 2,
                    "reason": "INC-9", "at": "2026-01-02T03:04:05+00:00", "hash": "bb" }),
            ),
            (
                AuditEvent::UnlockChainRejected {
                    user: s("ann"),
                    device_name: s("laptop"),
                    problem: s("rewritten"),
                    records: 2,
                    head_seq: 3,
                    head_hash: s("cc"),
                    alerted: true,
                },
                "unlock_chain_rejected",
                json!({ "user": "ann", "device_name": "laptop", "problem": "rewritten",
                    "records": 2, "head_seq": 3, "head_hash": "cc", "alerted": true }),
            ),
            (
                AuditEvent::UserDisabled {
                    tokens_revoked: 2,
                    devices: vec![s("dev_1")],
                    grants: vec![s("grt_1")],
                    requests_cancelled: 1,
                    rotating: vec![],
                },
                "user_disabled",
                json!({ "tokens_revoked": 2, "devices": ["dev_1"], "grants": ["grt_1"],
                    "requests_cancelled": 1, "rotating": Vec::<String>::new() }),
            ),
            (
                AuditEvent::UserGroupsChanged {
                    from: vec![s("eng")],
                    to: vec![],
                },
                "user_groups_changed",
                json!({ "from": ["eng"], "to": Vec::<String>::new() }),
            ),
            (
                AuditEvent::OnCallOverrideAdded {
                    schedule: s("payments-primary"),
                    user: s("ann"),
                    starts_at: s("2026-01-02T03:04:05.000000Z"),
                    ends_at: s("2026-01-02T07:04:05.000000Z"),
                    reason: Some(s("covering for bob")),
                },
                "oncall_override_added",
                json!({ "schedule": "payments-primary", "user": "ann",
                    "starts_at": "2026-01-02T03:04:05.000000Z",
                    "ends_at": "2026-01-02T07:04:05.000000Z", "reason": "covering for bob" }),
            ),
            (
                AuditEvent::RequestEscalated {
                    from: 0,
                    to: 1,
                    cause: s("no_decision"),
                    asked: vec![s("erin")],
                },
                "request_escalated",
                json!({ "from": 0, "to": 1, "cause": "no_decision", "asked": ["erin"] }),
            ),
            (
                AuditEvent::RequestReminded {
                    stage: 1,
                    asked: vec![s("erin")],
                },
                "request_reminded",
                json!({ "stage": 1, "asked": ["erin"] }),
            ),
            (
                AuditEvent::OnCallOverrideRemoved {
                    schedule: s("payments-primary"),
                    user: s("ann"),
                },
                "oncall_override_removed",
                json!({ "schedule": "payments-primary", "user": "ann" }),
            ),
            (
                AuditEvent::OnCallSyncFailed {
                    provider: s("pagerduty"),
                    error: s("PagerDuty answered 401 Unauthorized"),
                },
                "oncall_sync_failed",
                json!({ "provider": "pagerduty", "error": "PagerDuty answered 401 Unauthorized" }),
            ),
            (
                AuditEvent::OnCallSyncRecovered {
                    provider: s("opsgenie"),
                    failures: 3,
                    stale_since: Some(s("2026-01-02T03:04:05.000000Z")),
                },
                "oncall_sync_recovered",
                json!({ "provider": "opsgenie", "failures": 3,
                    "stale_since": "2026-01-02T03:04:05.000000Z" }),
            ),
            // issue 14: drills
            (
                AuditEvent::DrillStarted {
                    secret: s("db"),
                    version: 2,
                    trigger: s("schedule"),
                    deadline: s("2026-01-05T03:04:05.000000Z"),
                    devices: 3,
                    users: 2,
                },
                "drill_started",
                json!({ "secret": "db", "version": 2, "trigger": "schedule",
                    "deadline": "2026-01-05T03:04:05.000000Z", "devices": 3, "users": 2 }),
            ),
            (
                AuditEvent::DrillPassed {
                    secret: s("db"),
                    version: 2,
                    device: s("dev_1"),
                    user: s("alice"),
                },
                "drill_passed",
                json!({ "secret": "db", "version": 2, "device": "dev_1", "user": "alice" }),
            ),
            (
                AuditEvent::DrillFailed {
                    secret: s("db"),
                    version: 2,
                    device: s("dev_1"),
                    user: s("alice"),
                    problem: s("wrong_proof"),
                    failures: 1,
                },
                "drill_failed",
                json!({ "secret": "db", "version": 2, "device": "dev_1", "user": "alice",
                    "problem": "wrong_proof", "failures": 1 }),
            ),
            (
                AuditEvent::DrillClosed {
                    secret: s("db"),
                    asked: 3,
                    passed: 2,
                    failed: 1,
                    missed: 0,
                },
                "drill_closed",
                json!({ "secret": "db", "asked": 3, "passed": 2, "failed": 1, "missed": 0 }),
            ),
            (
                AuditEvent::ReadinessBelow {
                    ready: 1,
                    required: 2,
                    version: 2,
                },
                "readiness_below",
                json!({ "ready": 1, "required": 2, "version": 2 }),
            ),
            (
                AuditEvent::ReadinessRestored {
                    ready: 2,
                    required: 2,
                    version: 2,
                },
                "readiness_restored",
                json!({ "ready": 2, "required": 2, "version": 2 }),
            ),
        ];
        for (event, action, before) in cases {
            assert_eq!(event.action().as_str(), action, "{event:?}");
            assert_eq!(
                serde_json::to_string(&event.details()).unwrap(),
                serde_json::to_string(&before).unwrap(),
                "{action}: the stored details must not change, or old chains stop verifying"
            );
        }
    }

    #[test]
    fn stored_text_is_canonical() {
        // Pinned bytes: keys sorted, no spaces, nulls kept.
        let e = AuditEvent::RequestCreated {
            bundle: s("b"),
            flow: s("f"),
            duration_secs: 60,
            justification: None,
            ticket: Some(s("T-1")),
            break_glass: true,
            incident: None,
            on_behalf_of: None,
        };
        assert_eq!(
            serde_json::to_string(&e.details()).unwrap(),
            r#"{"break_glass":true,"bundle":"b","duration_secs":60,"flow":"f","justification":null,"ticket":"T-1"}"#
        );
    }
}
