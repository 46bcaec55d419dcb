//! Desktop notifications over the freedesktop D-Bus API (notify-rust). Approvers get
//! each new request with Approve and Deny actions when the notification server can
//! draw actions; a click (or a server without actions) opens it in the app.
//! Requesters hear of every decision and of their grants' lifecycle. With no
//! session bus or no notification server nothing breaks: the in-app inbox remains.

use firedoor_client::console::{Console, Snapshot};
use firedoor_core::api::EventView;
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

impl Notifier {
    pub fn new(app: AppHandle, console: Arc<Console>) -> Notifier {
        Notifier { app, console }
    }

    /// A notification without actions; failures are logged, never fatal.
    pub fn plain(&self, summary: &str, body: &str) {
        let (summary, body) = (summary.to_string(), body.to_string());
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
            "request_awaiting_approval" => self.approval(ev),
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
            _ => {}
        }
    }

    /// A request awaiting my approval: Approve / Deny buttons where supported.
    fn approval(&self, ev: &EventView) {
        let Some(rid) = ev.request_id else { return };
        let app = self.app.clone();
        let console = self.console.clone();
        let body = ev.message.clone();
        std::thread::spawn(move || {
            let actions = server_has_actions();
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
                            let (summary, text) = match result {
                                Ok(r) => ("Done", r.message),
                                Err(e) => ("Could not complete that", e.message),
                            };
                            let _ = notify_rust::Notification::new()
                                .appname("Firedoor")
                                .summary(summary)
                                .body(&text)
                                .show();
                        });
                    }
                    "default" => {
                        if let Some(w) = app.get_webview_window("main") {
                            let _ = w.show();
                            let _ = w.set_focus();
                        }
                        let _ = app.emit(
                            "firedoor://open",
                            serde_json::json!({ "view": "approvals", "id": rid.to_string() }),
                        );
                    }
                    _ => {} // closed
                }
            });
        });
    }
}
