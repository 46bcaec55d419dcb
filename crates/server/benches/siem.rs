//! Audit to a SIEM, throughput (figures, not a timed test):
//! `cargo bench -p firedoor-server --bench siem`.
//!
//! The broker in-process on SQLite with N audit records already written (default
//! 20,000, `FIREDOOR_BENCH_RECORDS`; each a realistic `request_created` with a
//! justification), then worker passes until a sink has them all:
//!
//! 1. syslog to a real rsyslog (started here, writing every message to a file):
//!    records/s until the broker's cursor reaches the head (each batch of 200
//!    confirmed by rsyslog's close), and until the file holds them all;
//! 2. webhook to a local HTTP receiver (axum, answers 204 after reading the body):
//!    records/s until the cursor reaches the head.
#![allow(clippy::unwrap_used)]

use firedoor_core::audit::AuditEvent;
use firedoor_server::audit::Actor;
use firedoor_server::Config;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLOWS: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.prod-read]
resources = [{ integration = "demo", resource = "app", permission = "read" }]

[flows.prod-read]
bundles = ["prod-read"]
requesters = { groups = ["oncall"] }
approvers = { groups = ["leads"] }
approvals = 1
default_duration = "1h"
max_duration = "4h"
"#;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A broker whose worker only runs when the bench says, with `records` audit
/// records written (1,000 per unit of work).
async fn broker_with(
    sinks: &str,
    records: usize,
) -> (tempfile::TempDir, firedoor_server::RunningBroker) {
    let dir = tempfile::tempdir().unwrap();
    let policy =
        firedoor_core::policy::parse_policy("bench.toml", &format!("{FLOWS}\n{sinks}")).unwrap();
    let mut cfg = Config::new(dir.path().join("data"), policy);
    cfg.worker_interval = Duration::from_secs(3600);
    let running = firedoor_server::start(cfg).await.unwrap();
    let b = &running.broker;
    let mut written = 0;
    while written < records {
        let mut uow = b.uow_at(b.now()).await.unwrap();
        for i in 0..1000.min(records - written) {
            uow.record(
                &Actor::System,
                &format!("req_bench{}", written + i),
                AuditEvent::RequestCreated {
                    bundle: "prod-read".into(),
                    flow: "prod-read".into(),
                    duration_secs: 3600,
                    justification: Some(
                        "INC-4711 payments-api returns 502 for 3% of checkouts since 14:02".into(),
                    ),
                    ticket: Some("OPS-1234".into()),
                    break_glass: false,
                    incident: None,
                    on_behalf_of: None,
                },
            );
        }
        uow.commit().await.unwrap();
        written += 1000.min(records - written);
    }
    (dir, running)
}

async fn head(b: &firedoor_server::service::Broker) -> i64 {
    b.store.audit().max_seq().await.unwrap()
}

/// Worker passes until sink `name` has every record; the time it took.
async fn drain(b: &firedoor_server::service::Broker, name: &str) -> Duration {
    let head = head(b).await;
    let start = Instant::now();
    loop {
        b.run_due_work().await.unwrap();
        let v = b.audit_sinks(&Actor::System).await.unwrap();
        let s = v.iter().find(|s| s.name == name).unwrap();
        if let Some(e) = &s.last_error {
            panic!("sink {name} failed: {e}");
        }
        if s.delivered_seq >= head {
            return start.elapsed();
        }
    }
}

fn rate(n: i64, d: Duration) -> String {
    format!("{:.0} records/s", n as f64 / d.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let n = env_n("FIREDOOR_BENCH_RECORDS", 20_000);

    // 1. syslog to a real rsyslog.
    let rs = firedoor_testkit::rsyslog::Rsyslog::start();
    let (_dir, running) = broker_with(
        &format!(
            "[audit_sinks.siem]\nkind = \"syslog\"\naddress = \"{}\"\n",
            rs.address()
        ),
        n,
    )
    .await;
    let b = running.broker.clone();
    let total = head(&b).await;
    let took = drain(&b, "siem").await;
    let on_disk = Instant::now();
    while (rs.messages().len() as i64) < total {
        assert!(
            on_disk.elapsed() < Duration::from_secs(60),
            "rsyslog wrote them all"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let to_disk = took + on_disk.elapsed();
    let bytes = std::fs::metadata(rs.messages_path()).unwrap().len();
    println!(
        "syslog → rsyslog: {total} records ({:.0} bytes each) in {:.2} s = {} (cursor at head); {:.2} s = {} until rsyslog's file holds them all",
        bytes as f64 / total as f64,
        took.as_secs_f64(),
        rate(total, took),
        to_disk.as_secs_f64(),
        rate(total, to_disk)
    );
    running.stop().await;

    // 2. webhook to a local receiver.
    std::env::set_var(
        "FIREDOOR_BENCH_SIEM_SECRET",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    );
    let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = got.clone();
    let app = axum::Router::new().route(
        "/audit",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let lines = body.iter().filter(|b| **b == b'\n').count();
                counter.fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (_dir, running) = broker_with(
        &format!(
            "[audit_sinks.lake]\nkind = \"webhook\"\nurl = \"http://{addr}/audit\"\nsecret_env = \"FIREDOOR_BENCH_SIEM_SECRET\"\n"
        ),
        n,
    )
    .await;
    let b = running.broker.clone();
    let total = head(&b).await;
    let took = drain(&b, "lake").await;
    println!(
        "webhook → local receiver: {total} records in {:.2} s = {} (receiver counted {} lines)",
        took.as_secs_f64(),
        rate(total, took),
        got.load(std::sync::atomic::Ordering::Relaxed)
    );
    running.stop().await;
}
