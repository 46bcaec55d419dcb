//! What operators run the broker with: liveness and readiness for a load balancer,
//! Prometheus metrics, JSON logs, the alert rules (checked by the real promtool) and
//! a real HAProxy in front of two brokers.
//!
//! Metrics are process-wide and the tests of this binary run in parallel, so
//! recorded counters are compared before and after (they only grow); values read
//! from a broker's own store are exact.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use common::{eventually, spawn, spawn_with};
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::GrantState;
use firedoor_server::connectors::demo::DemoConnector;
use firedoor_server::connectors::{
    Connector, ConnectorError, Connectors, DeprovisionReport, Target,
};
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};
use tower::ServiceExt;

fn req(bundle: &str) -> CreateRequest {
    CreateRequest {
        bundle: bundle.into(),
        duration_secs: None,
        justification: Some("INC-4242 checkout errors".into()),
        ticket: Some("OPS-1".into()),
        incident: None,
        on_behalf_of: None,
    }
}

/// A scrape as series text (`name{labels}`) → value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("series and value");
            let v = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            };
            (k.to_string(), v)
        })
        .collect()
}

async fn scrape(base: &str) -> (String, BTreeMap<String, f64>) {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "the Prometheus text format's content type"
    );
    let text = resp.text().await.unwrap();
    let map = parse(&text);
    (text, map)
}

fn v(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_follow_a_request_approve_revoke_lifecycle() {
    let tb = spawn().await;
    let base = tb.running.url();
    let alice = tb.client("alice");
    let bob = tb.client("bob");
    let (_, before) = scrape(&base).await;
    assert_eq!(v(&before, "firedoor_requests{state=\"revoked\"}"), 0.0);
    assert_eq!(v(&before, "firedoor_grants{state=\"active\"}"), 0.0);
    assert_eq!(v(&before, "firedoor_ready"), 1.0);

    // request → approve → revoke
    let (r, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    let r = bob.approve(&r.id, None).await.unwrap();
    let gid = r.grant_id.unwrap();
    let (_, live) = scrape(&base).await;
    assert_eq!(v(&live, "firedoor_grants{state=\"active\"}"), 1.0);
    assert_eq!(v(&live, "firedoor_requests{state=\"active\"}"), 1.0);
    let g = alice.revoke(&gid).await.unwrap();
    assert_eq!(g.state, GrantState::Revoked);
    // and a denied one
    let (d, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    bob.deny(&d.id, Some("not now")).await.unwrap();
    // and an expired one, revoked by the worker
    let (e, _) = alice
        .create_request(
            &CreateRequest {
                duration_secs: Some(600),
                ..req("prod-db-read")
            },
            None,
        )
        .await
        .unwrap();
    let e = bob.approve(&e.id, None).await.unwrap();
    let egid = e.grant_id.unwrap();
    tb.advance(Duration::seconds(601));
    eventually("expiry", || async {
        let g = alice.grant(&egid).await.ok()?;
        (g.state == GrantState::Expired).then_some(())
    })
    .await;
    // an open event stream
    let stream = alice.events(None).await.unwrap();

    let (text, after) = scrape(&base).await;
    for (series, want) in [
        ("firedoor_requests{state=\"revoked\"}", 1.0),
        ("firedoor_requests{state=\"denied\"}", 1.0),
        ("firedoor_requests{state=\"expired\"}", 1.0),
        ("firedoor_requests{state=\"pending\"}", 0.0),
        ("firedoor_grants{state=\"revoked\"}", 1.0),
        ("firedoor_grants{state=\"expired\"}", 1.0),
        ("firedoor_grants{state=\"active\"}", 0.0),
        ("firedoor_grants_overdue_seconds", 0.0),
        ("firedoor_store_up", 1.0),
    ] {
        assert_eq!(
            v(&after, series),
            want,
            "{series} read from this broker's store"
        );
    }
    for (series, by) in [
        ("firedoor_decision_latency_seconds_count{decision=\"approved\"}", 2.0),
        ("firedoor_decision_latency_seconds_count{decision=\"denied\"}", 1.0),
        ("firedoor_expiry_lag_seconds_count", 1.0),
        (
            "firedoor_connector_duration_seconds_count{integration=\"demo\",operation=\"provision\"}",
            2.0,
        ),
        (
            "firedoor_connector_duration_seconds_count{integration=\"demo\",operation=\"deprovision\"}",
            2.0,
        ),
        (
            "firedoor_http_requests_total{route=\"/api/v1/requests/{id}/approve\",method=\"POST\",status=\"2xx\"}",
            2.0,
        ),
        (
            "firedoor_http_requests_total{route=\"/api/v1/grants/{id}/revoke\",method=\"POST\",status=\"2xx\"}",
            1.0,
        ),
        ("firedoor_store_operation_duration_seconds_count{operation=\"begin\"}", 5.0),
        ("firedoor_store_operation_duration_seconds_count{operation=\"commit\"}", 5.0),
    ] {
        assert!(
            v(&after, series) >= v(&before, series) + by,
            "{series} grew by at least {by}: {} -> {}",
            v(&before, series),
            v(&after, series)
        );
    }
    eventually("alice's stream is counted", || async {
        let (_, m) = scrape(&base).await;
        (v(&m, "firedoor_sse_clients") >= 1.0).then_some(())
    })
    .await;
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("firedoor_expiry_lag_seconds_bucket{le=\"0.5\"}")),
        "the expiry lag histogram has buckets"
    );
    // Nothing that names a person, a request or a grant, nor a token.
    for secret in [
        "alice",
        "bob",
        &r.id.to_string(),
        &gid.to_string(),
        tb.token("alice"),
        tb.token("bob"),
    ] {
        assert!(!text.contains(secret), "/metrics must not show {secret}");
    }
    drop(stream);
}

/// Fails the first `n` deprovisions, then works (as the demo connector).
struct Flaky {
    inner: DemoConnector,
    fail: AtomicUsize,
}

impl Connector for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<firedoor_core::api::CredentialItem, ConnectorError>> {
        self.inner.provision(t)
    }
    fn deprovision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<DeprovisionReport, ConnectorError>> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Box::pin(async { Err(ConnectorError("target unreachable".into())) });
        }
        self.inner.deprovision(t)
    }
    fn extend<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        self.inner.extend(t)
    }
}

