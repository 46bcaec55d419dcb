//! Desktop notifications over the freedesktop D-Bus API (notify-rust). Approvers get
//! each new request with Approve and Deny actions when the notification server can
//! draw actions; a click (or a server without actions) opens it in the app.
//! Requesters hear of every decision and of their grants' lifecycle. With no
//! session bus or no notification server nothing breaks: the in-app inbox remains.
//!
//! Bodies carry text people wrote (a reason, a device name, a deny reason, a
//! justification): it is escaped for servers that render the body markup of the
//! freedesktop spec, so nobody can make a notification say something else (hide the
//! rest with a tag, fake a link). An approval shows the justification and the ticket
//! of the request; when the request is not known yet, it offers no Approve button.

use firedoor_client::console::{ActionResult, Console, ConsoleError, Snapshot};
use firedoor_core::api::{CreateRequest, EventView, RequestView};
use std::sync::Arc;
use tauri::{AppHandle, Emitter, Manager};

pub struct Notifier {
    app: AppHandle,
    console: Arc<Console>,
}

fn server_has_actions() -> bool {
    notify_rust::get_capabilities()
        .map(|caps| caps.iter().any(|c| c == "actions"))
        .unwrap_or(false)
}

/// Escapes text for a notification body that may be rendered as markup (the
/// freedesktop spec's subset of HTML): `&`, `<`, `>` and both quotes. Applied to every
/// body, whatever the server says it renders: a server that does not render markup
/// shows the entities, which is legible; one that does and gets raw text can be made to
/// show something else.
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// Longest justification shown in a notification (the app shows all of it).
const MAX_SHOWN_CHARS: usize = 400;

fn shorten(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_SHOWN_CHARS {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX_SHOWN_CHARS).collect();
        format!("{cut}…")
    }
}

/// The body of an approval notification, escaped: the broker's message, then the
/// request's justification and ticket (saying so when there are none), so that an
/// approver sees what they approve. `request` is `None` when the request is not in the
/// snapshot yet: the body then says to open the app, and the caller offers no Approve.
pub fn approval_body(ev: &EventView, request: Option<&RequestView>) -> String {
    let mut lines = vec![ev.message.clone()];
    match request {
        Some(r) => {
            lines.push(format!(
                "Justification: {}",
                r.justification
                    .as_deref()
                    .filter(|j| !j.trim().is_empty())
                    .map(shorten)
                    .unwrap_or_else(|| "(none given)".into())
            ));
            lines.push(format!(
                "Ticket: {}",
                r.ticket
                    .as_deref()
                    .filter(|t| !t.trim().is_empty())
                    .map(shorten)
                    .unwrap_or_else(|| "(none)".into())
            ));
        }
        None => lines.push("Open Firedoor to read the justification before deciding.".into()),
    }
    escape_markup(&lines.join("\n"))
}

/// Tells the outcome of an action taken from a notification, in another one.
fn show_outcome(result: Result<ActionResult, ConsoleError>) {
    let (summary, text) = match result {
        Ok(r) => ("Done", r.message),
        Err(e) => ("Could not complete that", e.message),
    };
    let _ = notify_rust::Notification::new()
        .appname("Firedoor")
        .summary(summary)
        .body(&escape_markup(&text))
        .show();
}

/// Brings the window forward on `view` (a notification was clicked).
fn open_view(app: &AppHandle, open: serde_json::Value) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.set_focus();
    }
    let _ = app.emit("firedoor://open", open);
}

/// The incident's title in an `incident_opened` message ("TITLE — BUNDLES ready").
pub fn incident_title(message: &str) -> String {
    shorten(message.split(" — ").next().unwrap_or(message))
}

impl Notifier {
    pub fn new(app: AppHandle, console: Arc<Console>) -> Notifier {
        Notifier { app, console }
    }

    /// A notification without actions; failures are logged, never fatal.
    pub fn plain(&self, summary: &str, body: &str) {
        let (summary, body) = (summary.to_string(), escape_markup(body));
        std::thread::spawn(move || {
            if let Err(e) = notify_rust::Notification::new()
                .appname("Firedoor")
                .summary(&summary)
                .body(&body)
                .show()
            {
                tracing::info!(error = %e, "desktop notifications unavailable; the app shows it instead");
            }
        });
    }

