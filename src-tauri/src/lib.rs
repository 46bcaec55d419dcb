//! The Firedoor desktop shell. Thin by design: each Tauri command parses its
//! arguments, calls the console engine in `firedoor_client::console`, and maps the
//! error. This file adds what only a desktop has: the window, the tray, desktop
//! notifications (with Approve/Deny actions where the notification server draws
//! them), the clipboard, and demo mode with an in-process broker.

mod demo;
mod hotkey;
mod links;
mod notify;
mod tray;

use firedoor_client::breakglass::drill::{DrillOutcome, DrillTask};
use firedoor_client::console::{
    ActionResult, AppStatus, Change, Console, ConsoleError, ConsoleErrorCode, ErrorCode, Snapshot,
    UnlockResult,
};
use firedoor_client::secrets::{KeyringStore, MemoryStore, SecretStore};
use firedoor_client::trust::PassphraseStrength;
use firedoor_core::api::{CreateRequest, Credentials, ExtendBody};
use firedoor_core::{GrantId, RequestId};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Emitter, Manager, State, WindowEvent};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_clipboard_manager::ClipboardExt;
use tauri_plugin_deep_link::DeepLinkExt;
use zeroize::{Zeroize, Zeroizing};

/// The argument the autostart entry passes: start hidden in the tray.
pub const MINIMIZED_ARG: &str = "--minimized";

/// When the process started, for the cold-start figure.
pub static STARTED: OnceLock<Instant> = OnceLock::new();

/// Seconds after which a copied secret is cleared from the clipboard.
const CLIPBOARD_CLEAR_SECS: u64 = 30;

pub struct AppState {
    pub console: Arc<Console>,
    /// Demo mode only: the in-process broker, which the UI can stop and start.
    demo: Option<Arc<demo::DemoBroker>>,
    tray: std::sync::Mutex<Option<TrayIcon>>,
    /// What the tray menu shows now (rebuilt only when this changes).
    tray_menu: std::sync::Mutex<Vec<tray::Entry>>,
}

type CmdResult<T> = Result<T, ConsoleError>;

fn parse<T: std::str::FromStr>(text: &str) -> CmdResult<T>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| ConsoleError::new(ErrorCode::InvalidRequest, e.to_string()))
}

#[tauri::command]
async fn status(s: State<'_, AppState>) -> CmdResult<AppStatus> {
    s.console.status().await
}

#[tauri::command]
async fn snapshot(s: State<'_, AppState>) -> CmdResult<Snapshot> {
    s.console.snapshot().await
}

/// `urls`: one broker URL, or several replicas of one broker in the order to try them
/// (the first is the primary); checked again by the console.
#[tauri::command]
async fn sign_in(s: State<'_, AppState>, urls: Vec<String>, token: String) -> CmdResult<AppStatus> {
    let token = Zeroizing::new(token);
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    s.console.sign_in_urls(&urls, &token).await
}

/// Signs in through the broker's single sign-on in the system browser.
#[tauri::command]
async fn sign_in_sso(s: State<'_, AppState>, urls: Vec<String>) -> CmdResult<AppStatus> {
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    s.console
        .sign_in_sso(&urls, firedoor_client::sso::open_in_browser)
        .await
}

#[tauri::command]
async fn sign_out(s: State<'_, AppState>) -> CmdResult<AppStatus> {
    s.console.sign_out().await
}

#[tauri::command]
async fn request_bundle(
    s: State<'_, AppState>,
    bundle: String,
    duration_secs: Option<i64>,
    justification: Option<String>,
    ticket: Option<String>,
    incident: Option<String>,
) -> CmdResult<ActionResult> {
    s.console
        .request_bundle(CreateRequest {
            bundle,
            duration_secs,
            justification,
            ticket,
            incident,
            on_behalf_of: None,
        })
        .await
}

#[tauri::command]
async fn cancel_request(s: State<'_, AppState>, id: String) -> CmdResult<ActionResult> {
    s.console.cancel(&parse::<RequestId>(&id)?).await
}

