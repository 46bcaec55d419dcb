//! Audit to a SIEM: the worker step that delivers the audit log to the policy's
//! sinks (`[audit_sinks.NAME]`), and their status for admins.
//!
//! Each sink has a cursor in the store: the last record its receiver accepted.
//! A pass takes the sink's lease (one replica at a time delivers a sink), reads the
//! records after the cursor in `seq` order, [`BATCH`] at a time, sends a batch, and
//! moves the cursor only once the receiver took the whole batch. A failure leaves
//! the cursor where it was and the sink waits (5 s, doubling, at most 5 min, on the
//! broker's clock) before the same records are sent again. Delivery is therefore at
//! least once: a batch the receiver took just before a crash or a lost answer is
//! sent again, and receivers dedupe on each record's `seq` (which is also how a
//! gap would show).
//!
//! - **syslog**: one RFC 5424 message per record over plain TCP, framed by octet
//!   counting (RFC 6587 §3.4.1). Plain TCP syslog has no acknowledgement, so each
//!   batch goes on a fresh connection: the broker writes it, shuts its write half,
//!   and waits for the receiver to close its side. rsyslog's `imtcp` (and other
//!   receivers) close a connection only after reading it to its end, so the close
//!   says the receiver *read* every message of the batch. It does not say the
//!   receiver *stored* them: a receiver that crashes with messages in its in-memory
//!   queue loses them (give rsyslog a disk-assisted queue if that matters). No
//!   close within [`CONFIRM`] is a failure, and the batch is sent again.
//! - **webhook**: the batch as JSON lines, POSTed and signed per Standard Webhooks
//!   ([`firedoor_core::webhooks`]); a 2xx answer means accepted, anything else
//!   (redirects included: they are not followed) is a failure.
//!
//! A delivery never blocks the worker for long: every connect, write and answer has
//! a timeout, sinks are delivered side by side, and a pass stops sending after
//! [`PASS_BUDGET`] (the next pass goes on). Failures are logged and shown to admins
//! (`GET /api/v1/audit/sinks`) with a readable reason and no secret; they are not
//! audit records themselves (a sink that is down would fill the log it cannot take).