#[tokio::test]
async fn failed_revokes_are_counted_and_so_are_their_retries() {
    let flaky = Arc::new(Flaky {
        inner: DemoConnector::default(),
        fail: AtomicUsize::new(1),
    });
    let mut c: Connectors = BTreeMap::new();
    c.insert("demo".into(), flaky.clone() as Arc<dyn Connector>);
    let tb = spawn_with(firedoor_server::DEMO_POLICY, Some(c)).await;
    let base = tb.running.url();
    let (_, before) = scrape(&base).await;
    let alice = tb.client("alice");
    let (r, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    let gid = tb
        .client("bob")
        .approve(&r.id, None)
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let g = alice.revoke(&gid).await.unwrap();
    assert_eq!(g.state, GrantState::RevokeFailed);
    let (_, failed) = scrape(&base).await;
    assert_eq!(v(&failed, "firedoor_grants{state=\"revoke_failed\"}"), 1.0);
    let f = "firedoor_deprovision_failures_total{reason=\"revoked\"}";
    assert!(v(&failed, f) >= v(&before, f) + 1.0, "{f}");
    let cf = "firedoor_connector_failures_total{integration=\"demo\",operation=\"deprovision\"}";
    assert!(v(&failed, cf) >= v(&before, cf) + 1.0, "{cf}");

    tb.advance(Duration::seconds(3600));
    eventually("the retry removes the access", || async {
        let g = alice.grant(&gid).await.ok()?;
        (g.state == GrantState::Revoked).then_some(())
    })
    .await;
    let (_, done) = scrape(&base).await;
    let rt = "firedoor_deprovision_retries_total";
    assert!(v(&done, rt) >= v(&before, rt) + 1.0, "{rt}");
    assert_eq!(v(&done, "firedoor_grants{state=\"revoke_failed\"}"), 0.0);
}

async fn get(app: &axum::Router, path: &str, auth: Option<&str>) -> (StatusCode, String) {
    let mut b = Request::builder().uri(path);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_metrics_token_guards_metrics_and_nothing_else() {
    let tb = spawn().await;
    let app = firedoor_server::probes::wrap(
        axum::Router::new(),
        tb.running.broker.clone(),
        Some(secrecy::SecretString::from("m3trics-t0ken".to_string())),
    );
    let (s, _) = get(&app, "/metrics", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "no token");
    let (s, body) = get(&app, "/metrics", Some("Bearer wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "wrong token");
    assert!(!body.contains("m3trics"), "the answer never echoes a token");
    let (s, _) = get(
        &app,
        "/metrics",
        Some(&format!("Bearer {}", tb.token("carol"))),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a user's API token is not it");
    let (s, body) = get(&app, "/metrics", Some("Bearer m3trics-t0ken")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("# TYPE firedoor_grants gauge"));
    let (s, _) = get(&app, "/readyz", None).await;
    assert_eq!(s, StatusCode::OK, "probes stay open for the load balancer");
    let (s, _) = get(&app, "/livez", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn readyz_says_when_to_send_traffic_and_livez_only_that_it_runs() {
    let tb = spawn().await;
    let base = tb.running.url();
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        get("/livez").await,
        (200, serde_json::json!({"live": true}))
    );
    assert_eq!(
        get("/readyz").await,
        (200, serde_json::json!({"ready": true}))
    );
    let (s, health) = get("/api/v1/health").await;
    assert_eq!(
        (s, health["status"].as_str()),
        (200, Some("ok")),
        "/health as before"
    );

    // Draining: the broker says it is closing, the load balancer takes it out.
    tb.running.broker.closing.send_replace(true);
    let (s, body) = get("/readyz").await;
    assert_eq!(s, 503);
    assert_eq!(body["ready"], false);
    assert_eq!(body["code"], "shutting_down");
    assert_eq!(get("/livez").await.0, 200, "still alive while draining");
    let (_, m) = scrape(&base).await;
    assert_eq!(v(&m, "firedoor_ready"), 0.0);
    tb.running.broker.closing.send_replace(false);
    assert_eq!(get("/readyz").await.0, 200);

    // The store stops answering.
    tb.running.broker.store.close().await;
    let (s, body) = get("/readyz").await;
    assert_eq!(s, 503);
    assert_eq!(body["code"], "store_unreachable");
    let text = body.to_string();
    assert!(
        !text.contains("firedoor.db") && !text.contains(&tb.dir.path().display().to_string()),
        "no paths or error texts: {text}"
    );
    assert_eq!(
        get("/livez").await.0,
        200,
        "a slow store is no reason to restart"
    );
    let (_, m) = scrape(&base).await;
    assert_eq!(v(&m, "firedoor_store_up"), 0.0);
    assert!(!m.keys().any(|k| k.starts_with("firedoor_grants{")));
}

// ------------------------------------------------------------------ JSON logs

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn json_logs_are_json_lines_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_firedoor-server"))
        .args(["--data-dir"])
        .arg(dir.path().join("data"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-format", "json"])
        .env("FIREDOOR_LOG", "debug")
        .env_remove("FIREDOOR_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tokens = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while tokens.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "demo broker did not print its tokens"
        );
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some((_, t)) = line.trim().split_once("token: ") {
            tokens.push(t.to_string());
        }
    }
    assert_eq!(tokens.len(), 3, "alice, bob and carol got tokens");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for (path, auth) in [
        ("/api/v1/me", tokens[0].clone()),
        ("/api/v1/me", format!("{}x", tokens[1])),
        ("/api/v1/audit", tokens[2].clone()),
        ("/api/v1/requests/not-an-id", tokens[0].clone()),
    ] {
        http.get(format!("{base}{path}"))
            .bearer_auth(&auth)
            .send()
            .await
            .unwrap();
    }
    http.post(format!("{base}/api/v1/requests"))
        .bearer_auth(&tokens[0])
        .json(&serde_json::json!({"bundle": "prod-db-read", "justification": "INC-1 json logs"}))
        .send()
        .await
        .unwrap();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "demo broker stops cleanly on SIGTERM");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "debug logging wrote something");
    for l in &lines {
        let j: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
        assert!(
            j.get("timestamp").is_some() && j.get("level").is_some(),
            "each line has a time and a level: {l}"
        );
    }
    for t in &tokens {
        let secret_part = t.trim_start_matches("fdt_");
        assert!(!err.contains(secret_part), "a token reached the log");
    }
}

/// `serve --drain-secs`: on SIGTERM the broker says "not ready" but keeps serving
/// for the drain, then stops.
#[tokio::test]
async fn sigterm_drains_before_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo-policy.toml"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_firedoor-server"))
        .args(["--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "serve",
            "--policy",
            policy,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--drain-secs", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { http.get(url).send().await.ok().map(|r| r.status().as_u16()) }
    };
    eventually("the broker is ready", || async {
        (status("/readyz").await == Some(200)).then_some(())
    })
    .await;
    let term = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    eventually("readyz says 503 while draining", || async {
        (status("/readyz").await == Some(503)).then_some(())
    })
    .await;
    assert_eq!(
        status("/livez").await,
        Some(200),
        "still serving while draining"
    );
    assert_eq!(status("/api/v1/health").await, Some(200));
    assert!(
        term.elapsed() < StdDuration::from_secs(3),
        "checked within the drain"
    );
    let deadline = Instant::now() + StdDuration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the broker stops after the drain"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert!(child.wait().unwrap().success());
    assert!(
        term.elapsed() >= StdDuration::from_secs(3),
        "it waited for the drain"
    );
}

// -------------------------------------------------------------- alert rules

/// The real promtool checks the shipped rules. Outside CI a machine without it
/// skips loudly; in CI (CI=true) a missing promtool fails.
#[test]
fn promtool_accepts_the_alert_rules() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/prometheus-alerts.yml"
    );
    let out = match Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let msg =
                "promtool not found: install it with scripts/deps.sh (Debian package prometheus)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}; CI must check the alert rules");
            }
            eprintln!("\n!!!!!!!! SKIPPED promtool_accepts_the_alert_rules: {msg} !!!!!!!!\n");
            return;
        }
        Err(e) => panic!("running promtool: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let yaml = std::fs::read_to_string(rules).unwrap();
    for alert in [
        "FiredoorNoBrokerUp",
        "FiredoorBrokerNotReady",
        "FiredoorRevokesFailing",
        "FiredoorExpiryLagging",
        "FiredoorAuditAppendFailing",
    ] {
        assert!(
            yaml.contains(&format!("alert: {alert}")),
            "{alert} is there"
        );
    }
    // Every metric the rules use is one the broker exports.
    let exported = [
        "firedoor_deprovision_failures_total",
        "firedoor_grants",
        "firedoor_requests",
        "firedoor_grants_overdue_seconds",
        "firedoor_expiry_lag_seconds_bucket",
        "firedoor_audit_append_failures_total",
        "firedoor_ready",
        "firedoor_connector_failures_total",
    ];
    for word in yaml.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("firedoor_") {
            assert!(
                exported.contains(&word),
                "the rules use {word}: is it exported?"
            );
        }
    }
}

