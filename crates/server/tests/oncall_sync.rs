//! On-call schedules synced from PagerDuty and Opsgenie: a real broker over HTTP, a
//! manual clock (moved, never slept through), and a small local HTTP server started
//! by each test that answers with the providers' documented request and response
//! shapes and checks their authentication headers (the real services are not
//! reachable from here; this is the one stand-in). Runs on SQLite and, with
//! FIREDOOR_TEST_STORE=postgres, on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::*;
use firedoor_client::ClientError;
use firedoor_core::api::{CreateRequest, NewOverride, ScheduleView};
use firedoor_core::lifecycle::RequestState;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const PD_SCHEDULE: &str = "PSCHED1";
const OG_SCHEDULE: &str = "d875a1b4-9b4e-4219-a1b3-0c26936d18de";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other}"),
    }
}

// ---- the stand-in provider ----

/// What the stand-in answers and what it was asked.
#[derive(Default)]
struct Provider {
    pd_token: String,
    og_key: String,
    /// PagerDuty's on-calls (the documented objects).
    pd_oncalls: Vec<Value>,
    /// Opsgenie's on-call recipients of OG_SCHEDULE.
    og_recipients: Vec<String>,
    /// Answer 500 to everything.
    failing: bool,
    /// Each request: path and its query pairs.
    seen: Vec<(String, Vec<(String, String)>)>,
}

type Shared = Arc<Mutex<Provider>>;

fn pairs(q: &Option<String>) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", q.clone().unwrap_or_default())).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn one<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

/// `GET /oncalls` as PagerDuty documents it: `Authorization: Token token=…`, the
/// v2 Accept header, `schedule_ids[]`, `since`/`until`, `include[]=users`, paged by
/// `offset`/`limit` with `more` (this stand-in pages by 2, as a server may).
async fn pd_oncalls(
    State(p): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = pairs(&q);
    let mut p = p.lock().unwrap();
    p.seen.push(("/oncalls".into(), q.clone()));
    if p.failing {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": { "message": "Internal Server Error", "code": 2000 } })),
        )
            .into_response();
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Token token={}", p.pd_token)) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": { "message": "Unauthorized", "code": 2006 } })),
        )
            .into_response();
    }
    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
    assert_eq!(accept, Some("application/vnd.pagerduty+json;version=2"));
    assert_eq!(one(&q, "include[]"), Some("users"));
    let since = at(one(&q, "since").expect("since"));
    let until = at(one(&q, "until").expect("until"));
    let schedules: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "schedule_ids[]")
        .map(|(_, v)| v.as_str())
        .collect();
    let offset: usize = one(&q, "offset").unwrap_or("0").parse().unwrap();
    let limit: usize = one(&q, "limit")
        .unwrap_or("25")
        .parse::<usize>()
        .unwrap()
        .min(2);
    let matching: Vec<Value> = p
        .pd_oncalls
        .iter()
        .filter(|o| schedules.contains(&o["schedule"]["id"].as_str().unwrap_or_default()))
        .filter(|o| {
            let s = o["start"].as_str().map(at);
            let e = o["end"].as_str().map(at);
            s.is_none_or(|s| s < until) && e.is_none_or(|e| e > since)
        })
        .cloned()
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
    let more = offset + page.len() < matching.len();
    Json(json!({ "oncalls": page, "limit": limit, "offset": offset, "more": more, "total": null }))
        .into_response()
}

/// `GET /v2/schedules/{id}/on-calls` as Opsgenie documents it: `Authorization:
/// GenieKey …`, `scheduleIdentifierType`, `flat=true` → `data.onCallRecipients`.
async fn og_oncalls(
    State(p): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = pairs(&q);
    let mut p = p.lock().unwrap();
    p.seen
        .push((format!("/v2/schedules/{id}/on-calls"), q.clone()));
    if p.failing {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "message": "Internal Server Error", "took": 0.0, "requestId": "r-1" })),
        )
            .into_response();
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("GenieKey {}", p.og_key)) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "Could not authenticate", "took": 0.0, "requestId": "r-2" })),
        )
            .into_response();
    }
    assert_eq!(one(&q, "scheduleIdentifierType"), Some("id"));
    assert_eq!(one(&q, "flat"), Some("true"));
    assert!(one(&q, "date").is_some_and(|d| DateTime::parse_from_rfc3339(d).is_ok()));
    if id != OG_SCHEDULE {
        return (StatusCode::NOT_FOUND, Json(json!({ "message": "No schedule exists with identifier", "took": 0.0, "requestId": "r-3" }))).into_response();
    }
    Json(json!({
        "data": {
            "_parent": { "id": OG_SCHEDULE, "name": "SRE secondary", "enabled": true },
            "onCallRecipients": p.og_recipients,
        },
        "took": 0.199,
        "requestId": "r-4",
    }))
    .into_response()
}

