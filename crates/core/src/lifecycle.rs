//! The request → approval → grant → expiry lifecycle. Every rule about who may do
//! what, and which state follows which, lives here once; the broker persists the
//! outcome with compare-and-set updates.

use crate::error::{ErrorCode, RuleError};
use crate::policy::{Flow, Principal};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Longest justification or ticket accepted.
pub use crate::input::MAX_TEXT;
/// Grants expiring within this many seconds get an "expiring soon" notice.
pub const EXPIRING_SOON_SECS: i64 = 300;
/// How long a worker may hold a claimed provisioning/revoking job before another
/// worker (or the same broker after a crash) picks it up again.
pub const CLAIM_LEASE_SECS: i64 = 30;
/// Provisioning attempts before a grant is marked failed.
pub const MAX_PROVISION_ATTEMPTS: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Active,
    Expired,
    Revoked,
    Denied,
    Cancelled,
    TimedOut,
    /// Approved, but provisioning failed for good.
    Failed,
}

impl RequestState {
    pub const ALL: [RequestState; 9] = [
        RequestState::Pending,
        RequestState::Approved,
        RequestState::Active,
        RequestState::Expired,
        RequestState::Revoked,
        RequestState::Denied,
        RequestState::Cancelled,
        RequestState::TimedOut,
        RequestState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Active => "active",
            RequestState::Expired => "expired",
            RequestState::Revoked => "revoked",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::TimedOut => "timed_out",
            RequestState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestState::Expired
                | RequestState::Revoked
                | RequestState::Denied
                | RequestState::Cancelled
                | RequestState::TimedOut
                | RequestState::Failed
        )
    }

    /// The only transitions that exist.
    pub fn can_become(self, next: RequestState) -> bool {
        use RequestState::*;
        matches!(
            (self, next),
            (Pending, Approved)
                | (Pending, Denied)
                | (Pending, Cancelled)
                | (Pending, TimedOut)
                | (Approved, Active)
                | (Approved, Failed)
                | (Active, Expired)
                | (Active, Revoked)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Provisioning,
    Active,
    /// Revocation (by a person or by expiry) is under way.
    Revoking,
    /// Deprovisioning failed; it is retried with backoff until it succeeds.
    RevokeFailed,
    Revoked,
    Expired,
    /// Provisioning failed for good.
    Failed,
}

impl GrantState {
    pub const ALL: [GrantState; 7] = [
        GrantState::Provisioning,
        GrantState::Active,
        GrantState::Revoking,
        GrantState::RevokeFailed,
        GrantState::Revoked,
        GrantState::Expired,
        GrantState::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Provisioning => "provisioning",
            GrantState::Active => "active",
            GrantState::Revoking => "revoking",
            GrantState::RevokeFailed => "revoke_failed",
            GrantState::Revoked => "revoked",
            GrantState::Expired => "expired",
            GrantState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    /// The states in which access may still be live in the target system.
    pub const LIVE: [GrantState; 4] = [
        GrantState::Provisioning,
        GrantState::Active,
        GrantState::Revoking,
        GrantState::RevokeFailed,
    ];
    /// Access may still be live in the target system.
    pub fn is_live(self) -> bool {
        Self::LIVE.contains(&self)
    }
    pub fn can_become(self, next: GrantState) -> bool {
        use GrantState::*;
        matches!(
            (self, next),
            (Provisioning, Active)
                | (Provisioning, Failed)
                | (Active, Active) // extension
                | (Active, Revoking)
                | (Revoking, Revoked)
                | (Revoking, Expired)
                | (Revoking, RevokeFailed)
                | (RevokeFailed, Revoked)
                | (RevokeFailed, Expired)
                | (RevokeFailed, RevokeFailed)
        )
    }
}

/// Why a grant ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Revoked,
    Expired,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Revoked => "revoked",
            EndReason::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "revoked" => Some(EndReason::Revoked),
            "expired" => Some(EndReason::Expired),
            _ => None,
        }
    }
    pub fn final_grant_state(self) -> GrantState {
        match self {
            EndReason::Revoked => GrantState::Revoked,
            EndReason::Expired => GrantState::Expired,
        }
    }
    pub fn final_request_state(self) -> RequestState {
        match self {
            EndReason::Revoked => RequestState::Revoked,
            EndReason::Expired => RequestState::Expired,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Access to a bundle.
    Access,
    /// More time on an active grant.
    Extension,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Extension => "extension",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(RequestKind::Access),
            "extension" => Some(RequestKind::Extension),
            _ => None,
        }
    }
}

