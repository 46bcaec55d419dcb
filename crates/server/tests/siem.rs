//! Audit to a SIEM: the worker delivers the audit log to a real rsyslog (RFC 5424
//! over TCP, octet-counted) started by the test, and to a local HTTP receiver that
//! checks the Standard Webhooks signature with its own HMAC. Receivers go down and
//! come back; every record arrives, none is lost, and the cursor only moves once a
//! receiver took a batch. The broker's clock is manual: backoffs pass by moving it.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use chrono::Duration;
use common::*;
use firedoor_core::api::CreateRequest;
use firedoor_core::audit::{verify_signed_chain, AuditRecord};
use firedoor_server::clock::Clock;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const FLOWS: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.prod-read]
title = "Prod read"
resources = [{ integration = "demo", resource = "app", permission = "read" }]

[flows.prod-read]
bundles = ["prod-read"]
requesters = { groups = ["oncall"] }
approvers = { groups = ["sre-leads"] }
approvals = 1
default_duration = "1h"
max_duration = "4h"
"#;

/// The signing secret of the webhook sink (24 random bytes, base64), and another
/// one the receiver does not know.
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const WRONG_SECRET: &str = "whsec_3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn set_secrets() {
    // Edition 2021: setting the environment is safe; every test sets the same values.
    std::env::set_var("FIREDOOR_TEST_SIEM_SECRET", SECRET);
    std::env::set_var("FIREDOOR_TEST_SIEM_WRONG_SECRET", WRONG_SECRET);
}

/// Audit records through the API, as people make them: bob asks and erin
/// approves once; then alice asks `denied` times and bob denies each (the reason
/// has the characters syslog's structured data escapes).
async fn produce(tb: &TestBroker, first: bool, denied: usize) {
    if first {
        let (r, _) = tb
            .client("bob")
            .create_request(&request("approved first"), None)
            .await
            .unwrap();
        tb.client("erin").approve(&r.id, Some("ok")).await.unwrap();
    }
    for i in 0..denied {
        let (r, _) = tb
            .client("alice")
            .create_request(&request(&format!("try {i}")), None)
            .await
            .unwrap();
        tb.client("bob")
            .deny(&r.id, Some(r#"no: "quoted" ] and \ backslash"#))
            .await
            .unwrap();
    }
}

fn request(why: &str) -> CreateRequest {
    CreateRequest {
        bundle: "prod-read".into(),
        justification: Some(why.into()),
        ..Default::default()
    }
}

/// The whole log as the API shows it (admins).
async fn api_records(tb: &TestBroker) -> Vec<AuditRecord> {
    tb.client("carol").audit(0, 5000).await.unwrap()
}

async fn sinks_as(tb: &TestBroker, user: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(tb.url("/audit/sinks"))
        .bearer_auth(tb.token(user))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn sink(tb: &TestBroker, name: &str) -> serde_json::Value {
    let (status, body) = sinks_as(tb, "carol").await;
    assert_eq!(status, 200, "{body}");
    body["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("sink {name} listed: {body}"))
        .clone()
}

/// Splits an RFC 5424 line into its header fields, the params of its one SD
/// element, and its MSG (honouring the SD-PARAM escapes).
fn parse_syslog(line: &str) -> (Vec<String>, BTreeMap<String, String>, String) {
    let open = line
        .find(" [")
        .unwrap_or_else(|| panic!("an SD element: {line}"));
    let header: Vec<String> = line[..open].split(' ').map(str::to_string).collect();
    let mut params = BTreeMap::new();
    let rest = &line[open + 2..];
    let (id, mut s) = rest.split_once(' ').unwrap();
    assert_eq!(id, "firedoor@32473", "{line}");
    loop {
        let (name, after) = s.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars
                .next()
                .unwrap_or_else(|| panic!("closed value: {line}"));
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => break i,
                ']' => panic!("an unescaped ] in a value: {line}"),
                c => value.push(c),
            }
        };
        params.insert(name.to_string(), value);
        s = &after[end + 1..];
        if let Some(msg) = s.strip_prefix("] ") {
            return (header, params, msg.to_string());
        }
        s = s
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("params: {line}"));
    }
}

/// The records rsyslog received, with how many times each seq came; checks each
/// line's header and structured data against its JSON.
fn received_by_rsyslog(lines: &[String]) -> (BTreeMap<i64, AuditRecord>, usize) {
    let mut out = BTreeMap::new();
    let mut dups = 0;
    for line in lines {
        let (header, params, msg) = parse_syslog(line);
        let r: AuditRecord = serde_json::from_str(&msg)
            .unwrap_or_else(|e| panic!("the MSG is one audit record as JSON ({e}): {line}"));
        assert_eq!(header[0], "<85>1", "authpriv.notice, version 1: {line}");
        assert_eq!(header[1], r.at, "TIMESTAMP is the record's time");
        assert_eq!(header[3], "firedoor-test", "APP-NAME from the policy");
        assert_eq!(header[5], "audit", "MSGID");
        assert_eq!(params["seq"], r.seq.to_string());
        assert_eq!(params["action"], r.action);
        assert_eq!(params["actor"], r.actor);
        assert_eq!(params["subject"], r.subject);
        if out.insert(r.seq, r).is_some() {
            dups += 1;
        }
    }
    (out, dups)
}

/// The received records, deduped by seq, are exactly the broker's log: every seq
/// from 1, each the record the API shows, and the chain verifies with the
/// broker's public key.
async fn assert_all_delivered(tb: &TestBroker, got: &BTreeMap<i64, AuditRecord>) {
    let want = api_records(tb).await;
    let seqs: Vec<i64> = got.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=want.len() as i64).collect::<Vec<_>>(),
        "every seq from 1 to the head, none missing"
    );
    let got: Vec<AuditRecord> = got.values().cloned().collect();
    assert_eq!(got, want, "the lines are the records the API shows");
    let key = firedoor_core::breakglass::decode_public_key(
        &tb.client("carol")
            .broker_identity()
            .await
            .unwrap()
            .signing_key,
    )
    .unwrap();
    let (n, head) = verify_signed_chain(&got, &key).expect("the delivered chain verifies");
    assert_eq!(
        (n, head.as_str()),
        (want.len() as i64, want.last().unwrap().hash.as_str())
    );
}

