//! Incidents open access: the sources that page (Alertmanager, PagerDuty), the rules
//! that map an incident to bundles and responders, and reading the providers'
//! webhook payloads into [`Signal`]s. No I/O: the broker checks a delivery's
//! authentication, then hands the body here.

use crate::policy::Audience;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Prometheus Alertmanager's webhook receiver (payload version 4), with a
    /// bearer token.
    Alertmanager,
    /// PagerDuty v3 webhook subscriptions, signed with HMAC-SHA256
    /// (`X-PagerDuty-Signature`).
    Pagerduty,
    /// Opsgenie's webhook integration, with the shared secret in a custom header
    /// (`X-Firedoor-Token`) or as a bearer token.
    Opsgenie,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Alertmanager => "alertmanager",
            SourceKind::Pagerduty => "pagerduty",
            SourceKind::Opsgenie => "opsgenie",
        }
    }
}

/// A source as the policy declares it: `secret_env` names the environment variable
/// holding its bearer token (Alertmanager) or signing secrets (PagerDuty; several,
/// comma-separated, while a secret is rotated). The secret never lives in the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSource {
    pub name: String,
    pub kind: SourceKind,
    pub secret_env: String,
}

/// A rule: an incident from `source` whose labels include every pair of `matches`
/// opens `bundles` to `responders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRule {
    pub name: String,
    pub source: String,
    pub matches: BTreeMap<String, String>,
    pub bundles: Vec<String>,
    pub responders: Audience,
}

impl IncidentRule {
    pub fn matches(&self, s: &Signal) -> bool {
        self.source == s.source
            && self
                .matches
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == v))
    }
}

/// May `who` request `bundle` for incident `id` (matched by `rule`, `open` or not)?
/// Only while it is open, only what its rule opens, only its responders (as they are
/// now: on call counts).
pub fn check_request(
    id: &str,
    open: bool,
    rule: Option<&IncidentRule>,
    bundle: &str,
    who: &crate::policy::Principal,
) -> Result<(), crate::RuleError> {
    use crate::{ErrorCode, RuleError};
    if !open {
        return Err(RuleError::new(
            ErrorCode::Conflict,
            format!("incident {id} is resolved: it opens nothing any more"),
        ));
    }
    let Some(rule) = rule else {
        return Err(RuleError::new(
            ErrorCode::Conflict,
            format!("the policy no longer has the rule that opened incident {id}"),
        ));
    };
    if !rule.bundles.iter().any(|b| b == bundle) {
        return Err(RuleError::new(
            ErrorCode::InvalidRequest,
            format!("incident {id} does not open bundle '{bundle}'"),
        ));
    }
    if !rule.responders.contains(who) {
        return Err(RuleError::new(
            ErrorCode::NotEligible,
            format!("{} is not a responder of incident {id}", who.name),
        ));
    }
    Ok(())
}

/// When a grant made for an incident resolved at `now` ends: `grace` after, if that
/// is earlier than its current end `expires_at` (`None`: it keeps its end).
pub fn end_after_resolution(
    expires_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    grace_secs: i64,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let ends = now + chrono::Duration::seconds(grace_secs);
    (ends < expires_at).then_some(ends)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalStatus {
    Triggered,
    Resolved,
}

/// One incident's news, read from a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// The policy's name of the source it came from.
    pub source: String,
    /// The provider's id of the incident (Alertmanager: the alert's fingerprint;
    /// PagerDuty: the incident id).
    pub external_id: String,
    pub status: SignalStatus,
    /// What people see: "payments-api down", "#42 Checkout errors".
    pub title: String,
    /// What rules match on (Alertmanager: the alert's labels; PagerDuty: `service`
    /// = the service id, `service_name`, `urgency`).
    pub labels: BTreeMap<String, String>,
    /// A link to the incident at the provider, if it gave one.
    pub url: Option<String>,
}

/// A delivery that cannot be read; the message says what is wrong (no secret, no
/// excerpt of the body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// Longest title kept (characters).
pub const MAX_TITLE: usize = 200;
/// Most alerts or events read from one delivery.
pub const MAX_SIGNALS: usize = 200;

fn title(t: &str) -> String {
    let clean: String = t
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() > MAX_TITLE {
        clean.chars().take(MAX_TITLE - 1).collect::<String>() + "…"
    } else {
        clean.to_string()
    }
}

fn bounded(v: &str, what: &str) -> Result<String, PayloadError> {
    if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
        return Err(PayloadError(format!(
            "{what} must be 1-200 printable characters"
        )));
    }
    Ok(v.to_string())
}

#[derive(Deserialize)]
struct AmPayload {
    version: String,
    alerts: Vec<AmAlert>,
    #[serde(default, rename = "externalURL")]
    external_url: Option<String>,
}