// ------------------------------------------------------------------ HAProxy

/// Who answered through HAProxy: `GET /api/v1/me` with a token only `target`
/// knows is 200 there and 401 on the other broker.
async fn served_by_target(http: &reqwest::Client, lb: &str, token: &str) -> Option<bool> {
    let r = http
        .get(format!("{lb}/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    match r.status().as_u16() {
        200 => Some(true),
        401 => Some(false),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn haproxy_sends_traffic_to_ready_brokers_only() {
    let one = spawn().await;
    let two = spawn().await;
    let backends = vec![one.running.addr.to_string(), two.running.addr.to_string()];
    let lb = firedoor_testkit::haproxy::Haproxy::start(&backends);
    let wait = |names: &'static [&'static str]| {
        tokio::task::block_in_place(|| lb.wait_for_up(names, StdDuration::from_secs(5)))
    };
    wait(&["broker1", "broker2"]).unwrap_or_else(|e| panic!("{e}\n{}", lb.log()));
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/readyz", lb.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "/readyz through HAProxy");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"ready": true})
    );
    let r = http
        .get(format!("{}/metrics", lb.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the balanced address does not serve /metrics"
    );

    // Round robin: both brokers answer.
    let token_two = two.token("alice").to_string();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(served_by_target(&http, &lb.url(), &token_two).await);
    }
    assert!(
        seen.contains(&Some(true)) && seen.contains(&Some(false)),
        "round robin over both brokers: {seen:?}"
    );

    // Draining: broker 1 says it is closing; HAProxy takes it out while it still runs.
    one.running.broker.closing.send_replace(true);
    let took = wait(&["broker2"]).unwrap_or_else(|e| panic!("{e}\n{}", lb.log()));
    assert!(took < StdDuration::from_secs(5));
    for _ in 0..10 {
        assert_eq!(
            served_by_target(&http, &lb.url(), &token_two).await,
            Some(true),
            "a draining broker gets no new requests"
        );
    }
    one.running.broker.closing.send_replace(false);
    wait(&["broker1", "broker2"]).unwrap_or_else(|e| panic!("{e}\n{}", lb.log()));

    // Broker 1 stops for real: within a bounded time every request lands on broker 2.
    let common::TestBroker { running, dir, .. } = one;
    let stopped_at = Instant::now();
    running.stop().await;
    let deadline = stopped_at + StdDuration::from_secs(5);
    let mut in_a_row = 0;
    while in_a_row < 20 {
        assert!(
            Instant::now() < deadline,
            "HAProxy still sends requests to the stopped broker after 5 s: {:?}\n{}",
            lb.server_status(),
            lb.log()
        );
        if served_by_target(&http, &lb.url(), &token_two).await == Some(true) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }
    wait(&["broker2"]).unwrap_or_else(|e| panic!("{e}\n{}", lb.log()));
    eprintln!(
        "HAProxy: all traffic on broker 2 {:?} after broker 1 stopped",
        stopped_at.elapsed()
    );
    drop(dir);
}