    pub fn event(&self, ev: &EventView, snap: &Snapshot) {
        let mine = |id: &Option<firedoor_core::RequestId>| {
            id.is_some_and(|id| snap.my_requests.iter().any(|r| r.id == id))
        };
        let title = ev.bundle.clone().unwrap_or_default();
        match ev.kind.as_str() {
            "request_awaiting_approval" => self.approval(ev, snap),
            "request_approved" | "request_denied" | "request_timed_out" if mine(&ev.request_id) => {
                let what = match ev.kind.as_str() {
                    "request_approved" => "Request approved",
                    "request_denied" => "Request denied",
                    _ => "Request timed out",
                };
                self.plain(what, &ev.message)
            }
            "request_approved" if ev.message.starts_with("BREAK GLASS") => {
                self.plain("Break glass", &ev.message)
            }
            "grant_active" => self.plain(&format!("Access active: {title}"), &ev.message),
            "grant_expiring" => self.plain(&format!("Expiring soon: {title}"), &ev.message),
            "grant_revoked" => self.plain(&format!("Access revoked: {title}"), &ev.message),
            "grant_expired" => self.plain(&format!("Access expired: {title}"), &ev.message),
            "grant_revoke_failed" => self.plain("Revocation failed — retrying", &ev.message),
            "grant_failed" => self.plain("Access could not be provisioned", &ev.message),
            "grant_extended" => self.plain(&format!("Extended: {title}"), &ev.message),
            // Loud: every admin (and the secret's alert audience) sees each unlock.
            "break_glass_unlocked" => self.plain(&format!("BREAK GLASS: {title}"), &ev.message),
            "security_alert" => self.plain("Security alert", &ev.message),
            "incident_opened" => self.incident(ev),
            "incident_resolved" => self.plain("Incident resolved", &ev.message),
            _ => {}
        }
    }

    /// An incident opened bundles to me: one button requests the first for it.
    fn incident(&self, ev: &EventView) {
        let (Some(bundle), Some(incident)) = (ev.bundle.clone(), ev.incident_id.clone()) else {
            return self.plain("Incident", &ev.message);
        };
        let app = self.app.clone();
        let console = self.console.clone();
        let body = escape_markup(&ev.message);
        // "payments-api down — Payments incident kit ready": the incident's title.
        let title = incident_title(&ev.message);
        std::thread::spawn(move || {
            let mut n = notify_rust::Notification::new();
            n.appname("Firedoor")
                .summary("Incident")
                .body(&body)
                .urgency(notify_rust::Urgency::Critical)
                .action("default", "Open");
            if server_has_actions() {
                n.action("request", "Request");
            }
            let handle = match n.show() {
                Ok(h) => h,
                Err(e) => {
                    tracing::info!(error = %e, "desktop notifications unavailable; the incident shows in the app");
                    return;
                }
            };
            handle.wait_for_action(move |action| match action {
                "request" => {
                    let console = console.clone();
                    let (bundle, incident, title) =
                        (bundle.clone(), incident.clone(), title.clone());
                    tauri::async_runtime::spawn(async move {
                        let result = console
                            .request_bundle(CreateRequest {
                                bundle,
                                justification: Some(format!("Incident: {title}")),
                                incident: Some(incident),
                                on_behalf_of: None,
                                ..Default::default()
                            })
                            .await;
                        show_outcome(result);
                    });
                }
                "default" => open_view(&app, serde_json::json!({ "view": "bundles" })),
                _ => {}
            });
        });
    }

