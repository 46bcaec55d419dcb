//! Reports after an incident: the timeline of an incident, a grant or a break-glass
//! unlock, built only from audit records, each line tied to its record's sequence
//! number and hash, so that a report can be checked against the audit chain later.
//!
//! A line is a pure function of its record ([`line_of`]): the JSON report carries the
//! record itself (every hashed field, its `prev_hash` and signature), so anyone can
//! recompute the hash, and [`check_lines`] re-derives every line from its record and
//! names the first one whose time, actor, channel or text was changed.
//! [`check_against_log`] then checks that each cited record is the log's record at
//! that seq, that the log's chain is intact, and that the report left nothing out.

use crate::audit::{verify_signed_chain, AuditRecord};
use crate::duration::format_duration;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// The `format` of a JSON report.
pub const REPORT_FORMAT: &str = "firedoor-report/1";

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Incident,
    Grant,
    Unlock,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Incident => "incident",
            ReportKind::Grant => "grant",
            ReportKind::Unlock => "unlock",
        }
    }
    pub fn parse(text: &str) -> Option<ReportKind> {
        [ReportKind::Incident, ReportKind::Grant, ReportKind::Unlock]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// Where a line belongs in the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Incident,
    Request,
    Approval,
    Escalation,
    Provisioning,
    Credentials,
    Extension,
    Unlock,
    Revoke,
    Rotation,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Incident => "incident",
            Phase::Request => "request",
            Phase::Approval => "approval",
            Phase::Escalation => "escalation",
            Phase::Provisioning => "provisioning",
            Phase::Credentials => "credentials",
            Phase::Extension => "extension",
            Phase::Unlock => "unlock",
            Phase::Revoke => "revoke",
            Phase::Rotation => "rotation",
        }
    }
}

/// One line of the timeline: what its record says, and the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportLine {
    pub seq: i64,
    pub hash: String,
    /// The record's time, as stored (RFC 3339, UTC).
    pub at: String,
    /// Who acted (a user, `system`, `cli:<os user>`).
    pub actor: String,
    pub phase: Phase,
    pub action: String,
    pub subject: String,
    /// Where an approval or denial came from (`app`, `notification`, `cli`,
    /// `chat`), `None` when the record does not say (older clients).
    pub channel: Option<String>,
    /// The line in words.
    pub text: String,
    /// The audit record, with every field its hash covers.
    pub record: AuditRecord,
}

/// The log's head when the report was made: the report covers records 1..=seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportHead {
    pub seq: i64,
    pub hash: String,
    /// The broker's signature over the head (see [`crate::audit::head_message`]).
    pub signature: Option<String>,
}

/// A report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub kind: ReportKind,
    /// The id asked for (an incident's id or its source's id, a grant id, the audit
    /// seq of an unlock record).
    pub id: String,
    pub generated_at: String,
    pub generated_by: String,
    pub head: ReportHead,
    /// What the report follows: found while reading the log.
    pub scope: Scope,
    /// What the report could not show, said plainly (e.g. no credential views).
    pub notes: Vec<String>,
    pub lines: Vec<ReportLine>,
}

/// The ids a report follows. `seeds` come from the asker (and the store); the rest
/// is found in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub incidents: BTreeSet<String>,
    pub requests: BTreeSet<String>,
    pub grants: BTreeSet<String>,
    /// Unlocks: audit seqs of break-glass unlock records.
    pub unlocks: BTreeSet<i64>,
    /// Words a break-glass reason must name to belong (an incident's ids).
    #[serde(default)]
    pub names: BTreeSet<String>,
}

fn details(r: &AuditRecord) -> Value {
    serde_json::from_str(&r.details).unwrap_or(Value::Null)
}

fn text_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

fn q(v: &Value, key: &str) -> String {
    text_of(v, key).unwrap_or_else(|| "?".into())
}

fn list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn quoted(s: &str) -> String {
    format!("\u{201c}{}\u{201d}", s.trim())
}

fn secs(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_i64)
        .map(format_duration)
        .unwrap_or_else(|| "?".into())
}

