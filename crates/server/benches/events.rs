//! Live events at scale (figures, not a timed test):
//! `cargo bench -p firedoor-server --bench events`.
//!
//! The real `firedoor-server` binary on SQLite, with N event streams open (default
//! 5,000, `FIREDOOR_BENCH_STREAMS`), each a different user, over real HTTP:
//!
//! 1. Broadcast: one request that every stream's user may approve. Time from the
//!    committing request's send to each client's receipt, and to the last client.
//! 2. With 1,000 streams open, decisions: a requester's stream receives the approval
//!    of their request; time from the approve's send to the receipt.
//! 3. The broker's RSS with all streams open (its own process, /proc).
#![allow(clippy::unwrap_used)]

use firedoor_client::Client;
use firedoor_core::api::CreateRequest;
use firedoor_server::audit::Actor;
use firedoor_server::auth;
use futures::StreamExt;
use secrecy::ExposeSecret;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.narrow]
resources = [{ integration = "demo", resource = "app", permission = "read" }]

[bundles.wide]
resources = [{ integration = "demo", resource = "app", permission = "write" }]

# An engineer asks, the lead decides: a decision reaches one requester.
[flows.narrow]
bundles = ["narrow"]
requesters = { groups = ["eng"] }
approvers = { groups = ["leads"] }
approvals = 1
default_duration = "1h"
max_duration = "2h"

# The lead asks, every engineer may approve: one commit, an event for each.
[flows.wide]
bundles = ["wide"]
requesters = { groups = ["leads"] }
approvers = { groups = ["eng"] }
approvals = 1
default_duration = "1h"
max_duration = "2h"
"#;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// (stream index, event kind, request id, when received)
type Seen = (usize, String, String, Instant);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let streams = env_n("FIREDOOR_BENCH_STREAMS", 5000);
    let rounds = env_n("FIREDOOR_BENCH_BROADCASTS", 5);
    let decisions = env_n("FIREDOOR_BENCH_DECISIONS", 200);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();

    // The team, written to the store as the CLI would (then the broker starts on it).
    let t = Instant::now();
    let store = firedoor_server::open_store(&data, None, None)
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let mut tokens = Vec::with_capacity(streams);
    for i in 0..streams {
        let issued = auth::add_user(
            &store,
            &Actor::System,
            &format!("eng{i}"),
            &["eng".into()],
            false,
            now,
        )
        .await
        .unwrap();
        tokens.push(issued.token.expose_secret().to_string());
    }
    let lead = auth::add_user(
        &store,
        &Actor::System,
        "lead",
        &["leads".into()],
        false,
        now,
    )
    .await
    .unwrap()
    .token
    .expose_secret()
    .to_string();
    store.close().await;
    eprintln!("{streams} users in {:.1}s", t.elapsed().as_secs_f64());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut broker = Command::new(env!("CARGO_BIN_EXE_firedoor-server"))
        .arg("--data-dir")
        .arg(&data)
        .arg("serve")
        .arg("--policy")
        .arg(&policy)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("FIREDOOR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let probe = Client::new(&url, None).unwrap();
    while probe.health().await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_rss = rss_mib(broker.id());

    // Every engineer's stream.
    let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::with_capacity(streams);
    for (i, token) in tokens.iter().enumerate() {
        let c = Client::new(&url, Some(token)).unwrap();
        let tx = tx.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = loop {
                match c.events(None).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            let _ = ready.send(());
            while let Some(Ok(e)) = s.next().await {
                let rid = e.request_id.map(|r| r.to_string()).unwrap_or_default();
                let _ = tx.send((i, e.kind, rid, Instant::now()));
            }
        }));
    }
    let t = Instant::now();
    for _ in 0..streams {
        ready_rx.recv().await.unwrap();
    }
    eprintln!(
        "{streams} streams open in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let rss = rss_mib(broker.id());

    // 1. Broadcasts.
    let lead_c = Client::new(&url, Some(&lead)).unwrap();
    let mut per_client = Vec::new();
    let mut to_last = Vec::new();
    for round in 0..rounds {
        let sent = Instant::now();
        let (r, _) = lead_c
            .create_request(
                &CreateRequest {
                    bundle: "wide".into(),
                    justification: Some(format!("broadcast {round}")),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        let rid = r.id.to_string();
        let mut got = 0;
        let mut last = sent;
        while got < streams {
            let (_, kind, id, at) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("every stream gets the broadcast within 60 s")
                .unwrap();
            if kind == "request_awaiting_approval" && id == rid {
                got += 1;
                per_client.push(at - sent);
                last = last.max(at);
            }
        }
        to_last.push(last - sent);
        lead_c.cancel(&r.id).await.unwrap();
        // Let the cancellations' own events drain before the next round.
        tokio::time::sleep(Duration::from_millis(500)).await;
        while rx.try_recv().is_ok() {}
    }
    per_client.sort();
    to_last.sort();
    println!(
        "broadcast to {streams} streams ({rounds} rounds): per client p50 {:.0} ms, p99 {:.0} ms; send → last client p50 {:.0} ms, max {:.0} ms",
        ms(pct(&per_client, 0.5)),
        ms(pct(&per_client, 0.99)),
        ms(pct(&to_last, 0.5)),
        ms(*to_last.last().unwrap())
    );
    println!(
        "broker RSS: {idle_rss:.0} MiB idle, {rss:.0} MiB with {streams} streams open ({:.1} KiB per stream)",
        (rss - idle_rss) * 1024.0 / streams as f64
    );

    // 2. Decisions with 1,000 streams open.
    let keep = streams.min(1000);
    for t in tasks.drain(keep..) {
        t.abort();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    let eng: Vec<Client> = tokens[..keep]
        .iter()
        .map(|t| Client::new(&url, Some(t)).unwrap())
        .collect();
    let mut lat = Vec::with_capacity(decisions);
    for d in 0..decisions {
        let i = (d * 7919) % keep;
        let (r, _) = eng[i]
            .create_request(
                &CreateRequest {
                    bundle: "narrow".into(),
                    justification: Some(format!("decision {d}")),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        let rid = r.id.to_string();
        let sent = Instant::now();
        let approved = lead_c.approve(&r.id, None).await.unwrap();
        loop {
            let (who, kind, id, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("the requester hears of the decision")
                .unwrap();
            if who == i && id == rid && (kind == "request_approved" || kind == "grant_active") {
                lat.push(at - sent);
                break;
            }
        }
        while rx.try_recv().is_ok() {}
        if let Some(g) = approved.grant_id {
            eng[i].revoke(&g).await.unwrap();
        }
    }
    lat.sort();
    println!(
        "decision → requester's stream, {keep} streams open ({decisions} decisions): p50 {:.1} ms, p99 {:.1} ms",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    for t in tasks {
        t.abort();
    }
    let _ = broker.kill();
    let _ = broker.wait();
}