async fn head(tb: &TestBroker) -> i64 {
    api_records(tb).await.last().map(|r| r.seq).unwrap_or(0)
}

/// Runs worker passes until `check` holds (the background worker runs too).
async fn deliver_until<F, Fut>(tb: &TestBroker, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, || async {
        let _ = tb.running.run_due_work().await;
        check().await.then_some(())
    })
    .await
}

#[tokio::test]
async fn rsyslog_gets_every_record_once_and_the_stream_resumes_after_it_was_down() {
    let mut rs = firedoor_testkit::rsyslog::Rsyslog::start();
    let policy = format!(
        "{FLOWS}\n[audit_sinks.siem]\nkind = \"syslog\"\naddress = \"{}\"\napp_name = \"firedoor-test\"\n",
        rs.address()
    );
    let tb = spawn_with(&policy, None).await;
    produce(&tb, true, 3).await;
    let first_head = head(&tb).await;
    assert!(first_head >= 8, "records were written: {first_head}");

    deliver_until(&tb, "rsyslog has the whole log", || async {
        received_by_rsyslog(&rs.messages()).0.len() as i64 >= first_head
    })
    .await;
    let (got, dups) = received_by_rsyslog(&rs.messages());
    assert_eq!(dups, 0, "nothing was sent twice while the receiver was up");
    assert_all_delivered(&tb, &got).await;
    let s = eventually("the cursor reaches the head", || async {
        let s = sink(&tb, "siem").await;
        (s["delivered_seq"] == first_head).then_some(s)
    })
    .await;
    assert_eq!(s["kind"], "syslog");
    assert_eq!(s["destination"], rs.address());
    assert_eq!(s["lag"], 0);
    assert_eq!(s["head_seq"], first_head);
    assert!(s["last_error"].is_null(), "{s}");

    // Only admins see the sinks.
    let (status, body) = sinks_as(&tb, "dave").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, _) = sinks_as(&tb, "bob").await;
    assert_eq!(status, 403, "an approver is no admin");

    // rsyslog goes down; more happens meanwhile.
    rs.stop();
    produce(&tb, false, 2).await;
    let second_head = head(&tb).await;
    assert!(second_head > first_head);
    let failed = eventually("the delivery fails and says why", || async {
        let _ = tb.running.run_due_work().await;
        let s = sink(&tb, "siem").await;
        (!s["last_error"].is_null()).then_some(s)
    })
    .await;
    assert_eq!(
        failed["last_error"],
        format!("connection refused to {}", rs.address()),
        "{failed}"
    );
    assert_eq!(failed["delivered_seq"], first_head, "the cursor stays");
    assert_eq!(failed["lag"], second_head - first_head);
    assert_eq!(failed["failures"], 1);
    let now = tb.running.broker.now();
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(failed["next_attempt_at"].clone()).unwrap();
    assert_eq!(next, now + Duration::seconds(5), "first backoff: 5 s");

    // Back up, but the backoff holds until the clock passes it.
    rs.start_again();
    for _ in 0..3 {
        tb.running.run_due_work().await.unwrap();
    }
    assert_eq!(
        sink(&tb, "siem").await["delivered_seq"],
        first_head,
        "still backing off"
    );
    assert_eq!(
        received_by_rsyslog(&rs.messages()).0.len() as i64,
        first_head,
        "nothing sent during the backoff"
    );

    tb.advance(Duration::seconds(6));
    deliver_until(
        &tb,
        "the records written while rsyslog was down arrive",
        || async { received_by_rsyslog(&rs.messages()).0.len() as i64 >= second_head },
    )
    .await;
    let (got, dups) = received_by_rsyslog(&rs.messages());
    assert_eq!(
        dups, 0,
        "a refused connection sent nothing, so nothing came twice"
    );
    assert_all_delivered(&tb, &got).await;
    let s = eventually("the cursor catches up", || async {
        let s = sink(&tb, "siem").await;
        (s["delivered_seq"] == second_head).then_some(s)
    })
    .await;
    assert!(s["last_error"].is_null(), "a success clears the error: {s}");
    assert_eq!(
        (s["lag"].as_i64(), s["failures"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(
        !rs.log().contains("error"),
        "rsyslog took every message without complaint:\n{}",
        rs.log()
    );
}

/// A syslog receiver that dies in the middle of a batch (reads a little, then
/// drops the connection with data unread: the kernel answers with a reset) never
/// confirms it: the cursor stays and the error says what happened.
#[tokio::test]
async fn a_syslog_receiver_dying_mid_batch_does_not_move_the_cursor() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let took = Arc::new(Mutex::new(0usize));
    let counter = took.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut conn, &mut buf).unwrap_or(0);
            if n > 0 {
                *counter.lock().unwrap() += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(conn);
        }
    });
    let policy = format!("{FLOWS}\n[audit_sinks.flaky]\nkind = \"syslog\"\naddress = \"{addr}\"\n");
    let tb = spawn_with(&policy, None).await;
    produce(&tb, true, 3).await;
    let s = eventually("the delivery fails", || async {
        let _ = tb.running.run_due_work().await;
        let s = sink(&tb, "flaky").await;
        (!s["last_error"].is_null()).then_some(s)
    })
    .await;
    assert!(
        *took.lock().unwrap() >= 1,
        "the receiver got part of a batch"
    );
    assert_eq!(
        s["delivered_seq"], 0,
        "a batch not confirmed is not delivered: {s}"
    );
    let e = s["last_error"].as_str().unwrap();
    assert!(
        e == format!("{addr} reset the connection")
            || e == format!("{addr} closed the connection while the batch was written"),
        "{e}"
    );
}

