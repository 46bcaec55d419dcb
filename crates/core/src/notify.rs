//! Who hears of what: the recipients of each live event, computed from the users
//! the store holds (with their groups and admin flag) and the policy. The broker
//! stores one copy of the event per recipient; a stream shows a user only theirs.

use crate::policy::{Flow, Principal, SecretPolicy};

/// The people an event is for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// A request (or an extension) waits for a decision: the approvers `flow` asks
    /// at `stage` (see [`crate::approval`]), except the requester and whoever asked
    /// on their behalf.
    Approvers {
        flow: &'a Flow,
        requester: &'a str,
        stage: usize,
        asker: Option<&'a str>,
    },
    /// A break-glass request was approved automatically: approvers of `flow` and
    /// every admin, except the requester (who took it).
    BreakGlassTaken { flow: &'a Flow, requester: &'a str },
    /// A request was decided (approved, denied): its requester, then those who may
    /// approve requests of `flow` (so other approvers' queues update).
    Decided { flow: &'a Flow, requester: &'a str },
    /// One person: a requester (timed out) or a grant's holder (active, expiring,
    /// extended, revoked, expired, failed).
    Person(&'a str),
    /// A grant's access could not be removed: its holder, then every admin.
    HolderAndAdmins(&'a str),
    /// A break-glass secret was unlocked (online or offline): every admin and the
    /// secret's alert audience, except the person who unlocked it.
    Unlocked {
        secret: Option<&'a SecretPolicy>,
        by: &'a str,
    },
    /// A security alert (a rejected unlock chain, a failed or manual rotation):
    /// every admin.
    Admins,
    /// Everyone a policy audience names (an incident's responders), on-call
    /// schedules as they are now.
    Members(&'a crate::policy::Audience),
}

/// The recipients of an event for `audience`, among `users`, each once, in the
/// order the audience names them.
pub fn recipients(audience: Audience<'_>, users: &[Principal]) -> Vec<String> {
    let approvers = |flow: &Flow| {
        users
            .iter()
            .filter(|u| flow.may_approve(u))
            .map(|u| u.name.clone())
            .collect::<Vec<_>>()
    };
    let admins = || {
        users
            .iter()
            .filter(|u| u.admin)
            .map(|u| u.name.clone())
            .collect::<Vec<_>>()
    };
    let mut to: Vec<String> = match audience {
        Audience::Approvers {
            flow,
            requester,
            stage,
            asker,
        } => {
            let asked = flow.stage_approvers(stage);
            users
                .iter()
                .filter(|u| asked.contains(u))
                .filter(|u| u.name != requester && Some(u.name.as_str()) != asker)
                .map(|u| u.name.clone())
                .collect()
        }
        Audience::BreakGlassTaken { flow, requester } => {
            let mut to = approvers(flow);
            to.extend(admins());
            to.retain(|u| u != requester);
            to
        }
        Audience::Decided { flow, requester } => {
            let mut to = vec![requester.to_string()];
            to.extend(approvers(flow));
            to
        }
        Audience::Person(p) => vec![p.to_string()],
        Audience::HolderAndAdmins(holder) => {
            let mut to = vec![holder.to_string()];
            to.extend(admins());
            to
        }
        Audience::Unlocked { secret, by } => users
            .iter()
            .filter(|u| u.admin || secret.is_some_and(|s| s.alert.contains(u)))
            .filter(|u| u.name != by)
            .map(|u| u.name.clone())
            .collect(),
        Audience::Admins => admins(),
        Audience::Members(a) => users
            .iter()
            .filter(|u| a.contains(u))
            .map(|u| u.name.clone())
            .collect(),
    };
    let mut seen = std::collections::BTreeSet::new();
    to.retain(|u| seen.insert(u.clone()));
    to
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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

[secrets.db]
unlock = { groups = ["eng"] }
alert = { groups = ["security"] }
"#;

    fn user(name: &str, groups: &[&str], admin: bool) -> Principal {
        Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin,
            oncall: Vec::new(),
        }
    }

    #[test]
    fn each_audience_hears_what_it_should() {
        let p = crate::policy::parse_policy("p.toml", POLICY).unwrap();
        let flow = p.flows.get("prod").unwrap();
        let secret = p.secret("db");
        let users = vec![
            user("ann", &["eng"], false),
            user("lee", &["leads"], false),
            user("lia", &["leads", "eng"], false),
            user("sec", &["security"], false),
            user("root", &[], true),
        ];
        let cases: Vec<(Audience<'_>, &[&str])> = vec![
            (
                Audience::Approvers {
                    flow,
                    requester: "ann",
                    stage: 0,
                    asker: None,
                },
                &["lee", "lia"],
            ),
            (
                Audience::Approvers {
                    flow,
                    requester: "lia",
                    stage: 0,
                    asker: None,
                },
                &["lee"],
            ),
            (
                Audience::Approvers {
                    flow,
                    requester: "ann",
                    stage: 0,
                    asker: Some("lia"),
                },
                &["lee"],
            ),
            (
                Audience::BreakGlassTaken {
                    flow,
                    requester: "lia",
                },
                &["lee", "root"],
            ),
            (
                Audience::Decided {
                    flow,
                    requester: "ann",
                },
                &["ann", "lee", "lia"],
            ),
            (
                Audience::Decided {
                    flow,
                    requester: "lia",
                },
                &["lia", "lee"],
            ),
            (Audience::Person("ann"), &["ann"]),
            (Audience::HolderAndAdmins("ann"), &["ann", "root"]),
            (Audience::HolderAndAdmins("root"), &["root"]),
            (Audience::Unlocked { secret, by: "ann" }, &["sec", "root"]),
            (Audience::Unlocked { secret, by: "root" }, &["sec"]),
            (
                Audience::Unlocked {
                    secret: None,
                    by: "ann",
                },
                &["root"],
            ),
            (Audience::Admins, &["root"]),
        ];
        for (audience, expect) in cases {
            assert_eq!(
                recipients(audience, &users),
                expect.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{audience:?}"
            );
        }
    }
}
