// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

//! One binary, `firedoor`: the desktop app, or with a subcommand the command line
//! (`firedoor_client::cli`), which never initialises GTK/WebKit nor opens a window.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if firedoor_client::cli::wants_cli(args.get(1).map(|a| a.as_os_str())) {
        std::process::exit(firedoor_client::cli::main(args));
    }
    firedoor_app::run();
}