/// Cancels an action queued offline (an outbox item) before it is sent.
#[tauri::command]
async fn cancel_queued(s: State<'_, AppState>, id: String) -> CmdResult<ActionResult> {
    s.console.cancel_queued(&id).await
}

#[tauri::command]
async fn approve(
    s: State<'_, AppState>,
    id: String,
    comment: Option<String>,
) -> CmdResult<ActionResult> {
    s.console
        .approve(&parse::<RequestId>(&id)?, comment.as_deref())
        .await
}

#[tauri::command]
async fn deny(
    s: State<'_, AppState>,
    id: String,
    reason: Option<String>,
) -> CmdResult<ActionResult> {
    s.console
        .deny(&parse::<RequestId>(&id)?, reason.as_deref())
        .await
}

#[tauri::command]
async fn revoke(s: State<'_, AppState>, grant_id: String) -> CmdResult<ActionResult> {
    s.console.revoke(&parse::<GrantId>(&grant_id)?).await
}

#[tauri::command]
async fn extend(
    s: State<'_, AppState>,
    grant_id: String,
    duration_secs: Option<i64>,
    justification: Option<String>,
) -> CmdResult<ActionResult> {
    s.console
        .extend(
            &parse::<GrantId>(&grant_id)?,
            ExtendBody {
                duration_secs,
                justification,
            },
        )
        .await
}

// issue 14: report
/// Whether the signed-in user may read reports (an admin).
#[tauri::command]
async fn reports_allowed(s: State<'_, AppState>) -> CmdResult<bool> {
    Ok(s.console.reports_allowed().await)
}

/// A report as Markdown or HTML, from the broker (admins).
#[tauri::command]
async fn report(
    s: State<'_, AppState>,
    kind: String,
    id: String,
    format: String,
) -> CmdResult<String> {
    s.console.report(&kind, &id, &format).await
}

/// Saves a report's self-contained HTML page in the Downloads folder (or the home
/// folder); returns where.
#[tauri::command]
async fn save_report(
    app: AppHandle,
    s: State<'_, AppState>,
    kind: String,
    id: String,
) -> CmdResult<String> {
    let html = s.console.report(&kind, &id, "html").await?;
    let dir = app
        .path()
        .download_dir()
        .or_else(|_| app.path().home_dir())
        .map_err(|e| {
            ConsoleError::new(ConsoleErrorCode::Io, format!("no folder to save in: {e}"))
        })?;
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let path = dir.join(format!("firedoor-report-{kind}-{safe}.html"));
    std::fs::write(&path, html).map_err(|e| {
        ConsoleError::new(
            ConsoleErrorCode::Io,
            format!("saving {}: {e}", path.display()),
        )
    })?;
    Ok(path.display().to_string())
}

#[tauri::command]
async fn credentials(s: State<'_, AppState>, grant_id: String) -> CmdResult<Revealed> {
    s.console
        .credentials(&parse::<GrantId>(&grant_id)?)
        .await
        .map(Revealed)
}

/// Credentials on their way to the UI: serialised as they are, and their secrets
/// zeroized when dropped (right after the answer is sent).
struct Revealed(Credentials);

impl serde::Serialize for Revealed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Drop for Revealed {
    fn drop(&mut self) {
        for item in &mut self.0.items {
            item.secret.zeroize();
        }
    }
}

#[tauri::command]
async fn copy_secret(app: AppHandle, text: String) -> CmdResult<()> {
    copy_to_clipboard(&app, Zeroizing::new(text), true)
        .map_err(|m| ConsoleError::new(ConsoleErrorCode::Clipboard, m))
}

/// Puts `text` on the clipboard; a secret (`clear`) is cleared again after
/// [`CLIPBOARD_CLEAR_SECS`] if the clipboard still holds it.
pub(crate) fn copy_to_clipboard(
    app: &AppHandle,
    text: Zeroizing<String>,
    clear: bool,
) -> Result<(), String> {
    app.clipboard()
        .write_text(text.as_str())
        .map_err(|e| format!("Cannot use the clipboard: {e}"))?;
    if !clear {
        return Ok(());
    }
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        tokio::time::sleep(Duration::from_secs(CLIPBOARD_CLEAR_SECS)).await;
        // Clear only if the secret is still what the clipboard holds.
        if app
            .clipboard()
            .read_text()
            .map(|t| Zeroizing::new(t) == text)
            .unwrap_or(false)
        {
            let _ = app.clipboard().write_text(String::new());
        }
    });
    Ok(())
}

