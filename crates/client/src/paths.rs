//! Where the desktop app and the `firedoor` command line keep their data, in one
//! place so both always open the same cache and the same keyring entries (signing
//! in with one signs the other in).
//!
//! - Data dir: `$FIREDOOR_DATA_DIR`, else the platform's app data dir for the app's
//!   Tauri identifier, exactly as Tauri's `app_data_dir()` computes it
//!   (`dirs::data_dir()` joined with the identifier): on Linux
//!   `$XDG_DATA_HOME/dev.firedoor.console`, or `~/.local/share/dev.firedoor.console`.
//!   Demo mode uses its `demo/` subdir.
//! - Secrets: the OS keyring under the service [`KEYRING_SERVICE`].

use std::path::PathBuf;

/// The app's Tauri identifier (`identifier` in `tauri.conf.json`; a test pins both).
pub const APP_IDENTIFIER: &str = "dev.firedoor.console";

/// The OS keyring service the app's and the CLI's secrets are stored under.
pub const KEYRING_SERVICE: &str = "firedoor";

/// Overrides the data dir (tests, several profiles).
pub const DATA_DIR_ENV: &str = "FIREDOOR_DATA_DIR";

/// The data dir under `base` (what Tauri's `app_data_dir()` returns, or `None` to
/// compute it the same way): `$FIREDOOR_DATA_DIR` first, and `demo/` under it in
/// demo mode.
pub fn data_dir_from(base: Option<PathBuf>, demo: bool) -> Result<PathBuf, String> {
    let base = match std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match base {
            Some(b) => b,
            None => dirs::data_dir()
                .ok_or_else(|| {
                    format!("no data directory: set HOME or XDG_DATA_HOME, or {DATA_DIR_ENV}")
                })?
                .join(APP_IDENTIFIER),
        },
    };
    Ok(if demo { base.join("demo") } else { base })
}

/// The data dir, computed as the desktop app does (see the module docs).
pub fn data_dir(demo: bool) -> Result<PathBuf, String> {
    data_dir_from(None, demo)
}
