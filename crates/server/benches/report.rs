//! Reports over a large audit log (figures, not a timed test):
//! `cargo bench -p firedoor-server --bench report`.
//!
//! The broker in-process on SQLite with N audit records (default 10,000,
//! `FIREDOOR_BENCH_RECORDS`): requests, approvals from two channels and grants of
//! unrelated work, and among them one incident with its request, approvals, grant,
//! credential views, a break-glass unlock naming it, revocation and rotation. Then,
//! 10 times each (`FIREDOOR_BENCH_RUNS`; p50 and max printed): building the incident report from the
//! store (reading the whole log), rendering it as Markdown, HTML and JSON, and
//! verifying it against the log (whole-chain signatures included).
#![allow(clippy::unwrap_used)]

use firedoor_core::audit::{AuditEvent, GrantedResource};
use firedoor_core::lifecycle::EndReason;
use firedoor_core::policy::Principal;
use firedoor_core::report::{to_html, to_markdown, ReportKind};
use firedoor_server::audit::Actor;
use firedoor_server::Config;
use std::time::{Duration, Instant};

const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.prod-read]
resources = [{ integration = "demo", resource = "app", permission = "read" }]

[flows.prod-read]
bundles = ["prod-read"]
requesters = { groups = ["oncall"] }
approvers = { groups = ["leads"] }
approvals = 2
default_duration = "1h"
max_duration = "4h"
"#;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn user(name: &str) -> Actor {
    Actor::User(Principal {
        name: name.into(),
        groups: vec![],
        admin: false,
        oncall: vec![],
    })
}

/// The records of one request through to its revocation (9 records); `incident`
/// links it to an incident.
fn access_story(n: usize, incident: Option<&str>) -> Vec<(Actor, String, AuditEvent)> {
    let req = format!("req_bench{n:08}");
    let grant = format!("grt_bench{n:08}");
    let t = "2026-11-26T10:00:00.000000Z".to_string();
    vec![
        (
            user("ann"),
            req.clone(),
            AuditEvent::RequestCreated {
                bundle: "prod-read".into(),
                flow: "prod-read".into(),
                duration_secs: 3600,
                justification: Some(
                    "INC-4711 payments-api returns 502 for 3% of checkouts since 14:02".into(),
                ),
                ticket: Some("OPS-1234".into()),
                break_glass: false,
                incident: incident.map(str::to_string),
                on_behalf_of: None,
            },
        ),
        (
            user("bob"),
            req.clone(),
            AuditEvent::ApprovalRecorded {
                comment: None,
                channel: Some("notification".into()),
            },
        ),
        (
            user("erin"),
            req.clone(),
            AuditEvent::ApprovalRecorded {
                comment: Some("ok".into()),
                channel: Some("cli".into()),
            },
        ),
        (
            user("erin"),
            req.clone(),
            AuditEvent::RequestApproved { approvals: 2 },
        ),
        (
            Actor::System,
            grant.clone(),
            AuditEvent::GrantActivated {
                request: req.clone(),
                holder: "ann".into(),
                bundle: "prod-read".into(),
                activated_at: t.clone(),
                expires_at: t.clone(),
                resources: vec![GrantedResource {
                    integration: "demo".into(),
                    resource: "app".into(),
                    username: "fd_ann".into(),
                }],
            },
        ),
        (user("ann"), grant.clone(), AuditEvent::CredentialsViewed),
        (user("ann"), grant.clone(), AuditEvent::CredentialsViewed),
        (
            user("carol"),
            grant.clone(),
            AuditEvent::GrantRevokeRequested {
                holder: "ann".into(),
            },
        ),
        (
            Actor::System,
            grant,
            AuditEvent::GrantEnded {
                reason: EndReason::Revoked,
                holder: "ann".into(),
                by: Some("carol".into()),
                expires_at: t,
                attempts: 1,
                leftovers: vec![],
            },
        ),
    ]
}