/// Whether `reason` names `word` as a whole token (case-insensitive): `INC-12` is
/// named by "fixing INC-12 now" but not by "INC-123".
pub fn names(reason: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let hay = reason.to_lowercase();
    let needle = word.to_lowercase();
    let is_word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    let mut from = 0;
    while let Some(i) = hay[from..].find(&needle) {
        let start = from + i;
        let end = start + needle.len();
        let before = hay[..start].chars().next_back();
        let after = hay[end..].chars().next();
        if !before.is_some_and(is_word) && !after.is_some_and(is_word) {
            return true;
        }
        from = start + needle.len().max(1);
        while !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

/// The line for `r`, from the record alone. `None` for actions reports do not
/// show (sign-ins, tokens, ...).
pub fn line_of(r: &AuditRecord) -> Option<ReportLine> {
    let d = details(r);
    let who = r.actor.as_str();
    let channel = match r.action.as_str() {
        "approval_recorded" | "request_denied" => text_of(&d, "channel"),
        _ => None,
    };
    let via = |c: &Option<String>| match c {
        Some(c) => format!("via {c}"),
        None => "channel not recorded".to_string(),
    };
    let (phase, text) = match r.action.as_str() {
        "request_created" if text_of(&d, "kind").as_deref() == Some("extension") => {
            let mut t = format!(
                "{who} asked to extend grant {} by {}",
                q(&d, "grant"),
                secs(&d, "duration_secs")
            );
            if let Some(j) = text_of(&d, "justification") {
                t.push_str(&format!(": {}", quoted(&j)));
            }
            (Phase::Extension, t)
        }
        "request_created" => {
            let mut t = format!(
                "{who} requested {} for {} (flow {})",
                q(&d, "bundle"),
                secs(&d, "duration_secs"),
                q(&d, "flow")
            );
            if let Some(u) = text_of(&d, "on_behalf_of") {
                t.push_str(&format!(" on behalf of {u}"));
            }
            if d.get("break_glass").and_then(Value::as_bool) == Some(true) {
                t.push_str(", break glass");
            }
            if let Some(i) = text_of(&d, "incident") {
                t.push_str(&format!(", for incident {i}"));
            }
            if let Some(tk) = text_of(&d, "ticket") {
                t.push_str(&format!(", ticket {tk}"));
            }
            if let Some(j) = text_of(&d, "justification") {
                t.push_str(&format!(": {}", quoted(&j)));
            }
            (Phase::Request, t)
        }
        "approval_recorded" => {
            let mut t = format!("{who} approved ({})", via(&channel));
            if let Some(c) = text_of(&d, "comment") {
                t.push_str(&format!(": {}", quoted(&c)));
            }
            (Phase::Approval, t)
        }
        "request_approved" if d.get("automatic").and_then(Value::as_bool) == Some(true) => {
            let mut t = format!("approved automatically by flow {}", q(&d, "flow"));
            if let Some(s) = text_of(&d, "on_call") {
                t.push_str(&format!(" (on call for {s})"));
            }
            if let Some(i) = text_of(&d, "incident") {
                t.push_str(&format!(" (responder to incident {i})"));
            }
            (Phase::Approval, t)
        }
        "request_approved" => (
            Phase::Approval,
            format!("request approved ({} approvals)", q(&d, "approvals")),
        ),
        "request_denied" => {
            let mut t = format!("{who} denied ({})", via(&channel));
            if let Some(c) = text_of(&d, "reason") {
                t.push_str(&format!(": {}", quoted(&c)));
            }
            (Phase::Approval, t)
        }
        "request_cancelled" => (Phase::Request, format!("{who} cancelled the request")),
        "request_timed_out" => (
            Phase::Request,
            format!(
                "the request timed out undecided ({})",
                q(&d, "pending_until")
            ),
        ),
        "request_escalated" => (
            Phase::Escalation,
            format!(
                "escalated from stage {} to {} ({}); asked: {}",
                q(&d, "from"),
                q(&d, "to"),
                q(&d, "cause"),
                list(&d, "asked").join(", ")
            ),
        ),
        "request_reminded" => (
            Phase::Escalation,
            format!(
                "approvers of stage {} reminded: {}",
                q(&d, "stage"),
                list(&d, "asked").join(", ")
            ),
        ),
        "grant_activated" => {
            let accounts: Vec<String> = d
                .get("resources")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            format!(
                                "{}/{} as {}",
                                q(x, "integration"),
                                q(x, "resource"),
                                q(x, "username")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut t = format!(
                "access provisioned for {}: {} until {} (request {})",
                q(&d, "holder"),
                q(&d, "bundle"),
                q(&d, "expires_at"),
                q(&d, "request")
            );
            if !accounts.is_empty() {
                t.push_str(&format!("; accounts {}", accounts.join(", ")));
            }
            (Phase::Provisioning, t)
        }
        "grant_provision_failed" => (
            Phase::Provisioning,
            format!(
                "provisioning failed (attempt {}): {}",
                q(&d, "attempts"),
                q(&d, "error")
            ),
        ),
        "ssh_certificate_issued" => (
            Phase::Provisioning,
            format!("{who} got an SSH certificate for the grant"),
        ),
        "credentials_viewed" => (Phase::Credentials, format!("{who} viewed the credentials")),
        "grant_extended" => (
            Phase::Extension,
            format!(
                "grant extended by {}: ends {} instead of {}",
                secs(&d, "added_secs"),
                q(&d, "to"),
                q(&d, "from")
            ),
        ),
        "grant_shortened" => (
            Phase::Revoke,
            format!(
                "grant ends earlier, {} instead of {}: incident {} resolved",
                q(&d, "to"),
                q(&d, "from"),
                q(&d, "incident")
            ),
        ),
        "grant_revoke_requested" => (
            Phase::Revoke,
            format!("{who} revoked the grant of {}", q(&d, "holder")),
        ),
        "grant_revoked" | "grant_expired" => {
            let how = if r.action == "grant_revoked" {
                format!("revoked by {}", q(&d, "by"))
            } else {
                "expired".to_string()
            };
            (
                Phase::Revoke,
                format!(
                    "access of {} removed ({how}) after {} attempt(s)",
                    q(&d, "holder"),
                    q(&d, "attempts")
                ),
            )
        }
        "grant_revoke_failed" => (
            Phase::Revoke,
            format!(
                "removing access failed (attempt {}): {}",
                q(&d, "attempts"),
                q(&d, "error")
            ),
        ),
        "break_glass_offline_unlock" => (
            Phase::Unlock,
            format!(
                "{who} unlocked {} v{} OFFLINE on {} at {}: {}",
                r.subject,
                q(&d, "version"),
                q(&d, "device_name"),
                q(&d, "at"),
                quoted(&q(&d, "reason"))
            ),
        ),
        "break_glass_online_unlock"
            if text_of(&d, "source").as_deref() == Some("device_record") =>
        {
            (
                Phase::Unlock,
                format!(
                    "{who}'s device {} recorded its online unlock of {} v{} at {}: {}",
                    q(&d, "device"),
                    r.subject,
                    q(&d, "version"),
                    q(&d, "at"),
                    quoted(&q(&d, "reason"))
                ),
            )
        }
        "break_glass_online_unlock" => {
            let mut t = format!(
                "{who} unlocked {} v{} online: {}",
                r.subject,
                q(&d, "version"),
                quoted(&q(&d, "reason"))
            );
            if let Some(at) = text_of(&d, "rotates_at") {
                t.push_str(&format!(" (rotation due {at})"));
            }
            (Phase::Unlock, t)
        }
        "secret_rotated" => (
            Phase::Rotation,
            format!(
                "{} rotated v{} to v{} by {} ({})",
                r.subject,
                q(&d, "from_version"),
                q(&d, "to_version"),
                q(&d, "integration"),
                q(&d, "trigger")
            ),
        ),
        "secret_rotation_failed" if d.get("manual").and_then(Value::as_bool) == Some(true) => (
            Phase::Rotation,
            format!("{} must be rotated by hand: {}", r.subject, q(&d, "error")),
        ),
        "secret_rotation_failed" => (
            Phase::Rotation,
            format!(
                "rotating {} failed (attempt {}): {}",
                r.subject,
                q(&d, "attempts"),
                q(&d, "error")
            ),
        ),
        "secret_stored" => (
            Phase::Rotation,
            format!(
                "{who} stored {} v{} (replacing v{})",
                r.subject,
                q(&d, "version"),
                q(&d, "previous_version")
            ),
        ),
        "incident_opened" => (
            Phase::Incident,
            format!(
                "incident {} {} by {} (rule {}): {}; responders: {}",
                q(&d, "external_id"),
                if d.get("reopened").and_then(Value::as_bool) == Some(true) {
                    "reopened"
                } else {
                    "opened"
                },
                q(&d, "source"),
                q(&d, "rule"),
                quoted(&q(&d, "title")),
                list(&d, "responders").join(", ")
            ),
        ),
        "incident_resolved" => (
            Phase::Incident,
            format!(
                "incident {} resolved by {}; grants ending: {}",
                q(&d, "external_id"),
                q(&d, "source"),
                list(&d, "grants").join(", ")
            ),
        ),
        _ => return None,
    };
    Some(ReportLine {
        seq: r.seq,
        hash: r.hash.clone(),
        at: r.at.clone(),
        actor: r.actor.clone(),
        phase,
        action: r.action.clone(),
        subject: r.subject.clone(),
        channel,
        text,
        record: r.clone(),
    })
}

fn is_unlock(r: &AuditRecord) -> bool {
    matches!(
        r.action.as_str(),
        "break_glass_offline_unlock" | "break_glass_online_unlock"
    )
}

const REQUEST_ACTIONS: &[&str] = &[
    "request_created",
    "approval_recorded",
    "request_approved",
    "request_denied",
    "request_cancelled",
    "request_timed_out",
    "request_escalated",
    "request_reminded",
];

const GRANT_ACTIONS: &[&str] = &[
    "grant_activated",
    "grant_provision_failed",
    "ssh_certificate_issued",
    "credentials_viewed",
    "grant_extended",
    "grant_shortened",
    "grant_revoke_requested",
    "grant_revoked",
    "grant_expired",
    "grant_revoke_failed",
];

const ROTATION_ACTIONS: &[&str] = &["secret_rotated", "secret_rotation_failed", "secret_stored"];

/// Reads `records` (in order) and returns the lines of the report whose seeds
/// are `scope`, and the scope as found (requests and grants linked on the way).
///
/// The links always point back in time (a grant names its request, an extension
/// its grant, a request its incident), so one pass finds them all.
pub fn select<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    mut scope: Scope,
) -> (Vec<ReportLine>, Scope) {
    let mut lines = Vec::new();
    // Secrets unlocked in scope whose rotation the report follows, until done.
    let mut rotating: BTreeSet<String> = BTreeSet::new();
    for r in records {
        let d = details(r);
        let a = r.action.as_str();
        let mut take = false;
        if a == "incident_opened" || a == "incident_resolved" {
            if scope.incidents.contains(&r.subject) {
                take = true;
                if let Some(x) = text_of(&d, "external_id") {
                    scope.names.insert(x);
                }
                for g in list(&d, "grants") {
                    scope.grants.insert(g);
                }
            }
        } else if REQUEST_ACTIONS.contains(&a) {
            if a == "request_created" {
                let for_incident =
                    text_of(&d, "incident").is_some_and(|i| scope.incidents.contains(&i));
                let extends = text_of(&d, "kind").as_deref() == Some("extension")
                    && text_of(&d, "grant").is_some_and(|g| scope.grants.contains(&g));
                if for_incident || extends {
                    scope.requests.insert(r.subject.clone());
                }
            }
            take = scope.requests.contains(&r.subject);
        } else if GRANT_ACTIONS.contains(&a) {
            if a == "grant_activated"
                && text_of(&d, "request").is_some_and(|q| scope.requests.contains(&q))
            {
                scope.grants.insert(r.subject.clone());
            }
            if a == "grant_shortened"
                && text_of(&d, "incident").is_some_and(|i| scope.incidents.contains(&i))
            {
                scope.grants.insert(r.subject.clone());
            }
            take = scope.grants.contains(&r.subject);
        } else if is_unlock(r) {
            let reason = text_of(&d, "reason").unwrap_or_default();
            if scope.names.iter().any(|n| names(&reason, n)) {
                scope.unlocks.insert(r.seq);
            }
            if scope.unlocks.contains(&r.seq) {
                take = true;
                rotating.insert(r.subject.clone());
            }
        } else if ROTATION_ACTIONS.contains(&a) && rotating.contains(&r.subject) {
            take = true;
            if a != "secret_rotation_failed" {
                rotating.remove(&r.subject);
            }
        }
        if take {
            if let Some(l) = line_of(r) {
                lines.push(l);
            }
        }
    }
    (lines, scope)
}

/// Plain statements of what the report cannot show.
pub fn notes_for(kind: ReportKind, lines: &[ReportLine]) -> Vec<String> {
    let mut notes = Vec::new();
    let has = |p: Phase| lines.iter().any(|l| l.phase == p);
    if kind != ReportKind::Unlock && !has(Phase::Credentials) {
        notes.push("No credential views are recorded for these grants (the broker audits every time a holder is shown a grant's credentials).".to_string());
    }
    let unknown = lines
        .iter()
        .filter(|l| {
            matches!(l.action.as_str(), "approval_recorded" | "request_denied")
                && l.channel.is_none()
        })
        .count();
    if unknown > 0 {
        notes.push(format!("{unknown} decision(s) do not record where the approver acted (made by a client that does not send X-Firedoor-Client)."));
    }
    if has(Phase::Unlock) && !has(Phase::Rotation) {
        notes.push("No rotation of the unlocked secret is recorded yet.".to_string());
    }
    notes
}

// ------------------------------------------------------------------ rendering

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// Markdown: one table row per line. Everything a person wrote is escaped, so it
/// cannot break the table or add links or markup.
pub fn to_markdown(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Firedoor report: {} {}\n\n",
        r.kind.as_str(),
        md(&r.id)
    ));
    out.push_str(&format!(
        "Generated {} by {} from the audit log up to record {} (head hash `{}`). Verify with `firedoor-server report verify` on the JSON form.\n\n",
        md(&r.generated_at),
        md(&r.generated_by),
        r.head.seq,
        md(&r.head.hash)
    ));
    let join = |s: &BTreeSet<String>| {
        s.iter()
            .map(|x| format!("`{}`", md(x)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !r.scope.incidents.is_empty() {
        out.push_str(&format!("- Incidents: {}\n", join(&r.scope.incidents)));
    }
    if !r.scope.requests.is_empty() {
        out.push_str(&format!("- Requests: {}\n", join(&r.scope.requests)));
    }
    if !r.scope.grants.is_empty() {
        out.push_str(&format!("- Grants: {}\n", join(&r.scope.grants)));
    }
    if !r.scope.unlocks.is_empty() {
        let u: Vec<String> = r.scope.unlocks.iter().map(|s| format!("#{s}")).collect();
        out.push_str(&format!(
            "- Break-glass unlocks (audit records): {}\n",
            u.join(", ")
        ));
    }
    out.push_str("\n## Timeline\n\n");
    if r.lines.is_empty() {
        out.push_str("No audit record matches.\n");
    } else {
        out.push_str("| # | Time (UTC) | Who | Channel | Phase | What | Audit record | Hash |\n");
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for (i, l) in r.lines.iter().enumerate() {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | #{} | `{}` |\n",
                i + 1,
                md(&l.at),
                md(&l.actor),
                md(l.channel.as_deref().unwrap_or("")),
                l.phase.as_str(),
                md(&l.text),
                l.seq,
                md(&l.hash)
            ));
        }
    }
    if !r.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for n in &r.notes {
            out.push_str(&format!("- {}\n", md(n)));
        }
    }
    out
}