use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::audit_sinks::AuditSinkRow;
use crate::store::Ts;
use chrono::{DateTime, Duration, Utc};
use firedoor_core::access::{check_admin, AdminAction};
use firedoor_core::audit::AuditRecord;
use firedoor_core::siem::{
    self, retry_delay_secs, AuditSink, AuditSinkView, SinkTarget, SyslogSink, WebhookSink, BATCH,
    SINK_LEASE_SECS,
};
use firedoor_core::webhooks::{
    parse_webhook_secret, standard_webhooks_signature, HEADER_ID, HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
};
use std::sync::OnceLock;
use std::time::{Duration as StdDuration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// Longest wait for a TCP connection (syslog, webhook).
pub const CONNECT: StdDuration = StdDuration::from_secs(5);
/// Longest wait to write a syslog batch.
pub const WRITE: StdDuration = StdDuration::from_secs(10);
/// Longest wait for a syslog receiver to close after the batch (its "got it").
pub const CONFIRM: StdDuration = StdDuration::from_secs(10);
/// Longest wait for a webhook's answer, request included.
pub const WEBHOOK_TIMEOUT: StdDuration = StdDuration::from_secs(15);
/// A pass stops taking new batches of a sink after this long.
pub const PASS_BUDGET: StdDuration = StdDuration::from_secs(3);

impl Broker {
    /// Worker step: every sink of the policy gets the audit records after its
    /// cursor (side by side; each as far as [`PASS_BUDGET`] allows).
    pub async fn deliver_audit(&self) -> Result<()> {
        if self.policy.audit_sinks.is_empty() {
            return Ok(());
        }
        let results = futures::future::join_all(
            self.policy
                .audit_sinks
                .values()
                .map(|s| self.deliver_sink(s)),
        )
        .await;
        results.into_iter().collect()
    }

    /// Delivers one sink if it is due and no other replica holds it.
    async fn deliver_sink(&self, sink: &AuditSink) -> Result<()> {
        let now = self.now();
        let sinks = || self.store.audit_sinks();
        // Reads first: an idle pass (caught up, backing off, held elsewhere)
        // writes nothing.
        match sinks().load(&sink.name).await? {
            None => sinks().ensure(&sink.name, Ts(now)).await?,
            Some(r) => {
                let held = r.lease_until.is_some_and(|t| t.0 > now);
                if held || r.next_attempt_at.0 > now {
                    return Ok(());
                }
                if r.delivered_seq >= self.store.audit().max_seq().await? {
                    return Ok(());
                }
            }
        }
        let token = uuid::Uuid::new_v4().to_string();
        let lease = |t: DateTime<Utc>| Ts(t + Duration::seconds(SINK_LEASE_SECS));
        if !sinks()
            .claim(&sink.name, &token, Ts(now), lease(now))
            .await?
        {
            return Ok(());
        }
        let row = sinks()
            .load(&sink.name)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("audit sink '{}' vanished", sink.name)))?;
        let mut cursor = row.delivered_seq;
        let mut failures = row.failures;
        let started = Instant::now();
        loop {
            let batch = self.store.audit().records(cursor, BATCH).await?;
            let Some(last) = batch.last().map(|r| r.seq) else {
                sinks().release(&sink.name, &token, Ts(self.now())).await?;
                return Ok(());
            };
            let sent = self.send(sink, &batch).await;
            let now = self.now();
            match sent {
                Ok(()) => {
                    if !sinks()
                        .advance(&sink.name, &token, cursor, last, Ts(now), lease(now))
                        .await?
                    {
                        // The lease ran out meanwhile and another replica delivers
                        // from the cursor it found: this batch may reach the
                        // receiver twice, which the seq dedupes.
                        tracing::warn!(sink = %sink.name, "audit sink lease lost during a delivery; another replica goes on");
                        return Ok(());
                    }
                    if failures > 0 {
                        tracing::info!(sink = %sink.name, after_failures = failures, "audit sink delivers again");
                    }
                    failures = 0;
                    cursor = last;
                    if (batch.len() as i64) < BATCH || started.elapsed() >= PASS_BUDGET {
                        sinks().release(&sink.name, &token, Ts(now)).await?;
                        return Ok(());
                    }
                }
                Err(why) => {
                    failures += 1;
                    let delay = retry_delay_secs(failures);
                    tracing::warn!(
                        sink = %sink.name,
                        kind = sink.kind(),
                        error = %why,
                        delivered_seq = cursor,
                        retry_in_secs = delay,
                        "audit sink delivery failed; its records are sent again after the backoff"
                    );
                    sinks()
                        .failed(
                            &sink.name,
                            &token,
                            &why,
                            Ts(now),
                            Ts(now + Duration::seconds(delay)),
                        )
                        .await?;
                    return Ok(());
                }
            }
        }
    }

    /// Sends one batch; `Err` says why in words fit for an admin (no secret).
    async fn send(&self, sink: &AuditSink, batch: &[AuditRecord]) -> Result<(), String> {
        match &sink.target {
            SinkTarget::Syslog(s) => send_syslog(s, batch).await,
            SinkTarget::Webhook(w) => send_webhook(sink, w, batch, self.now()).await,
        }
    }

    /// Every sink of the policy with its cursor, the log's head, the lag and the
    /// last failure (admins; the CLI).
    pub async fn audit_sinks(&self, actor: &Actor) -> Result<Vec<AuditSinkView>> {
        check_admin(actor, AdminAction::ReadAudit)?;
        let rows = self.store.audit_sinks().all().await?;
        let head = self.store.audit().max_seq().await?;
        Ok(self
            .policy
            .audit_sinks
            .values()
            .map(|s| view(s, rows.iter().find(|r| r.name == s.name), head))
            .collect())
    }
}

fn view(s: &AuditSink, row: Option<&AuditSinkRow>, head: i64) -> AuditSinkView {
    let delivered = row.map(|r| r.delivered_seq).unwrap_or(0);
    AuditSinkView {
        name: s.name.clone(),
        kind: s.kind().into(),
        destination: s.destination(),
        delivered_seq: delivered,
        head_seq: head,
        lag: (head - delivered).max(0),
        delivered_at: row.and_then(|r| r.delivered_at).map(|t| t.0),
        failures: row.map(|r| r.failures).unwrap_or(0),
        last_error: row.and_then(|r| r.last_error.clone()),
        last_error_at: row.and_then(|r| r.last_error_at).map(|t| t.0),
        next_attempt_at: row.map(|r| r.next_attempt_at.0),
    }
}

