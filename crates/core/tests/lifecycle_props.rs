//! Property tests: any sequence of actions, applied through the rules in
//! `firedoor_core::lifecycle`, keeps the state machine's invariants.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use firedoor_core::audit::{record_hash, verify_chain, AuditRecord, GENESIS_HASH};
use firedoor_core::lifecycle::*;
use firedoor_core::policy::{Audience, Flow, Principal};
use proptest::prelude::*;

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn principal(i: usize) -> Principal {
    Principal {
        name: USERS[i].into(),
        groups: match i {
            0 => vec!["oncall".into()],
            1 => vec!["oncall".into(), "leads".into()],
            2 => vec!["leads".into()],
            _ => vec![],
        },
        admin: i == 2,
        oncall: Vec::new(),
    }
}

fn flow(approvals: u32) -> Flow {
    Flow {
        name: format!("f{approvals}"),
        bundles: vec!["b".into()],
        requesters: Audience {
            users: vec![],
            groups: vec!["oncall".into()],
            oncall: vec![],
        },
        approvers: Audience {
            users: vec!["alice".into()],
            groups: vec!["leads".into()],
            oncall: vec![],
        },
        approvals,
        default_duration_secs: 600,
        max_duration_secs: 3600,
        justification_required: false,
        ticket_required: false,
        pending_ttl_secs: 900,
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

#[derive(Debug, Clone)]
enum Action {
    Create {
        user: usize,
        approvals: u32,
        duration: i64,
    },
    Approve {
        req: usize,
        user: usize,
    },
    Deny {
        req: usize,
        user: usize,
    },
    Cancel {
        req: usize,
        user: usize,
    },
    Revoke {
        req: usize,
        user: usize,
    },
    Extend {
        req: usize,
        user: usize,
        secs: i64,
    },
    Advance {
        secs: i64,
    },
    Worker,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0..4usize, 0..3u32, -100..5000i64).prop_map(|(user, approvals, duration)| {
            Action::Create {
                user,
                approvals,
                duration,
            }
        }),
        (0..8usize, 0..4usize).prop_map(|(req, user)| Action::Approve { req, user }),
        (0..8usize, 0..4usize).prop_map(|(req, user)| Action::Deny { req, user }),
        (0..8usize, 0..4usize).prop_map(|(req, user)| Action::Cancel { req, user }),
        (0..8usize, 0..4usize).prop_map(|(req, user)| Action::Revoke { req, user }),
        (0..8usize, 0..4usize, -10..4000i64).prop_map(|(req, user, secs)| Action::Extend {
            req,
            user,
            secs
        }),
        (1..1200i64).prop_map(|secs| Action::Advance { secs }),
        Just(Action::Worker),
    ]
}

struct Req {
    flow: Flow,
    facts: RequestFacts,
    duration: i64,
    grant: Option<GrantFacts>,
    denied_by: Vec<String>,
}

struct Model {
    now: DateTime<Utc>,
    reqs: Vec<Req>,
    audit: Vec<AuditRecord>,
}

impl Model {
    fn log(&mut self, actor: &str, action: &str, subject: usize) {
        let prev = self
            .audit
            .last()
            .map(|r| r.hash.clone())
            .unwrap_or_else(|| GENESIS_HASH.into());
        let seq = self.audit.len() as i64 + 1;
        let at = self.now.to_rfc3339();
        let subject = format!("req{subject}");
        let hash = record_hash(&prev, seq, &at, actor, action, &subject, "{}");
        self.audit.push(AuditRecord {
            seq,
            at,
            actor: actor.into(),
            action: action.into(),
            subject,
            details: "{}".into(),
            prev_hash: prev,
            hash,
            signature: None,
        });
    }

    fn set_state(&mut self, i: usize, to: RequestState) {
        let from = self.reqs[i].facts.state;
        assert!(from.can_become(to), "illegal transition {from:?} -> {to:?}");
        self.reqs[i].facts.state = to;
    }

    fn activate(&mut self, i: usize) {
        self.set_state(i, RequestState::Active);
        let r = &mut self.reqs[i];
        r.grant = Some(GrantFacts {
            holder: r.facts.requester.clone(),
            state: GrantState::Active,
            activated_at: self.now,
            expires_at: self.now + Duration::seconds(r.duration),
        });
    }

    fn end(&mut self, i: usize, reason: EndReason) {
        let g = self.reqs[i].grant.as_mut().expect("a grant to end");
        assert!(g.state.can_become(GrantState::Revoking));
        g.state = reason.final_grant_state();
        self.set_state(i, reason.final_request_state());
    }