    /// A request awaiting my approval: Approve / Deny buttons where supported.
    fn approval(&self, ev: &EventView, snap: &Snapshot) {
        let Some(rid) = ev.request_id else { return };
        let app = self.app.clone();
        let console = self.console.clone();
        let request = snap.approvals.iter().find(|r| r.id == rid);
        let body = approval_body(ev, request);
        // Approving from the notification needs the justification in front of you.
        let known = request.is_some();
        std::thread::spawn(move || {
            let actions = known && server_has_actions();
            let mut n = notify_rust::Notification::new();
            n.appname("Firedoor")
                .summary("Approval needed")
                .body(&body)
                .urgency(notify_rust::Urgency::Critical)
                .action("default", "Open");
            if actions {
                n.action("approve", "Approve").action("deny", "Deny");
            }
            let handle = match n.show() {
                Ok(h) => h,
                Err(e) => {
                    tracing::info!(error = %e, "desktop notifications unavailable; the approval waits in the app's inbox");
                    return;
                }
            };
            handle.wait_for_action(move |action| {
                let app = app.clone();
                let console = console.clone();
                match action {
                    "approve" | "deny" => {
                        let action = action.to_string();
                        tauri::async_runtime::spawn(async move {
                            let result = if action == "approve" {
                                console
                                    .approve(&rid, Some("approved from a desktop notification"))
                                    .await
                            } else {
                                console
                                    .deny(&rid, Some("denied from a desktop notification"))
                                    .await
                            };
                            show_outcome(result);
                        });
                    }
                    "default" => open_view(
                        &app,
                        serde_json::json!({ "view": "approvals", "id": rid.to_string() }),
                    ),
                    _ => {} // closed
                }
            });
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Utc;
    use firedoor_core::api::RequestView;

    #[test]
    fn user_text_is_escaped_for_markup() {
        assert_eq!(
            escape_markup(r#"<b>ok</b> & <a href="x">'click'</a>"#),
            "&lt;b&gt;ok&lt;/b&gt; &amp; &lt;a href=&quot;x&quot;&gt;&#39;click&#39;&lt;/a&gt;"
        );
        assert_eq!(
            escape_markup("&amp;"),
            "&amp;amp;",
            "entities are not passed through"
        );
        assert_eq!(escape_markup("plain text"), "plain text");
    }

    fn event(message: &str) -> EventView {
        serde_json::from_value(serde_json::json!({
            "id": 7,
            "kind": "request_awaiting_approval",
            "at": Utc::now(),
            "request_id": "req_0123456789abcdef0123456789abcdef",
            "grant_id": null,
            "bundle": "payments-db",
            "actor": "alice",
            "message": message,
        }))
        .unwrap()
    }

    fn request(id: &str, justification: Option<&str>, ticket: Option<&str>) -> RequestView {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "kind": "access",
            "bundle": "payments-db",
            "bundle_title": "Payments DB",
            "requester": "alice",
            "state": "pending",
            "duration_secs": 3600,
            "justification": justification,
            "ticket": ticket,
            "created_at": Utc::now(),
            "pending_until": Utc::now(),
            "approvals_needed": 1,
            "decisions": [],
            "grant_id": null,
            "error": null,
        }))
        .unwrap()
    }

    #[test]
    fn the_approval_body_shows_justification_and_ticket_escaped() {
        let ev = event("alice asks for Payments DB for 1 h");
        let r = request(
            &ev.request_id.unwrap().to_string(),
            Some("INC-42 <b>urgent</b> & the DB is down"),
            Some("OPS-7"),
        );
        let body = approval_body(&ev, Some(&r));
        assert_eq!(
            body,
            "alice asks for Payments DB for 1 h\n\
             Justification: INC-42 &lt;b&gt;urgent&lt;/b&gt; &amp; the DB is down\n\
             Ticket: OPS-7"
        );
        // None given: said so, never left out.
        let r = request(&ev.request_id.unwrap().to_string(), None, Some("  "));
        let body = approval_body(&ev, Some(&r));
        assert!(body.contains("Justification: (none given)"), "{body}");
        assert!(body.contains("Ticket: (none)"), "{body}");
        // Unknown request: no blind approval.
        let body = approval_body(&ev, None);
        assert!(
            body.contains("Open Firedoor to read the justification"),
            "{body}"
        );
        // The broker's message is escaped too (it quotes what people wrote).
        let body = approval_body(&event("device <i>evil</i>"), None);
        assert!(body.starts_with("device &lt;i&gt;evil&lt;/i&gt;"), "{body}");
        // A very long justification is cut.
        let long = "x".repeat(5000);
        let r = request(&ev.request_id.unwrap().to_string(), Some(&long), None);
        assert!(approval_body(&ev, Some(&r)).len() < 1000);
    }
}