/// What the rules need to know about a request.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub requester: String,
    pub state: RequestState,
    pub created_at: DateTime<Utc>,
    /// Names of the people who have approved so far.
    pub approved_by: Vec<String>,
    /// Who asked, when they asked for `requester` (on behalf): they may not decide
    /// it either.
    pub requested_by: Option<String>,
    /// The approval stage it has reached (see [`crate::approval`]).
    pub stage: usize,
}

/// What the rules need to know about a grant.
#[derive(Debug, Clone)]
pub struct GrantFacts {
    pub holder: String,
    pub state: GrantState,
    pub activated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new request that passed the flow's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    pub duration_secs: i64,
    pub justification: Option<String>,
    pub ticket: Option<String>,
    /// The flow needs no approvals: the request is approved as it is created.
    pub auto_approved: bool,
}

pub(crate) fn clean_text(
    v: Option<&str>,
    required: bool,
    what: &str,
    code: ErrorCode,
) -> Result<Option<String>, RuleError> {
    crate::input::request_text(v, required, what, code)
}

/// How long an API token works unless it is issued with another lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 90 * 24 * 3600;
/// The longest lifetime a token may be issued with.
pub const MAX_TOKEN_TTL_SECS: i64 = 366 * 24 * 3600;

/// Checks a token lifetime: 1 minute to [`MAX_TOKEN_TTL_SECS`].
pub fn check_token_ttl(ttl_secs: i64) -> Result<(), RuleError> {
    if !(60..=MAX_TOKEN_TTL_SECS).contains(&ttl_secs) {
        return Err(RuleError::new(
            ErrorCode::InvalidDuration,
            format!(
                "a token lives between 1m and {} (asked for {})",
                crate::duration::format_duration(MAX_TOKEN_TTL_SECS),
                crate::duration::format_duration(ttl_secs.max(0))
            ),
        ));
    }
    Ok(())
}

/// Checks a duration against the flow: positive and at most the flow's maximum.
pub fn check_duration(flow: &Flow, duration_secs: Option<i64>) -> Result<i64, RuleError> {
    let d = duration_secs.unwrap_or(flow.default_duration_secs);
    if d <= 0 {
        return Err(RuleError::new(
            ErrorCode::InvalidDuration,
            format!("duration must be positive, got {d} seconds"),
        ));
    }
    if d > flow.max_duration_secs {
        return Err(RuleError::new(
            ErrorCode::InvalidDuration,
            format!(
                "duration {} is longer than this flow allows ({})",
                crate::duration::format_duration(d),
                crate::duration::format_duration(flow.max_duration_secs)
            ),
        ));
    }
    Ok(d)
}

/// May `who` request a bundle governed by `flow`, on these terms?
pub fn check_new_request(
    flow: &Flow,
    who: &Principal,
    duration_secs: Option<i64>,
    justification: Option<&str>,
    ticket: Option<&str>,
) -> Result<CheckedRequest, RuleError> {
    check_new_request_as(flow, who, false, duration_secs, justification, ticket)
}

/// As [`check_new_request`], for a responder of an open incident that opens the
/// bundle (`incident_responder`): they may request it even if the flow does not
/// name them, and it is approved at once if the flow says
/// `auto_approve = "incident_responder"`.
pub fn check_new_request_as(
    flow: &Flow,
    who: &Principal,
    incident_responder: bool,
    duration_secs: Option<i64>,
    justification: Option<&str>,
    ticket: Option<&str>,
) -> Result<CheckedRequest, RuleError> {
    if !flow.may_request(who) && !incident_responder {
        return Err(RuleError::new(
            ErrorCode::NotEligible,
            format!(
                "{} may not request bundles of flow '{}'",
                who.name, flow.name
            ),
        ));
    }
    let duration_secs = check_duration(flow, duration_secs)?;
    let justification = clean_text(
        justification,
        flow.justification_required,
        "justification",
        ErrorCode::JustificationRequired,
    )?;
    let ticket = clean_text(
        ticket,
        flow.ticket_required,
        "ticket",
        ErrorCode::TicketRequired,
    )?;
    Ok(CheckedRequest {
        duration_secs,
        justification,
        ticket,
        auto_approved: flow.approves_automatically(who)
            || (incident_responder && flow.auto_approve_incident),
    })
}

