//! Break-glass uses: every unlock (offline record uploaded, or online release) is
//! a *use* that stays **open** until it is classified as a `drill`, an `incident`
//! (with the incident's id) or `other` (with a note). The rules for what a
//! classification must say and who may give or change one live here; the broker
//! stores and audits them.
//!
//! Who may classify: the person who unlocked, admins, and the secret's `alert`
//! audience (the security people who hear of every unlock). Once a use is
//! classified, only admins and the alert audience may change it (the unlocker may
//! not rewrite their own classification), and every change is audited with the
//! classification it replaced.
//!
//! Incident ids: a broker incident id (`inc_…`) must exist in the broker; any other
//! id is matched against the broker's incidents' provider ids (`external_id`, e.g.
//! PagerDuty's `Q1ABC…` or `INC-123`), and if none matches it is kept as an
//! external reference (the broker cannot see when that incident is resolved, so a
//! secret rotated `after_incident` then rotates at its `max_delay`).

use crate::policy::{Principal, SecretPolicy};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest incident reference, in characters.
pub const MAX_INCIDENT_REF_CHARS: usize = 100;
/// Longest classification note, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// What a use was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum UseKind {
    /// A rehearsal: nothing was wrong.
    Drill,
    /// A real emergency, with its incident id.
    Incident,
    /// Anything else (including misuse), with a note saying what.
    Other,
}

impl UseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UseKind::Drill => "drill",
            UseKind::Incident => "incident",
            UseKind::Other => "other",
        }
    }
}

/// `POST /api/v1/unlocks/{id}/classify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyUse {
    pub kind: UseKind,
    /// Required with `incident`; refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Required with `other`; optional otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A classification that passed [`ClassifyUse::check`]: trimmed, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedClassification {
    pub kind: UseKind,
    pub incident: Option<String>,
    pub note: Option<String>,
}

/// Checks an incident reference: 1 to [`MAX_INCIDENT_REF_CHARS`] characters of
/// letters, digits and `- _ . : # /`. Returns it trimmed.
pub fn check_incident_ref(text: &str) -> Result<String, String> {
    let t = text.trim();
    let n = t.chars().count();
    if n == 0 || n > MAX_INCIDENT_REF_CHARS {
        return Err(format!(
            "incident: {n} characters; an incident id is 1 to {MAX_INCIDENT_REF_CHARS}"
        ));
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:#/".contains(c))
    {
        return Err(
            "incident: use the incident's id (letters, digits and - _ . : # /), e.g. INC-123 or inc_…"
                .into(),
        );
    }
    Ok(t.to_string())
}

impl ClassifyUse {
    pub fn check(&self) -> Result<CheckedClassification, String> {
        let note = match &self.note {
            Some(n) => {
                let t = n.trim();
                let c = t.chars().count();
                if c > MAX_NOTE_CHARS {
                    return Err(format!("note: {c} characters; at most {MAX_NOTE_CHARS}"));
                }
                if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    return Err("note: control characters are not allowed".into());
                }
                (!t.is_empty()).then(|| t.to_string())
            }
            None => None,
        };
        let incident = match (self.kind, &self.incident) {
            (UseKind::Incident, Some(i)) => Some(check_incident_ref(i)?),
            (UseKind::Incident, None) => {
                return Err(
                    "kind incident needs the incident's id: send \"incident\": \"INC-123\"".into(),
                )
            }
            (_, Some(_)) => {
                return Err(format!(
                    "incident: only kind incident names an incident (this is {})",
                    self.kind.as_str()
                ))
            }
            (_, None) => None,
        };
        if self.kind == UseKind::Other && note.is_none() {
            return Err("kind other needs a note saying what the use was".into());
        }
        Ok(CheckedClassification {
            kind: self.kind,
            incident,
            note,
        })
    }
}

/// Security for a secret: admins and its `alert` audience.
pub fn is_security_for(who: &Principal, sp: Option<&SecretPolicy>) -> bool {
    who.admin || sp.is_some_and(|s| s.alert.contains(who))
}

/// May `who` see a use of `sp` by `unlocker`? The unlocker and security.
pub fn may_see_use(who: &Principal, unlocker: &str, sp: Option<&SecretPolicy>) -> bool {
    who.name == unlocker || is_security_for(who, sp)
}