/// The stand-in, listening until stopped.
struct FakeProvider {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    async fn start(state: Shared) -> FakeProvider {
        FakeProvider::start_on(state, "127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_on(state: Shared, addr: SocketAddr) -> FakeProvider {
        let app = Router::new()
            .route("/oncalls", get(pd_oncalls))
            .route("/v2/schedules/{id}/on-calls", get(og_oncalls))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeProvider { addr, state, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening: connections are refused.
    async fn stop(self) -> (Shared, SocketAddr) {
        self.task.abort();
        let _ = self.task.await;
        (self.state, self.addr)
    }
}

fn pd_oncall(email: &str, level: u32, policy: &str, start: &str, end: &str) -> Value {
    json!({
        "escalation_policy": { "id": policy, "type": "escalation_policy_reference", "summary": "Payments" },
        "escalation_level": level,
        "schedule": { "id": PD_SCHEDULE, "type": "schedule_reference", "summary": "Payments primary" },
        "user": { "id": format!("P{}", email.len()), "type": "user", "name": email, "email": email, "time_zone": "Europe/Berlin" },
        "start": start,
        "end": end,
    })
}

fn policy(url: &str, pd_env: &str, og_env: &str) -> String {
    format!(
        r#"
[integrations.demo]
kind = "demo"

[bundles.payments-kit]
title = "Payments incident kit"
resources = [{{ integration = "demo", resource = "payments", permission = "write" }}]

[bundles.payments-read]
title = "Payments read"
resources = [{{ integration = "demo", resource = "payments", permission = "read" }}]

[oncall.payments-primary]
title = "Payments primary"
provider = "pagerduty"
schedule_id = "{PD_SCHEDULE}"
token_env = "{pd_env}"
api_url = "{url}"
refresh = "5m"
users = {{ "alice@example.com" = "alice", "Bob@Example.com" = "bob" }}

[oncall.sre-secondary]
title = "SRE secondary"
provider = "opsgenie"
schedule_id = "{OG_SCHEDULE}"
token_env = "{og_env}"
api_url = "{url}"
refresh = "5m"
users = {{ "erin@example.com" = "erin", "dave@example.com" = "dave" }}

[flows.payments-oncall]
bundles = ["payments-kit"]
requesters = {{ oncall = ["payments-primary"] }}
approvers = {{ oncall = ["sre-secondary"] }}
approvals = 1
auto_approve = "requester_on_call"
default_duration = "1h"
max_duration = "4h"

[flows.payments-read]
bundles = ["payments-read"]
requesters = {{ groups = ["oncall"] }}
approvers = {{ oncall = ["sre-secondary"] }}
approvals = 1
default_duration = "1h"
max_duration = "4h"
pending_ttl = "4h"
"#
    )
}

fn kit() -> CreateRequest {
    CreateRequest {
        bundle: "payments-kit".into(),
        justification: Some("INC-7 payments down".into()),
        ..Default::default()
    }
}

fn read() -> CreateRequest {
    CreateRequest {
        bundle: "payments-read".into(),
        justification: Some("look at the ledger".into()),
        ..Default::default()
    }
}

/// Sets a token variable only this test reads.
fn token_env(name: &str, value: &str) -> String {
    let var = format!("FIREDOOR_TEST_{}_{}", name, std::process::id());
    std::env::set_var(&var, value);
    var
}

async fn schedule(tb: &TestBroker, name: &str) -> ScheduleView {
    tb.client("carol")
        .oncall()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

async fn audit(tb: &TestBroker) -> Vec<(String, String, Value)> {
    tb.client("carol")
        .audit(0, 5000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.action,
                r.subject,
                serde_json::from_str(&r.details).unwrap(),
            )
        })
        .collect()
}

fn count(audit: &[(String, String, Value)], action: &str, subject: &str) -> usize {
    audit
        .iter()
        .filter(|(a, s, _)| a == action && s == subject)
        .count()
}

/// t0 is Sunday 2030-03-17 17:46:40 UTC. PagerDuty says: alice until Monday 08:00
/// UTC, then bob for a week, then alice; mallory (whom the policy does not map) is
/// on the second escalation level; alice's first shift is listed twice (two
/// escalation policies use the schedule).
fn pd_week() -> Vec<Value> {
    vec![
        pd_oncall(
            "alice@example.com",
            1,
            "PEP1",
            "2030-03-11T08:00:00Z",
            "2030-03-18T08:00:00Z",
        ),
        pd_oncall(
            "mallory@example.com",
            2,
            "PEP1",
            "2030-03-11T08:00:00Z",
            "2030-03-25T08:00:00Z",
        ),
        pd_oncall(
            "alice@example.com",
            1,
            "PEP2",
            "2030-03-11T09:00:00+01:00",
            "2030-03-18T09:00:00+01:00",
        ),
        pd_oncall(
            "bob@example.com",
            1,
            "PEP1",
            "2030-03-18T08:00:00Z",
            "2030-03-25T08:00:00Z",
        ),
        pd_oncall(
            "alice@example.com",
            1,
            "PEP1",
            "2030-03-25T08:00:00Z",
            "2030-04-01T07:00:00Z",
        ),
    ]
}

/// PagerDuty's on-calls fill the cache: /me says alice is on call until the
/// handoff, as of the fetch, and being on call approves her request at once. The
/// clock crosses the handoff while PagerDuty is down: bob is on call from the cache
/// (stale, as of the last fetch), alice no longer; the outage is audited once.
/// PagerDuty back: refreshed, recovery audited. An admin's override still applies
/// on top.
#[tokio::test]
async fn pagerduty_sync_drives_on_call_across_a_handoff_while_pagerduty_is_down() {
    let state: Shared = Arc::new(Mutex::new(Provider {
        pd_token: "pd-token-u+Zx81kq".into(),
        og_key: "og-key-5f6e".into(),
        pd_oncalls: pd_week(),
        og_recipients: vec!["erin@example.com".into()],
        ..Default::default()
    }));
    let fake = FakeProvider::start(state.clone()).await;
    let pd_env = token_env("PD1", "pd-token-u+Zx81kq");
    let og_env = token_env("OG1", "og-key-5f6e");
    let tb = spawn_with(&policy(&fake.url(), &pd_env, &og_env), None).await;
    let (alice, bob) = (tb.client("alice"), tb.client("bob"));
    let t0 = tb.running.broker.now();

    tb.running.run_due_work().await.unwrap();
    let me = alice.me().await.unwrap();
    assert_eq!(me.oncall.len(), 1, "alice is on call: {:?}", me.oncall);
    let oc = &me.oncall[0];
    assert_eq!(oc.schedule, "payments-primary");
    assert_eq!(
        oc.until,
        Some(at("2030-03-18T08:00:00Z")),
        "until the entry's end"
    );
    assert_eq!(oc.as_of, Some(t0), "as of the fetch");
    assert!(!oc.stale);
    assert!(bob.me().await.unwrap().oncall.is_empty());

    // What was asked: the documented request, paged.
    {
        let p = state.lock().unwrap();
        let pd: Vec<_> = p
            .seen
            .iter()
            .filter(|(path, _)| path == "/oncalls")
            .collect();
        assert!(
            pd.len() >= 2,
            "four on-calls in the window, in pages of two: {pd:?}"
        );
        let q = &pd[0].1;
        assert_eq!(one(q, "schedule_ids[]"), Some(PD_SCHEDULE));
        assert_eq!(one(q, "since").map(at), Some(t0));
        assert_eq!(one(q, "until").map(at), Some(t0 + Duration::days(7)));
        let offsets: Vec<&str> = pd[..2]
            .iter()
            .map(|(_, q)| one(q, "offset").unwrap())
            .collect();
        assert_eq!(offsets, ["0", "2"], "each page starts after what came");
    }

    // The API says where from and who is nobody.
    let s = schedule(&tb, "payments-primary").await;
    assert_eq!(s.on_call.as_ref().unwrap().user, "alice");
    assert!(
        s.also_on_call.is_empty(),
        "mallory is nobody: {:?}",
        s.also_on_call
    );
    let sync = s.sync.as_ref().unwrap();
    assert_eq!(sync.provider, "pagerduty");
    assert_eq!(sync.unmapped, vec!["mallory@example.com".to_string()]);
    assert_eq!(sync.last_error, None);
    assert_eq!((s.as_of, s.stale), (Some(t0), false));

    // On call for the flow's schedule: approved at once, and the audit says why.
    let (r, _) = alice.create_request(&kit(), None).await.unwrap();
    assert_eq!(r.state, RequestState::Active, "on call: approved at once");
    let e = bob.create_request(&kit(), None).await.unwrap_err();
    assert_eq!(
        code(e),
        (403, "not_eligible".into()),
        "bob is not on call yet"
    );
    let auto = audit(&tb).await;
    assert!(auto.iter().any(|(a, _, d)| a == "request_approved"
        && d["automatic"] == true
        && d["on_call"] == "payments-primary"));

    // PagerDuty goes away; the clock crosses the handoff (and the refresh).
    let (state, addr) = fake.stop().await;
    tb.clock.set(at("2030-03-18T08:00:00Z"));
    tb.running.run_due_work().await.unwrap();
    let me = bob.me().await.unwrap();
    assert_eq!(me.oncall.len(), 1, "bob, from the cached window");
    assert_eq!(me.oncall[0].as_of, Some(t0), "as of the last fetch");
    assert!(
        me.oncall[0].stale,
        "and it says the provider could not be read"
    );
    assert_eq!(
        me.oncall[0].until, None,
        "bob's shift runs past what was fetched: until when is not known"
    );
    assert!(
        alice.me().await.unwrap().oncall.is_empty(),
        "alice handed off"
    );
    let e = alice.create_request(&kit(), None).await.unwrap_err();
    assert_eq!(code(e), (403, "not_eligible".into()));
    let (r, _) = bob.create_request(&kit(), None).await.unwrap();
    assert_eq!(r.state, RequestState::Active);
    let s = schedule(&tb, "payments-primary").await;
    assert!(s.stale);
    assert_eq!(s.as_of, Some(t0));
    let err = s.sync.unwrap().last_error.expect("the error is readable");
    assert!(err.contains("could not connect to PagerDuty"), "{err}");
    // Still down a while later: one audit record for the outage, not one per try.
    tb.advance(Duration::minutes(10));
    tb.running.run_due_work().await.unwrap();
    let a = audit(&tb).await;
    assert_eq!(
        count(&a, "oncall_sync_failed", "payments-primary"),
        1,
        "{a:?}"
    );
    assert_eq!(count(&a, "oncall_sync_recovered", "payments-primary"), 0);

    // PagerDuty is back: the next attempt (within the refresh) reads it again.
    let fake = FakeProvider::start_on(state.clone(), addr).await;
    tb.advance(Duration::minutes(5));
    tb.running.run_due_work().await.unwrap();
    let now = tb.running.broker.now();
    let me = bob.me().await.unwrap();
    assert_eq!(me.oncall[0].as_of, Some(now), "refreshed");
    assert!(!me.oncall[0].stale);
    assert_eq!(
        me.oncall[0].until,
        Some(at("2030-03-25T08:00:00Z")),
        "the window now reaches the next handoff"
    );
    let s = schedule(&tb, "payments-primary").await;
    assert_eq!(s.sync.unwrap().last_error, None);
    let a = audit(&tb).await;
    let rec: Vec<_> = a
        .iter()
        .filter(|(x, s, _)| x == "oncall_sync_recovered" && s == "payments-primary")
        .collect();
    assert_eq!(rec.len(), 1, "{a:?}");
    assert!(
        rec[0].2["failures"].as_i64().unwrap() >= 2,
        "{:?}",
        rec[0].2
    );
    assert_eq!(
        rec[0].2["stale_since"],
        Value::String(t0.to_rfc3339_opts(SecondsFormat::Micros, true))
    );

    // An admin's override applies on top of the synced schedule.
    tb.client("carol")
        .add_override(
            "payments-primary",
            &NewOverride {
                user: "dave".into(),
                starts_at: None,
                ends_at: now + Duration::hours(1),
                reason: Some("bob is on a plane".into()),
            },
        )
        .await
        .unwrap();
    assert!(bob.me().await.unwrap().oncall.is_empty(), "covered for");
    let dave = tb.client("dave").me().await.unwrap();
    assert_eq!(dave.oncall[0].until, Some(now + Duration::hours(1)));
    let v = firedoor_server::audit::verify(&tb.running.broker.store)
        .await
        .unwrap();
    assert!(v.is_ok(), "the chain verifies");
    fake.stop().await;
    tb.running.stop().await;
}

/// An Opsgenie schedule as the approvers of a flow: whoever Opsgenie says is on
/// call is told of a request and may approve it (until unknown: Opsgenie's
/// on-calls say who, not until when); someone else may not. Opsgenie failing keeps
/// the last known approvers (stale); back, with someone else on call, they change.
#[tokio::test]
async fn an_opsgenie_schedule_names_the_approvers_and_survives_an_outage() {
    let state: Shared = Arc::new(Mutex::new(Provider {
        pd_token: "pd-2".into(),
        og_key: "og-key-2b7c91".into(),
        og_recipients: vec![
            "erin@example.com".into(),
            "someone@elsewhere.example".into(),
        ],
        ..Default::default()
    }));
    let fake = FakeProvider::start(state.clone()).await;
    let pd_env = token_env("PD2", "pd-2");
    let og_env = token_env("OG2", "og-key-2b7c91");
    let tb = spawn_with(&policy(&fake.url(), &pd_env, &og_env), None).await;
    let t0 = tb.running.broker.now();
    tb.running.run_due_work().await.unwrap();

    let s = schedule(&tb, "sre-secondary").await;
    let oc = s.on_call.as_ref().expect("someone is on call");
    assert_eq!((oc.user.as_str(), oc.until), ("erin", None));
    assert_eq!((s.as_of, s.stale), (Some(t0), false));
    let sync = s.sync.unwrap();
    assert_eq!(sync.provider, "opsgenie");
    assert_eq!(sync.unmapped, vec!["someone@elsewhere.example".to_string()]);
    let erin_me = tb.client("erin").me().await.unwrap();
    assert_eq!(erin_me.oncall[0].as_of, Some(t0));

    let (alice, dave, erin) = (tb.client("alice"), tb.client("dave"), tb.client("erin"));
    let (r, _) = alice.create_request(&read(), None).await.unwrap();
    assert_eq!(r.state, RequestState::Pending);
    let told = tb
        .running
        .broker
        .events_after("erin", 0, 1000)
        .await
        .unwrap();
    assert!(
        told.iter()
            .any(|e| e.kind == "request_awaiting_approval" && e.request_id == Some(r.id)),
        "erin, on call in Opsgenie, is told: {told:?}"
    );
    let e = dave.approve(&r.id, None).await.unwrap_err();
    assert_eq!(code(e).0, 404, "dave is not on call");
    assert_eq!(
        erin.approve(&r.id, None).await.unwrap().state,
        RequestState::Active
    );

    // Opsgenie fails: the last known approvers still decide, and it says so.
    state.lock().unwrap().failing = true;
    tb.advance(Duration::minutes(5));
    tb.running.run_due_work().await.unwrap();
    let s = schedule(&tb, "sre-secondary").await;
    assert_eq!(s.on_call.as_ref().unwrap().user, "erin");
    assert_eq!((s.as_of, s.stale), (Some(t0), true));
    let err = s.sync.unwrap().last_error.unwrap();
    assert!(
        err.contains("Opsgenie answered 500") && err.contains("Internal Server Error"),
        "{err}"
    );
    let (r2, _) = alice.create_request(&read(), None).await.unwrap();
    assert_eq!(
        erin.approve(&r2.id, None).await.unwrap().state,
        RequestState::Active
    );

    // Back, with dave on call now.
    {
        let mut p = state.lock().unwrap();
        p.failing = false;
        p.og_recipients = vec!["Dave@Example.com".into()];
    }
    tb.advance(Duration::minutes(5));
    tb.running.run_due_work().await.unwrap();
    let s = schedule(&tb, "sre-secondary").await;
    assert_eq!(s.on_call.as_ref().unwrap().user, "dave");
    assert!(!s.stale);
    let (r3, _) = alice.create_request(&read(), None).await.unwrap();
    let e = erin.approve(&r3.id, None).await.unwrap_err();
    assert_eq!(code(e).0, 404, "erin is no longer on call");
    assert_eq!(
        dave.approve(&r3.id, None).await.unwrap().state,
        RequestState::Active
    );
    let a = audit(&tb).await;
    assert_eq!(count(&a, "oncall_sync_failed", "sre-secondary"), 1);
    assert_eq!(count(&a, "oncall_sync_recovered", "sre-secondary"), 1);
    fake.stop().await;
    tb.running.stop().await;
}

/// Log lines written while this binary's tests run.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A wrong token: the provider refuses, the error is recorded and readable (the
/// status and the provider's message), nobody is on call (never fetched), and the
/// token is in neither the error, the audit log nor the logs. A token variable that
/// is not set says which variable.
#[tokio::test]
async fn a_wrong_or_missing_token_is_an_error_that_never_shows_the_token() {
    let logs = Logs::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .try_init();

    let state: Shared = Arc::new(Mutex::new(Provider {
        pd_token: "the-right-token".into(),
        og_key: "the-right-key".into(),
        pd_oncalls: pd_week(),
        og_recipients: vec!["erin@example.com".into()],
        ..Default::default()
    }));
    let fake = FakeProvider::start(state.clone()).await;
    let wrong = "wr0ng-t0ken-Q7v+93zz";
    let pd_env = token_env("PD3", wrong);
    let og_env = format!("FIREDOOR_TEST_UNSET_{}", std::process::id());
    std::env::remove_var(&og_env);
    let tb = spawn_with(&policy(&fake.url(), &pd_env, &og_env), None).await;
    tb.running.run_due_work().await.unwrap();

    let s = schedule(&tb, "payments-primary").await;
    let err = s
        .sync
        .as_ref()
        .unwrap()
        .last_error
        .clone()
        .expect("recorded");
    assert!(err.contains("401") && err.contains("Unauthorized"), "{err}");
    assert!(!err.contains(wrong), "{err}");
    assert!(s.on_call.is_none(), "never fetched: nobody is on call");
    assert_eq!((s.as_of, s.stale), (None, true));
    assert!(tb.client("alice").me().await.unwrap().oncall.is_empty());
    let e = tb
        .client("alice")
        .create_request(&kit(), None)
        .await
        .unwrap_err();
    assert_eq!(code(e), (403, "not_eligible".into()));

    let og = schedule(&tb, "sre-secondary").await;
    let og_err = og.sync.unwrap().last_error.unwrap();
    assert!(
        og_err.contains(&og_env) && og_err.contains("not set"),
        "{og_err}"
    );
    assert!(
        !state
            .lock()
            .unwrap()
            .seen
            .iter()
            .any(|(p, _)| p.starts_with("/v2/")),
        "no token: Opsgenie is not even asked"
    );

    let a = audit(&tb).await;
    let failed: Vec<_> = a
        .iter()
        .filter(|(x, _, _)| x == "oncall_sync_failed")
        .collect();
    assert_eq!(failed.len(), 2, "{a:?}");
    for (_, _, d) in &failed {
        assert!(!d.to_string().contains(wrong), "{d}");
    }
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("on-call schedule sync failed"),
        "the failure is logged: {logged}"
    );
    assert!(!logged.contains(wrong), "the token is never logged");

    // The right token: synced at the next attempt.
    std::env::set_var(&pd_env, "the-right-token");
    tb.advance(Duration::minutes(1));
    tb.running.run_due_work().await.unwrap();
    let s = schedule(&tb, "payments-primary").await;
    assert_eq!(s.on_call.unwrap().user, "alice");
    assert!(!s.stale);
    fake.stop().await;
    tb.running.stop().await;
}
