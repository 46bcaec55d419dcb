//! Prometheus metrics: a small process-wide registry and an encoder for the text
//! exposition format (version 0.0.4), served at `GET /metrics` (see [`crate::probes`]).
//!
//! What a metric may carry: counts and durations, labelled only with values from a
//! closed set (states, route templates, status classes, operation names, the
//! integration names of the policy). Never a user name, an id, a path as sent, a
//! token or an error text.
//!
//! The registry is process-wide (like the default registry of the Go client), so
//! any layer records without plumbing: a store, a connector wrapper, an HTTP
//! middleware. The values read from the store at scrape time are per broker
//! ([`store_gauges`]).
//!
//! The SQL of this module is in ONE marked section at the end ([`store_ping`],
//! [`store_gauges`]) so it moves into the store layer in one piece.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    /// With its bucket upper bounds (ascending; `+Inf` is implicit).
    Histogram(&'static [f64]),
}

#[derive(Debug, Clone, PartialEq)]
enum Series {
    Value(f64),
    Hist {
        /// Non-cumulative counts per bucket (the last one is `+Inf`).
        buckets: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

/// A metric family: one name, one help text, one kind, a fixed set of label names,
/// and a series per combination of label values seen.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

impl Family {
    pub fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name,
            help,
            kind,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn with<R>(&self, values: &[&str], f: impl FnOnce(&mut Series) -> R) -> R {
        debug_assert_eq!(
            values.len(),
            self.labels.len(),
            "{}: label count",
            self.name
        );
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let mut m = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let kind = self.kind;
        let s = m.entry(key).or_insert_with(|| match kind {
            Kind::Histogram(bounds) => Series::Hist {
                buckets: vec![0; bounds.len() + 1],
                sum: 0.0,
                count: 0,
            },
            _ => Series::Value(0.0),
        });
        f(s)
    }

    /// Adds `by` to a counter or gauge.
    pub fn add(&self, values: &[&str], by: f64) {
        self.with(values, |s| {
            if let Series::Value(v) = s {
                *v += by;
            }
        })
    }

    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1.0)
    }

    /// Sets a gauge.
    pub fn set(&self, values: &[&str], to: f64) {
        self.with(values, |s| {
            if let Series::Value(v) = s {
                *v = to;
            }
        })
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, values: &[&str], x: f64) {
        let Kind::Histogram(bounds) = self.kind else {
            return;
        };
        let i = bounds.iter().position(|b| x <= *b).unwrap_or(bounds.len());
        self.with(values, |s| {
            if let Series::Hist {
                buckets,
                sum,
                count,
            } = s
            {
                buckets[i] += 1;
                *sum += x;
                *count += 1;
            }
        })
    }

    /// The current value of a counter or gauge series (tests, diagnostics).
    pub fn value(&self, values: &[&str]) -> f64 {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let m = self.series.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(&key) {
            Some(Series::Value(v)) => *v,
            Some(Series::Hist { count, .. }) => *count as f64,
            None => 0.0,
        }
    }

    /// Writes the family in the text format. A family with no series writes its
    /// HELP and TYPE lines only (Prometheus accepts that; it tells what exists).
    pub fn encode(&self, out: &mut String) {
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        let m = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for (values, s) in m.iter() {
            match s {
                Series::Value(v) => {
                    let _ = writeln!(
                        out,
                        "{}{} {}",
                        self.name,
                        label_set(self.labels, values, None),
                        number(*v)
                    );
                }
                Series::Hist {
                    buckets,
                    sum,
                    count,
                } => {
                    let Kind::Histogram(bounds) = self.kind else {
                        continue;
                    };
                    let mut cumulative = 0u64;
                    for (i, n) in buckets.iter().enumerate() {
                        cumulative += n;
                        let le = bounds.get(i).map(|b| number(*b)).unwrap_or("+Inf".into());
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {cumulative}",
                            self.name,
                            label_set(self.labels, values, Some(&le))
                        );
                    }
                    let labels = label_set(self.labels, values, None);
                    let _ = writeln!(out, "{}_sum{labels} {}", self.name, number(*sum));
                    let _ = writeln!(out, "{}_count{labels} {count}", self.name);
                }
            }
        }
    }
}

/// `{a="x",b="y"}` (with `le` last for buckets), or nothing without labels.
fn label_set(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// HELP text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

/// A sample value as Go's ParseFloat reads it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

// ------------------------------------------------------------------ the metrics

const LATENCY_FAST: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const LATENCY_REMOTE: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const DECISION: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];
const EXPIRY_LAG: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