    fn apply(&mut self, a: Action) {
        match a {
            Action::Create {
                user,
                approvals,
                duration,
            } => {
                let f = flow(approvals);
                let who = principal(user);
                if let Ok(c) = check_new_request(&f, &who, Some(duration), None, None) {
                    assert!(f.may_request(&who));
                    assert!(c.duration_secs > 0 && c.duration_secs <= f.max_duration_secs);
                    let auto = c.auto_approved;
                    self.reqs.push(Req {
                        flow: f,
                        facts: RequestFacts {
                            requester: who.name.clone(),
                            state: RequestState::Pending,
                            created_at: self.now,
                            approved_by: vec![],
                            requested_by: None,
                            stage: 0,
                        },
                        duration: c.duration_secs,
                        grant: None,
                        denied_by: vec![],
                    });
                    let i = self.reqs.len() - 1;
                    self.log(&who.name, "request_created", i);
                    if auto {
                        self.set_state(i, RequestState::Approved);
                        self.activate(i);
                        self.log("system", "grant_activated", i);
                    }
                }
            }
            Action::Approve { req, user } => {
                let Some(r) = self.reqs.get(req) else { return };
                let who = principal(user);
                if let Ok(outcome) = check_approve(&r.flow, &r.facts, &who, self.now) {
                    assert_ne!(who.name, r.facts.requester, "never self-approval");
                    assert!(r.flow.may_approve(&who));
                    self.reqs[req].facts.approved_by.push(who.name.clone());
                    self.log(&who.name, "approval_recorded", req);
                    if outcome == ApprovalOutcome::Approved {
                        let r = &self.reqs[req];
                        let mut distinct = r.facts.approved_by.clone();
                        distinct.sort();
                        distinct.dedup();
                        assert!(
                            distinct.len() as u32 >= r.flow.approvals.max(1),
                            "m distinct approvals"
                        );
                        assert!(!distinct.contains(&r.facts.requester));
                        self.set_state(req, RequestState::Approved);
                        self.activate(req);
                        self.log("system", "grant_activated", req);
                    }
                }
            }
            Action::Deny { req, user } => {
                let Some(r) = self.reqs.get(req) else { return };
                let who = principal(user);
                if check_deny(&r.flow, &r.facts, &who, None, self.now).is_ok() {
                    self.reqs[req].denied_by.push(who.name.clone());
                    self.set_state(req, RequestState::Denied);
                    self.log(&who.name, "request_denied", req);
                }
            }
            Action::Cancel { req, user } => {
                let Some(r) = self.reqs.get(req) else { return };
                if check_cancel(&r.facts, &principal(user)).is_ok() {
                    self.set_state(req, RequestState::Cancelled);
                    self.log(USERS[user], "request_cancelled", req);
                }
            }
            Action::Revoke { req, user } => {
                let Some(r) = self.reqs.get(req) else { return };
                let Some(g) = &r.grant else { return };
                if check_revoke(&r.flow, g, &principal(user)).is_ok() {
                    self.end(req, EndReason::Revoked);
                    self.log(USERS[user], "grant_revoked", req);
                }
            }
            Action::Extend { req, user, secs } => {
                let Some(r) = self.reqs.get(req) else { return };
                let Some(g) = &r.grant else { return };
                if let Ok(new) = check_extension(&r.flow, g, &principal(user), Some(secs), self.now)
                {
                    assert!(new > g.expires_at);
                    assert!(
                        (new - g.activated_at).num_seconds() <= r.flow.max_duration_secs,
                        "never past the flow maximum"
                    );
                    self.reqs[req].grant.as_mut().unwrap().expires_at = new;
                    self.log(USERS[user], "grant_extended", req);
                }
            }
            Action::Advance { secs } => self.now += Duration::seconds(secs),
            Action::Worker => {
                for i in 0..self.reqs.len() {
                    let r = &self.reqs[i];
                    if is_timed_out(&r.flow, &r.facts, self.now) {
                        self.set_state(i, RequestState::TimedOut);
                        self.log("system", "request_timed_out", i);
                    } else if r.grant.as_ref().is_some_and(|g| is_due(g, self.now)) {
                        self.end(i, EndReason::Expired);
                        self.log("system", "grant_expired", i);
                    }
                }
                // After the worker: nothing active is past its expiry, nothing pending past its TTL.
                for r in &self.reqs {
                    if let Some(g) = &r.grant {
                        assert!(
                            !(g.state == GrantState::Active && g.expires_at <= self.now),
                            "no active grant past expiry"
                        );
                    }
                    assert!(!is_timed_out(&r.flow, &r.facts, self.now));
                }
            }
        }
        self.check();
    }

    fn check(&self) {
        for r in &self.reqs {
            let s = r.facts.state;
            // A grant exists exactly for requests that were approved.
            let granted = matches!(
                s,
                RequestState::Active | RequestState::Expired | RequestState::Revoked
            );
            assert_eq!(r.grant.is_some(), granted, "grant iff approved ({s:?})");
            if matches!(s, RequestState::Denied) {
                assert!(!r.denied_by.is_empty());
                assert!(r.grant.is_none(), "never both denied and granted");
            }
            if let Some(g) = &r.grant {
                assert_eq!(
                    g.state == GrantState::Active,
                    s == RequestState::Active,
                    "grant and request agree"
                );
                assert!(g.expires_at > g.activated_at);
            }
            assert!(!r.facts.approved_by.contains(&r.facts.requester));
        }
        assert!(
            verify_chain(&self.audit).is_ok(),
            "the audit chain always verifies"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn any_sequence_keeps_the_invariants(actions in proptest::collection::vec(action(), 1..80)) {
        let mut m = Model { now: DateTime::from_timestamp(1_800_000_000, 0).unwrap(), reqs: vec![], audit: vec![] };
        for a in actions {
            m.apply(a);
        }
    }
}