/// A passphrase from the UI as a zeroizing secret (the argument's own buffer is
/// zeroized too, rather than handed over and reallocated).
fn secret(text: String) -> secrecy::SecretString {
    let text = Zeroizing::new(text);
    secrecy::SecretString::from(text.as_str())
}

/// How strong a proposed unlock passphrase is, with zxcvbn's feedback, for the UI
/// to show while it is typed (enrolment applies the same rule).
#[tauri::command]
async fn passphrase_strength(
    s: State<'_, AppState>,
    passphrase: String,
) -> CmdResult<PassphraseStrength> {
    let passphrase = secret(passphrase);
    let user = s.console.status().await?.user.unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        firedoor_client::trust::passphrase_strength(&passphrase, &[user.as_str()])
    })
    .await
    .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))
}

/// The user compared the broker's new signing key fingerprint with the pinned one
/// (out of band) and trusts it: re-pins it, which lets break glass work again.
#[tauri::command]
async fn confirm_broker_key(
    s: State<'_, AppState>,
    new_fingerprint: String,
) -> CmdResult<Snapshot> {
    s.console
        .confirm_broker_key(&new_fingerprint, chrono::Utc::now())
        .await
}

/// Offline break glass: creates this device's keys, wrapped with the local unlock
/// passphrase, and registers their public halves with the broker.
#[tauri::command]
async fn enrol_device(s: State<'_, AppState>, passphrase: String) -> CmdResult<Snapshot> {
    let passphrase = secret(passphrase);
    s.console
        .enrol_device(&passphrase, chrono::Utc::now())
        .await
}

/// Break glass: online through the broker, offline from the sealed envelope (recorded
/// on the signed local chain before the secret comes back).
#[tauri::command]
async fn unlock_secret(
    s: State<'_, AppState>,
    name: String,
    reason: String,
    passphrase: String,
) -> CmdResult<UnlockResult> {
    let passphrase = secret(passphrase);
    s.console
        .unlock_secret(&name, &reason, &passphrase, chrono::Utc::now())
        .await
}

// issue 14: drills
/// The drills waiting on this device.
#[tauri::command]
async fn pending_drills(s: State<'_, AppState>) -> CmdResult<Vec<DrillTask>> {
    s.console.pending_drills().await
}

/// Answers a drill with the passphrase: this device's sealed copy is opened in
/// memory and only a signed proof goes to the broker; no secret comes back.
#[tauri::command]
async fn answer_drill(
    s: State<'_, AppState>,
    id: String,
    passphrase: String,
) -> CmdResult<DrillOutcome> {
    let passphrase = secret(passphrase);
    s.console
        .answer_drill(&id, &passphrase, chrono::Utc::now())
        .await
}

/// Readiness per secret (admins and security).
#[tauri::command]
async fn readiness(s: State<'_, AppState>) -> CmdResult<firedoor_core::drill::Readiness> {
    s.console.readiness().await
}

// issue 14: uses
/// Break-glass uses the broker shows this user (theirs; security and admins: all
/// of theirs); only open (unclassified) ones if `open_only`.
#[tauri::command]
async fn break_glass_uses(
    s: State<'_, AppState>,
    open_only: bool,
) -> CmdResult<Vec<firedoor_core::uses::UseView>> {
    s.console.break_glass_uses(open_only).await
}

/// Classifies a break-glass use: `drill`, `incident` (with its id) or `other`
/// (with a note).
#[tauri::command]
async fn classify_use(
    s: State<'_, AppState>,
    id: String,
    kind: String,
    incident: Option<String>,
    note: Option<String>,
) -> CmdResult<firedoor_core::uses::UseView> {
    let kind = firedoor_client::uses::parse_kind(&kind)
        .map_err(|m| ConsoleError::new(ConsoleErrorCode::Usage, m))?;
    s.console
        .classify_use(&id, kind, incident.as_deref(), note.as_deref())
        .await
}