/// Every metric the broker records as things happen.
pub struct Metrics {
    pub http_requests: Family,
    pub decision_latency: Family,
    pub expiry_lag: Family,
    pub deprovision_failures: Family,
    pub deprovision_retries: Family,
    pub provision_failures: Family,
    pub audit_append_failures: Family,
    pub sse_clients: Family,
    pub store_latency: Family,
    pub connector_latency: Family,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            http_requests: Family::new(
                "firedoor_http_requests_total",
                "HTTP requests answered, by route template, method and status class.",
                Kind::Counter,
                &["route", "method", "status"],
            ),
            decision_latency: Family::new(
                "firedoor_decision_latency_seconds",
                "Time from a request's creation to its approval or denial.",
                Kind::Histogram(DECISION),
                &["decision"],
            ),
            expiry_lag: Family::new(
                "firedoor_expiry_lag_seconds",
                "How late an expired grant was actually revoked (revocation time minus expires_at).",
                Kind::Histogram(EXPIRY_LAG),
                &[],
            ),
            deprovision_failures: Family::new(
                "firedoor_deprovision_failures_total",
                "Attempts to remove a grant's access (revoke or expiry) that failed; each is retried with backoff.",
                Kind::Counter,
                &["reason"],
            ),
            deprovision_retries: Family::new(
                "firedoor_deprovision_retries_total",
                "Deprovisioning attempts that retried an earlier failed or interrupted attempt.",
                Kind::Counter,
                &[],
            ),
            provision_failures: Family::new(
                "firedoor_connector_failures_total",
                "Connector calls that returned an error, by integration and operation.",
                Kind::Counter,
                &["integration", "operation"],
            ),
            audit_append_failures: Family::new(
                "firedoor_audit_append_failures_total",
                "Audit records that could not be appended (the operation that wrote them failed).",
                Kind::Counter,
                &[],
            ),
            sse_clients: Family::new(
                "firedoor_sse_clients",
                "Event streams (server-sent events) open now.",
                Kind::Gauge,
                &[],
            ),
            store_latency: Family::new(
                "firedoor_store_operation_duration_seconds",
                "Duration of store operations: begin (including the wait for this broker's write turn), commit, readiness ping, scrape-time counts.",
                Kind::Histogram(LATENCY_FAST),
                &["operation"],
            ),
            connector_latency: Family::new(
                "firedoor_connector_duration_seconds",
                "Duration of connector calls to target systems, by integration and operation.",
                Kind::Histogram(LATENCY_REMOTE),
                &["integration", "operation"],
            ),
        }
    }

    fn families(&self) -> [&Family; 10] {
        [
            &self.http_requests,
            &self.decision_latency,
            &self.expiry_lag,
            &self.deprovision_failures,
            &self.deprovision_retries,
            &self.provision_failures,
            &self.audit_append_failures,
            &self.sse_clients,
            &self.store_latency,
            &self.connector_latency,
        ]
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics::new();
    // Series that should read 0 before the first event, so rate() and alerts see them.
    m.audit_append_failures.add(&[], 0.0);
    m.deprovision_retries.add(&[], 0.0);
    m.deprovision_failures.add(&["revoked"], 0.0);
    m.deprovision_failures.add(&["expired"], 0.0);
    m.sse_clients.set(&[], 0.0);
    m
});

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

// ------------------------------------------------------------ recording helpers