// ------------------------------------------------------------------ webhook

/// What the test's receiver saw.
#[derive(Default)]
struct Receiver {
    /// Answer 500 to correctly signed deliveries (a receiver that is broken).
    failing: bool,
    /// (webhook-id, status answered) of every delivery.
    deliveries: Vec<(String, u16)>,
    /// Lines of the deliveries it accepted.
    accepted: Vec<String>,
    /// The `webhook-timestamp`s seen.
    timestamps: Vec<i64>,
}

type Shared = Arc<Mutex<Receiver>>;

/// Checks a delivery's Standard Webhooks signature with its own HMAC-SHA256 (not
/// the broker's code): base64 of HMAC(key, "id.timestamp.body"), key = the
/// base64-decoded part of the secret after `whsec_`.
fn signed_correctly(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", h("webhook-id"), h("webhook-timestamp")).as_bytes());
    mac.update(body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    h("webhook-signature").split(' ').any(|s| s == want)
}

async fn receive(State(rx): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut rx = rx.lock().unwrap();
    let status = if !signed_correctly(SECRET, &headers, &body) {
        StatusCode::UNAUTHORIZED
    } else if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-ndjson")
    {
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    } else if rx.failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.ends_with('\n'), "JSON lines end with a newline");
        rx.accepted.extend(text.lines().map(str::to_string));
        let ts = headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        rx.timestamps.push(ts);
        StatusCode::NO_CONTENT
    };
    rx.deliveries.push((id, status.as_u16()));
    status
}

