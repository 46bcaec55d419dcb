//! Who may see what and who may do what: the rules every operation checks, so every
//! transport (the HTTP API, the `firedoor-server` CLI, the desktop app's demo mode,
//! any later one) goes through the same check. The broker's operations take an
//! [`Actor`] and ask these functions; a handler never decides by itself.

use crate::policy::{Policy, Principal, SecretPolicy};
use crate::{ErrorCode, RuleError};

/// Who performs an operation (and is named in its audit record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user (the API, the desktop app), with their groups and admin flag
    /// as the store holds them now.
    User(Principal),
    /// The broker itself: expiry, timeouts, retries, rotations that fell due, the
    /// demo's seeding.
    System,
    /// An operator on the broker's machine running the `firedoor-server` CLI, named
    /// after their OS user. The CLI opens the store with the broker's key file, so
    /// whoever runs it can already do anything the broker can: the admin-only rules
    /// allow it explicitly (see [`check_admin`]) instead of pretending to check.
    Cli(String),
}

impl Actor {
    /// The name written in audit records: the user's name, `system`, or
    /// `cli:<os user>`.
    pub fn name(&self) -> String {
        match self {
            Actor::User(p) => p.name.clone(),
            Actor::System => "system".into(),
            Actor::Cli(u) => format!("cli:{u}"),
        }
    }

    /// The signed-in user, if a user acts.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Actor::User(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the actor has an admin's powers: an admin user, the broker itself,
    /// or an operator at the CLI.
    pub fn is_admin(&self) -> bool {
        match self {
            Actor::User(p) => p.admin,
            Actor::System | Actor::Cli(_) => true,
        }
    }
}

/// Operations only admins may perform (and the CLI and the broker itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Read the audit log's records (`GET /audit`; heads are for everyone).
    ReadAudit,
    /// Disable a user (tokens, devices, grants, requests end).
    DisableUser,
    /// Replace a user's groups.
    SetGroups,
    /// Store a break-glass secret's value.
    PutSecret,
    /// Rotate a break-glass secret now.
    RotateSecret,
    /// List every secret of the policy with its rotation errors, whoever may unlock it.
    ListAllSecrets,
    /// List every enrolled device of every user, revoked ones too.
    ListAllDevices,
    /// Add or remove an on-call override (who is on call decides who may request
    /// and approve).
    OverrideOnCall,
    /// See outbound notification deliveries (their state, errors, dead letters) and
    /// send a dead one again.
    ManageNotifications,
    /// Rotate an SSH integration's certificate authority.
    RotateSshCa,
    // issue 14: drills
    /// Start a break-glass drill, or list drills.
    StartDrill,
}

impl AdminAction {
    /// Every admin-only action (tests walk them all).
    pub const ALL: &'static [AdminAction] = &[
        AdminAction::ReadAudit,
        AdminAction::DisableUser,
        AdminAction::SetGroups,
        AdminAction::PutSecret,
        AdminAction::RotateSecret,
        AdminAction::ListAllSecrets,
        AdminAction::ListAllDevices,
        AdminAction::OverrideOnCall,
        AdminAction::ManageNotifications,
        AdminAction::RotateSshCa,
        AdminAction::StartDrill,
    ];

    /// What a non-admin is told.
    pub fn refusal(self) -> &'static str {
        match self {
            AdminAction::ReadAudit => "the audit log is for admins",
            AdminAction::DisableUser => "only admins may disable users",
            AdminAction::SetGroups => "only admins may change a user's groups",
            AdminAction::PutSecret => "only admins may store break-glass secrets",
            AdminAction::RotateSecret => "only admins may rotate break-glass secrets",
            AdminAction::ListAllSecrets => "only admins may list every secret",
            AdminAction::ListAllDevices => "only admins may list every device",
            AdminAction::OverrideOnCall => "only admins may change who is on call",
            AdminAction::ManageNotifications => {
                "only admins may see and retry notification deliveries"
            }
            AdminAction::RotateSshCa => "only admins may rotate an SSH certificate authority",
            AdminAction::StartDrill => "only admins may start or list break-glass drills",
        }
    }
}

/// May `actor` perform the admin-only `action`? Admin users may; so may the broker
/// itself and an operator at the CLI ([`Actor::Cli`]); anyone else is `forbidden`.
pub fn check_admin(actor: &Actor, action: AdminAction) -> Result<(), RuleError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(RuleError::new(ErrorCode::Forbidden, action.refusal()))
    }
}

/// May `who` see a request of `requester` under the flow named `flow`? Admins,
/// the requester, and whoever may approve requests of that flow.
pub fn may_see_request(policy: &Policy, who: &Principal, requester: &str, flow: &str) -> bool {
    who.admin || requester == who.name || policy.flows.get(flow).is_some_and(|f| f.may_approve(who))
}

/// May `who` see a grant held by `holder` under the flow named `flow`? Admins, the
/// holder, and whoever may approve requests of that flow.
pub fn may_see_grant(policy: &Policy, who: &Principal, holder: &str, flow: &str) -> bool {
    who.admin || holder == who.name || policy.flows.get(flow).is_some_and(|f| f.may_approve(who))
}

/// Does `who` see only their own requests and grants: no admin, and an approver of
/// no flow? Then a list of everything they may see is the list of their own.
pub fn sees_only_own(policy: &Policy, who: &Principal) -> bool {
    !who.admin && !policy.flows.values().any(|f| f.may_approve(who))
}