// issue 14: quorum
/// Two-person break glass, step 1: sign an unlock request (text + QR code).
#[tauri::command]
async fn quorum_request(
    s: State<'_, AppState>,
    name: String,
    reason: String,
    passphrase: String,
) -> CmdResult<firedoor_client::breakglass::QuorumRequestOut> {
    let passphrase = secret(passphrase);
    s.console
        .quorum_request(&name, &reason, &passphrase, chrono::Utc::now())
        .await
}

/// Two-person break glass: who asks for what and why (nothing is released).
#[tauri::command]
async fn quorum_inspect(
    s: State<'_, AppState>,
    request: String,
) -> CmdResult<firedoor_client::breakglass::QuorumRequestView> {
    s.console.quorum_inspect(&request, chrono::Utc::now()).await
}

/// Two-person break glass, step 2: release this device's share to a request.
#[tauri::command]
async fn quorum_release(
    s: State<'_, AppState>,
    request: String,
    passphrase: String,
) -> CmdResult<firedoor_client::breakglass::QuorumReleaseOut> {
    let passphrase = secret(passphrase);
    s.console
        .quorum_release(&request, &passphrase, chrono::Utc::now())
        .await
}

/// Two-person break glass, step 3: add releases; with the quorum, the secret
/// (recorded on the signed local chain before it comes back).
#[tauri::command]
async fn quorum_complete(
    s: State<'_, AppState>,
    request_id: String,
    releases: Vec<String>,
    passphrase: String,
) -> CmdResult<UnlockResult> {
    let passphrase = secret(passphrase);
    s.console
        .quorum_complete(&request_id, &releases, &passphrase, chrono::Utc::now())
        .await
}

/// Two-person break glass: this device's requests of the last day.
#[tauri::command]
async fn quorum_pending(
    s: State<'_, AppState>,
) -> CmdResult<Vec<firedoor_client::breakglass::QuorumProgress>> {
    s.console.quorum_pending(chrono::Utc::now()).await
}

/// Demo mode: stops the in-process broker (`up = false`, as if the network cable
/// were pulled) or starts it again.
#[tauri::command]
async fn demo_broker(s: State<'_, AppState>, up: bool) -> CmdResult<Snapshot> {
    let Some(db) = &s.demo else {
        return Err(ConsoleError::new(
            ConsoleErrorCode::NotDemo,
            "Only the demo's built-in broker can be stopped from the app.",
        ));
    };
    db.set_up(up)
        .await
        .map_err(|e| ConsoleError::new(ConsoleErrorCode::Demo, format!("Demo broker: {e}")))?;
    // Learn the new state now rather than at the next event or resync.
    let _ = s.console.sync().await;
    if up {
        let _ = s.console.replay_outbox().await;
    }
    s.console.snapshot().await
}

#[tauri::command]
async fn set_favourite(
    s: State<'_, AppState>,
    bundle: String,
    favourite: bool,
) -> CmdResult<Snapshot> {
    s.console.set_favourite(&bundle, favourite).await
}

#[tauri::command]
async fn resync(s: State<'_, AppState>) -> CmdResult<Snapshot> {
    // A failed sync is not an error for the UI: the snapshot says offline.
    let _ = s.console.sync().await;
    let _ = s.console.replay_outbox().await;
    s.console.snapshot().await
}

/// The UI listens for `firedoor://link` now: returns the links that came before
/// (the one the app was started with, if any).
#[tauri::command]
fn links_ready(links: State<'_, links::Links>) -> Vec<links::LinkEvent> {
    links.ready()
}

fn autostart_error(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::new(
        firedoor_core::ConsoleErrorCode::Autostart,
        format!("Cannot change starting at login: {e}"),
    )
}

/// Whether Firedoor starts at login (into the tray).
#[tauri::command]
fn autostart(app: AppHandle) -> CmdResult<bool> {
    app.autolaunch().is_enabled().map_err(autostart_error)
}

