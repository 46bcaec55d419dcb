//! Desktop notifications over the freedesktop D-Bus API (notify-rust). Approvers get
//! each new request with Approve and Deny actions when the notification server can
//! draw actions; a click (or a server without actions) opens it in the app.
//! Requesters hear of every decision and of their grants' lifecycle. With no
//! session bus or no notification server nothing breaks: the in-app inbox remains.
//!
//! Bodies carry text people wrote (a reason, a device name, a deny reason, a
//! justification): it is escaped for servers that render the body markup of the
//! freedesktop spec, so nobody can make a notification say something else (hide the
//! rest with a tag, fake a link). An approval shows the justification, the ticket and
//! the incident of the request; when the request is not known yet, it offers no
//! Approve button.
//!
//! An "Approval needed" notification follows its request: once the request leaves
//! the approvals waiting for me (approved or denied here or by someone else,
//! cancelled, timed out) it is closed through the server's `CloseNotification`. An
//! action that still reaches a decided request says in words what happened ("Already
//! approved by carol at 15:24") rather than the broker's refusal.

use chrono::{DateTime, TimeZone, Utc};
use firedoor_client::console::{ActionResult, Console, ConsoleError, ConsoleErrorCode, Snapshot};
use firedoor_core::api::ClientChannel;
use firedoor_core::api::{CreateRequest, EventView, IncidentView, RequestView};
use firedoor_core::lifecycle::RequestState;
use firedoor_core::RequestId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tauri::{AppHandle, Emitter, Manager};

/// The "Approval needed" notifications on screen: request → the server's id.
type Shown = Arc<Mutex<HashMap<RequestId, u32>>>;

#[derive(Clone)]
pub struct Notifier {
    app: AppHandle,
    console: Arc<Console>,
    approvals: Shown,
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
pub fn approval_body(
    ev: &EventView,
    request: Option<&RequestView>,
    incidents: &[IncidentView],
) -> String {
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
            if let Some(inc) = &r.incident_id {
                // The incident's title when the app knows it, else its id.
                let title = incidents
                    .iter()
                    .find(|i| &i.id == inc)
                    .map(|i| shorten(&i.title))
                    .unwrap_or_else(|| inc.clone());
                lines.push(format!("Incident: {title}"));
            }
        }
        None => lines.push("Open Firedoor to read the justification before deciding.".into()),
    }
    escape_markup(&lines.join("\n"))
}

/// `15:24` in the person's time zone (today), or `25 Nov 15:24` (another day).
fn clock<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz, now: DateTime<Utc>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let (t, now) = (t.with_timezone(tz), now.with_timezone(tz));
    if t.date_naive() == now.date_naive() {
        t.format("%H:%M").to_string()
    } else {
        t.format("%-d %b %H:%M").to_string()
    }
}

/// What to say when an approval or denial from a notification (or the tray) reaches
/// a request that was already decided: who did what, when, in words ("Already
/// approved by carol at 15:24", "by you" for `me`). `None` while the request still
/// waits for `me` (the failure was about something else).
pub fn stale_text<Tz: TimeZone>(
    r: &RequestView,
    me: &str,
    tz: &Tz,
    now: DateTime<Utc>,
) -> Option<String>
where
    Tz::Offset: std::fmt::Display,
{
    let who = |by: &str| {
        if by == me {
            "you".to_string()
        } else {
            by.to_string()
        }
    };
    let last = |what: &str| r.decisions.iter().rev().find(|d| d.decision == what);
    let decided = |what: &str, verb: &str| {
        last(what).map(|d| {
            format!(
                "Already {verb} by {} at {}",
                who(&d.by),
                clock(d.at, tz, now)
            )
        })
    };
    let text = match r.state {
        RequestState::Pending => {
            let mine = r.decisions.iter().find(|d| d.by == me)?;
            let verb = if mine.decision == "deny" {
                "denied"
            } else {
                "approved"
            };
            let approved = r
                .decisions
                .iter()
                .filter(|d| d.decision == "approve")
                .count();
            let left = (r.approvals_needed as usize).saturating_sub(approved);
            let mut t = format!("Already {verb} by you at {}", clock(mine.at, tz, now));
            if verb == "approved" && left > 0 {
                t.push_str(&format!(
                    "; it waits for {left} more approval{}",
                    if left == 1 { "" } else { "s" }
                ));
            }
            t
        }
        RequestState::Approved
        | RequestState::Active
        | RequestState::Expired
        | RequestState::Revoked
        | RequestState::Failed => {
            decided("approve", "approved").unwrap_or_else(|| "Already approved".to_string())
        }
        RequestState::Denied => {
            decided("deny", "denied").unwrap_or_else(|| "Already denied".to_string())
        }
        RequestState::Cancelled => format!(
            "Already cancelled by {}",
            who(r.requested_by.as_deref().unwrap_or(&r.requester))
        ),
        RequestState::TimedOut => format!(
            "Already timed out at {} without a decision",
            clock(r.pending_until, tz, now)
        ),
    };
    Some(format!(
        "{text} ({}'s request for {}).",
        r.requester, r.bundle_title
    ))
}