async fn start_receiver() -> (String, Shared) {
    let rx: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/audit", axum::routing::post(receive))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/audit"), rx)
}

fn accepted(rx: &Shared) -> (BTreeMap<i64, AuditRecord>, usize) {
    let mut out = BTreeMap::new();
    let mut dups = 0;
    for line in &rx.lock().unwrap().accepted {
        let r: AuditRecord = serde_json::from_str(line).unwrap();
        if out.insert(r.seq, r).is_some() {
            dups += 1;
        }
    }
    (out, dups)
}

#[tokio::test]
async fn a_signed_webhook_gets_every_record_and_a_refusal_keeps_the_cursor() {
    set_secrets();
    let (url, rx) = start_receiver().await;
    let policy = format!(
        "{FLOWS}\n[audit_sinks.lake]\nkind = \"webhook\"\nurl = \"{url}?token=query-secret\"\nsecret_env = \"FIREDOOR_TEST_SIEM_SECRET\"\n\n\
         [audit_sinks.forged]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"FIREDOOR_TEST_SIEM_WRONG_SECRET\"\n\n\
         [audit_sinks.unset]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"FIREDOOR_TEST_SIEM_NOT_SET\"\n"
    );
    let tb = spawn_with(&policy, None).await;
    produce(&tb, true, 2).await;
    let first_head = head(&tb).await;

    deliver_until(&tb, "the receiver has the whole log", || async {
        accepted(&rx).0.len() as i64 >= first_head
    })
    .await;
    let (got, dups) = accepted(&rx);
    assert_eq!(dups, 0);
    assert_all_delivered(&tb, &got).await;
    {
        let r = rx.lock().unwrap();
        let t0 = tb.clock.now().timestamp();
        assert!(
            r.timestamps.iter().all(|t| *t == t0),
            "webhook-timestamp is the broker clock's: {:?}",
            r.timestamps
        );
        let ok: Vec<&String> = r
            .deliveries
            .iter()
            .filter(|(_, s)| *s == 204)
            .map(|(id, _)| id)
            .collect();
        assert!(
            ok.iter().all(|id| id.starts_with("audit-lake-")),
            "only the sink with the right secret got through: {ok:?}"
        );
        // The batches' ids name consecutive ranges of seqs from 1.
        let mut next = 1;
        for id in &ok {
            let (first, last) = id["audit-lake-".len()..].split_once('-').unwrap();
            assert_eq!(first.parse::<i64>().unwrap(), next, "{ok:?}");
            next = last.parse::<i64>().unwrap() + 1;
        }
        assert_eq!(next, first_head + 1, "{ok:?}");
        assert!(
            r.deliveries
                .iter()
                .any(|(id, s)| id.starts_with("audit-forged-") && *s == 401),
            "the receiver refused the badly signed batches: {:?}",
            r.deliveries
        );
        assert!(
            !r.deliveries
                .iter()
                .any(|(id, _)| id.starts_with("audit-unset-")),
            "nothing is sent unsigned"
        );
    }

    // The receiver refuses a forged delivery by itself too.
    let forged = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-ndjson")
        .header("webhook-id", "audit-lake-1-1")
        .header("webhook-timestamp", "1900000000")
        .header(
            "webhook-signature",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        )
        .body("{\"seq\":1}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    let lake = sink(&tb, "lake").await;
    assert_eq!(lake["delivered_seq"], first_head);
    assert_eq!(
        lake["destination"],
        url.as_str(),
        "shown without its query string"
    );
    let forged = sink(&tb, "forged").await;
    assert_eq!(
        forged["delivered_seq"], 0,
        "a refused batch does not move the cursor"
    );
    assert_eq!(
        forged["last_error"],
        format!("{url} answered 401 Unauthorized"),
        "{forged}"
    );
    let unset = sink(&tb, "unset").await;
    assert_eq!(
        unset["last_error"],
        "the environment variable FIREDOOR_TEST_SIEM_NOT_SET (secret_env) is not set: the batch cannot be signed"
    );
    let (_, all) = sinks_as(&tb, "carol").await;
    let text = all.to_string();
    for secret in [
        SECRET,
        &SECRET[6..],
        WRONG_SECRET,
        &WRONG_SECRET[6..],
        "query-secret",
    ] {
        assert!(!text.contains(secret), "no secret in the status: {text}");
    }

    // The receiver breaks: 500s keep the cursor where it was.
    rx.lock().unwrap().failing = true;
    produce(&tb, false, 2).await;
    let second_head = head(&tb).await;
    let failed = eventually("the delivery fails", || async {
        let _ = tb.running.run_due_work().await;
        let s = sink(&tb, "lake").await;
        (!s["last_error"].is_null()).then_some(s)
    })
    .await;
    assert_eq!(
        failed["last_error"],
        format!("{url} answered 500 Internal Server Error"),
        "{failed}"
    );
    assert_eq!(failed["delivered_seq"], first_head);
    assert_eq!(failed["lag"], second_head - first_head);
    assert_eq!(
        accepted(&rx).0.len() as i64,
        first_head,
        "nothing more accepted"
    );

    // Fixed; once the backoff has passed the rest arrives.
    rx.lock().unwrap().failing = false;
    tb.advance(Duration::seconds(6));
    deliver_until(&tb, "the rest arrives", || async {
        accepted(&rx).0.len() as i64 >= second_head
    })
    .await;
    let (got, dups) = accepted(&rx);
    assert_eq!(
        dups, 0,
        "a refused batch was not accepted, so none came twice"
    );
    assert_all_delivered(&tb, &got).await;
    let lake = eventually("the cursor catches up", || async {
        let s = sink(&tb, "lake").await;
        (s["delivered_seq"] == second_head).then_some(s)
    })
    .await;
    assert!(lake["last_error"].is_null());
    assert_eq!(sink(&tb, "forged").await["delivered_seq"], 0);
}

/// One replica at a time delivers a sink: the claim is one statement, a second
/// claimer is refused while the lease lasts, and a delivery whose lease was taken
/// over cannot move the cursor.
#[tokio::test]
async fn a_sink_is_leased_to_one_deliverer_at_a_time() {
    let tb = spawn_with(FLOWS, None).await;
    let store = &tb.running.broker.store;
    let now = firedoor_server::store::Ts(tb.clock.now());
    let lease = firedoor_server::store::Ts(tb.clock.now() + Duration::seconds(120));
    let later = firedoor_server::store::Ts(tb.clock.now() + Duration::seconds(121));
    let far = firedoor_server::store::Ts(tb.clock.now() + Duration::seconds(300));
    let sinks = || store.audit_sinks();
    sinks().ensure("other", now).await.unwrap();
    sinks().ensure("other", now).await.unwrap();
    assert!(sinks().claim("other", "a", now, lease).await.unwrap());
    assert!(
        !sinks().claim("other", "b", now, lease).await.unwrap(),
        "held by a"
    );
    assert!(
        !sinks()
            .advance("other", "b", 0, 5, now, lease)
            .await
            .unwrap(),
        "b holds no lease"
    );
    assert!(sinks()
        .advance("other", "a", 0, 5, now, lease)
        .await
        .unwrap());
    assert!(
        !sinks()
            .advance("other", "a", 0, 7, now, lease)
            .await
            .unwrap(),
        "the cursor is no longer where a read from"
    );
    // a stalls past its lease; b takes over and goes on from the cursor.
    assert!(sinks().claim("other", "b", later, far).await.unwrap());
    assert!(!sinks()
        .advance("other", "a", 5, 9, later, far)
        .await
        .unwrap());
    assert!(sinks()
        .advance("other", "b", 5, 9, later, far)
        .await
        .unwrap());
    let row = sinks().load("other").await.unwrap().unwrap();
    assert_eq!(row.delivered_seq, 9);
    // A failure gives the lease back and waits.
    sinks()
        .failed("other", "b", "connection refused to x", later, far)
        .await
        .unwrap();
    let row = sinks().load("other").await.unwrap().unwrap();
    assert_eq!((row.failures, row.delivered_seq), (1, 9));
    assert!(
        !sinks().claim("other", "c", later, far).await.unwrap(),
        "not before the backoff ends"
    );
    assert!(sinks().claim("other", "c", far, far).await.unwrap());
}