/// May `who` classify a use by `unlocker`, `classified` already or not? An open
/// use: the unlocker and security; a classified one: security only.
pub fn may_classify_use(
    who: &Principal,
    unlocker: &str,
    sp: Option<&SecretPolicy>,
    classified: bool,
) -> Result<(), &'static str> {
    if is_security_for(who, sp) {
        return Ok(());
    }
    if who.name == unlocker {
        if classified {
            return Err("this use is classified already; only admins or the secret's security audience may change a classification");
        }
        return Ok(());
    }
    Err("only the person who unlocked, admins or the secret's security audience may classify this use")
}

/// One break-glass use, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UseView {
    pub id: String,
    pub secret: String,
    pub version: i64,
    /// Who unlocked.
    pub user: String,
    /// `offline` or `online`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub device_id: Option<String>,
    pub reason: String,
    pub unlocked_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Open: not classified yet.
    pub open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub kind: Option<UseKind>,
    /// The incident as given (on the unlock or at classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub incident: Option<String>,
    /// The broker's incident it matched, and that incident's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub incident_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub incident_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub classified_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub classified_at: Option<DateTime<Utc>>,
    /// `immediate` or `after_incident` (the secret's policy).
    pub rotation: String,
    /// When the broker plans to rotate the value this use opened (`None`: no
    /// automatic rotation, or rotated already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub rotates_at: Option<DateTime<Utc>>,
    /// The value this use opened has been replaced.
    pub rotated: bool,
    /// Whether the rotation still waits for the linked incident.
    pub rotation_waits: bool,
    /// Whether the caller may classify it (now).
    pub may_classify: bool,
}

/// `GET /api/v1/unlocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UseList {
    pub uses: Vec<UseView>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn c(
        kind: UseKind,
        incident: Option<&str>,
        note: Option<&str>,
    ) -> Result<CheckedClassification, String> {
        ClassifyUse {
            kind,
            incident: incident.map(String::from),
            note: note.map(String::from),
        }
        .check()
    }

    #[test]
    fn classifications_say_what_they_must() {
        assert_eq!(c(UseKind::Drill, None, None).unwrap().kind, UseKind::Drill);
        let i = c(UseKind::Incident, Some(" INC-123 "), None).unwrap();
        assert_eq!(i.incident.as_deref(), Some("INC-123"));
        assert!(c(UseKind::Incident, None, None)
            .unwrap_err()
            .contains("needs the incident"));
        assert!(c(UseKind::Incident, Some("two words"), None)
            .unwrap_err()
            .contains("incident:"));
        assert!(c(UseKind::Incident, Some(""), None).is_err());
        assert!(c(UseKind::Incident, Some(&"x".repeat(101)), None).is_err());
        assert!(c(UseKind::Drill, Some("INC-1"), None)
            .unwrap_err()
            .contains("only kind incident"));
        assert!(c(UseKind::Other, None, None)
            .unwrap_err()
            .contains("needs a note"));
        assert!(c(UseKind::Other, None, Some("   "))
            .unwrap_err()
            .contains("needs a note"));
        assert_eq!(
            c(UseKind::Other, None, Some(" tested the laptop "))
                .unwrap()
                .note
                .as_deref(),
            Some("tested the laptop")
        );
        assert!(c(UseKind::Other, None, Some(&"n".repeat(1001))).is_err());
        assert!(c(UseKind::Other, None, Some("a\u{7}b")).is_err());
    }

    #[test]
    fn who_may_classify() {
        let p = |name: &str, groups: &[&str], admin: bool| Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin,
            oncall: Vec::new(),
        };
        let policy = crate::policy::parse_policy(
            "t.toml",
            "[secrets.s]\nunlock = { groups = [\"oncall\"] }\nalert = { groups = [\"security\"] }\n",
        )
        .unwrap();
        let sp = policy.secret("s").unwrap().clone();
        let alice = p("alice", &["oncall"], false);
        let bob = p("bob", &["oncall"], false);
        let sec = p("sam", &["security"], false);
        let admin = p("carol", &[], true);
        assert!(may_classify_use(&alice, "alice", Some(&sp), false).is_ok());
        assert!(may_classify_use(&alice, "alice", Some(&sp), true).is_err());
        assert!(may_classify_use(&bob, "alice", Some(&sp), false).is_err());
        assert!(may_classify_use(&sec, "alice", Some(&sp), true).is_ok());
        assert!(may_classify_use(&admin, "alice", None, true).is_ok());
        assert!(may_see_use(&alice, "alice", Some(&sp)));
        assert!(!may_see_use(&bob, "alice", Some(&sp)));
        assert!(may_see_use(&sec, "alice", Some(&sp)));
    }
}
