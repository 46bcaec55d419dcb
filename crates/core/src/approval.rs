//! Who is asked to decide a pending request, and when: approval stages, windows,
//! reminders and escalation.
//!
//! A flow's approvers are stage 0. `escalate = [{ after = "20m", approvers = … }, …]`
//! adds stages: stage `i` (1-based in that list) is reached `after` the request was
//! created if nobody has decided by then. A stage may have a window
//! (`window = { days = […], hours = "08:00-20:00", time_zone = "…" }`): outside it,
//! that stage's approvers are not asked and the request goes on to the next stage at
//! once. Stages only move forward. Everyone of the stages reached so far may decide:
//! an escalation widens who is asked, it never takes the right away from those asked
//! first. `remind_after` reminds the approvers of the current stage once per stage
//! when it has waited that long without a decision.
//!
//! Everything here takes the time as a parameter.

use crate::oncall::Window;
use crate::policy::{Audience, Flow, Principal};
use chrono::{DateTime, Datelike, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Local days and hours a stage's approvers are asked in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalWindow {
    pub tz: Tz,
    pub window: Window,
}

impl ApprovalWindow {
    /// Whether `t` falls inside the window.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.tz).naive_local();
        self.window
            .contains(local.weekday().num_days_from_monday(), local.time())
    }
}

/// A further set of approvers a pending request reaches `after_secs` after it was
/// created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub after_secs: i64,
    pub approvers: Audience,
    #[serde(default)]
    pub window: Option<ApprovalWindow>,
}

impl Flow {
    /// How many approval stages the flow has (its approvers, then each escalation).
    pub fn stage_count(&self) -> usize {
        1 + self.escalation.len()
    }

    /// The approvers asked at `stage` (the last stage for one past it).
    pub fn stage_approvers(&self, stage: usize) -> &Audience {
        match stage {
            0 => &self.approvers,
            n => &self.escalation[(n - 1).min(self.escalation.len() - 1)].approvers,
        }
    }

    fn stage_window(&self, stage: usize) -> Option<&ApprovalWindow> {
        match stage {
            0 => self.approvers_window.as_ref(),
            n => self.escalation.get(n - 1).and_then(|e| e.window.as_ref()),
        }
    }

    /// May `p` decide a request that has reached `stage`? Whoever the stages up to it
    /// name.
    pub fn may_decide_at(&self, p: &Principal, stage: usize) -> bool {
        (0..=stage.min(self.stage_count() - 1)).any(|s| self.stage_approvers(s).contains(p))
    }

    /// Whether the flow reminds or escalates at all (the worker looks at its
    /// pending requests only then).
    pub fn follows_up(&self) -> bool {
        self.remind_after_secs.is_some()
            || !self.escalation.is_empty()
            || self.approvers_window.is_some()
    }
}

/// Why a request moved to a later stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationCause {
    /// Nobody decided within the next stage's `after`.
    NoDecision,
    /// The current stage's approval window is closed.
    OutsideWindow,
}

impl EscalationCause {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationCause::NoDecision => "no_decision",
            EscalationCause::OutsideWindow => "outside_window",
        }
    }
}

/// The stage a pending request created at `created_at` and now at `stage` has
/// reached at `now`, and why it moved (`None`: it stays).
pub fn stage_at(
    flow: &Flow,
    created_at: DateTime<Utc>,
    stage: usize,
    now: DateTime<Utc>,
) -> (usize, Option<EscalationCause>) {
    // A clock behind the request's creation (another replica's, or a pass that read
    // the time before the request existed) judges nothing before the request.
    let now = now.max(created_at);
    let mut s = stage;
    let mut cause = None;
    while s + 1 < flow.stage_count() {
        let due = created_at + Duration::seconds(flow.escalation[s].after_secs);
        let c = if now >= due {
            EscalationCause::NoDecision
        } else if flow.stage_window(s).is_some_and(|w| !w.is_open(now)) {
            EscalationCause::OutsideWindow
        } else {
            break;
        };
        cause.get_or_insert(c);
        s += 1;
    }
    (s, cause)
}

/// Is a reminder due for a request that has been at its stage since `since` and
/// whose approvers of this stage were `reminded` already?
pub fn reminder_due(flow: &Flow, since: DateTime<Utc>, reminded: bool, now: DateTime<Utc>) -> bool {
    !reminded
        && flow
            .remind_after_secs
            .is_some_and(|r| now >= since + Duration::seconds(r))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.prod]
title = "Prod"
resources = [{ integration = "demo", resource = "app", permission = "read" }]

