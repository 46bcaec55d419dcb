//! The tray menu and the window title. The menu lists my live grants with the time
//! left and the requests waiting for my approval, each with its actions, so the
//! common things are done without opening the window: copy a grant's user name or
//! password, revoke it (behind a second, explicit item), approve or deny a request
//! (its justification, ticket and incident are in the menu, so nobody approves
//! blind). The menu is described as data first ([`model`]), so the text is tested
//! without a desktop, and rebuilt only when that description changes: on a new
//! snapshot, and when a minute of time left passes (never every second).

use crate::notify;
use chrono::{DateTime, Utc};
use firedoor_client::console::{Console, Snapshot};
use firedoor_core::api::{GrantView, RequestView};
use firedoor_core::lifecycle::GrantState;
use firedoor_core::{GrantId, RequestId};
use std::sync::Arc;
use tauri::menu::{IsMenuItem, Menu, MenuItem, MenuItemKind, PredefinedMenuItem, Submenu};
use tauri::{AppHandle, Emitter, Wry};

/// One entry of the tray menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A clickable item (`id` says what it does, see [`Action::parse`]), or a line of
    /// text when `id` is `None`.
    Item {
        id: Option<String>,
        label: String,
    },
    Separator,
    Sub {
        label: String,
        items: Vec<Entry>,
    },
}

fn item(id: impl Into<String>, label: impl Into<String>) -> Entry {
    Entry::Item {
        id: Some(id.into()),
        label: label.into(),
    }
}

fn text(label: impl Into<String>) -> Entry {
    Entry::Item {
        id: None,
        label: label.into(),
    }
}

/// What a clicked menu item asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Open(&'static str, Option<String>),
    Approve(RequestId),
    Deny(RequestId),
    Revoke(GrantId),
    CopySecret(GrantId),
    CopyUser(GrantId),
    Quit,
}

impl Action {
    pub fn parse(id: &str) -> Option<Action> {
        let (verb, arg) = id.split_once(':').unwrap_or((id, ""));
        Some(match verb {
            "open" => Action::Open("bundles", None),
            "access" => Action::Open("access", (!arg.is_empty()).then(|| arg.to_string())),
            "approvals" => Action::Open("approvals", (!arg.is_empty()).then(|| arg.to_string())),
            "quit" => Action::Quit,
            "approve" => Action::Approve(arg.parse().ok()?),
            "deny" => Action::Deny(arg.parse().ok()?),
            "revoke" => Action::Revoke(arg.parse().ok()?),
            "copy-secret" => Action::CopySecret(arg.parse().ok()?),
            "copy-user" => Action::CopyUser(arg.parse().ok()?),
            _ => return None,
        })
    }
}

/// "1:58 left", "42 min left", "<1 min left": minutes at most, so the menu changes
/// once a minute.
pub fn time_left(secs: i64) -> String {
    let mins = secs.max(0) / 60;
    if secs < 60 {
        "<1 min left".into()
    } else if mins < 60 {
        format!("{mins} min left")
    } else {
        format!("{}:{:02} left", mins / 60, mins % 60)
    }
}