/// After an approval or denial of `rid` failed: the request's story in words when it
/// was decided meanwhile (fetched from the broker), else the error as it is.
pub async fn explain_decision_error(
    console: &Console,
    rid: &RequestId,
    e: ConsoleError,
) -> ConsoleError {
    if e.code == ConsoleErrorCode::Offline || e.code == ConsoleErrorCode::SignedOut {
        return e;
    }
    let me = console
        .status()
        .await
        .ok()
        .and_then(|s| s.user)
        .unwrap_or_default();
    match console.request(rid).await {
        Ok(r) => match stale_text(&r, &me, &chrono::Local, Utc::now()) {
            Some(text) => ConsoleError::new(e.code, text),
            None => e,
        },
        Err(_) => e,
    }
}

/// Approves or denies from outside the window (a notification, the tray), saying in
/// words what happened if the request was decided meanwhile.
pub async fn decide(
    console: &Console,
    rid: &RequestId,
    approve: bool,
    from: &str,
    channel: ClientChannel,
) -> Result<ActionResult, ConsoleError> {
    let result = if approve {
        console
            .approve_via(rid, Some(&format!("approved from {from}")), channel)
            .await
    } else {
        console
            .deny_via(rid, Some(&format!("denied from {from}")), channel)
            .await
    };
    match result {
        Ok(r) => Ok(r),
        Err(e) => Err(explain_decision_error(console, rid, e).await),
    }
}

/// Tells the outcome of an action taken from a notification, in another one.
pub fn show_outcome(result: Result<ActionResult, ConsoleError>) {
    let (summary, text) = match result {
        Ok(r) => ("Done", r.message),
        Err(e) if e.message.starts_with("Already ") => ("Already decided", e.message),
        Err(e) => ("Could not complete that", e.message),
    };
    let _ = notify_rust::Notification::new()
        .appname("Firedoor")
        .summary(summary)
        .body(&escape_markup(&text))
        .show();
}