/// A request was approved or denied (`decision`: `approved` | `denied`) `after` its
/// creation.
pub fn decision_made(decision: &'static str, created_at: DateTime<Utc>, now: DateTime<Utc>) {
    let secs = (now - created_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics().decision_latency.observe(&[decision], secs);
}

/// An expired grant's access was removed at `now`.
pub fn expiry_revoked(expires_at: DateTime<Utc>, now: DateTime<Utc>) {
    let secs = (now - expires_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics().expiry_lag.observe(&[], secs);
}

/// Deprovisioning a grant is being attempted (`retry`: an earlier attempt failed).
pub fn deprovision_attempt(retry: bool) {
    if retry {
        metrics().deprovision_retries.inc(&[]);
    }
}

/// Deprovisioning failed (`reason`: `revoked` | `expired`).
pub fn deprovision_failed(reason: &'static str) {
    metrics().deprovision_failures.inc(&[reason]);
}

/// An audit append returned an error.
pub fn audit_append_failed() {
    metrics().audit_append_failures.inc(&[]);
}

/// Times one store operation; records when [`StoreTimer::done`] is called or the
/// timer is dropped (a `?` in between still counts). The store layer calls
/// [`store_timer`] where it begins, commits or runs a statement worth watching.
pub struct StoreTimer {
    op: &'static str,
    start: Instant,
    recorded: bool,
}

pub fn store_timer(op: &'static str) -> StoreTimer {
    StoreTimer {
        op,
        start: Instant::now(),
        recorded: false,
    }
}

impl StoreTimer {
    pub fn done(mut self) {
        self.record();
    }
    fn record(&mut self) {
        if !self.recorded {
            self.recorded = true;
            metrics()
                .store_latency
                .observe(&[self.op], self.start.elapsed().as_secs_f64());
        }
    }
}

impl Drop for StoreTimer {
    fn drop(&mut self) {
        self.record();
    }
}

/// One connected event stream; the gauge goes down when it is dropped.
pub struct SseClient(());

impl SseClient {
    pub fn connect() -> SseClient {
        metrics().sse_clients.add(&[], 1.0);
        SseClient(())
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        metrics().sse_clients.add(&[], -1.0);
    }
}

/// Records a connector call.
pub fn connector_call(integration: &str, operation: &'static str, took: Duration, ok: bool) {
    let m = metrics();
    m.connector_latency
        .observe(&[integration, operation], took.as_secs_f64());
    if !ok {
        m.provision_failures.inc(&[integration, operation]);
    }
}

/// `2xx`, `4xx`, …
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

// ------------------------------------------------------------------ the scrape

/// What the store says at scrape time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoreGauges {
    /// (state, count) of access requests.
    pub requests: Vec<(String, i64)>,
    /// (state, count) of grants.
    pub grants: Vec<(String, i64)>,
    /// The earliest `expires_at` of a grant still holding access (active, revoking,
    /// revoke_failed) that is already due; `None` when nothing is overdue.
    pub oldest_overdue: Option<DateTime<Utc>>,
}

/// The whole `/metrics` answer: the recorded families, then the scrape-time gauges
/// (`store`: `None` if the store did not answer), then readiness.
pub fn render(store: Option<&StoreGauges>, ready: bool, now: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for f in metrics().families() {
        f.encode(&mut out);
    }
    scrape_families(store, ready, now)
        .iter()
        .for_each(|f| f.encode(&mut out));
    out
}

fn scrape_families(store: Option<&StoreGauges>, ready: bool, now: DateTime<Utc>) -> Vec<Family> {
    let up = Family::new(
        "firedoor_store_up",
        "1 if the store answered the scrape-time queries, else 0.",
        Kind::Gauge,
        &[],
    );
    up.set(&[], if store.is_some() { 1.0 } else { 0.0 });
    let ready_f = Family::new(
        "firedoor_ready",
        "1 if this broker answers /readyz with 200 (store reachable, not shutting down), else 0.",
        Kind::Gauge,
        &[],
    );
    ready_f.set(&[], if ready { 1.0 } else { 0.0 });
    let requests = Family::new(
        "firedoor_requests",
        "Access requests in the store, by state (shared by every broker on the same store).",
        Kind::Gauge,
        &["state"],
    );
    let grants = Family::new(
        "firedoor_grants",
        "Grants in the store, by state (shared by every broker on the same store).",
        Kind::Gauge,
        &["state"],
    );
    let overdue = Family::new(
        "firedoor_grants_overdue_seconds",
        "How long past its expires_at the most overdue grant still holding access is (0: none).",
        Kind::Gauge,
        &[],
    );
    if let Some(s) = store {
        for st in firedoor_core::lifecycle::RequestState::ALL {
            requests.set(&[st.as_str()], 0.0);
        }
        for (st, n) in &s.requests {
            requests.set(&[st], *n as f64);
        }
        for st in firedoor_core::lifecycle::GrantState::ALL {
            grants.set(&[st.as_str()], 0.0);
        }
        for (st, n) in &s.grants {
            grants.set(&[st], *n as f64);
        }
        let lag = s
            .oldest_overdue
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        overdue.set(&[], lag);
    }
    let build = Family::new(
        "firedoor_build_info",
        "The broker's version (always 1).",
        Kind::Gauge,
        &["version"],
    );
    build.set(&[env!("CARGO_PKG_VERSION")], 1.0);
    vec![up, ready_f, requests, grants, overdue, build]
}

// =====================================================================
// SQL — the only statements of the ops endpoints. Port these two to the
// store layer as they are (both are read-only and cheap).
// =====================================================================

/// The trivial query of `/readyz`: does the store answer at all?
pub async fn store_ping(store: &crate::store::Store) -> crate::error::Result<()> {
    let t = store_timer("ping");
    store.ping().await?;
    t.done();
    Ok(())
}

/// Requests and grants by state, and the most overdue grant, for `/metrics`.
pub async fn store_gauges(
    store: &crate::store::Store,
    now: DateTime<Utc>,
) -> crate::error::Result<StoreGauges> {
    let t = store_timer("scrape");
    let s = store.stats(crate::store::Ts(now)).await?;
    t.done();
    Ok(StoreGauges {
        requests: s.requests,
        grants: s.grants,
        oldest_overdue: s.oldest_overdue.map(|t| t.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_encode_with_help_type_and_escaped_labels() {
        let f = Family::new(
            "x_total",
            "Things.\nCounted \\ here.",
            Kind::Counter,
            &["route", "status"],
        );
        f.inc(&["/a/{id}", "2xx"]);
        f.inc(&["/a/{id}", "2xx"]);
        f.inc(&["say \"hi\"\n\\", "5xx"]);
        let mut out = String::new();
        f.encode(&mut out);
        assert_eq!(
            out,
            "# HELP x_total Things.\\nCounted \\\\ here.\n\
             # TYPE x_total counter\n\
             x_total{route=\"/a/{id}\",status=\"2xx\"} 2\n\
             x_total{route=\"say \\\"hi\\\"\\n\\\\\",status=\"5xx\"} 1\n",
            "HELP escapes \\ and newline; label values also escape quotes"
        );

        let g = Family::new("g", "A gauge.", Kind::Gauge, &[]);
        g.set(&[], 2.5);
        g.add(&[], -1.0);
        let mut out = String::new();
        g.encode(&mut out);
        assert_eq!(out, "# HELP g A gauge.\n# TYPE g gauge\ng 1.5\n");
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let h = Family::new(
            "lat_seconds",
            "Latency.",
            Kind::Histogram(&[0.1, 1.0]),
            &["op"],
        );
        h.observe(&["begin"], 0.05);
        h.observe(&["begin"], 0.1);
        h.observe(&["begin"], 0.5);
        h.observe(&["begin"], 7.0);
        let mut out = String::new();
        h.encode(&mut out);
        assert_eq!(
            out,
            "# HELP lat_seconds Latency.\n\
             # TYPE lat_seconds histogram\n\
             lat_seconds_bucket{op=\"begin\",le=\"0.1\"} 2\n\
             lat_seconds_bucket{op=\"begin\",le=\"1\"} 3\n\
             lat_seconds_bucket{op=\"begin\",le=\"+Inf\"} 4\n\
             lat_seconds_sum{op=\"begin\"} 7.65\n\
             lat_seconds_count{op=\"begin\"} 4\n",
            "an observation equal to a bound falls in that bucket (le is <=)"
        );
    }

    #[test]
    fn special_values_follow_go_parsefloat() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.0005), "0.0005");
    }

    #[test]
    fn every_line_of_a_full_render_is_well_formed() {
        let now = Utc::now();
        let store = StoreGauges {
            requests: vec![("pending".into(), 3)],
            grants: vec![("active".into(), 2)],
            oldest_overdue: Some(now - chrono::Duration::seconds(40)),
        };
        metrics().store_latency.observe(&["begin"], 0.001);
        let text = render(Some(&store), true, now);
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(typed.insert(name.to_string()), "{name} typed twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "value of {line}"
            );
            let name = series.split('{').next().unwrap_or_default();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name}"
            );
            assert!(
                typed.iter().any(|t| name.starts_with(t.as_str())),
                "{name} has no TYPE line before it"
            );
        }
        assert!(text.contains("firedoor_requests{state=\"pending\"} 3\n"));
        assert!(text.contains("firedoor_requests{state=\"denied\"} 0\n"));
        assert!(text.contains("firedoor_grants{state=\"active\"} 2\n"));
        assert!(text.contains("firedoor_grants_overdue_seconds 40\n"));
        assert!(text.contains("firedoor_ready 1\n"));
        assert!(text.contains("firedoor_store_up 1\n"));
        let down = render(None, false, now);
        assert!(down.contains("firedoor_store_up 0\n") && down.contains("firedoor_ready 0\n"));
    }
}