/// A duration as people say it: "30 min", "2 h", "1 h 30 min".
fn duration(secs: i64) -> String {
    let mins = secs.max(0) / 60;
    match (mins / 60, mins % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// At most `n` characters, on one line (menus show one line per item).
fn cut(s: &str, n: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let head: String = one_line.chars().take(n).collect();
        format!("{}…", head.trim_end())
    }
}

/// GTK menus treat `_` as a mnemonic marker: doubled, it shows as itself.
fn label_safe(s: &str) -> String {
    s.replace('_', "__")
}

fn grant_entry(g: &GrantView, now: DateTime<Utc>) -> Entry {
    let state = match g.state {
        GrantState::Active => time_left((g.expires_at - now).num_seconds()),
        GrantState::Provisioning => "being set up".into(),
        GrantState::Revoking => "being revoked".into(),
        GrantState::RevokeFailed => "revocation failing, retried".into(),
        other => other.as_str().replace('_', " "),
    };
    let id = g.id.to_string();
    let mut items = Vec::new();
    if g.state == GrantState::Active && !g.ssh {
        items.push(item(format!("copy-user:{id}"), "Copy user name"));
        items.push(item(
            format!("copy-secret:{id}"),
            "Copy password (cleared after 30 s)",
        ));
    }
    items.push(item(format!("access:{id}"), "Show in Firedoor"));
    if matches!(g.state, GrantState::Active | GrantState::Provisioning) {
        items.push(Entry::Separator);
        items.push(Entry::Sub {
            label: "Revoke…".into(),
            items: vec![item(
                format!("revoke:{id}"),
                format!("Yes, revoke {} now", label_safe(&g.bundle_title)),
            )],
        });
    }
    Entry::Sub {
        label: format!("{} · {state}", label_safe(&g.bundle_title)),
        items,
    }
}

fn approval_entry(r: &RequestView, snap: &Snapshot) -> Entry {
    let why = r
        .justification
        .as_deref()
        .filter(|j| !j.trim().is_empty())
        .map(|j| label_safe(&cut(j, 60)));
    let mut items = vec![
        text(format!(
            "{} asks for {} for {}",
            label_safe(&r.requester),
            label_safe(&r.bundle_title),
            duration(r.duration_secs)
        )),
        text(format!(
            "Why: {}",
            why.clone()
                .unwrap_or_else(|| "(no justification given)".into())
        )),
    ];
    if let Some(t) = r.ticket.as_deref().filter(|t| !t.trim().is_empty()) {
        items.push(text(format!("Ticket: {}", label_safe(&cut(t, 60)))));
    }
    if let Some(inc) = &r.incident_id {
        let title = snap
            .incidents
            .iter()
            .find(|i| &i.id == inc)
            .map(|i| i.title.clone())
            .unwrap_or_else(|| inc.clone());
        items.push(text(format!("Incident: {}", label_safe(&cut(&title, 60)))));
    }
    let id = r.id.to_string();
    items.push(Entry::Separator);
    items.push(item(
        format!("approve:{id}"),
        format!("Approve {}'s request", label_safe(&r.requester)),
    ));
    items.push(item(format!("deny:{id}"), "Deny"));
    items.push(item(format!("approvals:{id}"), "Show in Firedoor"));
    Entry::Sub {
        label: format!(
            "{} · {} — “{}”",
            label_safe(&r.requester),
            label_safe(&r.bundle_title),
            why.map(|w| cut(&w, 40))
                .unwrap_or_else(|| "no justification".into())
        ),
        items,
    }
}

/// The tray menu for `snap`, with time left counted at `now` (the broker's time).
/// At most this many grants and this many approvals are listed in the menu; the rest
/// are one "…and N more" item that opens the window. A menu is read at a glance, and
/// a long one costs a rebuild of every item each minute.
pub const TRAY_MAX: usize = 8;

pub fn model(snap: &Snapshot, now: DateTime<Utc>) -> Vec<Entry> {
    let mut m = vec![item("open", "Open Firedoor"), Entry::Separator];
    if !snap.status.signed_in {
        m.push(text("Signed out"));
    } else {
        let live: Vec<&GrantView> = snap.grants.iter().filter(|g| g.state.is_live()).collect();
        if live.is_empty() {
            m.push(text("No active access"));
        } else {
            m.push(text(format!("Active access ({})", live.len())));
            m.extend(live.iter().take(TRAY_MAX).map(|g| grant_entry(g, now)));
            if live.len() > TRAY_MAX {
                m.push(item(
                    "access",
                    format!("…and {} more in My access", live.len() - TRAY_MAX),
                ));
            }
        }
        m.push(Entry::Separator);
        if snap.approvals.is_empty() {
            m.push(text("Nothing waits for your approval"));
        } else if !snap.status.online {
            m.push(text(format!(
                "{} waiting for your approval (approving needs the broker)",
                snap.approvals.len()
            )));
        } else {
            m.push(text(format!(
                "Waiting for your approval ({})",
                snap.approvals.len()
            )));
            m.extend(
                snap.approvals
                    .iter()
                    .take(TRAY_MAX)
                    .map(|r| approval_entry(r, snap)),
            );
            if snap.approvals.len() > TRAY_MAX {
                m.push(item(
                    "approvals",
                    format!("…and {} more in Approvals", snap.approvals.len() - TRAY_MAX),
                ));
            }
        }
    }
    m.push(Entry::Separator);
    m.push(item("access", "My access"));
    m.push(item("approvals", "Approvals"));
    m.push(item("quit", "Quit Firedoor"));
    m
}

/// The menu before the first snapshot.
pub fn initial() -> Vec<Entry> {
    vec![
        item("open", "Open Firedoor"),
        Entry::Separator,
        item("access", "My access"),
        item("approvals", "Approvals"),
        item("quit", "Quit Firedoor"),
    ]
}

/// The window's title: "Firedoor — 2 approvals waiting" while approvals wait.
pub fn window_title(snap: &Snapshot) -> String {
    match snap.approvals.len() {
        0 => "Firedoor".into(),
        1 => "Firedoor — 1 approval waiting".into(),
        n => format!("Firedoor — {n} approvals waiting"),
    }
}

/// The broker's time as the app knows it.
pub fn broker_now(snap: &Snapshot) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::milliseconds(snap.status.clock_offset_ms)
}