fn p50_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let records = env_n("FIREDOOR_BENCH_RECORDS", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let policy = firedoor_core::policy::parse_policy("bench.toml", POLICY).unwrap();
    let mut cfg = Config::new(dir.path().join("data"), policy);
    cfg.worker_interval = Duration::from_secs(3600);
    let running = firedoor_server::start(cfg).await.unwrap();
    let b = &running.broker;

    // The incident sits in the middle of the log.
    let mut events: Vec<(Actor, String, AuditEvent)> = Vec::new();
    let mut n = 0;
    while events.len() < records / 2 {
        events.extend(access_story(n, None));
        n += 1;
    }
    events.push((
        Actor::System,
        "inc_bench".into(),
        AuditEvent::IncidentOpened {
            source: "pagerduty".into(),
            external_id: "INC-4711".into(),
            rule: "payments".into(),
            title: "payments-api 502".into(),
            bundles: vec!["prod-read".into()],
            responders: vec!["ann".into()],
            reopened: false,
        },
    ));
    events.extend(access_story(n, Some("inc_bench")));
    n += 1;
    events.push((
        user("ann"),
        "payments-root".into(),
        AuditEvent::OnlineUnlock {
            version: 1,
            reason: "INC-4711 the kit is not enough".into(),
            device: None,
            rotates_at: None,
        },
    ));
    events.push((
        Actor::System,
        "payments-root".into(),
        AuditEvent::SecretRotated {
            from_version: 1,
            to_version: 2,
            integration: "demo".into(),
            role: "payments-root".into(),
            trigger: "after_online_unlock".into(),
            reason: None,
            attempts: 1,
        },
    ));
    while events.len() < records {
        events.extend(access_story(n, None));
        n += 1;
    }
    events.truncate(records);
    for chunk in events.chunks(1000) {
        let mut uow = b.uow_at(b.now()).await.unwrap();
        for (actor, subject, e) in chunk {
            uow.record(actor, subject, e.clone());
        }
        uow.commit().await.unwrap();
    }
    let total = b.store.audit().max_seq().await.unwrap();
    eprintln!("{total} audit records written");

    let runs = env_n("FIREDOOR_BENCH_RUNS", 10);
    // Building and rendering first (reading the log and selecting), then verifying
    // (which checks every record's signature, the bulk of its time).
    let (mut build, mut render, mut verify) = (vec![], vec![], vec![]);
    let mut report = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = b
            .report(&Actor::System, ReportKind::Incident, "INC-4711")
            .await
            .unwrap();
        build.push(t.elapsed());
        let t = Instant::now();
        let md = to_markdown(&r);
        let html = to_html(&r);
        let json = serde_json::to_string(&r).unwrap();
        render.push(t.elapsed());
        assert!(md.len() + html.len() + json.len() > 0);
        report = Some(r);
    }
    let r = report.unwrap();
    let (bp, bm) = p50_max(build);
    let (rp, rm) = p50_max(render);
    println!(
        "report over an audit log of {total} records (SQLite, {runs} runs), incident report of {} lines:",
        r.lines.len()
    );
    println!(
        "  build (read the log, select, from the store): p50 {} max {}",
        ms(bp),
        ms(bm)
    );
    println!(
        "  render Markdown + HTML + JSON:                p50 {} max {}",
        ms(rp),
        ms(rm)
    );
    for _ in 0..env_n("FIREDOOR_BENCH_VERIFY_RUNS", runs) {
        let t = Instant::now();
        let v = b.verify_report(&Actor::System, &r).await.unwrap();
        verify.push(t.elapsed());
        assert!(v.is_ok(), "{v:?}");
        eprintln!("verify: {}", ms(verify[verify.len() - 1]));
    }
    if !verify.is_empty() {
        let n = verify.len();
        let (vp, vm) = p50_max(verify);
        println!(
            "  verify against the log (whole chain signed):  p50 {} max {} ({n} runs)",
            ms(vp),
            ms(vm)
        );
    }
    running.stop().await;
}
