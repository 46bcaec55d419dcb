//! Audit to a SIEM: the sinks the policy declares (`[audit_sinks.NAME]`), the
//! syslog line each audit record becomes (RFC 5424, framed by octet counting per
//! RFC 6587 §3.4.1), the backoff after a failed delivery, and what admins see of a
//! sink. No I/O: the broker's worker reads the records after a sink's cursor,
//! formats them here, sends them, and moves the cursor only once the receiver took
//! them (at least once; the record's `seq` is the key a receiver dedupes on).

use crate::audit::AuditRecord;
use crate::policy::{valid_name, PolicyError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

/// Records read and sent per batch.
pub const BATCH: i64 = 200;
/// How long a replica holds a sink while it delivers (renewed per batch).
pub const SINK_LEASE_SECS: i64 = 120;
/// First and longest wait before a failed sink is tried again.
pub const RETRY_SECS: (i64, i64) = (5, 300);
/// The SD-ID of the structured data element of each syslog line. 32473 is the
/// private enterprise number RFC 5612 reserves for documentation and examples.
pub const SD_ID: &str = "firedoor@32473";

/// Where the audit stream goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSink {
    pub name: String,
    pub target: SinkTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkTarget {
    /// RFC 5424 over plain TCP, octet-counted frames, one message per record.
    Syslog(SyslogSink),
    /// JSON lines POSTed, signed per Standard Webhooks.
    Webhook(WebhookSink),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyslogSink {
    /// `host:port` (a name, an IPv4 address, or `[v6]:port`).
    pub address: String,
    /// APP-NAME of each message (default `firedoor`).
    pub app_name: String,
    /// HOSTNAME of each message; default: the broker machine's host name.
    pub hostname: Option<String>,
    /// Facility number (0-23; default 10, `authpriv`: security messages kept
    /// private).
    pub facility: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSink {
    pub url: String,
    /// The environment variable holding the `whsec_…` signing secret.
    pub secret_env: String,
}

impl AuditSink {
    pub fn kind(&self) -> &'static str {
        match self.target {
            SinkTarget::Syslog(_) => "syslog",
            SinkTarget::Webhook(_) => "webhook",
        }
    }

    /// Where it delivers, fit to show: the syslog address, or the webhook URL's
    /// scheme, host, port and path (the policy refuses credentials in it; a query
    /// string is left out all the same, as some receivers take a token there).
    pub fn destination(&self) -> String {
        match &self.target {
            SinkTarget::Syslog(s) => s.address.clone(),
            SinkTarget::Webhook(w) => {
                let end = w.url.find(['?', '#']).unwrap_or(w.url.len());
                w.url[..end].to_string()
            }
        }
    }
}

/// Syslog facilities by name (RFC 5424 §6.2.1).
pub const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];
const DEFAULT_FACILITY: u8 = 10;
/// Severity of every audit message: notice ("normal but significant condition").
pub const SEVERITY_NOTICE: u8 = 5;

/// The status of one sink, for admins (`GET /api/v1/audit/sinks`,
/// `firedoor-server audit sinks`). Never a secret, never credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSinkView {
    pub name: String,
    /// `syslog` or `webhook`.
    pub kind: String,
    /// Where it delivers (see [`AuditSink::destination`]).
    pub destination: String,
    /// The last record the receiver accepted (0: none yet).
    pub delivered_seq: i64,
    /// The last record of the log.
    pub head_seq: i64,
    /// Records not delivered yet.
    pub lag: i64,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Failed attempts since the last success.
    pub failures: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the next attempt may run (after a failure: the backoff's end).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// How long to wait after the `failures`-th failure in a row: 5 s, doubling, at
/// most 5 minutes.
pub fn retry_delay_secs(failures: i64) -> i64 {
    let n = failures.clamp(1, 20) - 1;
    (RETRY_SECS.0 << n).min(RETRY_SECS.1)
}

/// The record as one JSON line (no newline), exactly the shape of
/// `GET /api/v1/audit` and `audit export`.
pub fn json_line(r: &AuditRecord) -> String {
    // A struct of strings and integers always serialises.
    serde_json::to_string(r).unwrap_or_default()
}

/// An SD-PARAM value escaped per RFC 5424 §6.3.3: `"`, `\` and `]` get a
/// backslash.
pub fn escape_sd_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field (HOSTNAME, APP-NAME): printable US-ASCII without spaces, at most
/// `max` characters; `-` (the NILVALUE) when nothing is left.
pub fn header_field(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// One audit record as an RFC 5424 message:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID audit [firedoor@32473 seq="N"
/// action="…" actor="…" subject="…"] {json}`. `hostname` is the sink's or the
/// machine's; `procid` the broker's process id.
pub fn syslog_message(r: &AuditRecord, sink: &SyslogSink, hostname: &str, procid: u32) -> String {
    let pri = u32::from(sink.facility) * 8 + u32::from(SEVERITY_NOTICE);
    // The record's time, as stored (RFC 3339, UTC, microseconds: what RFC 5424's
    // TIMESTAMP allows); re-written if it were ever in another form.
    let ts = DateTime::parse_from_rfc3339(&r.at)
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
        .unwrap_or_else(|_| "-".into());
    format!(
        "<{pri}>1 {ts} {} {} {procid} audit [{SD_ID} seq=\"{}\" action=\"{}\" actor=\"{}\" subject=\"{}\"] {}",
        header_field(sink.hostname.as_deref().unwrap_or(hostname), 255),
        header_field(&sink.app_name, 48),
        r.seq,
        escape_sd_value(&r.action),
        escape_sd_value(&r.actor),
        escape_sd_value(&r.subject),
        json_line(r)
    )
}

/// A message framed by octet counting (RFC 6587 §3.4.1): `LEN SP MSG`, LEN the
/// message's length in bytes.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
    out
}

/// The batch as the webhook body: one JSON line per record, each ending in `\n`.
pub fn json_lines(records: &[AuditRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(json_line(r).as_bytes());
        out.push(b'\n');
    }
    out
}

/// The `webhook-id` of a batch: `audit-<sink>-<first seq>-<last seq>`. A retry
/// after more records were written may cover a longer range: receivers dedupe on
/// each record's `seq`, not on this id.
pub fn webhook_id(sink: &str, records: &[AuditRecord]) -> String {
    let first = records.first().map(|r| r.seq).unwrap_or(0);
    let last = records.last().map(|r| r.seq).unwrap_or(0);
    format!("audit-{sink}-{first}-{last}")
}

// ---- policy: [audit_sinks.NAME] ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawSinkKind {
    Syslog,
    Webhook,
}

/// `[audit_sinks.NAME]` as written. One flat table (spans do not survive serde's
/// internally tagged enums); which keys go with which kind is checked below.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuditSink {
    kind: Spanned<RawSinkKind>,
    #[serde(default)]
    address: Option<Spanned<String>>,
    #[serde(default)]
    app_name: Option<Spanned<String>>,
    #[serde(default)]
    hostname: Option<Spanned<String>>,
    #[serde(default)]
    facility: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    secret_env: Option<Spanned<String>>,
}

