//! Notifications that leave the broker: chat through Slack-compatible incoming
//! webhooks (Block Kit) and generic webhooks signed per Standard Webhooks
//! ([`crate::webhooks`]). The policy names channels (`[notifications.NAME]`) and the
//! event kinds each one gets; the broker stores one delivery per event and channel
//! in the same transaction as the event, and its worker sends them with retries.
//!
//! This module holds the rules, with no I/O: which events a channel takes, the
//! payload of a delivery, the Slack message made from it, and the retry schedule.

use crate::api::EventKind;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How a channel's deliveries are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A Slack-compatible incoming webhook: a Block Kit message.
    Slack,
    /// A generic webhook: the payload as JSON, signed per Standard Webhooks.
    Webhook,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
        }
    }
}

/// `[notifications.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// The URL, when it is not a secret (generic webhooks).
    pub url: Option<String>,
    /// The environment variable holding the URL (a Slack webhook URL is a secret).
    pub url_env: Option<String>,
    /// The environment variable holding the `whsec_…` secret (webhooks).
    pub secret_env: Option<String>,
    /// The event kinds it gets (wire names, e.g. `request_awaiting_approval`).
    pub events: Vec<String>,
    /// Links in messages: `{base}/requests/{id}` and so on. Default `firedoor://open`
    /// (the desktop app's link scheme).
    pub link_base: String,
}

/// The desktop app's link scheme, the default base of links in messages.
pub const DEFAULT_LINK_BASE: &str = "firedoor://open";

impl Channel {
    /// Whether events of `kind` go to this channel.
    pub fn takes(&self, kind: EventKind) -> bool {
        self.events.iter().any(|e| e == kind.as_str())
    }
}

/// Event kinds a channel may name (those worth telling outside the app; `resync`
/// and `envelopes_changed` are for the app only).
pub fn channel_event_kinds() -> impl Iterator<Item = EventKind> {
    EventKind::ALL
        .iter()
        .copied()
        .filter(|k| !matches!(k, EventKind::Resync | EventKind::EnvelopesChanged))
}

/// What a request looked like when the event happened, for the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFacts {
    pub id: String,
    pub bundle: String,
    pub bundle_title: String,
    pub requester: String,
    #[serde(default)]
    pub requested_by: Option<String>,
    pub state: String,
    pub duration_secs: i64,
    #[serde(default)]
    pub justification: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub incident_id: Option<String>,
    #[serde(default)]
    pub stage: u32,
}

/// A delivery's payload: the Standard Webhooks shape `{type, timestamp, data}`,
/// where `data` is the event as the app gets it, who was told, and the request it is
/// about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: DateTime<Utc>,
    pub data: PayloadData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadData {
    pub message: String,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub bundle: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub grant_id: Option<String>,
    #[serde(default)]
    pub incident_id: Option<String>,
    /// The people the event was for (in the app).
    pub recipients: Vec<String>,
    #[serde(default)]
    pub request: Option<RequestFacts>,
    /// The `firedoor://` link that opens it in the desktop app (for approvers of a
    /// request waiting for them, `firedoor://approve/REQ`), for receivers that show
    /// a button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_link: Option<String>,
}

