//! Hello world for the desktop benchmark: a window whose page calls one command on
//! DOMContentLoaded; the command prints how long after process start that was.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::sync::OnceLock;
use std::time::Instant;

static STARTED: OnceLock<Instant> = OnceLock::new();

#[tauri::command]
fn ready() -> String {
    static ONCE: OnceLock<()> = OnceLock::new();
    let ms = STARTED.get().map(|t| t.elapsed().as_millis()).unwrap_or(0);
    if ONCE.set(()).is_ok() {
        // Read by scripts/bench-desktop.sh.
        eprintln!("hello: interactive after {ms} ms");
    }
    format!("Hello from Rust, {ms} ms after start.")
}

fn main() {
    let _ = STARTED.set(Instant::now());
    tauri::Builder::default()
        .invoke_handler(tauri::generate_handler![ready])
        .run(tauri::generate_context!())
        .expect("error while running the hello-world app");
}