/// A notification without actions; failures are logged, never fatal.
pub fn plain_note(summary: &str, body: &str) {
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

/// Asks the notification server to close notification `id` (the freedesktop
/// `CloseNotification` call); the server then sends `NotificationClosed`, which ends
/// the thread waiting for its action.
async fn close_notification(id: u32) -> zbus::Result<()> {
    let bus = zbus::Connection::session().await?;
    bus.call_method(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        Some("org.freedesktop.Notifications"),
        "CloseNotification",
        &(id,),
    )
    .await?;
    Ok(())
}

/// The bundle an event names, as people know it: its title (from my grants or the
/// bundles I may request), else its name (a break-glass secret's name, say).
pub fn bundle_title(ev: &EventView, snap: &Snapshot) -> String {
    let Some(name) = ev.bundle.as_deref() else {
        return String::new();
    };
    snap.grants
        .iter()
        .find(|g| Some(g.id) == ev.grant_id)
        .map(|g| g.bundle_title.clone())
        .or_else(|| {
            snap.bundles
                .iter()
                .find(|b| b.name == name)
                .map(|b| b.title.clone())
        })
        .unwrap_or_else(|| name.to_string())
}

impl Notifier {
    pub fn new(app: AppHandle, console: Arc<Console>) -> Notifier {
        Notifier {
            app,
            console,
            approvals: Arc::default(),
        }
    }

    /// Closes the "Approval needed" notifications whose request no longer waits for
    /// me in `snap` (decided here or elsewhere, cancelled, timed out; or signed out).
    /// An offline snapshot is the cache's guess: nothing is closed on it.
    pub fn follow(&self, snap: &Snapshot) {
        if snap.status.signed_in && !snap.status.online {
            return;
        }
        let gone: Vec<(RequestId, u32)> = {
            let mut shown = self.approvals.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<_> = shown
                .iter()
                .filter(|(rid, _)| !snap.approvals.iter().any(|r| &r.id == *rid))
                .map(|(rid, id)| (*rid, *id))
                .collect();
            for (rid, _) in &gone {
                shown.remove(rid);
            }
            gone
        };
        for (rid, id) in gone {
            tauri::async_runtime::spawn(async move {
                match close_notification(id).await {
                    Ok(()) => {
                        tracing::info!(request = %rid, "approval notification closed: decided elsewhere")
                    }
                    Err(e) => tracing::info!(error = %e, "closing an approval notification"),
                }
            });
        }
    }

    /// A notification without actions; failures are logged, never fatal.
    pub fn plain(&self, summary: &str, body: &str) {
        plain_note(summary, body)
    }

    pub fn event(&self, ev: &EventView, snap: &Snapshot) {
        let mine = |id: &Option<firedoor_core::RequestId>| {
            id.is_some_and(|id| snap.my_requests.iter().any(|r| r.id == id))
        };
        let title = bundle_title(ev, snap);
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
        let body = approval_body(ev, request, &snap.incidents);
        // Approving from the notification needs the justification in front of you.
        let known = request.is_some();
        let shown = self.approvals.clone();
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
            shown
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(rid, handle.id());
            handle.wait_for_action(move |action| {
                let app = app.clone();
                let console = console.clone();
                // Acted on or closed: nothing left on screen to close later.
                shown.lock().unwrap_or_else(|p| p.into_inner()).remove(&rid);
                match action {
                    "approve" | "deny" => {
                        let approve = action == "approve";
                        tauri::async_runtime::spawn(async move {
                            let result = decide(
                                &console,
                                &rid,
                                approve,
                                "a desktop notification",
                                ClientChannel::Notification,
                            )
                            .await;
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
        let body = approval_body(&ev, Some(&r), &[]);
        assert_eq!(
            body,
            "alice asks for Payments DB for 1 h\n\
             Justification: INC-42 &lt;b&gt;urgent&lt;/b&gt; &amp; the DB is down\n\
             Ticket: OPS-7"
        );
        // None given: said so, never left out.
        let r = request(&ev.request_id.unwrap().to_string(), None, Some("  "));
        let body = approval_body(&ev, Some(&r), &[]);
        assert!(body.contains("Justification: (none given)"), "{body}");
        assert!(body.contains("Ticket: (none)"), "{body}");
        // Unknown request: no blind approval.
        let body = approval_body(&ev, None, &[]);
        assert!(
            body.contains("Open Firedoor to read the justification"),
            "{body}"
        );
        // The broker's message is escaped too (it quotes what people wrote).
        let body = approval_body(&event("device <i>evil</i>"), None, &[]);
        assert!(body.starts_with("device &lt;i&gt;evil&lt;/i&gt;"), "{body}");
        // A very long justification is cut.
        let long = "x".repeat(5000);
        let r = request(&ev.request_id.unwrap().to_string(), Some(&long), None);
        assert!(approval_body(&ev, Some(&r), &[]).len() < 1000);
    }

    fn incident(id: &str, title: &str) -> IncidentView {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "source": "alertmanager",
            "external_id": "x",
            "rule": "payments",
            "title": title,
            "url": null,
            "state": "open",
            "opened_at": Utc::now(),
            "resolved_at": null,
            "bundles": [],
            "responder": true,
        }))
        .unwrap()
    }

    #[test]
    fn the_approval_body_names_the_incident_by_its_title() {
        let ev = event("alice asks for Payments DB for 1 h");
        let mut r = request(
            &ev.request_id.unwrap().to_string(),
            Some("INC"),
            Some("OPS-7"),
        );
        r.incident_id = Some("inc_1".into());
        let known = [incident("inc_1", "payments-api <down>")];
        let body = approval_body(&ev, Some(&r), &known);
        assert!(
            body.ends_with("\nIncident: payments-api &lt;down&gt;"),
            "{body}"
        );
        // Not in the app's list (yet): its id, never nothing.
        let body = approval_body(&ev, Some(&r), &[]);
        assert!(body.ends_with("\nIncident: inc_1"), "{body}");
        // No incident: no line.
        r.incident_id = None;
        assert!(!approval_body(&ev, Some(&r), &known).contains("Incident"));
    }

    fn decided(state: &str, decisions: serde_json::Value) -> RequestView {
        let mut v = serde_json::to_value(request(
            "req_0123456789abcdef0123456789abcdef",
            Some("INC-42"),
            None,
        ))
        .unwrap();
        v["state"] = state.into();
        v["decisions"] = decisions;
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_stale_action_says_who_decided_and_when() {
        let tz = chrono::FixedOffset::east_opt(3600).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T14:24:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let now = at + chrono::Duration::minutes(5);
        let d = |by: &str, what: &str| serde_json::json!([{ "by": by, "at": at, "decision": what, "comment": null }]);
        let r = decided("active", d("bob", "approve"));
        assert_eq!(
            stale_text(&r, "bob", &tz, now).as_deref(),
            Some("Already approved by you at 15:24 (alice's request for Payments DB).")
        );
        assert_eq!(
            stale_text(&r, "dave", &tz, now).as_deref(),
            Some("Already approved by bob at 15:24 (alice's request for Payments DB).")
        );
        let r = decided("denied", d("carol", "deny"));
        assert_eq!(
            stale_text(&r, "bob", &tz, now).as_deref(),
            Some("Already denied by carol at 15:24 (alice's request for Payments DB).")
        );
        let r = decided("cancelled", serde_json::json!([]));
        assert_eq!(
            stale_text(&r, "bob", &tz, now).as_deref(),
            Some("Already cancelled by alice (alice's request for Payments DB).")
        );
        let mut r = decided("timed_out", serde_json::json!([]));
        r.pending_until = at;
        let t = stale_text(&r, "bob", &tz, now).unwrap();
        assert!(
            t.starts_with("Already timed out at 15:24 without a decision"),
            "{t}"
        );
        // Another day: the date too.
        let t = stale_text(
            &decided("expired", d("carol", "approve")),
            "bob",
            &tz,
            now + chrono::Duration::days(2),
        )
        .unwrap();
        assert!(
            t.starts_with("Already approved by carol at 26 Nov 15:24"),
            "{t}"
        );
        // Still pending and I already approved: it says what it waits for.
        let mut r = decided("pending", d("bob", "approve"));
        r.approvals_needed = 2;
        assert_eq!(
            stale_text(&r, "bob", &tz, now).as_deref(),
            Some("Already approved by you at 15:24; it waits for 1 more approval (alice's request for Payments DB).")
        );
        // Still pending and not decided by me: not stale, the error stands.
        assert_eq!(stale_text(&r, "dave", &tz, now), None);
    }

    #[test]
    fn events_name_bundles_by_their_title() {
        let snap: Snapshot = serde_json::from_value(serde_json::json!({
            "status": {
                "signed_in": true, "demo": false, "user": "bob", "groups": [], "broker_url": null,
                "online": true, "offline_since": null, "last_synced_at": null, "clock_offset_ms": 0,
                "last_error": null,
            },
            "bundles": [{
                "name": "payments-db", "title": "Payments DB", "description": "", "tags": [],
                "resources": [],
                "terms": {
                    "flow": "x", "approvals": 0, "default_duration_secs": 60,
                    "max_duration_secs": 60, "justification_required": false,
                    "ticket_required": false, "pending_ttl_secs": 60, "break_glass": false,
                },
            }],
            "favourites": [], "my_requests": [], "approvals": [], "grants": [], "outbox": [],
            "break_glass": {
                "device": {
                    "enrolled": false, "device_id": null, "device_name": null,
                    "broker_fingerprint": null, "failed_attempts": 0, "locked_until": null,
                    "pending_records": 0, "chain_ok": true, "chain_error": null,
                    "broker_key_change": null,
                },
                "credentials": [],
            },
        }))
        .unwrap();
        let mut ev = event("x");
        assert_eq!(bundle_title(&ev, &snap), "Payments DB");
        ev.bundle = Some("payments-db-breakglass".into());
        assert_eq!(
            bundle_title(&ev, &snap),
            "payments-db-breakglass",
            "not a bundle: its name"
        );
        ev.bundle = None;
        assert_eq!(bundle_title(&ev, &snap), "");
    }
}