/// Cuts text for a chat message (Slack limits a section to 3000 characters).
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Escapes the three characters Slack's mrkdwn gives meaning to.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Slack (Block Kit) message for a delivery: the event in one line, who asks
/// for what, for how long, why, the ticket and incident, who was asked, and a
/// button that opens it in the desktop app.
pub fn slack_message(p: &Payload, link_base: &str) -> Value {
    let d = &p.data;
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": cut(&format!("*{}*", esc(&d.message)), 2900) }
    })];
    if let Some(r) = &d.request {
        let mut fields = vec![
            json!({ "type": "mrkdwn", "text": format!("*Who*\n{}", esc(&match &r.requested_by {
                Some(by) => format!("{} (asked by {by})", r.requester),
                None => r.requester.clone(),
            })) }),
            json!({ "type": "mrkdwn", "text": format!("*What*\n{}", esc(&r.bundle_title)) }),
            json!({ "type": "mrkdwn", "text": format!("*For*\n{}", crate::duration::format_duration(r.duration_secs)) }),
            json!({ "type": "mrkdwn", "text": format!("*State*\n{}", esc(&r.state)) }),
        ];
        if let Some(t) = &r.ticket {
            fields.push(
                json!({ "type": "mrkdwn", "text": format!("*Ticket*\n{}", esc(&cut(t, 200))) }),
            );
        }
        if let Some(i) = &r.incident_id {
            fields.push(json!({ "type": "mrkdwn", "text": format!("*Incident*\n{}", esc(i)) }));
        }
        blocks.push(json!({ "type": "section", "fields": fields }));
        if let Some(j) = &r.justification {
            blocks.push(json!({
                "type": "section",
                "text": { "type": "mrkdwn", "text": format!("*Justification*\n{}", esc(&cut(j, 2000))) }
            }));
        }
    }
    if !d.recipients.is_empty() {
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": esc(&cut(&format!("Told in Firedoor: {}", d.recipients.join(", ")), 2000)) }]
        }));
    }
    if let Some(url) = app_link(p, link_base) {
        let text = if url.starts_with("firedoor://approve/") {
            "Review in Firedoor"
        } else {
            "Open in Firedoor"
        };
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": { "type": "plain_text", "text": text },
                "url": url,
                "action_id": "open",
            }]
        }));
    }
    json!({ "text": cut(&d.message, 3000), "blocks": blocks })
}

/// The link that opens what a delivery is about in the desktop app. With the
/// default base (the app's own scheme), a request waiting for approval links to
/// `firedoor://approve/REQ` (its approvers were told: the link opens it among their
/// approvals, where they still decide with a click); otherwise the item under
/// `{link_base}/requests|grants|incidents/{id}`.
pub fn app_link(p: &Payload, link_base: &str) -> Option<String> {
    let d = &p.data;
    if link_base == DEFAULT_LINK_BASE && p.kind == EventKind::RequestAwaitingApproval.as_str() {
        if let Some(id) = d
            .request_id
            .as_deref()
            .and_then(|r| r.parse::<crate::RequestId>().ok())
        {
            return Some(crate::links::approve_link(&id));
        }
    }
    match (&d.request_id, &d.grant_id, &d.incident_id) {
        (Some(r), _, _) => Some(format!("{link_base}/requests/{r}")),
        (None, Some(g), _) => Some(format!("{link_base}/grants/{g}")),
        (None, None, Some(i)) => Some(format!("{link_base}/incidents/{i}")),
        _ => None,
    }
}

/// Attempts before a delivery is given up (dead-lettered).
pub const MAX_ATTEMPTS: i64 = 8;

/// When to try again after `attempts` failed attempts: 30 s, doubling, at most an
/// hour apart (30 s, 1 m, 2 m, … about 1 h 4 m in all before the last).
pub fn next_attempt(attempts: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    let secs = 30i64
        .saturating_mul(1 << (attempts - 1).clamp(0, 7))
        .min(3600);
    now + Duration::seconds(secs)
}