/// When a pending request times out.
pub fn pending_deadline(flow: &Flow, created_at: DateTime<Utc>) -> DateTime<Utc> {
    created_at + Duration::seconds(flow.pending_ttl_secs)
}

fn require_pending(flow: &Flow, req: &RequestFacts, now: DateTime<Utc>) -> Result<(), RuleError> {
    if req.state != RequestState::Pending {
        return Err(RuleError::new(
            ErrorCode::AlreadyDecided,
            format!(
                "the request is {} and can no longer change",
                req.state.as_str()
            ),
        ));
    }
    if now >= pending_deadline(flow, req.created_at) {
        return Err(RuleError::new(
            ErrorCode::AlreadyDecided,
            "the request timed out waiting for approval",
        ));
    }
    Ok(())
}

fn require_approver(flow: &Flow, req: &RequestFacts, who: &Principal) -> Result<(), RuleError> {
    if who.name == req.requester {
        return Err(RuleError::new(
            ErrorCode::SelfApproval,
            "you cannot approve or deny your own request",
        ));
    }
    if req.requested_by.as_deref() == Some(who.name.as_str()) {
        return Err(RuleError::new(
            ErrorCode::SelfApproval,
            "you made this request (on behalf of someone else): another approver must decide it",
        ));
    }
    if !flow.may_decide_at(who, req.stage) {
        let why = if flow.may_approve(who) {
            format!(
                "{} approves requests of flow '{}' only once they escalate to them; it has not yet",
                who.name, flow.name
            )
        } else {
            format!("{} is not an approver of flow '{}'", who.name, flow.name)
        };
        return Err(RuleError::new(ErrorCode::Forbidden, why));
    }
    Ok(())
}

/// May `asker` request under `flow` on behalf of `for_whom`? The flow names who may
/// (`on_behalf`), and one cannot ask "on behalf" of oneself. Whether `for_whom` may
/// have the bundle is then checked as for their own request.
pub fn check_on_behalf(flow: &Flow, asker: &Principal, for_whom: &str) -> Result<(), RuleError> {
    if asker.name == for_whom {
        return Err(RuleError::new(
            ErrorCode::InvalidRequest,
            "on_behalf_of names yourself; leave it out to request for yourself",
        ));
    }
    if !flow.on_behalf.contains(asker) {
        return Err(RuleError::new(
            ErrorCode::NotEligible,
            format!(
                "{} may not request bundles of flow '{}' for someone else (the flow's on_behalf does not name them)",
                asker.name, flow.name
            ),
        ));
    }
    Ok(())
}

/// The result of one approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Recorded; more approvals are needed.
    Recorded { have: u32, need: u32 },
    /// This approval completed the set: the request is approved.
    Approved,
}

/// May `who` approve `req` now, and what follows?
pub fn check_approve(
    flow: &Flow,
    req: &RequestFacts,
    who: &Principal,
    now: DateTime<Utc>,
) -> Result<ApprovalOutcome, RuleError> {
    require_approver(flow, req, who)?;
    require_pending(flow, req, now)?;
    if req.approved_by.iter().any(|a| a == &who.name) {
        return Err(RuleError::new(
            ErrorCode::Conflict,
            "you have already approved this request; another approver is needed",
        ));
    }
    let have = req
        .approved_by
        .iter()
        .filter(|a| *a != &req.requester && Some(a.as_str()) != req.requested_by.as_deref())
        .count() as u32
        + 1;
    let need = flow.approvals.max(1);
    if have >= need {
        Ok(ApprovalOutcome::Approved)
    } else {
        Ok(ApprovalOutcome::Recorded { have, need })
    }
}

