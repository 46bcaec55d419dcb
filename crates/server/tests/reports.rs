//! Reports after an incident, with real parts: a broker over HTTP, an incident
//! opened and closed by Opsgenie's documented webhook deliveries, a request approved
//! from two channels (a desktop notification, the CLI), credentials viewed, a
//! break-glass online unlock naming the incident, a revocation and a rotation.
//! Reports in the three formats are checked line by line against the audit log,
//! verified (API and the `firedoor-server report verify` binary), and tampered
//! reports and a tampered audit log are refused naming the line.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::*;
use firedoor_core::api::{ClientChannel, CreateRequest};
use firedoor_core::audit::AuditRecord;
use firedoor_core::lifecycle::{GrantState, RequestState};
use firedoor_core::report::Report;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedoor-server");

const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.payments-kit]
title = "Payments incident kit"
resources = [{ integration = "demo", resource = "payments", permission = "write" }]

[incident_sources.opsgenie]
kind = "opsgenie"
secret_env = "FIREDOOR_TEST_REPORT_OPSGENIE_TOKEN"

[incidents.payments-og]
source = "opsgenie"
match = { service = "payments-api" }
bundles = ["payments-kit"]
responders = { users = ["alice"] }

[flows.payments-incident]
bundles = ["payments-kit"]
requesters = { groups = ["sre-leads"] }
approvers = { groups = ["sre-leads"] }
approvals = 2
default_duration = "2h"
max_duration = "4h"

[secrets.payments-root]
title = "Payments DB root"
unlock = { groups = ["oncall"] }
rotate = { integration = "demo", role = "payments-root" }
rotate_after_online = "30m"
"#;

const OG_TOKEN: &str = "og-report-token-5d2e";
const XSS: &str = "<script>alert('x')</script> payments | down";

fn og_body(action: &str) -> String {
    // Opsgenie's documented alert action data (webhook integration).
    serde_json::json!({
        "source": { "name": "web", "type": "API" },
        "alert": {
            "updatedAt": 1420452193166002000u64,
            "tags": ["service:payments-api", "page"],
            "teams": ["team1"],
            "recipients": ["recipient1"],
            "message": "payments-api down",
            "username": "fili@ifountain.com",
            "alertId": "052652ac-5d1c-464a-812a-7dd18bbfba8c",
            "source": "fili@ifountain.com",
            "alias": "aliastest",
            "tinyId": "23",
            "createdAt": 1420452191104u64,
            "userId": "daed1180-0ce8-438b-8f8e-57e1a5920a2d",
            "entity": ""
        },
        "action": action,
        "integrationId": "37c8f316-17c6-49d7-899b-9c7e540c048d",
        "integrationName": "Integration1"
    })
    .to_string()
}