/// Turns starting at login on (an XDG autostart entry that runs the app with
/// `--minimized`, into the tray) or off (the entry is removed). Returns the new state.
#[tauri::command]
fn set_autostart(app: AppHandle, on: bool) -> CmdResult<bool> {
    let a = app.autolaunch();
    if on { a.enable() } else { a.disable() }.map_err(autostart_error)?;
    a.is_enabled().map_err(autostart_error)
}

#[tauri::command]
fn ui_ready() {
    static ONCE: OnceLock<()> = OnceLock::new();
    if ONCE.set(()).is_ok() {
        let ms = STARTED.get().map(|t| t.elapsed().as_millis()).unwrap_or(0);
        // Read by scripts/bench-desktop.sh.
        eprintln!("firedoor: interactive after {ms} ms");
    }
}

/// Where the app keeps its cache: `$FIREDOOR_DATA_DIR`, or the platform's app data
/// dir (XDG_DATA_HOME on Linux); `demo/` under it in demo mode. The rule is
/// `firedoor_client::paths`, shared with the `firedoor` command line.
fn data_dir(app: &AppHandle, demo: bool) -> anyhow::Result<std::path::PathBuf> {
    let base = match std::env::var_os(firedoor_client::paths::DATA_DIR_ENV) {
        Some(_) => None,
        None => Some(app.path().app_data_dir()?),
    };
    firedoor_client::paths::data_dir_from(base, demo).map_err(anyhow::Error::msg)
}

/// Firedoor is one small page of lists: it needs no GPU compositing. Under WebKitGTK
/// that means a GL context, composited layers and their tile buffers in the web
/// process, which cost more memory and CPU than the page itself (measured with
/// `make bench-desktop`: about 120 MB of the web process). WebKit reads this switch
/// when the WebView is created (changing the setting on a loading page stops its
/// web process), so it is set first thing, while the process has one thread.
/// `FIREDOOR_WEBVIEW_GPU=1` keeps WebKit's default (hardware acceleration).
#[cfg(target_os = "linux")]
fn webview_without_gpu() {
    const SWITCH: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";
    let gpu = std::env::var("FIREDOOR_WEBVIEW_GPU").is_ok_and(|v| v == "1");
    if !gpu && std::env::var_os(SWITCH).is_none() {
        std::env::set_var(SWITCH, "1");
    }
}

/// Makes the window's WebView cheaper to keep open: no caches for navigating
/// between documents (there is one page, never navigated away from).
#[cfg(target_os = "linux")]
fn tune_webview(app: &AppHandle) {
    let Some(w) = app.get_webview_window("main") else {
        return;
    };
    let r = w.with_webview(move |wv| {
        use webkit2gtk::{CacheModel, SettingsExt, WebContextExt, WebViewExt};
        let view = wv.inner();
        if let Some(settings) = WebViewExt::settings(&view) {
            settings.set_enable_page_cache(false);
        }
        if let Some(ctx) = view.context() {
            ctx.set_cache_model(CacheModel::DocumentViewer);
        }
    });
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot tune the WebView");
    }
}

pub(crate) fn show_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

fn build_tray(app: &AppHandle) -> tauri::Result<TrayIcon> {
    // Filled in from the first snapshot.
    let menu = tray::build_menu(app, &tray::initial())?;
    let mut b = TrayIconBuilder::with_id("firedoor")
        .menu(&menu)
        .tooltip("Firedoor")
        .on_menu_event(|app, ev| {
            let console = app.try_state::<AppState>().map(|s| s.console.clone());
            tray::on_menu(app, console, ev.id().as_ref());
        });
    if let Some(icon) = app.default_window_icon() {
        b = b.icon(icon.clone());
    }
    b.build(app)
}