/// Checks the `[audit_sinks.*]` tables. `err` places a message at a span of the
/// policy file.
pub(crate) fn parse_audit_sinks(
    raw: BTreeMap<Spanned<String>, Spanned<RawAuditSink>>,
    err: &dyn Fn(Range<usize>, String) -> PolicyError,
) -> Result<BTreeMap<String, AuditSink>, PolicyError> {
    let mut out = BTreeMap::new();
    for (name, raw_s) in raw {
        let sname = name.get_ref().clone();
        if !valid_name(&sname) {
            return Err(err(
                name.span(),
                format!(
                    "audit sink name '{sname}': use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit"
                ),
            ));
        }
        let span = raw_s.span();
        let r = raw_s.into_inner();
        let kind = *r.kind.get_ref();
        let not_for = |field: &Option<Spanned<String>>, key: &str, other: &str| match field {
            Some(f) => Err(err(
                f.span(),
                format!("audit sink '{sname}': `{key}` is for {other} sinks"),
            )),
            None => Ok(()),
        };
        let target = match kind {
            RawSinkKind::Syslog => {
                not_for(&r.url, "url", "webhook")?;
                not_for(&r.secret_env, "secret_env", "webhook")?;
                let Some(address) = r.address else {
                    return Err(err(
                        span,
                        format!("audit sink '{sname}' (syslog) needs address = \"host:port\" of the syslog receiver (TCP)"),
                    ));
                };
                if let Err(why) = check_address(address.get_ref()) {
                    return Err(err(address.span(), format!("audit sink '{sname}': {why}")));
                }
                let app_name = match r.app_name {
                    Some(a) => {
                        let v = a.get_ref();
                        if v.is_empty() || v.len() > 48 || !v.bytes().all(|b| b.is_ascii_graphic())
                        {
                            return Err(err(
                                a.span(),
                                format!("audit sink '{sname}': app_name is 1-48 printable ASCII characters without spaces (RFC 5424 APP-NAME)"),
                            ));
                        }
                        v.clone()
                    }
                    None => "firedoor".into(),
                };
                let hostname = match r.hostname {
                    Some(h) => {
                        let v = h.get_ref();
                        if v.is_empty() || v.len() > 255 || !v.bytes().all(|b| b.is_ascii_graphic())
                        {
                            return Err(err(
                                h.span(),
                                format!("audit sink '{sname}': hostname is 1-255 printable ASCII characters without spaces (RFC 5424 HOSTNAME)"),
                            ));
                        }
                        Some(v.clone())
                    }
                    None => None,
                };
                let facility = match r.facility {
                    Some(f) => match FACILITIES.iter().position(|n| n == f.get_ref()) {
                        Some(i) => i as u8,
                        None => {
                            return Err(err(
                                f.span(),
                                format!(
                                    "audit sink '{sname}': facility '{}' is not one of {}",
                                    f.get_ref(),
                                    FACILITIES.join(", ")
                                ),
                            ))
                        }
                    },
                    None => DEFAULT_FACILITY,
                };
                SinkTarget::Syslog(SyslogSink {
                    address: address.into_inner(),
                    app_name,
                    hostname,
                    facility,
                })
            }
            RawSinkKind::Webhook => {
                not_for(&r.address, "address", "syslog")?;
                not_for(&r.app_name, "app_name", "syslog")?;
                not_for(&r.hostname, "hostname", "syslog")?;
                not_for(&r.facility, "facility", "syslog")?;
                let Some(url) = r.url else {
                    return Err(err(
                        span,
                        format!("audit sink '{sname}' (webhook) needs url = \"https://…\" of the receiver"),
                    ));
                };
                if let Err(why) = check_url(url.get_ref()) {
                    return Err(err(url.span(), format!("audit sink '{sname}': {why}")));
                }
                let Some(env) = r.secret_env else {
                    return Err(err(
                        span,
                        format!("audit sink '{sname}' (webhook) needs secret_env = \"NAME\": the environment variable holding the whsec_… signing secret"),
                    ));
                };
                let e = env.get_ref();
                if e.is_empty()
                    || !e
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                {
                    return Err(err(
                        env.span(),
                        format!("audit sink '{sname}': secret_env names an environment variable (A-Z, 0-9, _) holding the secret, never the secret itself"),
                    ));
                }
                SinkTarget::Webhook(WebhookSink {
                    url: url.into_inner(),
                    secret_env: env.into_inner(),
                })
            }
        };
        out.insert(
            sname.clone(),
            AuditSink {
                name: sname,
                target,
            },
        );
    }
    Ok(out)
}