/// Whether a receiver's HTTP status means it will never take this delivery (a
/// client error other than a timeout or rate limit): no use retrying.
pub fn is_permanent(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn payload() -> Payload {
        Payload {
            kind: "request_awaiting_approval".into(),
            timestamp: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
            data: PayloadData {
                message: "carol requests Prod <db> for 1h on behalf of alice".into(),
                actor: Some("carol".into()),
                bundle: Some("prod-db".into()),
                request_id: Some("req_1".into()),
                grant_id: None,
                incident_id: None,
                recipients: vec!["bob".into(), "erin".into()],
                request: Some(RequestFacts {
                    id: "req_1".into(),
                    bundle: "prod-db".into(),
                    bundle_title: "Prod database".into(),
                    requester: "alice".into(),
                    requested_by: Some("carol".into()),
                    state: "pending".into(),
                    duration_secs: 3600,
                    justification: Some("INC-7 replication lag".into()),
                    ticket: Some("OPS-12".into()),
                    incident_id: Some("inc_1".into()),
                    stage: 0,
                }),
                app_link: None,
            },
        }
    }

    #[test]
    fn a_slack_message_says_who_asks_for_what_why_and_links_to_the_app() {
        let m = slack_message(&payload(), DEFAULT_LINK_BASE);
        let text = m.to_string();
        for want in [
            "Prod &lt;db&gt;",
            "alice (asked by carol)",
            "Prod database",
            "1h",
            "INC-7 replication lag",
            "OPS-12",
            "inc_1",
            "bob, erin",
            "firedoor://open/requests/req_1",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        assert_eq!(m["blocks"][0]["type"], "section");
        let actions = m["blocks"].as_array().unwrap().last().unwrap();
        assert_eq!(actions["type"], "actions");
        assert_eq!(actions["elements"][0]["type"], "button");
        assert!(m["text"].as_str().unwrap().starts_with("carol requests"));
    }

    #[test]
    fn approvers_get_a_link_that_opens_the_approval_and_others_the_item() {
        let id = crate::RequestId::new();
        let mut p = payload();
        p.data.request_id = Some(id.to_string());
        let want = format!("firedoor://approve/{id}");
        assert_eq!(app_link(&p, DEFAULT_LINK_BASE), Some(want.clone()));
        let m = slack_message(&p, DEFAULT_LINK_BASE);
        let actions = m["blocks"].as_array().unwrap().last().unwrap();
        assert_eq!(actions["elements"][0]["url"], want);
        assert_eq!(actions["elements"][0]["text"]["text"], "Review in Firedoor");
        // The link parses back to that approval (what the app does with it).
        assert_eq!(
            crate::links::Link::parse(&want).unwrap(),
            crate::links::Link::Approve { request: id }
        );
        // Other events show the request; a custom base (a web page) keeps its form.
        p.kind = "request_approved".into();
        assert_eq!(
            app_link(&p, DEFAULT_LINK_BASE),
            Some(format!("firedoor://open/requests/{id}"))
        );
        p.kind = "request_awaiting_approval".into();
        assert_eq!(
            app_link(&p, "https://firedoor.example.com"),
            Some(format!("https://firedoor.example.com/requests/{id}"))
        );
    }

    const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[notifications.chat]
kind = "slack"
url_env = "CHAT_URL"
events = ["request_awaiting_approval", "break_glass_unlocked"]

[notifications.hooks]
kind = "webhook"
url = "https://hooks.example.com/firedoor"
secret_env = "HOOK_SECRET"
events = ["request_approved"]
"#;

    #[test]
    fn the_policy_names_channels_and_their_events() {
        let p = crate::policy::parse_policy("p.toml", POLICY).unwrap();
        let chat = &p.notifications["chat"];
        assert_eq!(chat.kind, ChannelKind::Slack);
        assert!(chat.takes(EventKind::RequestAwaitingApproval));
        assert!(!chat.takes(EventKind::RequestApproved));
        assert_eq!(chat.link_base, DEFAULT_LINK_BASE);
        assert!(p.notifications["hooks"].takes(EventKind::RequestApproved));
        let bad = |from: &str, to: &str, why: &str| {
            let e = crate::policy::parse_policy("p.toml", &POLICY.replace(from, to)).unwrap_err();
            assert!(e.message.contains(why), "{to}: {e}");
        };
        bad(
            "\"break_glass_unlocked\"",
            "\"resync\"",
            "is not an event kind",
        );
        bad("kind = \"slack\"", "kind = \"teams\"", "is not \"slack\"");
        bad(
            "url_env = \"CHAT_URL\"",
            "url = \"https://hooks.slack.com/services/T/B/X\"",
            "a Slack webhook URL is a secret",
        );
        bad(
            "url_env = \"CHAT_URL\"",
            "url_env = \"https://x\"",
            "never hold the value",
        );
        bad("secret_env = \"HOOK_SECRET\"\n", "", "is signed");
        bad(
            "url = \"https://hooks.example.com/firedoor\"",
            "url = \"ftp://x\"",
            "http(s) URL",
        );
        bad(
            "url = \"https://hooks.example.com/firedoor\"",
            "url = \"https://a\"\nurl_env = \"B\"",
            "exactly one of url or url_env",
        );
        bad(
            "events = [\"request_approved\"]",
            "events = []",
            "names none",
        );
    }

    #[test]
    fn retries_back_off_and_stop() {
        let t = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        assert_eq!(next_attempt(1, t), t + Duration::seconds(30));
        assert_eq!(next_attempt(2, t), t + Duration::seconds(60));
        assert_eq!(next_attempt(8, t), t + Duration::seconds(3600));
        assert_eq!(next_attempt(50, t), t + Duration::seconds(3600));
        assert!(is_permanent(404) && is_permanent(410) && is_permanent(400));
        assert!(!is_permanent(429) && !is_permanent(408) && !is_permanent(500));
    }
}