/// Brings the tray menu and the window title up to date with `snap`. The menu is
/// rebuilt only when what it shows changed (time left is in minutes).
fn refresh_shell(app: &AppHandle, snap: &Snapshot) {
    if let Some(w) = app.get_webview_window("main") {
        let title = tray::window_title(snap);
        if w.title().ok().as_deref() != Some(title.as_str()) {
            let _ = w.set_title(&title);
        }
    }
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let guard = state.tray.lock().unwrap_or_else(|p| p.into_inner());
    let Some(tray) = guard.as_ref() else {
        return;
    };
    let text = tray_text(snap);
    let _ = tray.set_tooltip(Some(&text));
    let _ = tray.set_title(Some(&format!(
        "{}·{}",
        snap.grants.len(),
        snap.approvals.len()
    )));
    let model = tray::model(snap, tray::broker_now(snap));
    let mut shown = state.tray_menu.lock().unwrap_or_else(|p| p.into_inner());
    if *shown != model {
        match tray::build_menu(app, &model) {
            Ok(menu) => {
                if let Err(e) = tray.set_menu(Some(menu)) {
                    tracing::info!(error = %e, "updating the tray menu");
                } else {
                    *shown = model;
                }
            }
            Err(e) => tracing::info!(error = %e, "building the tray menu"),
        }
    }
}

/// Tray text: how many grants are active and approvals pending.
fn tray_text(s: &Snapshot) -> String {
    let active = s.grants.iter().filter(|g| g.state.is_live()).count();
    let pending = s.approvals.len();
    let mut t = format!("Firedoor — {active} active, {pending} to approve");
    if !s.status.online {
        t.push_str(" (offline)");
    }
    t
}

/// Pushes every change to the UI and the tray, and turns broker events into
/// desktop notifications.
fn forward_changes(app: AppHandle, console: Arc<Console>, latest: Latest) {
    let mut rx = console.subscribe();
    let notifier = notify::Notifier::new(app.clone(), console.clone());
    tauri::async_runtime::spawn(async move {
        let mut last_sent = SentSnapshot::default();
        loop {
            let change = match rx.recv().await {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Change::Snapshot,
                Err(_) => break,
            };
            let Ok(snap) = console.snapshot().await else {
                continue;
            };
            *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
            // A periodic sync that found nothing new: the window and the tray stay as
            // they are (no re-render, no repaint of an idle window).
            if matches!(change, Change::Snapshot) && !last_sent.changed(&snap) {
                continue;
            }
            // A broker event is told first: redrawing the window and the tray can wait.
            if let Change::Event(ev) = &change {
                notifier.event(ev, &snap);
            }
            // "Approval needed" notifications of requests decided meanwhile go away.
            notifier.follow(&snap);
            let _ = app.emit("firedoor://snapshot", &snap);
            refresh_shell(&app, &snap);
            match change {
                Change::Event(_) | Change::Snapshot => {}
                Change::OutboxReplayed { summary, outcome } => {
                    notifier.plain("Queued action sent", &format!("{summary} — {outcome}"))
                }
                Change::Connectivity { online } => {
                    if online {
                        notifier.plain(
                            "Firedoor is back online",
                            "The broker answers again; queued actions are being sent.",
                        )
                    }
                }
            }
        }
    });
}

/// What was last sent to the window, to tell a snapshot that changes nothing the
/// window shows from one that does.
#[derive(Default)]
struct SentSnapshot {
    /// The snapshot as JSON without `last_synced_at` (the window does not show it) and
    /// with the clock offset as last sent.
    shown: Option<serde_json::Value>,
    offset_ms: i64,
}

impl SentSnapshot {
    /// Clock offsets closer than this to the one sent count as the same: each sync
    /// measures it again with a few milliseconds of jitter, and countdowns show whole
    /// seconds.
    const OFFSET_SLACK_MS: i64 = 500;

    /// Whether `snap` differs from the last one sent in anything the window shows;
    /// remembers it if so.
    fn changed(&mut self, snap: &Snapshot) -> bool {
        let Ok(mut v) = serde_json::to_value(snap) else {
            return true;
        };
        let offset = snap.status.clock_offset_ms;
        let same_offset =
            self.shown.is_some() && (offset - self.offset_ms).abs() < Self::OFFSET_SLACK_MS;
        if let Some(status) = v.get_mut("status").and_then(|s| s.as_object_mut()) {
            status.remove("last_synced_at");
            status.remove("clock_offset_ms");
        }
        if same_offset && self.shown.as_ref() == Some(&v) {
            return false;
        }
        self.shown = Some(v);
        self.offset_ms = offset;
        true
    }
}