/// `host:port`: a host name or address (IPv6 in brackets) and a port 1-65535.
fn check_address(a: &str) -> Result<(), String> {
    let bad = || {
        format!("address '{a}' is not host:port (e.g. \"127.0.0.1:514\", \"siem.internal:6514\", \"[::1]:514\")")
    };
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    if host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// An `https://` URL without credentials; plain `http://` only to a loopback
/// address (the audit log must not cross a network in clear text).
fn check_url(u: &str) -> Result<(), String> {
    let (scheme, rest) = u
        .split_once("://")
        .ok_or_else(|| format!("url '{u}' is not an http(s) URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "url must not carry credentials (user:password@): the receiver authenticates the broker by the webhook signature"
                .into(),
        );
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map(|x| x.0).unwrap_or(authority),
    };
    if host.is_empty() {
        return Err(format!("url '{u}' names no host"));
    }
    match scheme {
        "https" => Ok(()),
        "http" => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "url '{u}': use https:// (plain http:// only to a loopback address: the audit log must not cross a network in clear text)"
                ))
            }
        }
        other => Err(format!("url '{u}': scheme {other} is not http(s)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str, subject: &str) -> AuditRecord {
        AuditRecord {
            seq: 7,
            at: "2030-03-17T17:46:40.123456Z".into(),
            actor: "alice".into(),
            action: action.into(),
            subject: subject.into(),
            details: r#"{"why":"db \"down\"\nnow"}"#.into(),
            prev_hash: "aa".into(),
            hash: "bb".into(),
            signature: Some("c2ln".into()),
        }
    }

    fn sink() -> SyslogSink {
        SyslogSink {
            address: "127.0.0.1:514".into(),
            app_name: "firedoor".into(),
            hostname: None,
            facility: DEFAULT_FACILITY,
        }
    }

    #[test]
    fn a_record_is_one_rfc5424_line_with_its_json() {
        let r = record("request_created", "req_1");
        let m = syslog_message(&r, &sink(), "broker-1", 42);
        let json = json_line(&r);
        assert_eq!(
            m,
            format!(
                "<85>1 2030-03-17T17:46:40.123456Z broker-1 firedoor 42 audit [firedoor@32473 seq=\"7\" action=\"request_created\" actor=\"alice\" subject=\"req_1\"] {json}"
            ),
            "authpriv.notice = 10*8+5"
        );
        assert!(!m.contains('\n'), "one line: the JSON escapes newlines");
        let back: AuditRecord = serde_json::from_str(m.rsplit_once("] ").expect("msg").1)
            .expect("the MSG is the record");
        assert_eq!(back, r);
        let framed = octet_counted("héllo");
        assert_eq!(
            framed, b"6 h\xc3\xa9llo",
            "LEN counts bytes, not characters"
        );
    }

    #[test]
    fn sd_values_are_escaped() {
        assert_eq!(escape_sd_value(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        let m = syslog_message(&record("x", r#"odd"]\name"#), &sink(), "h", 1);
        assert!(m.contains(r#"subject="odd\"\]\\name"]"#), "{m}");
        assert_eq!(header_field("my host", 255), "myhost");
        assert_eq!(header_field("", 255), "-");
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(retry_delay_secs(1), 5);
        assert_eq!(retry_delay_secs(2), 10);
        assert_eq!(retry_delay_secs(4), 40);
        assert_eq!(retry_delay_secs(7), 300);
        assert_eq!(retry_delay_secs(1000), 300);
    }

    #[test]
    fn webhook_ids_name_the_range() {
        let mut a = record("x", "y");
        let mut b = a.clone();
        a.seq = 3;
        b.seq = 9;
        assert_eq!(
            webhook_id("siem", &[a.clone(), b.clone()]),
            "audit-siem-3-9"
        );
        assert_eq!(
            json_lines(&[a, b]).iter().filter(|c| **c == b'\n').count(),
            2
        );
    }

    #[test]
    fn addresses_and_urls() {
        assert!(check_address("127.0.0.1:514").is_ok());
        assert!(check_address("siem.internal:6514").is_ok());
        assert!(check_address("[::1]:514").is_ok());
        for bad in [
            "127.0.0.1",
            "host:0",
            "host:99999",
            ":514",
            "a b:514",
            "[zz]:1",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert!(check_url("https://siem.example.com/hook?x=1").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://[::1]:8080/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://siem.example.com/hook")
            .expect_err("clear text")
            .contains("https"));
        assert!(check_url("https://user:pw@siem.example.com/")
            .expect_err("credentials")
            .contains("credentials"));
        assert!(check_url("ftp://x/").is_err());
        let s = AuditSink {
            name: "s".into(),
            target: SinkTarget::Webhook(WebhookSink {
                url: "https://siem.example.com/hook?token=abc".into(),
                secret_env: "X".into(),
            }),
        };
        assert_eq!(s.destination(), "https://siem.example.com/hook");
    }

    const SINKS: &str = r#"
[audit_sinks.siem]
kind = "syslog"
address = "127.0.0.1:6514"
app_name = "firedoor-prod"
facility = "local4"

[audit_sinks.lake]
kind = "webhook"
url = "https://siem.example.com/firedoor"
secret_env = "FIREDOOR_SIEM_SECRET"
"#;

    #[test]
    fn the_policy_declares_sinks() {
        let p = crate::policy::parse_policy("p.toml", SINKS).expect("valid");
        let SinkTarget::Syslog(s) = &p.audit_sinks["siem"].target else {
            panic!("syslog")
        };
        assert_eq!(s.address, "127.0.0.1:6514");
        assert_eq!(s.app_name, "firedoor-prod");
        assert_eq!(s.facility, 20, "local4");
        assert_eq!(s.hostname, None);
        let SinkTarget::Webhook(w) = &p.audit_sinks["lake"].target else {
            panic!("webhook")
        };
        assert_eq!(w.secret_env, "FIREDOOR_SIEM_SECRET");
        let minimal = crate::policy::parse_policy(
            "p.toml",
            "[audit_sinks.s]\nkind = \"syslog\"\naddress = \"localhost:514\"\n",
        )
        .expect("valid");
        let SinkTarget::Syslog(s) = &minimal.audit_sinks["s"].target else {
            panic!("syslog")
        };
        assert_eq!((s.app_name.as_str(), s.facility), ("firedoor", 10));
    }

    #[test]
    fn sink_mistakes_are_named_with_their_line() {
        let cases = [
            (
                SINKS.replace("kind = \"syslog\"", "kind = \"kafka\""),
                "unknown variant",
                3,
            ),
            (
                SINKS.replace("address = \"127.0.0.1:6514\"\n", ""),
                "needs address = \"host:port\"",
                2,
            ),
            (
                SINKS.replace("127.0.0.1:6514", "127.0.0.1"),
                "is not host:port",
                4,
            ),
            (
                SINKS.replace("\"local4\"", "\"local9\""),
                "facility 'local9'",
                6,
            ),
            (
                SINKS.replace("firedoor-prod", "fire door"),
                "app_name is 1-48",
                5,
            ),
            (
                SINKS.replace("facility = \"local4\"", "url = \"https://x/\""),
                "`url` is for webhook sinks",
                6,
            ),
            (
                SINKS.replace("FIREDOOR_SIEM_SECRET", "whsec_C2FVsBQIhrscChlQIMV"),
                "never the secret itself",
                11,
            ),
            (
                SINKS.replace("secret_env = \"FIREDOOR_SIEM_SECRET\"\n", ""),
                "needs secret_env",
                8,
            ),
            (
                SINKS.replace("https://siem.example.com", "http://siem.example.com"),
                "use https://",
                10,
            ),
            (
                SINKS.replace("https://siem.example.com", "https://u:pw@siem.example.com"),
                "must not carry credentials",
                10,
            ),
            (
                SINKS.replace("[audit_sinks.lake]", "[audit_sinks.Lake]"),
                "audit sink name 'Lake'",
                8,
            ),
            (SINKS.replace("app_name", "appname"), "unknown field", 5),
        ];
        for (src, want, line) in cases {
            assert_ne!(src, SINKS, "the case changes the policy ({want})");
            let e = crate::policy::parse_policy("policy.toml", &src).expect_err(want);
            assert!(e.message.contains(want), "want '{want}', got: {e}");
            assert_eq!(e.line, line, "{want}: {e}");
            assert!(!e.message.contains("pw@"), "no credentials echoed: {e}");
        }
    }
}
