//! The global shortcut (default Ctrl+Alt+K): pressed in any application, it brings
//! the window forward with the quick switcher open. The combination is a setting in
//! the cache (`firedoor shortcut …` changes it, see `firedoor_client::shortcut`);
//! the app follows the setting while it runs. Registering can fail (another
//! application holds the combination, no X11 display): the app then says so, in the
//! log, once in a notification, and in `firedoor shortcut`, and carries on.

use firedoor_client::console::Console;
use firedoor_client::shortcut;
use std::sync::Arc;
use std::time::Duration;
use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Emitter, Wry};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, ShortcutState};

/// How often the app looks for a changed setting (one small cache read).
const FOLLOW_EVERY: Duration = Duration::from_secs(3);

/// The plugin, with the handler every registered shortcut shares.
pub fn plugin() -> TauriPlugin<Wry> {
    tauri_plugin_global_shortcut::Builder::new()
        .with_handler(|app, _shortcut, event| {
            if event.state == ShortcutState::Pressed {
                open_quick_switcher(app);
            }
        })
        .build()
}

/// Shows the window with the quick switcher open.
pub fn open_quick_switcher(app: &AppHandle) {
    crate::show_main(app);
    let _ = app.emit("firedoor://open", serde_json::json!({ "view": "quick" }));
}

/// Why a combination cannot be registered here, before trying (no X11 display: the
/// key grab needs one; the library would not say).
fn unavailable() -> Option<String> {
    match std::env::var_os("DISPLAY") {
        Some(d) if !d.is_empty() => None,
        _ => Some("global shortcuts need an X11 display (DISPLAY is not set)".into()),
    }
}

/// In words, why registering failed.
fn reason(e: &tauri_plugin_global_shortcut::Error) -> String {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("already regist") {
        "another application already uses it".into()
    } else {
        text
    }
}

/// Registers `want` instead of `old`. Returns what is registered now and a sentence
/// saying how it went.
fn apply(app: &AppHandle, old: Option<String>, want: Option<String>) -> (Option<String>, String) {
    let gs = app.global_shortcut();
    if let Some(old) = old {
        if let Err(e) = gs.unregister(old.as_str()) {
            tracing::info!(error = %e, shortcut = %old, "unregistering the global shortcut");
        }
    }
    let Some(want) = want else {
        return (None, "off".into());
    };
    let failed = |why: String| {
        format!(
            "{want} is not available: {why}. Ctrl+K still opens the quick switcher inside the window; \
             choose another combination with `firedoor shortcut <keys>`."
        )
    };
    if let Err(m) = shortcut::normalize(&want) {
        return (None, failed(m.trim_end_matches('.').to_string()));
    }
    if let Some(why) = unavailable() {
        return (None, failed(why));
    }
    match gs.register(want.as_str()) {
        Ok(()) => (
            Some(want.clone()),
            format!("{want} opens the quick switcher from any application"),
        ),
        Err(e) => (None, failed(reason(&e))),
    }
}

/// Registers the configured shortcut now and follows changes of the setting for as
/// long as the app runs.
pub fn follow(app: AppHandle, console: Arc<Console>) {
    tauri::async_runtime::spawn(async move {
        let mut registered: Option<String> = None;
        let mut seen: Option<Option<String>> = None;
        loop {
            match console.global_shortcut_setting().await {
                Ok((setting, before)) if seen.as_ref() != Some(&setting) => {
                    seen = Some(setting.clone());
                    let want = shortcut::effective(setting.as_deref());
                    let (a, old) = (app.clone(), registered.take());
                    let (now, status) =
                        tauri::async_runtime::spawn_blocking(move || apply(&a, old, want))
                            .await
                            .unwrap_or((None, "could not be registered".into()));
                    registered = now;
                    if registered.is_some() || status == "off" {
                        tracing::info!(%status, "global shortcut");
                    } else {
                        tracing::warn!(%status, "global shortcut");
                        // Said once per problem, not at every start.
                        if before.as_deref() != Some(status.as_str()) {
                            crate::notify::plain_note("Global shortcut unavailable", &status);
                        }
                    }
                    if let Err(e) = console.set_global_shortcut_status(&status).await {
                        tracing::info!(error = %e, "recording the global shortcut's status");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "reading the global shortcut setting"),
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    });
}