/// The last snapshot [`forward_changes`] read, for the tray's minute tick (which
/// then needs neither the cache nor the keyring).
type Latest = Arc<std::sync::Mutex<Option<Snapshot>>>;

/// The tray's time left moves on by the minute even when nothing else changes.
fn tick_tray(app: AppHandle, console: Arc<Console>, latest: Latest) {
    tauri::async_runtime::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let last = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let snap = match last {
                Some(s) => s,
                None => match console.snapshot().await {
                    Ok(s) => s,
                    Err(_) => continue,
                },
            };
            refresh_shell(&app, &snap);
        }
    });
}

/// SIGTERM (the session ends, `kill`): exit as Quit does, so the window's size and
/// position are saved (the window-state plugin writes them on exit).
#[cfg(unix)]
fn exit_on_sigterm(app: AppHandle) {
    tauri::async_runtime::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        if term.recv().await.is_some() {
            tracing::info!("SIGTERM: exiting");
            app.exit(0);
        }
    });
}

pub fn run() {
    let _ = STARTED.set(Instant::now());
    #[cfg(target_os = "linux")]
    webview_without_gpu();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIREDOOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,firedoor_app=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let demo = std::env::args().any(|a| a == "--demo")
        || std::env::var("FIREDOOR_DEMO").is_ok_and(|v| v == "1");

    // Started at login (the autostart entry passes it): into the tray, no window.
    let minimized = std::env::args().any(|a| a == MINIMIZED_ARG);

    let result = tauri::Builder::default()
        // First: a second launch hands its arguments (a firedoor:// link) to the
        // running app over D-Bus and exits before anything else starts. With the
        // deep-link feature, the link goes on to the deep-link plugin (below).
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            match links::unparsable_link_arg(&argv) {
                Some(bad) => links::deliver(app, bad),
                None => show_main(app),
            }
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(
            tauri_plugin_window_state::Builder::default()
                // Size, position, maximised; whether it shows is ours to say (tray, --minimized).
                .with_state_flags(
                    tauri_plugin_window_state::StateFlags::all()
                        - tauri_plugin_window_state::StateFlags::VISIBLE,
                )
                .build(),
        )
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .app_name("firedoor")
                .args([MINIMIZED_ARG])
                .build(),
        )
        .plugin(tauri_plugin_clipboard_manager::init())
        .plugin(hotkey::plugin())
        .invoke_handler(tauri::generate_handler![
            status,
            snapshot,
            sign_in,
            sign_in_sso,
            sign_out,
            request_bundle,
            cancel_request,
            cancel_queued,
            approve,
            deny,
            revoke,
            extend,
            credentials,
            copy_secret,
            set_favourite,
            enrol_device,
            unlock_secret,
            passphrase_strength,
            confirm_broker_key,
            demo_broker,
            resync,
            links_ready,
            autostart,
            set_autostart,
            ui_ready,
            // issue 14: drills
            pending_drills,
            answer_drill,
            readiness,
            // issue 14: uses
            break_glass_uses,
            classify_use,
            // issue 14: report
            reports_allowed,
            report,
            save_report,
            // issue 14: quorum
            quorum_request,
            quorum_inspect,
            quorum_release,
            quorum_complete,
            quorum_pending
        ])
        .setup(move |app| {
            let handle = app.handle().clone();
            #[cfg(target_os = "linux")]
            tune_webview(&handle);
            let dir = data_dir(&handle, demo)?;
            // Demo tokens die with the process: memory. Otherwise the OS keyring.
            let secrets: Arc<dyn SecretStore> = if demo {
                Arc::new(MemoryStore::default())
            } else {
                Arc::new(KeyringStore::new(firedoor_client::paths::KEYRING_SERVICE))
            };
            let console = tauri::async_runtime::block_on(Console::open(&dir, secrets, demo))
                .map_err(|e| {
                    anyhow::anyhow!("opening the local cache in {}: {e}", dir.display())
                })?;
            let tray = match build_tray(&handle) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "no tray icon (no status notifier here?)");
                    None
                }
            };
            // The window is created hidden: shown now unless started into the tray
            // (without a tray, always shown: there would be no way to open it).
            if !minimized || tray.is_none() {
                show_main(&handle);
            }
            // Links: the one this launch was started with, and later ones handed
            // over by second launches.
            app.manage(links::Links::default());
            {
                let h = handle.clone();
                app.deep_link().on_open_url(move |ev| {
                    for url in ev.urls() {
                        links::deliver(&h, url.as_str());
                    }
                });
            }
            let args: Vec<String> = std::env::args().collect();
            match app.deep_link().get_current() {
                Ok(Some(urls)) => {
                    for url in urls {
                        links::deliver(&handle, url.as_str());
                    }
                }
                _ => {
                    if let Some(bad) = links::unparsable_link_arg(&args) {
                        links::deliver(&handle, bad);
                    }
                }
            }
            let demo_broker = demo.then(|| Arc::new(demo::DemoBroker::default()));
            app.manage(AppState {
                console: console.clone(),
                demo: demo_broker.clone(),
                tray: std::sync::Mutex::new(tray),
                tray_menu: std::sync::Mutex::new(Vec::new()),
            });
            let latest: Latest = Arc::default();
            forward_changes(handle.clone(), console.clone(), latest.clone());
            tick_tray(handle.clone(), console.clone(), latest);
            hotkey::follow(handle.clone(), console.clone());
            if let Some(db) = demo_broker {
                let c = console.clone();
                let dir = dir.clone();
                tauri::async_runtime::spawn(async move {
                    if let Err(e) = demo::start(&dir, c, db).await {
                        tracing::error!(error = %e, "demo broker failed to start");
                    }
                });
            }
            tauri::async_runtime::spawn(console.run(Duration::from_secs(60)));
            #[cfg(unix)]
            exit_on_sigterm(handle.clone());
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window keeps Firedoor in the tray (if there is one).
            if let WindowEvent::CloseRequested { api, .. } = event {
                let has_tray = window
                    .app_handle()
                    .try_state::<AppState>()
                    .is_some_and(|s| s.tray.lock().map(|t| t.is_some()).unwrap_or(false));
                if has_tray && std::env::var_os("FIREDOOR_EXIT_ON_CLOSE").is_none() {
                    api.prevent_close();
                    let _ = window.hide();
                }
            }
        })
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("firedoor: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tray::tests::{base, grant};
    use chrono::{TimeZone, Utc};

    #[test]
    fn a_sync_that_changes_nothing_shown_is_not_sent_again() {
        const G1: &str = "grt_0123456789abcdef0123456789abcdef";
        let end = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let g = serde_json::json!([grant(G1, "active", end)]);
        let mut sent = SentSnapshot::default();
        let first = base(g.clone(), serde_json::json!([]), true);
        assert!(sent.changed(&first), "the first snapshot is always sent");
        assert!(!sent.changed(&first), "the same again is not");

        // A new sync time and a few ms of offset jitter change nothing shown.
        let mut resynced = first.clone();
        resynced.status.last_synced_at = Some(end);
        resynced.status.clock_offset_ms = 120;
        assert!(!sent.changed(&resynced));
        resynced.status.clock_offset_ms = -350;
        assert!(!sent.changed(&resynced));

        // A real clock change, a grant ending, going offline: sent.
        resynced.status.clock_offset_ms = 2_000;
        assert!(sent.changed(&resynced));
        assert!(!sent.changed(&resynced));
        let revoked = base(
            serde_json::json!([grant(G1, "revoked", end)]),
            serde_json::json!([]),
            true,
        );
        assert!(sent.changed(&revoked));
        let offline = base(
            serde_json::json!([grant(G1, "revoked", end)]),
            serde_json::json!([]),
            false,
        );
        assert!(sent.changed(&offline));
    }
}