/// The machine's host name, for syslog's HOSTNAME when the sink sets none.
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into())
    })
}

/// An I/O failure towards `addr`, in words.
fn io_text(addr: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => format!("connection refused to {addr}"),
        K::ConnectionReset => format!("{addr} reset the connection"),
        K::BrokenPipe => format!("{addr} closed the connection while the batch was written"),
        K::TimedOut => format!("no answer from {addr} (timed out)"),
        _ => format!("{addr}: {e}"),
    }
}

/// One batch to a syslog receiver: a fresh connection, the messages, our end shut,
/// then the receiver's close as its receipt (see the module's documentation).
async fn send_syslog(s: &SyslogSink, batch: &[AuditRecord]) -> Result<(), String> {
    let addr = s.address.as_str();
    let pid = std::process::id();
    let mut buf = Vec::with_capacity(batch.len() * 1024);
    for r in batch {
        buf.extend_from_slice(&siem::octet_counted(&siem::syslog_message(
            r,
            s,
            hostname(),
            pid,
        )));
    }
    let mut conn = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            format!(
                "connecting to {addr} timed out after {} s",
                CONNECT.as_secs()
            )
        })?
        .map_err(|e| io_text(addr, &e))?;
    tokio::time::timeout(WRITE, async {
        conn.write_all(&buf).await?;
        conn.shutdown().await
    })
    .await
    .map_err(|_| format!("writing to {addr} timed out after {} s", WRITE.as_secs()))?
    .map_err(|e| io_text(addr, &e))?;
    // The receiver sends nothing; whatever it might is read and dropped until it
    // closes.
    tokio::time::timeout(CONFIRM, async {
        let mut sink = [0u8; 512];
        loop {
            if conn.read(&mut sink).await? == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    })
    .await
    .map_err(|_| {
        format!(
            "{addr} did not close the connection within {} s after the batch (its only receipt): the batch is sent again",
            CONFIRM.as_secs()
        )
    })?
    .map_err(|e| io_text(addr, &e))
}

/// The HTTP client of webhook sinks: timeouts, no redirects.
fn http() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let c = reqwest::Client::builder()
        .connect_timeout(CONNECT)
        .timeout(WEBHOOK_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("firedoor/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    Ok(CLIENT.get_or_init(|| c))
}

/// A reqwest failure towards `dest`, in words, without the URL (it may carry a
/// token in its query).
fn http_text(dest: &str, e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        return format!(
            "no answer from {dest} within {} s",
            WEBHOOK_TIMEOUT.as_secs()
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_text(dest, io);
        }
        source = s.source();
    }
    let mut text = format!("{dest}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// One batch to a webhook: JSON lines, signed per Standard Webhooks with the
/// secret in the sink's `secret_env`, at the broker clock's `now`.
async fn send_webhook(
    sink: &AuditSink,
    w: &WebhookSink,
    batch: &[AuditRecord],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let dest = sink.destination();
    let text = Zeroizing::new(std::env::var(&w.secret_env).map_err(|_| {
        format!(
            "the environment variable {} (secret_env) is not set: the batch cannot be signed",
            w.secret_env
        )
    })?);
    let key =
        parse_webhook_secret(&text).map_err(|e| format!("the secret in {}: {e}", w.secret_env))?;
    let body = siem::json_lines(batch);
    let id = siem::webhook_id(&sink.name, batch);
    let ts = now.timestamp();
    let signature = standard_webhooks_signature(&key, &id, ts, &body);
    let resp = http()?
        .post(&w.url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
        .header(HEADER_ID, &id)
        .header(HEADER_TIMESTAMP, ts.to_string())
        .header(HEADER_SIGNATURE, signature)
        .body(body)
        .send()
        .await
        .map_err(|e| http_text(&dest, e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    // A short excerpt of what the receiver said, on one line.
    let said: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(160)
        .collect();
    let said = said.trim();
    Err(if said.is_empty() {
        format!("{dest} answered {status}")
    } else {
        format!("{dest} answered {status}: {said}")
    })
}