async fn og(tb: &TestBroker, body: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(tb.url("/hooks/opsgenie/opsgenie"))
        .header("content-type", "application/json")
        .header("X-Firedoor-Token", OG_TOKEN)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

/// GET as `user`; status, content type and body text.
async fn get(tb: &TestBroker, user: &str, path: &str) -> (u16, String, String) {
    let resp = reqwest::Client::new()
        .get(tb.url(path))
        .bearer_auth(tb.token(user))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

async fn log(tb: &TestBroker) -> Vec<AuditRecord> {
    firedoor_server::audit::records(&tb.running.broker.store, 0, i64::MAX)
        .await
        .unwrap()
}

async fn verify_api(tb: &TestBroker, r: &Report) -> serde_json::Value {
    tb.client("carol").verify_report(r).await.unwrap()
}

fn problem(v: &serde_json::Value) -> String {
    assert_eq!(v["valid"], false, "{v}");
    v["problem"].as_str().unwrap().to_string()
}

struct Story {
    incident: String,
    external: String,
    request: String,
    grant: String,
    unlock_seq: i64,
}

/// The incident as it happens, all over HTTP.
async fn story(tb: &TestBroker) -> Story {
    let v = og(tb, &og_body("Create")).await;
    let incident = v["opened"][0].as_str().unwrap().to_string();
    let opened = log(tb)
        .await
        .into_iter()
        .find(|r| r.action == "incident_opened")
        .unwrap();
    let d: serde_json::Value = serde_json::from_str(&opened.details).unwrap();
    let external = d["external_id"].as_str().unwrap().to_string();

    let alice = tb.client("alice");
    let (req, _) = alice
        .create_request(
            &CreateRequest {
                bundle: "payments-kit".into(),
                justification: Some(XSS.into()),
                incident: Some(incident.clone()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(req.state, RequestState::Pending);
    tb.advance(Duration::minutes(2));

    // A client naming an unknown channel is refused, and nothing is recorded.
    let resp = reqwest::Client::new()
        .post(tb.url(&format!("/requests/{}/approve", req.id)))
        .bearer_auth(tb.token("bob"))
        .header("X-Firedoor-Client", "email")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "invalid_request", "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("app, notification, cli, chat"));

    tb.client("bob")
        .approve_via(
            &req.id,
            Some("approved from a desktop notification"),
            Some(ClientChannel::Notification),
        )
        .await
        .unwrap();
    tb.advance(Duration::minutes(1));
    let r = tb
        .client("erin")
        .approve_via(&req.id, None, Some(ClientChannel::Cli))
        .await
        .unwrap();
    let grant = r.grant_id.unwrap();
    eventually("the grant is active", || async {
        let g = alice.grant(&grant).await.unwrap();
        (g.state == GrantState::Active).then_some(())
    })
    .await;
    alice.credentials(&grant).await.unwrap();

    // Break glass during the incident, naming it.
    tb.client("carol")
        .put_secret("payments-root", "initial-root-value-7f3a")
        .await
        .unwrap();
    let resp = reqwest::Client::new()
        .post(tb.url("/secrets/payments-root/unlock"))
        .bearer_auth(tb.token("alice"))
        .json(&serde_json::json!({ "reason": format!("{external}: the kit is not enough") }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let unlock_seq = log(tb)
        .await
        .iter()
        .rev()
        .find(|r| r.action == "break_glass_online_unlock")
        .unwrap()
        .seq;

    tb.advance(Duration::minutes(5));
    tb.client("carol").revoke(&grant).await.unwrap();
    eventually("the grant is revoked", || async {
        let g = alice.grant(&grant).await.unwrap();
        (g.state == GrantState::Revoked).then_some(())
    })
    .await;
    tb.advance(Duration::minutes(31));
    tb.running.run_due_work().await.unwrap();
    eventually("the secret is rotated", || async {
        log(tb)
            .await
            .iter()
            .any(|r| r.action == "secret_rotated")
            .then_some(())
    })
    .await;
    og(tb, &og_body("Close")).await;
    Story {
        incident,
        external,
        request: req.id.to_string(),
        grant: grant.to_string(),
        unlock_seq,
    }
}

#[tokio::test]
async fn incident_report_in_three_formats_verifies_and_tampering_fails() {
    std::env::set_var("FIREDOOR_TEST_REPORT_OPSGENIE_TOKEN", OG_TOKEN);
    let tb = spawn_with(POLICY, None).await;
    let s = story(&tb).await;
    let records = log(&tb).await;

    // JSON, by the source's id: every line is its audit record, with its hash.
    let r = tb
        .client("carol")
        .report("incident", &s.external)
        .await
        .unwrap();
    assert_eq!(r.scope.incidents.iter().next().unwrap(), &s.incident);
    assert!(r.scope.requests.contains(&s.request));
    assert!(r.scope.grants.contains(&s.grant));
    assert!(r.scope.unlocks.contains(&s.unlock_seq));
    for l in &r.lines {
        let rec = &records[(l.seq - 1) as usize];
        assert_eq!((rec.seq, &rec.hash, &rec.at), (l.seq, &l.hash, &l.at));
        assert_eq!(rec, &l.record);
        assert_eq!(l.record.expected_hash(), l.hash);
    }
    let actions: Vec<&str> = r.lines.iter().map(|l| l.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "incident_opened",
            "request_created",
            "approval_recorded",
            "approval_recorded",
            "request_approved",
            "grant_activated",
            "credentials_viewed",
            "break_glass_online_unlock",
            "grant_revoke_requested",
            "grant_revoked",
            "secret_rotated",
            "incident_resolved",
        ],
        "{:#?}",
        r.lines
    );
    let approvals: Vec<(&str, Option<&str>)> = r
        .lines
        .iter()
        .filter(|l| l.action == "approval_recorded")
        .map(|l| (l.actor.as_str(), l.channel.as_deref()))
        .collect();
    assert_eq!(
        approvals,
        vec![("bob", Some("notification")), ("erin", Some("cli"))]
    );
    let bob = r.lines.iter().find(|l| l.actor == "bob").unwrap();
    assert_eq!(bob.at, "2030-03-17T17:48:40.000000Z");
    assert!(bob.text.starts_with("bob approved (via notification)"));
    let viewed = r
        .lines
        .iter()
        .find(|l| l.action == "credentials_viewed")
        .unwrap();
    assert_eq!(viewed.actor, "alice");
    assert!(r.notes.is_empty(), "{:?}", r.notes);

    // Markdown and HTML carry the same lines: who, when, channel, seq and hash.
    let (st, ct, md) = get(
        &tb,
        "carol",
        &format!("/reports/incident/{}?format=md", s.external),
    )
    .await;
    assert_eq!((st, ct.as_str()), (200, "text/markdown; charset=utf-8"));
    let (st, ct, html) = get(
        &tb,
        "carol",
        &format!("/reports/incident/{}?format=html", s.incident),
    )
    .await;
    assert_eq!((st, ct.as_str()), (200, "text/html; charset=utf-8"));
    for l in &r.lines {
        let row = md
            .lines()
            .find(|x| x.contains(&format!("| #{} |", l.seq)))
            .unwrap_or_else(|| panic!("line {} in {md}", l.seq));
        assert!(row.contains(&l.hash) && row.contains(&l.at), "{row}");
        assert!(html.contains(&format!("<td>#{}</td>", l.seq)));
        assert!(html.contains(&format!("title=\"{}\"", l.hash)));
    }
    assert!(md.contains("| bob | notification | approval |"), "{md}");
    assert!(md.contains("| erin | cli | approval |"), "{md}");
    // What the requester wrote cannot run or break out of the page or the table.
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    for external in ["src=", "href=", "http://", "https://", "@import", "url("] {
        assert!(!html.contains(external), "self-contained: {external}");
    }
    assert!(md.contains("\\<script\\>alert('x')\\</script\\> payments \\| down"));

    // Verified against the audit log.
    let v = verify_api(&tb, &r).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["lines"], r.lines.len());

    // Tampered reports fail, naming the line.
    let n = r.lines.iter().position(|l| l.actor == "bob").unwrap();
    let mut t = r.clone();
    t.lines[n].at = "2030-03-17T17:40:00.000000Z".into();
    let p = problem(&verify_api(&tb, &t).await);
    assert!(
        p.starts_with(&format!(
            "line {} (audit record {}): its time was changed",
            n + 1,
            r.lines[n].seq
        )),
        "{p}"
    );
    let mut t = r.clone();
    t.lines[n].actor = "carol".into();
    assert!(problem(&verify_api(&tb, &t).await).contains("its actor was changed"));
    let mut t = r.clone();
    t.lines[n].record.actor = "carol".into();
    t.lines[n].actor = "carol".into();
    t.lines[n].text = t.lines[n].text.replacen("bob", "carol", 1);
    let p = problem(&verify_api(&tb, &t).await);
    assert!(
        p.starts_with(&format!("line {} (audit record", n + 1)) && p.contains("does not hash"),
        "{p}"
    );
    let k = r
        .lines
        .iter()
        .position(|l| l.action == "request_created")
        .unwrap();
    let mut t = r.clone();
    t.lines[k].text = t.lines[k].text.replace("payments | down", "routine");
    let p = problem(&verify_api(&tb, &t).await);
    assert!(
        p.starts_with(&format!("line {} (audit record", k + 1)) && p.contains("its text"),
        "{p}"
    );
    let mut t = r.clone();
    t.lines[n].channel = Some("app".into());
    assert!(problem(&verify_api(&tb, &t).await).contains("its channel was changed"));
    let mut t = r.clone();
    let view = t
        .lines
        .iter()
        .position(|l| l.action == "credentials_viewed")
        .unwrap();
    t.lines.remove(view);
    let p = problem(&verify_api(&tb, &t).await);
    assert!(
        p.contains(&format!(
            "leaves out audit record {} (credentials_viewed)",
            r.lines[view].seq
        )),
        "{p}"
    );

    // Who may see reports, and what bad input gets.
    let (st, ct, body) = get(&tb, "alice", &format!("/reports/grant/{}", s.grant)).await;
    assert_eq!((st, ct.as_str()), (403, "application/json"), "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["code"], "forbidden");
    let resp = reqwest::Client::new()
        .post(tb.url("/reports/verify"))
        .bearer_auth(tb.token("alice"))
        .json(&r)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    for (path, status, code) in [
        ("/reports/incident/INC-404", 404, "not_found"),
        (
            "/reports/grant/grt_00000000000000000000000000000000",
            404,
            "not_found",
        ),
        ("/reports/unlock/1", 404, "not_found"),
        ("/reports/unlock/abc", 400, "invalid_request"),
        ("/reports/meeting/x", 404, "not_found"),
        ("/reports/grant/x?format=pdf", 400, "invalid_request"),
    ] {
        let (st, ct, body) = get(&tb, "carol", path).await;
        assert_eq!(
            (st, ct.as_str()),
            (status, "application/json"),
            "{path}: {body}"
        );
        let e: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["code"], code, "{path}: {body}");
    }
    let resp = reqwest::Client::new()
        .post(tb.url("/reports/verify"))
        .bearer_auth(tb.token("carol"))
        .header("content-type", "application/json")
        .body("{\"format\": 3}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // A tampered audit log: the same report no longer verifies.
    let db = tb.raw_db().await;
    let changed = db
        .execute(
            "UPDATE audit SET actor = 'mallory' WHERE seq = CAST($1 AS BIGINT)",
            &bob.seq.to_string(),
        )
        .await;
    assert_eq!(changed, 1);
    let p = problem(&verify_api(&tb, &r).await);
    assert_eq!(
        p,
        format!(
            "the audit log is broken at record {}: its content does not match its hash (the record was edited)",
            bob.seq
        )
    );
    tb.running.stop().await;
}

/// Grant and unlock reports, written and verified by the `firedoor-server report`
/// binary on the broker's database; a tampered file and a tampered log fail.
#[tokio::test]
async fn cli_writes_grant_and_unlock_reports_and_verifies_them() {
    if on_postgres() {
        return; // the binary opens the SQLite file of the data directory
    }
    std::env::set_var("FIREDOOR_TEST_REPORT_OPSGENIE_TOKEN", OG_TOKEN);
    let tb = spawn_with(POLICY, None).await;
    let s = story(&tb).await;
    let data = tb.dir.path().join("data");
    let out = tb.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env("FIREDOOR_LOG", "warn")
            .output()
            .unwrap()
    };
    let json = out.join("grant.json");
    let o = cli(&[
        "report",
        "grant",
        &s.grant,
        "--format",
        "json",
        "-o",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let actions: Vec<&str> = r.lines.iter().map(|l| l.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "request_created",
            "approval_recorded",
            "approval_recorded",
            "request_approved",
            "grant_activated",
            "credentials_viewed",
            "grant_revoke_requested",
            "grant_revoked",
        ]
    );
    assert!(r.generated_by.starts_with("cli:"));
    let o = cli(&["report", "verify", json.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{said}");
    assert!(said.starts_with("report ok: grant"), "{said}");

    // Markdown by default, to standard output.
    let o = cli(&["report", "unlock", &s.unlock_seq.to_string()]);
    assert!(o.status.success());
    let md = String::from_utf8(o.stdout).unwrap();
    assert!(md.starts_with(&format!("# Firedoor report: unlock {}", s.unlock_seq)));
    assert!(
        md.contains("alice unlocked payments-root v1 online"),
        "{md}"
    );
    assert!(md.contains("payments-root rotated v1 to v2"), "{md}");
    let html = out.join("unlock.html");
    let o = cli(&[
        "report",
        "unlock",
        &s.unlock_seq.to_string(),
        "--format",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
    let o = cli(&["report", "grant", "grt_00000000000000000000000000000000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such grant"));

    // A changed approver in the file.
    let mut t = r.clone();
    let n = t.lines.iter().position(|l| l.actor == "erin").unwrap();
    t.lines[n].actor = "dave".into();
    let bad = out.join("tampered.json");
    std::fs::write(&bad, serde_json::to_string(&t).unwrap()).unwrap();
    let o = cli(&["report", "verify", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        said.starts_with(&format!(
            "REPORT NOT VERIFIED: line {} (audit record {}): its actor was changed",
            n + 1,
            r.lines[n].seq
        )),
        "{said}"
    );

    // A record removed from the middle of the log.
    let gone = r.lines[2].seq;
    let db = tb.raw_db().await;
    assert_eq!(
        db.execute(
            "DELETE FROM audit WHERE seq = CAST($1 AS BIGINT)",
            &gone.to_string()
        )
        .await,
        1
    );
    let o = cli(&["report", "verify", json.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        said.starts_with(&format!(
            "REPORT NOT VERIFIED: the audit log is broken at record {gone}: missing"
        )),
        "{said}"
    );
    tb.running.stop().await;
}