/// May `who` deny `req` now? `reason` is cleaned and returned.
pub fn check_deny(
    flow: &Flow,
    req: &RequestFacts,
    who: &Principal,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<String>, RuleError> {
    require_approver(flow, req, who)?;
    require_pending(flow, req, now)?;
    clean_text(reason, false, "reason", ErrorCode::InvalidRequest)
}

/// Only the requester (or whoever asked on their behalf) cancels, and only while
/// pending.
pub fn check_cancel(req: &RequestFacts, who: &Principal) -> Result<(), RuleError> {
    if who.name != req.requester && req.requested_by.as_deref() != Some(who.name.as_str()) {
        return Err(RuleError::new(
            ErrorCode::Forbidden,
            "only the requester can cancel a request",
        ));
    }
    if req.state != RequestState::Pending {
        return Err(RuleError::new(
            ErrorCode::AlreadyDecided,
            format!(
                "the request is {} and can no longer be cancelled",
                req.state.as_str()
            ),
        ));
    }
    Ok(())
}

/// Has a pending request run out of time?
pub fn is_timed_out(flow: &Flow, req: &RequestFacts, now: DateTime<Utc>) -> bool {
    req.state == RequestState::Pending && now >= pending_deadline(flow, req.created_at)
}

/// The holder, an approver of the flow, or an admin may revoke an active grant.
pub fn check_revoke(flow: &Flow, grant: &GrantFacts, who: &Principal) -> Result<(), RuleError> {
    if who.name != grant.holder && !flow.may_approve(who) && !who.admin {
        return Err(RuleError::new(
            ErrorCode::Forbidden,
            "only the holder, an approver of its flow or an admin can revoke this grant",
        ));
    }
    if grant.state != GrantState::Active {
        return Err(RuleError::new(
            ErrorCode::Conflict,
            format!(
                "the grant is {} and cannot be revoked",
                grant.state.as_str()
            ),
        ));
    }
    Ok(())
}

/// Checks an extension by `extra_secs` and returns the new expiry. The whole grant
/// (from activation) may not outlast the flow's maximum duration.
pub fn check_extension(
    flow: &Flow,
    grant: &GrantFacts,
    who: &Principal,
    extra_secs: Option<i64>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, RuleError> {
    if who.name != grant.holder {
        return Err(RuleError::new(
            ErrorCode::Forbidden,
            "only the holder can extend a grant",
        ));
    }
    if grant.state != GrantState::Active || now >= grant.expires_at {
        return Err(RuleError::new(
            ErrorCode::Conflict,
            "only an active grant can be extended",
        ));
    }
    let extra = extra_secs.unwrap_or(flow.default_duration_secs);
    if extra <= 0 {
        return Err(RuleError::new(
            ErrorCode::InvalidDuration,
            format!("extension must be positive, got {extra} seconds"),
        ));
    }
    apply_extension(flow, grant, extra)
}

/// The new expiry after adding `extra` seconds, within the flow's maximum.
pub fn apply_extension(
    flow: &Flow,
    grant: &GrantFacts,
    extra: i64,
) -> Result<DateTime<Utc>, RuleError> {
    let used = (grant.expires_at - grant.activated_at).num_seconds();
    let room = flow.max_duration_secs - used;
    if extra > room {
        return Err(RuleError::new(
            ErrorCode::InvalidDuration,
            format!(
                "the grant may last at most {} in all; {} of that is left to extend by",
                crate::duration::format_duration(flow.max_duration_secs),
                crate::duration::format_duration(room.max(0))
            ),
        ));
    }
    Ok(grant.expires_at + Duration::seconds(extra))
}

/// Is an active grant due for expiry?
pub fn is_due(grant: &GrantFacts, now: DateTime<Utc>) -> bool {
    grant.state == GrantState::Active && now >= grant.expires_at
}

/// Backoff before retry number `attempts` (1-based) of a failed deprovision.
pub fn retry_backoff_secs(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 9) as u32;
    (1i64 << exp).min(300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Audience;

    pub(crate) fn flow(approvals: u32) -> Flow {
        Flow {
            name: "f".into(),
            bundles: vec!["b".into()],
            requesters: Audience {
                users: vec![],
                groups: vec!["eng".into()],
                oncall: vec![],
            },
            approvers: Audience {
                users: vec!["bob".into(), "carol".into(), "alice".into()],
                groups: vec![],
                oncall: vec![],
            },
            approvals,
            default_duration_secs: 3600,
            max_duration_secs: 4 * 3600,
            justification_required: true,
            ticket_required: false,
            pending_ttl_secs: 1800,
            break_glass: false,
            auto_approve_on_call: false,
            auto_approve_incident: false,
            incident_end_grace_secs: None,
            on_behalf: Audience::default(),
            remind_after_secs: None,
            approvers_window: None,
            escalation: vec![],
        }
    }

    fn who(name: &str) -> Principal {
        Principal {
            name: name.into(),
            groups: vec!["eng".into()],
            admin: false,
            oncall: Vec::new(),
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    fn pending(by: &str) -> RequestFacts {
        RequestFacts {
            requester: by.into(),
            state: RequestState::Pending,
            created_at: t0(),
            approved_by: vec![],
            requested_by: None,
            stage: 0,
        }
    }

    #[test]
    fn token_lifetimes_are_bounded() {
        assert!(check_token_ttl(DEFAULT_TOKEN_TTL_SECS).is_ok());
        assert!(check_token_ttl(60).is_ok());
        assert!(check_token_ttl(MAX_TOKEN_TTL_SECS).is_ok());
        for bad in [-1, 0, 59, MAX_TOKEN_TTL_SECS + 1, i64::MAX] {
            let e = check_token_ttl(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidDuration, "{bad}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        let f = flow(1);
        let a = who("alice");
        let e = check_new_request(&f, &a, Some(-5), Some("x"), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidDuration);
        let e = check_new_request(&f, &a, Some(i64::MAX), Some("x"), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidDuration);
        let ok = check_new_request(&f, &a, None, Some("  incident 42 "), None).unwrap();
        assert_eq!(ok.duration_secs, 3600, "default duration applies");
        assert_eq!(ok.justification.as_deref(), Some("incident 42"));
        let e = check_new_request(&f, &a, None, Some("   "), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::JustificationRequired);
    }

    #[test]
    fn nobody_approves_their_own_request() {
        let f = flow(1);
        let e = check_approve(&f, &pending("alice"), &who("alice"), t0()).unwrap_err();
        assert_eq!(e.code, ErrorCode::SelfApproval);
        let e = check_deny(&f, &pending("alice"), &who("alice"), None, t0()).unwrap_err();
        assert_eq!(e.code, ErrorCode::SelfApproval);
    }

    #[test]
    fn m_of_n_needs_distinct_approvers() {
        let f = flow(2);
        let mut r = pending("alice");
        assert_eq!(
            check_approve(&f, &r, &who("bob"), t0()).unwrap(),
            ApprovalOutcome::Recorded { have: 1, need: 2 }
        );
        r.approved_by.push("bob".into());
        let e = check_approve(&f, &r, &who("bob"), t0()).unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::Conflict,
            "the same approver twice counts once"
        );
        assert_eq!(
            check_approve(&f, &r, &who("carol"), t0()).unwrap(),
            ApprovalOutcome::Approved
        );
    }

    #[test]
    fn pending_requests_time_out() {
        let f = flow(1);
        let r = pending("alice");
        let late = t0() + Duration::seconds(1800);
        assert!(is_timed_out(&f, &r, late));
        let e = check_approve(&f, &r, &who("bob"), late).unwrap_err();
        assert_eq!(e.code, ErrorCode::AlreadyDecided);
    }

    #[test]
    fn extension_stays_within_max() {
        let f = flow(0);
        let g = GrantFacts {
            holder: "alice".into(),
            state: GrantState::Active,
            activated_at: t0(),
            expires_at: t0() + Duration::seconds(3600),
        };
        let new = check_extension(&f, &g, &who("alice"), Some(3 * 3600), t0()).unwrap();
        assert_eq!(new, t0() + Duration::seconds(4 * 3600));
        let e = check_extension(&f, &g, &who("alice"), Some(3 * 3600 + 1), t0()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidDuration);
        let e = check_extension(&f, &g, &who("bob"), Some(60), t0()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
    }

    #[test]
    fn transitions_table() {
        use RequestState::*;
        assert!(Pending.can_become(Approved));
        assert!(
            !Denied.can_become(Approved),
            "a denied request stays denied"
        );
        assert!(!Active.can_become(Pending));
        for s in RequestState::ALL {
            if s.is_terminal() {
                for n in RequestState::ALL {
                    assert!(!s.can_become(n), "{s:?} is terminal");
                }
            }
        }
    }
}