[flows.prod]
bundles = ["prod"]
requesters = { groups = ["eng"] }
approvers = { groups = ["leads"] }
approvers_window = { days = ["mon", "tue", "wed", "thu", "fri"], hours = "08:00-20:00", time_zone = "Europe/Berlin" }
approvals = 1
default_duration = "1h"
max_duration = "4h"
pending_ttl = "2h"
remind_after = "10m"
escalate = [
  { after = "20m", approvers = { groups = ["secondary"] } },
  { after = "40m", approvers = { users = ["carol"] } },
]
"#;

    fn flow() -> Flow {
        crate::policy::parse_policy("p.toml", POLICY).unwrap().flows["prod"].clone()
    }

    fn p(name: &str, groups: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin: false,
            oncall: vec![],
        }
    }

    // Wednesday 2026-11-25 10:00 in Berlin (09:00 UTC).
    fn wed_10() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
    }

    #[test]
    fn stages_follow_the_clock_and_never_go_back() {
        let f = flow();
        let t0 = wed_10();
        assert_eq!(stage_at(&f, t0, 0, t0), (0, None));
        assert_eq!(stage_at(&f, t0, 0, t0 + Duration::minutes(19)), (0, None));
        assert_eq!(
            stage_at(&f, t0, 0, t0 + Duration::minutes(20)),
            (1, Some(EscalationCause::NoDecision))
        );
        // A late pass goes straight to the last stage.
        assert_eq!(
            stage_at(&f, t0, 0, t0 + Duration::minutes(45)),
            (2, Some(EscalationCause::NoDecision))
        );
        assert_eq!(stage_at(&f, t0, 2, t0 + Duration::minutes(90)), (2, None));
    }

    #[test]
    fn outside_the_window_the_next_stage_is_asked_at_once() {
        let f = flow();
        // Saturday 10:00 Berlin.
        let sat = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
        assert_eq!(
            stage_at(&f, sat, 0, sat),
            (1, Some(EscalationCause::OutsideWindow))
        );
        // Wednesday 19:55 Berlin: asked; at 20:00 the window closes.
        let late = Utc.with_ymd_and_hms(2026, 11, 25, 18, 55, 0).unwrap();
        assert_eq!(stage_at(&f, late, 0, late), (0, None));
        assert_eq!(
            stage_at(&f, late, 0, late + Duration::minutes(5)),
            (1, Some(EscalationCause::OutsideWindow))
        );
    }

    #[test]
    fn everyone_reached_may_decide_and_nobody_before() {
        let f = flow();
        let (lead, second, carol) = (p("l", &["leads"]), p("s", &["secondary"]), p("carol", &[]));
        assert!(f.may_decide_at(&lead, 0));
        assert!(!f.may_decide_at(&second, 0));
        assert!(f.may_decide_at(&second, 1) && f.may_decide_at(&lead, 1));
        assert!(!f.may_decide_at(&carol, 1));
        assert!(f.may_decide_at(&carol, 2) && f.may_decide_at(&carol, 7));
    }

    #[test]
    fn the_policy_refuses_escalations_that_cannot_happen() {
        let bad = |from: &str, to: &str, why: &str| {
            let src = POLICY.replace(from, to);
            let e = crate::policy::parse_policy("p.toml", &src).unwrap_err();
            assert!(e.message.contains(why), "{}: {e}", to);
        };
        bad(
            "after = \"40m\"",
            "after = \"2h\"",
            "is not before the request times out",
        );
        bad(
            "after = \"40m\"",
            "after = \"15m\"",
            "after the one before it",
        );
        bad("approvals = 1", "approvals = 0", "approves automatically");
        bad(
            "approvers = { users = [\"carol\"] }",
            "approvers = {}",
            "an escalation names no approvers",
        );
        bad(
            "hours = \"08:00-20:00\"",
            "hours = \"8-20\"",
            "not a range of local times",
        );
        bad(
            "\"Europe/Berlin\"",
            "\"Mars/Olympus\"",
            "not an IANA time zone",
        );
        bad("days = [\"mon\"", "days = [\"someday\"", "is not a day");
        bad(
            "remind_after = \"10m\"",
            "remind_after = \"soon\"",
            "remind_after",
        );
        let no_escalation = POLICY.split("escalate = [").next().unwrap().to_string();
        let e = crate::policy::parse_policy("p.toml", &no_escalation).unwrap_err();
        assert!(e.message.contains("needs an escalate stage"), "{e}");
    }

    #[test]
    fn a_time_before_the_request_never_moves_it() {
        let f = flow();
        let t0 = wed_10();
        // Saturday before, outside the window: still judged at its creation.
        let before = Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap();
        assert_eq!(stage_at(&f, t0, 0, before), (0, None));
    }

    #[test]
    fn a_reminder_is_due_once_per_stage() {
        let f = flow();
        let t0 = wed_10();
        assert!(!reminder_due(&f, t0, false, t0 + Duration::minutes(9)));
        assert!(reminder_due(&f, t0, false, t0 + Duration::minutes(10)));
        assert!(!reminder_due(&f, t0, true, t0 + Duration::minutes(30)));
    }
}