/// May `who` approve (and so list as awaiting them) requests of the flow `flow`?
pub fn may_decide(policy: &Policy, who: &Principal, flow: &str) -> bool {
    policy.flows.get(flow).is_some_and(|f| f.may_approve(who))
}

/// May `who` revoke a device of `owner`? Its owner or an admin.
pub fn may_revoke_device(who: &Principal, owner: &str) -> bool {
    who.admin || owner == who.name
}

/// May `who` see the break-glass secret `sp` listed? Admins see every secret;
/// others those they may unlock.
pub fn may_see_secret(who: &Principal, sp: &SecretPolicy) -> bool {
    who.admin || sp.may_unlock(who)
}

/// May `who` see the readiness of `sp` (who holds it, who passed drills)? Admins and
/// the secret's alert audience (security), not the holders themselves.
pub fn may_see_readiness(who: &Principal, sp: &SecretPolicy) -> bool {
    who.admin || sp.alert.contains(who)
}

/// Does `who` see a secret's last rotation error (which may name a target system)?
pub fn sees_rotation_errors(who: &Principal) -> bool {
    who.admin
}

/// Only the holder sees a grant's credentials (others who may see the grant are
/// told `forbidden`; those who may not see it get the same 404 as for a missing id).
pub fn may_view_credentials(who: &Principal, holder: &str) -> bool {
    holder == who.name
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(name: &str, groups: &[&str], admin: bool) -> Principal {
        Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin,
            oncall: Vec::new(),
        }
    }

    const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.prod-read]
title = "Prod read"
resources = [{ integration = "demo", resource = "app", permission = "read" }]

[flows.prod]
bundles = ["prod-read"]
requesters = { groups = ["eng"] }
approvers = { groups = ["leads"] }
approvals = 1
default_duration = "1h"
max_duration = "4h"
"#;

    fn policy() -> Policy {
        crate::policy::parse_policy("p.toml", POLICY).unwrap()
    }

    #[test]
    fn admin_actions_are_refused_to_non_admin_users_only() {
        let cases = [
            (Actor::User(user("ann", &["eng"], false)), false),
            (Actor::User(user("lee", &["leads"], false)), false),
            (Actor::User(user("root", &[], true)), true),
            (Actor::System, true),
            (Actor::Cli("ops".into()), true),
        ];
        for action in AdminAction::ALL {
            for (actor, allowed) in &cases {
                let r = check_admin(actor, *action);
                assert_eq!(
                    r.is_ok(),
                    *allowed,
                    "{action:?} by {} must be {}",
                    actor.name(),
                    if *allowed { "allowed" } else { "forbidden" }
                );
                if let Err(e) = r {
                    assert_eq!(e.code, ErrorCode::Forbidden, "a refusal is forbidden");
                    assert_eq!(e.message, action.refusal());
                }
            }
        }
    }

    #[test]
    fn actor_names_are_those_of_the_audit_log() {
        assert_eq!(Actor::User(user("ann", &[], false)).name(), "ann");
        assert_eq!(Actor::System.name(), "system");
        assert_eq!(Actor::Cli("ops".into()).name(), "cli:ops");
    }

    #[test]
    fn who_sees_requests_and_grants() {
        let p = policy();
        // (viewer, owner, flow, may see)
        let cases = [
            (user("ann", &["eng"], false), "ann", "prod", true),
            (user("bob", &["eng"], false), "ann", "prod", false),
            (user("lee", &["leads"], false), "ann", "prod", true),
            (user("root", &[], true), "ann", "prod", true),
            (user("lee", &["leads"], false), "ann", "gone-flow", false),
            (user("root", &[], true), "ann", "gone-flow", true),
            (user("ann", &[], false), "ann", "gone-flow", true),
        ];
        for (who, owner, flow, expect) in cases {
            assert_eq!(
                may_see_request(&p, &who, owner, flow),
                expect,
                "{} seeing {owner}'s request of {flow}",
                who.name
            );
            assert_eq!(
                may_see_grant(&p, &who, owner, flow),
                expect,
                "{} seeing {owner}'s grant of {flow}",
                who.name
            );
            // Whoever sees only their own sees no one else's, in any flow.
            if sees_only_own(&p, &who) {
                assert!(owner == who.name || !expect, "{} sees {owner}'s", who.name);
            }
        }
        assert!(sees_only_own(&p, &user("ann", &["eng"], false)));
        assert!(!sees_only_own(&p, &user("lee", &["leads"], false)));
        assert!(!sees_only_own(&p, &user("root", &[], true)));
    }

    #[test]
    fn devices_and_credentials() {
        let cases = [
            (user("ann", &[], false), "ann", true, true),
            (user("bob", &[], false), "ann", false, false),
            (user("root", &[], true), "ann", true, false),
        ];
        for (who, owner, revoke, creds) in cases {
            assert_eq!(may_revoke_device(&who, owner), revoke, "{}", who.name);
            assert_eq!(may_view_credentials(&who, owner), creds, "{}", who.name);
        }
        assert!(may_decide(
            &policy(),
            &user("lee", &["leads"], false),
            "prod"
        ));
        assert!(!may_decide(
            &policy(),
            &user("ann", &["eng"], false),
            "prod"
        ));
        assert!(sees_rotation_errors(&user("root", &[], true)));
        assert!(!sees_rotation_errors(&user("ann", &[], false)));
    }
}