/// Escapes text for a Markdown table cell.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '!' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for HTML (element content and quoted attributes).
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str =
    "body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1b1b;background:#fff}\
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}\
th{background:#f2f2f2}td.h{font-family:monospace;font-size:12px;word-break:break-all}\
.phase{font-size:12px;text-transform:uppercase;color:#555}.unlock td{background:#fff1f0}\
.notes li{margin:.2rem 0}code{font-family:monospace}";

/// A self-contained page: inline CSS, no script, no external resource (its
/// Content-Security-Policy forbids any), everything escaped.
pub fn to_html(r: &Report) -> String {
    let e = html_escape;
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">");
    out.push_str(&format!(
        "<title>Firedoor report: {} {}</title><style>{CSS}</style></head><body>\n",
        r.kind.as_str(),
        e(&r.id)
    ));
    out.push_str(&format!(
        "<h1>Firedoor report: {} <code>{}</code></h1>\n",
        r.kind.as_str(),
        e(&r.id)
    ));
    out.push_str(&format!(
        "<p>Generated {} by {} from the audit log up to record {} (head hash <code>{}</code>).</p>\n",
        e(&r.generated_at),
        e(&r.generated_by),
        r.head.seq,
        e(&r.head.hash)
    ));
    out.push_str("<table><thead><tr><th>#</th><th>Time (UTC)</th><th>Who</th><th>Channel</th><th>Phase</th><th>What</th><th>Audit record</th><th>Hash</th></tr></thead><tbody>\n");
    for (i, l) in r.lines.iter().enumerate() {
        let class = if l.phase == Phase::Unlock {
            " class=\"unlock\""
        } else {
            ""
        };
        out.push_str(&format!(
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"phase\">{}</td><td>{}</td><td>#{}</td><td class=\"h\" title=\"{}\">{}\u{2026}</td></tr>\n",
            i + 1,
            e(&l.at),
            e(&l.actor),
            e(l.channel.as_deref().unwrap_or("")),
            l.phase.as_str(),
            e(&l.text),
            l.seq,
            e(&l.hash),
            e(short(&l.hash))
        ));
    }
    out.push_str("</tbody></table>\n");
    if r.lines.is_empty() {
        out.push_str("<p>No audit record matches.</p>\n");
    }
    if !r.notes.is_empty() {
        out.push_str("<h2>Notes</h2><ul class=\"notes\">");
        for n in &r.notes {
            out.push_str(&format!("<li>{}</li>", e(n)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

// --------------------------------------------------------------- verification

/// Why a report does not match the audit log. The message names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReportProblem(pub String);

fn problem(msg: String) -> ReportProblem {
    ReportProblem(msg)
}

/// Checks the report on its own: its format, each record's hash, and that each
/// line says what its record says.
pub fn check_lines(report: &Report) -> Result<(), ReportProblem> {
    if report.format != REPORT_FORMAT {
        return Err(problem(format!(
            "not a Firedoor report (format {:?}, expected {REPORT_FORMAT:?})",
            report.format
        )));
    }
    let mut last = 0;
    for (i, l) in report.lines.iter().enumerate() {
        let n = i + 1;
        let r = &l.record;
        if r.seq != l.seq {
            return Err(problem(format!(
                "line {n}: it cites audit record {} but carries record {}",
                l.seq, r.seq
            )));
        }
        if l.seq <= last {
            return Err(problem(format!(
                "line {n} (audit record {}): lines are out of order",
                l.seq
            )));
        }
        last = l.seq;
        let expected = r.expected_hash();
        if expected != r.hash || l.hash != r.hash {
            return Err(problem(format!(
                "line {n} (audit record {}): the record in the report does not hash to {} (its time, actor, subject or details were changed in the report)",
                l.seq, l.hash
            )));
        }
        let Some(derived) = line_of(r) else {
            return Err(problem(format!(
                "line {n} (audit record {}): a {} record is not a report line",
                l.seq, r.action
            )));
        };
        let fields: [(&str, &str, &str); 6] = [
            ("time", &l.at, &derived.at),
            ("actor", &l.actor, &derived.actor),
            ("action", &l.action, &derived.action),
            ("subject", &l.subject, &derived.subject),
            ("text", &l.text, &derived.text),
            ("phase", l.phase.as_str(), derived.phase.as_str()),
        ];
        for (name, said, is) in fields {
            if said != is {
                return Err(problem(format!(
                    "line {n} (audit record {}): its {name} was changed: the report says {said:?}, the audit record says {is:?}",
                    l.seq
                )));
            }
        }
        if l.channel != derived.channel {
            return Err(problem(format!(
                "line {n} (audit record {}): its channel was changed: the report says {:?}, the audit record says {:?}",
                l.seq, l.channel, derived.channel
            )));
        }
    }
    Ok(())
}

/// What a successful check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportVerified {
    pub lines: usize,
    /// The log's records, all verified.
    pub log_records: i64,
    pub head_seq: i64,
}

/// Checks `report` against the whole audit log `log` (in order, from record 1):
/// the lines on their own ([`check_lines`]); the log's chain with the broker key;
/// each cited record is the log's record at that seq; the report's head is in the
/// log; and `rebuilt` — the lines the same report gets from the log up to its head
/// — cite exactly the same records (nothing left out, nothing added).
pub fn check_against_log(
    report: &Report,
    log: &[AuditRecord],
    key: &VerifyingKey,
    rebuilt: &[ReportLine],
) -> Result<ReportVerified, ReportProblem> {
    check_lines(report)?;
    let (n, _) = verify_signed_chain(log, key).map_err(|e| {
        problem(format!(
            "the audit log is broken at record {}: {}",
            e.seq, e.problem
        ))
    })?;
    let at = |seq: i64| -> Option<&AuditRecord> {
        usize::try_from(seq - 1)
            .ok()
            .and_then(|i| log.get(i))
            .filter(|r| r.seq == seq)
    };
    for (i, l) in report.lines.iter().enumerate() {
        let n = i + 1;
        let Some(r) = at(l.seq) else {
            return Err(problem(format!(
                "line {n}: audit record {} is not in the audit log",
                l.seq
            )));
        };
        if r.hash != l.hash {
            return Err(problem(format!(
                "line {n}: audit record {} has hash {} in the audit log, not {} as the report says",
                l.seq, r.hash, l.hash
            )));
        }
        if *r != l.record {
            return Err(problem(format!(
                "line {n}: audit record {} differs from the log's (its signature)",
                l.seq
            )));
        }
    }
    let h = &report.head;
    match at(h.seq) {
        Some(r) if r.hash == h.hash => {}
        _ => {
            return Err(problem(format!(
                "the report's head (record {}, hash {}) is not in the audit log",
                h.seq, h.hash
            )))
        }
    }
    let said: BTreeSet<i64> = report.lines.iter().map(|l| l.seq).collect();
    let is: BTreeSet<i64> = rebuilt.iter().map(|l| l.seq).collect();
    if let Some(missing) = is.difference(&said).next() {
        let action = at(*missing).map(|r| r.action.as_str()).unwrap_or("?");
        return Err(problem(format!(
            "the report leaves out audit record {missing} ({action}) that belongs to this {} report",
            report.kind.as_str()
        )));
    }
    if let Some((i, l)) = report
        .lines
        .iter()
        .enumerate()
        .find(|(_, l)| !is.contains(&l.seq))
    {
        return Err(problem(format!(
            "line {} (audit record {}): this record does not belong to this {} report",
            i + 1,
            l.seq,
            report.kind.as_str()
        )));
    }
    Ok(ReportVerified {
        lines: report.lines.len(),
        log_records: n,
        head_seq: h.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{sign_head, AuditEvent, GENESIS_HASH};
    use ed25519_dalek::SigningKey;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    struct Log {
        records: Vec<AuditRecord>,
    }

    impl Log {
        fn push(&mut self, actor: &str, subject: &str, e: AuditEvent) -> i64 {
            let seq = self.records.len() as i64 + 1;
            let prev = self
                .records
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| GENESIS_HASH.into());
            let mut r = AuditRecord {
                seq,
                at: format!("2026-11-26T10:{:02}:00.000000Z", seq),
                actor: actor.into(),
                action: e.action().as_str().into(),
                subject: subject.into(),
                details: serde_json::to_string(&e.details()).unwrap(),
                prev_hash: prev,
                hash: String::new(),
                signature: None,
            };
            r.hash = r.expected_hash();
            r.signature = Some(sign_head(&key(), seq, &r.hash));
            self.records.push(r);
            seq
        }
    }

    fn log() -> Log {
        let mut l = Log { records: vec![] };
        l.push(
            "ann",
            "req_1",
            AuditEvent::RequestCreated {
                bundle: "db".into(),
                flow: "two".into(),
                duration_secs: 3600,
                justification: Some("<script>alert(1)</script> | *x*".into()),
                ticket: None,
                break_glass: false,
                incident: None,
                on_behalf_of: None,
            },
        );
        l.push(
            "bob",
            "req_1",
            AuditEvent::ApprovalRecorded {
                comment: None,
                channel: Some("notification".into()),
            },
        );
        l.push(
            "carol",
            "req_other",
            AuditEvent::ApprovalRecorded {
                comment: None,
                channel: None,
            },
        );
        l
    }

    fn report(l: &Log) -> Report {
        let scope = Scope {
            requests: ["req_1".to_string()].into(),
            ..Scope::default()
        };
        let (lines, scope) = select(&l.records, scope);
        let last = l.records.last().unwrap();
        Report {
            format: REPORT_FORMAT.into(),
            kind: ReportKind::Grant,
            id: "grt_1".into(),
            generated_at: "now".into(),
            generated_by: "test".into(),
            head: ReportHead {
                seq: last.seq,
                hash: last.hash.clone(),
                signature: last.signature.clone(),
            },
            notes: notes_for(ReportKind::Grant, &lines),
            scope,
            lines,
        }
    }

    #[test]
    fn names_matches_whole_tokens_only() {
        assert!(names("fixing INC-12 now", "inc-12"));
        assert!(names("INC-12", "INC-12"));
        assert!(!names("INC-123", "INC-12"));
        assert!(!names("xINC-12", "INC-12"));
        assert!(!names("anything", ""));
    }

    #[test]
    fn lines_follow_the_scope_and_verify() {
        let l = log();
        let r = report(&l);
        assert_eq!(
            r.lines.iter().map(|x| x.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(r.lines[1].channel.as_deref(), Some("notification"));
        let vk = key().verifying_key();
        check_against_log(&r, &l.records, &vk, &r.lines).unwrap();

        let mut t = r.clone();
        t.lines[1].actor = "mallory".into();
        let e = check_against_log(&t, &l.records, &vk, &r.lines).unwrap_err();
        assert!(e.0.starts_with("line 2 (audit record 2): its actor"), "{e}");

        let mut t = r.clone();
        t.lines[0].record.at = "2026-11-26T09:00:00.000000Z".into();
        t.lines[0].at = t.lines[0].record.at.clone();
        let e = check_lines(&t).unwrap_err();
        assert!(
            e.0.starts_with("line 1 (audit record 1): the record"),
            "{e}"
        );

        let mut t = r.clone();
        t.lines.remove(1);
        let e = check_against_log(&t, &l.records, &vk, &r.lines).unwrap_err();
        assert!(e.0.contains("leaves out audit record 2"), "{e}");
    }

    #[test]
    fn renderings_escape_what_people_wrote() {
        let r = report(&log());
        let html = to_html(&r);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        let md = to_markdown(&r);
        assert!(md.contains("\\<script\\>"), "{md}");
        assert!(md.contains("\\| \\*x\\*"), "{md}");
        // Each table row has exactly the 9 unescaped pipes of 8 cells.
        for row in md
            .lines()
            .filter(|l| l.starts_with("| 1 ") || l.starts_with("| 2 "))
        {
            let bare = row.replace("\\|", "");
            assert_eq!(bare.matches('|').count(), 9, "{row}");
        }
    }
}