fn to_kind(app: &AppHandle, e: &Entry) -> tauri::Result<MenuItemKind<Wry>> {
    Ok(match e {
        Entry::Item {
            id: Some(id),
            label,
        } => MenuItemKind::MenuItem(MenuItem::with_id(app, id, label, true, None::<&str>)?),
        // Lines of text: disabled items (their ids are never acted on).
        Entry::Item { id: None, label } => {
            MenuItemKind::MenuItem(MenuItem::new(app, label, false, None::<&str>)?)
        }
        Entry::Separator => MenuItemKind::Predefined(PredefinedMenuItem::separator(app)?),
        Entry::Sub { label, items } => {
            let sub = Submenu::new(app, label, true)?;
            for i in items {
                sub.append(&to_kind(app, i)? as &dyn IsMenuItem<Wry>)?;
            }
            MenuItemKind::Submenu(sub)
        }
    })
}

/// The tauri menu for a model.
pub fn build_menu(app: &AppHandle, entries: &[Entry]) -> tauri::Result<Menu<Wry>> {
    let menu = Menu::new(app)?;
    for e in entries {
        menu.append(&to_kind(app, e)? as &dyn IsMenuItem<Wry>)?;
    }
    Ok(menu)
}

/// Does what a clicked tray item asks; the outcome is told in a notification.
pub fn on_menu(app: &AppHandle, console: Option<Arc<Console>>, id: &str) {
    let Some(action) = Action::parse(id) else {
        return;
    };
    let show = |view: &str, id: Option<String>| {
        crate::show_main(app);
        let mut open = serde_json::json!({ "view": view });
        if let Some(id) = id {
            open["id"] = id.into();
        }
        let _ = app.emit("firedoor://open", open);
    };
    let Some(console) = console else {
        return show("bundles", None);
    };
    let app2 = app.clone();
    match action {
        Action::Quit => app.exit(0),
        Action::Open(view, id) => show(view, id),
        Action::Approve(rid) | Action::Deny(rid) => {
            let approve = matches!(action, Action::Approve(_));
            tauri::async_runtime::spawn(async move {
                notify::show_outcome(
                    notify::decide(
                        &console,
                        &rid,
                        approve,
                        "the tray menu",
                        firedoor_core::api::ClientChannel::App,
                    )
                    .await,
                );
            });
        }
        Action::Revoke(gid) => {
            tauri::async_runtime::spawn(async move {
                notify::show_outcome(console.revoke(&gid).await);
            });
        }
        Action::CopySecret(gid) | Action::CopyUser(gid) => {
            let secret = matches!(action, Action::CopySecret(_));
            tauri::async_runtime::spawn(async move {
                let outcome = match console.credentials(&gid).await {
                    Ok(mut c) => {
                        let picked = c.items.first().map(|first| {
                            let value = if secret {
                                &first.secret
                            } else {
                                &first.username
                            };
                            (
                                zeroize::Zeroizing::new(value.clone()),
                                first.resource.clone(),
                            )
                        });
                        for i in &mut c.items {
                            zeroize::Zeroize::zeroize(&mut i.secret);
                        }
                        match picked {
                            Some((value, resource)) => {
                                crate::copy_to_clipboard(&app2, value, secret).map(|()| {
                                    if secret {
                                        format!("Password for {resource} copied; cleared from the clipboard in 30 s.")
                                    } else {
                                        format!("User name for {resource} copied.")
                                    }
                                })
                            }
                            None => Err("This grant has no credentials to copy.".to_string()),
                        }
                    }
                    Err(e) => Err(e.message),
                };
                let (summary, body) = match outcome {
                    Ok(t) => ("Copied", t),
                    Err(t) => ("Could not copy", t),
                };
                notify::plain_note(summary, &body);
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snap(v: serde_json::Value) -> Snapshot {
        serde_json::from_value(v).unwrap()
    }

    pub(crate) fn base(
        grants: serde_json::Value,
        approvals: serde_json::Value,
        online: bool,
    ) -> Snapshot {
        snap(serde_json::json!({
            "status": {
                "signed_in": true, "demo": false, "user": "bob", "groups": [], "broker_url": null,
                "online": online, "offline_since": null, "last_synced_at": null, "clock_offset_ms": 0,
                "last_error": null,
            },
            "bundles": [], "favourites": [], "my_requests": [], "approvals": approvals,
            "grants": grants, "outbox": [],
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
    }

    pub(crate) fn grant(id: &str, state: &str, expires_at: DateTime<Utc>) -> serde_json::Value {
        serde_json::json!({
            "id": id, "request_id": "req_0123456789abcdef0123456789abcdef",
            "bundle": "prod-db-read", "bundle_title": "Prod DB read", "holder": "bob",
            "state": state, "activated_at": null, "expires_at": expires_at, "ended_at": null,
            "end_reason": null, "ended_by": null, "last_error": null, "attempts": 0,
            "next_attempt_at": null, "ssh": false,
        })
    }

    fn approval(id: &str, justification: &str) -> serde_json::Value {
        serde_json::json!({
            "id": id, "kind": "access", "bundle": "prod-db-read", "bundle_title": "Prod DB read",
            "requester": "alice", "state": "pending", "duration_secs": 1800,
            "justification": justification, "ticket": "OPS-7", "created_at": Utc::now(),
            "pending_until": Utc::now(), "approvals_needed": 1, "decisions": [],
            "grant_id": null, "error": null,
        })
    }

    const G: &str = "grt_0123456789abcdef0123456789abcdef";
    const R: &str = "req_fedcba9876543210fedcba9876543210";

    fn labels(entries: &[Entry]) -> Vec<String> {
        let mut out = Vec::new();
        for e in entries {
            match e {
                Entry::Item { label, .. } => out.push(label.clone()),
                Entry::Separator => out.push("—".into()),
                Entry::Sub { label, items } => {
                    out.push(format!("{label} ▸"));
                    out.extend(labels(items).into_iter().map(|l| format!("  {l}")));
                }
            }
        }
        out
    }

    #[test]
    fn time_left_changes_once_a_minute() {
        assert_eq!(time_left(7080), "1:58 left");
        assert_eq!(time_left(7119), "1:58 left", "seconds do not show");
        assert_eq!(time_left(3600), "1:00 left");
        assert_eq!(time_left(2520), "42 min left");
        assert_eq!(time_left(59), "<1 min left");
        assert_eq!(time_left(-5), "<1 min left");
    }

    #[test]
    fn the_menu_lists_grants_and_approvals_with_their_actions() {
        let now = Utc::now();
        let s = base(
            serde_json::json!([grant(G, "active", now + chrono::Duration::seconds(7100))]),
            serde_json::json!([approval(
                R,
                "INC-2041: checkout latency, need to look at slow queries in the orders table"
            )]),
            true,
        );
        let l = labels(&model(&s, now));
        let want = [
            "Open Firedoor",
            "—",
            "Active access (1)",
            "Prod DB read · 1:58 left ▸",
            "  Copy user name",
            "  Copy password (cleared after 30 s)",
            "  Show in Firedoor",
            "  —",
            "  Revoke… ▸",
            "    Yes, revoke Prod DB read now",
            "—",
            "Waiting for your approval (1)",
            "alice · Prod DB read — “INC-2041: checkout latency, need to look…” ▸",
            "  alice asks for Prod DB read for 30 min",
            "  Why: INC-2041: checkout latency, need to look at slow queries in…",
            "  Ticket: OPS-7",
            "  —",
            "  Approve alice's request",
            "  Deny",
            "  Show in Firedoor",
            "—",
            "My access",
            "Approvals",
            "Quit Firedoor",
        ];
        assert_eq!(l, want, "{l:#?}");
        // Every clickable id parses into its action.
        fn ids(e: &[Entry], out: &mut Vec<String>) {
            for e in e {
                match e {
                    Entry::Item { id: Some(id), .. } => out.push(id.clone()),
                    Entry::Sub { items, .. } => ids(items, out),
                    _ => {}
                }
            }
        }
        let mut all = Vec::new();
        ids(&model(&s, now), &mut all);
        for id in &all {
            assert!(Action::parse(id).is_some(), "{id}");
        }
        assert!(all.contains(&format!("approve:{R}")));
        assert_eq!(
            Action::parse(&format!("revoke:{G}")),
            Some(Action::Revoke(G.parse().unwrap()))
        );
        assert_eq!(Action::parse("approve:nonsense"), None);
    }

    #[test]
    fn the_menu_only_changes_when_a_minute_passes() {
        let now = Utc::now();
        let s = base(
            serde_json::json!([grant(G, "active", now + chrono::Duration::seconds(7110))]),
            serde_json::json!([]),
            true,
        );
        let a = model(&s, now);
        assert_eq!(
            a,
            model(&s, now + chrono::Duration::seconds(20)),
            "same minute"
        );
        assert_ne!(
            a,
            model(&s, now + chrono::Duration::seconds(60)),
            "next minute"
        );
    }

    #[test]
    fn offline_the_menu_does_not_offer_approving() {
        let s = base(
            serde_json::json!([]),
            serde_json::json!([approval(R, "x")]),
            false,
        );
        let l = labels(&model(&s, Utc::now()));
        assert!(
            l.contains(&"1 waiting for your approval (approving needs the broker)".to_string()),
            "{l:#?}"
        );
        assert!(!l.iter().any(|x| x.contains("Approve")), "{l:#?}");
        assert!(l.contains(&"No active access".to_string()));
    }

    #[test]
    fn user_text_cannot_make_mnemonics() {
        let s = base(
            serde_json::json!([]),
            serde_json::json!([approval(R, "fix _prod_")]),
            true,
        );
        let l = labels(&model(&s, Utc::now()));
        assert!(l.iter().any(|x| x == "  Why: fix __prod__"), "{l:#?}");
    }

    #[test]
    fn the_title_counts_waiting_approvals() {
        let none = base(serde_json::json!([]), serde_json::json!([]), true);
        assert_eq!(window_title(&none), "Firedoor");
        let one = base(
            serde_json::json!([]),
            serde_json::json!([approval(R, "x")]),
            true,
        );
        assert_eq!(window_title(&one), "Firedoor — 1 approval waiting");
        let two = base(
            serde_json::json!([]),
            serde_json::json!([
                approval(R, "x"),
                approval("req_0123456789abcdef0123456789abcdef", "y")
            ]),
            true,
        );
        assert_eq!(window_title(&two), "Firedoor — 2 approvals waiting");
    }

    #[test]
    fn a_long_list_shows_the_first_few_and_how_many_more() {
        let now = Utc::now();
        let grants: Vec<_> = (0..20)
            .map(|i| {
                grant(
                    &format!("grt_{i:032x}"),
                    "active",
                    now + chrono::Duration::hours(1),
                )
            })
            .collect();
        let approvals: Vec<_> = (0..11)
            .map(|i| approval(&format!("req_{i:032x}"), "x"))
            .collect();
        let snap = base(
            serde_json::Value::Array(grants),
            serde_json::Value::Array(approvals),
            true,
        );
        let m = model(&snap, now);
        let subs = m.iter().filter(|e| matches!(e, Entry::Sub { .. })).count();
        assert_eq!(subs, 2 * TRAY_MAX, "{:?}", labels(&m));
        let l = labels(&m);
        assert!(l.contains(&"Active access (20)".to_string()), "{l:?}");
        assert!(
            l.contains(&"…and 12 more in My access".to_string()),
            "{l:?}"
        );
        assert!(l.contains(&"…and 3 more in Approvals".to_string()), "{l:?}");
        let more = m.iter().find_map(|e| match e {
            Entry::Item { id, label } if label.starts_with("…and 12") => id.clone(),
            _ => None,
        });
        assert_eq!(more.as_deref(), Some("access"));
    }
}