#[derive(Deserialize)]
struct AmAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    fingerprint: String,
}

/// Reads an Alertmanager webhook (payload version 4): one signal per alert.
pub fn parse_alertmanager(source: &str, body: &[u8]) -> Result<Vec<Signal>, PayloadError> {
    let p: AmPayload = serde_json::from_slice(body)
        .map_err(|e| PayloadError(format!("not an Alertmanager webhook payload: {e}")))?;
    if p.version != "4" {
        return Err(PayloadError(format!(
            "Alertmanager payload version '{}' is not supported (4 is)",
            p.version.chars().take(10).collect::<String>()
        )));
    }
    if p.alerts.len() > MAX_SIGNALS {
        return Err(PayloadError(format!(
            "at most {MAX_SIGNALS} alerts per delivery"
        )));
    }
    p.alerts
        .into_iter()
        .map(|a| {
            let status = match a.status.as_str() {
                "firing" => SignalStatus::Triggered,
                "resolved" => SignalStatus::Resolved,
                _ => {
                    return Err(PayloadError(
                        "alert status must be firing or resolved".into(),
                    ))
                }
            };
            let name = a.labels.get("alertname").cloned().unwrap_or_default();
            let summary = a
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_else(|| name.clone());
            Ok(Signal {
                source: source.to_string(),
                external_id: bounded(&a.fingerprint, "an alert's fingerprint")?,
                status,
                title: title(&summary),
                labels: a.labels,
                url: p.external_url.clone(),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct PdPayload {
    event: PdEvent,
}

#[derive(Deserialize)]
struct PdEvent {
    id: String,
    event_type: String,
    #[serde(default)]
    resource_type: String,
    occurred_at: chrono::DateTime<chrono::Utc>,
    data: serde_json::Value,
}

/// A PagerDuty v3 delivery: its event id (the de-duplication key), when it
/// happened, and the signal (none for event types that do not open or close an
/// incident, e.g. `incident.acknowledged`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerdutyEvent {
    pub id: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub event_type: String,
    pub signal: Option<Signal>,
}

/// Reads a PagerDuty v3 webhook (the signature is checked before, on the raw body).
pub fn parse_pagerduty(source: &str, body: &[u8]) -> Result<PagerdutyEvent, PayloadError> {
    let p: PdPayload = serde_json::from_slice(body)
        .map_err(|e| PayloadError(format!("not a PagerDuty v3 webhook payload: {e}")))?;
    let e = p.event;
    let id = bounded(&e.id, "event.id")?;
    let status = match e.event_type.as_str() {
        "incident.triggered" | "incident.reopened" => Some(SignalStatus::Triggered),
        "incident.resolved" => Some(SignalStatus::Resolved),
        _ => None,
    };
    let signal = match status {
        Some(status) if e.resource_type == "incident" => {
            let d = &e.data;
            let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
            let incident_id =
                s(&d["id"]).ok_or_else(|| PayloadError("event.data.id is missing".into()))?;
            let mut labels = BTreeMap::new();
            if let Some(v) = s(&d["service"]["id"]) {
                labels.insert("service".to_string(), v);
            }
            if let Some(v) = s(&d["service"]["summary"]) {
                labels.insert("service_name".to_string(), v);
            }
            if let Some(v) = s(&d["urgency"]) {
                labels.insert("urgency".to_string(), v);
            }
            let t = s(&d["title"]).unwrap_or_default();
            let t = match d["number"].as_i64() {
                Some(n) => format!("#{n} {t}"),
                None => t,
            };
            Some(Signal {
                source: source.to_string(),
                external_id: bounded(&incident_id, "event.data.id")?,
                status,
                title: title(&t),
                labels,
                url: s(&d["html_url"]),
            })
        }
        _ => None,
    };
    Ok(PagerdutyEvent {
        id,
        occurred_at: e.occurred_at,
        event_type: e.event_type.chars().take(64).collect(),
        signal,
    })
}

#[derive(Deserialize)]
struct OgPayload {
    action: String,
    alert: OgAlert,
}

#[derive(Deserialize)]
struct OgAlert {
    #[serde(rename = "alertId")]
    alert_id: String,
    #[serde(default)]
    message: String,
    #[serde(default, rename = "tinyId")]
    tiny_id: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    entity: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    details: BTreeMap<String, String>,
}

/// Reads an Opsgenie webhook: `Create` triggers, `Close` resolves, other actions
/// (acknowledge, notes, …) are no signal. Labels: the alert's details, its tags
/// (`key:value`, or `tag` = `true`), `entity` and `priority`.
pub fn parse_opsgenie(source: &str, body: &[u8]) -> Result<Option<Signal>, PayloadError> {
    let p: OgPayload = serde_json::from_slice(body)
        .map_err(|e| PayloadError(format!("not an Opsgenie webhook payload: {e}")))?;
    let status = match p.action.as_str() {
        "Create" => SignalStatus::Triggered,
        "Close" => SignalStatus::Resolved,
        _ => return Ok(None),
    };
    let a = p.alert;
    let mut labels = a.details;
    for t in &a.tags {
        match t.split_once(':') {
            Some((k, v)) => labels.insert(k.trim().to_string(), v.trim().to_string()),
            None => labels.insert(t.trim().to_string(), "true".to_string()),
        };
    }
    if let Some(e) = a.entity.filter(|e| !e.is_empty()) {
        labels.insert("entity".into(), e);
    }
    if let Some(pr) = a.priority {
        labels.insert("priority".into(), pr);
    }
    let t = match a.tiny_id {
        Some(n) => format!("#{n} {}", a.message),
        None => a.message,
    };
    Ok(Some(Signal {
        source: source.to_string(),
        external_id: bounded(&a.alert_id, "alert.alertId")?,
        status,
        title: title(&t),
        labels,
        url: None,
    }))
}

/// The `v1=` signatures of an `X-PagerDuty-Signature` header (hex, lowercase).
pub fn pagerduty_signatures(header: &str) -> Vec<String> {
    header
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("v1="))
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// From Alertmanager's documentation (webhook_config), version 4.
    const AM: &str = r#"{
      "version": "4",
      "groupKey": "{}:{alertname=\"PaymentsDown\"}",
      "truncatedAlerts": 0,
      "status": "firing",
      "receiver": "firedoor",
      "groupLabels": {"alertname": "PaymentsDown"},
      "commonLabels": {"alertname": "PaymentsDown", "service": "payments-api"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager.example:9093",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "PaymentsDown", "service": "payments-api", "severity": "page"},
          "annotations": {"summary": "payments-api down"},
          "startsAt": "2030-03-18T08:00:00Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus.example/graph",
          "fingerprint": "c3a5b0e1d2f4a6b8"
        }
      ]
    }"#;

    /// From PagerDuty's v3 webhook documentation (an incident.triggered event).
    const PD: &str = r#"{
      "event": {
        "id": "01BZGP0FNKX4IP1XY9UOHR1ST0",
        "event_type": "incident.triggered",
        "resource_type": "incident",
        "occurred_at": "2030-03-18T08:00:00.000Z",
        "agent": null,
        "client": null,
        "data": {
          "id": "PGR0VU2",
          "type": "incident",
          "self": "https://api.pagerduty.com/incidents/PGR0VU2",
          "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
          "number": 2,
          "status": "triggered",
          "incident_key": "d3640fbd41094207a1c11e58e46b1662",
          "created_at": "2030-03-18T08:00:00Z",
          "title": "Checkout errors",
          "service": {
            "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
            "id": "PF9KMXH",
            "self": "https://api.pagerduty.com/services/PF9KMXH",
            "summary": "Payments API",
            "type": "service_reference"
          },
          "assignees": [{"html_url": "https://acme.pagerduty.com/users/PTUXL6G", "id": "PTUXL6G", "self": "https://api.pagerduty.com/users/PTUXL6G", "summary": "User 123", "type": "user_reference"}],
          "escalation_policy": {"html_url": "https://acme.pagerduty.com/escalation_policies/PUS0KTE", "id": "PUS0KTE", "self": "https://api.pagerduty.com/escalation_policies/PUS0KTE", "summary": "Default", "type": "escalation_policy_reference"},
          "teams": [],
          "priority": null,
          "urgency": "high",
          "conference_bridge": null,
          "resolve_reason": null
        }
      }
    }"#;

    #[test]
    fn reads_an_alertmanager_delivery() {
        let s = parse_alertmanager("monitoring", AM.as_bytes()).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].external_id, "c3a5b0e1d2f4a6b8");
        assert_eq!(s[0].status, SignalStatus::Triggered);
        assert_eq!(s[0].title, "payments-api down");
        assert_eq!(s[0].labels["service"], "payments-api");
        let resolved = AM.replace(
            "\"status\": \"firing\",\n          \"labels\"",
            "\"status\": \"resolved\",\n          \"labels\"",
        );
        assert_ne!(resolved, AM);
        let s = parse_alertmanager("monitoring", resolved.as_bytes()).unwrap();
        assert_eq!(s[0].status, SignalStatus::Resolved);
        for bad in [
            AM.replace("\"version\": \"4\"", "\"version\": \"3\""),
            "{}".to_string(),
            "not json".to_string(),
        ] {
            assert!(parse_alertmanager("m", bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_a_pagerduty_delivery() {
        let e = parse_pagerduty("pd", PD.as_bytes()).unwrap();
        assert_eq!(e.id, "01BZGP0FNKX4IP1XY9UOHR1ST0");
        let s = e.signal.unwrap();
        assert_eq!(s.external_id, "PGR0VU2");
        assert_eq!(s.title, "#2 Checkout errors");
        assert_eq!(s.labels["service"], "PF9KMXH");
        assert_eq!(s.labels["service_name"], "Payments API");
        assert_eq!(
            s.url.as_deref(),
            Some("https://acme.pagerduty.com/incidents/PGR0VU2")
        );
        let ack = PD.replace("incident.triggered", "incident.acknowledged");
        assert_eq!(parse_pagerduty("pd", ack.as_bytes()).unwrap().signal, None);
        let resolved = PD.replace("incident.triggered", "incident.resolved");
        assert_eq!(
            parse_pagerduty("pd", resolved.as_bytes())
                .unwrap()
                .signal
                .unwrap()
                .status,
            SignalStatus::Resolved
        );
    }

    /// From Opsgenie's documentation (alert action data of the webhook integration).
    const OG: &str = r#"{
      "source": {"name": "web", "type": "API"},
      "alert": {
        "updatedAt": 1420452193166002000,
        "tags": ["service:payments-api", "page"],
        "teams": ["team1"],
        "recipients": ["recipient1"],
        "message": "payments-api down",
        "username": "fili@ifountain.com",
        "alertId": "052652ac-5d1c-464a-812a-7dd18bbfba8c",
        "source": "fili@ifountain.com",
        "alias": "aliastest",
        "tinyId": "23",
        "createdAt": 1420452191104,
        "userId": "daed1180-0ce8-438b-8f8e-57e1a5920a2d",
        "entity": ""
      },
      "action": "Create",
      "integrationId": "37c8f316-17c6-49d7-899b-9c7e540c048d",
      "integrationName": "Integration1"
    }"#;

    #[test]
    fn reads_an_opsgenie_delivery() {
        let s = parse_opsgenie("og", OG.as_bytes()).unwrap().unwrap();
        assert_eq!(s.external_id, "052652ac-5d1c-464a-812a-7dd18bbfba8c");
        assert_eq!(s.title, "#23 payments-api down");
        assert_eq!(s.labels["service"], "payments-api");
        assert_eq!(s.labels["page"], "true");
        assert!(
            !s.labels.contains_key("entity"),
            "an empty entity is no label"
        );
        let close = OG.replace("\"action\": \"Create\"", "\"action\": \"Close\"");
        assert_eq!(
            parse_opsgenie("og", close.as_bytes())
                .unwrap()
                .unwrap()
                .status,
            SignalStatus::Resolved
        );
        let ack = OG.replace("\"action\": \"Create\"", "\"action\": \"Acknowledge\"");
        assert_eq!(parse_opsgenie("og", ack.as_bytes()).unwrap(), None);
        assert!(parse_opsgenie("og", b"{}").is_err());
    }

    #[test]
    fn a_resolved_incident_only_ever_brings_a_grant_s_end_forward() {
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let now = t("2030-03-18T08:00:00Z");
        assert_eq!(
            end_after_resolution(t("2030-03-18T10:00:00Z"), now, 600),
            Some(t("2030-03-18T08:10:00Z"))
        );
        assert_eq!(
            end_after_resolution(t("2030-03-18T08:05:00Z"), now, 600),
            None
        );
        assert_eq!(
            end_after_resolution(t("2030-03-18T08:10:00Z"), now, 600),
            None
        );
    }

    #[test]
    fn rules_match_every_label_they_name() {
        let s = &parse_alertmanager("monitoring", AM.as_bytes()).unwrap()[0];
        let mut rule = IncidentRule {
            name: "payments".into(),
            source: "monitoring".into(),
            matches: [("service".to_string(), "payments-api".to_string())].into(),
            bundles: vec!["kit".into()],
            responders: Audience::default(),
        };
        assert!(rule.matches(s));
        rule.matches.insert("severity".into(), "ticket".into());
        assert!(!rule.matches(s));
        rule.matches.clear();
        rule.source = "other".into();
        assert!(!rule.matches(s));
    }

    #[test]
    fn signature_headers_list_every_v1_signature() {
        assert_eq!(
            pagerduty_signatures("v1=ABC, v1=def,v0=zzz"),
            vec!["abc".to_string(), "def".to_string()]
        );
        assert!(pagerduty_signatures("").is_empty());
    }
}
