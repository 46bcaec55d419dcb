//! The real OS keyring, headless: `examples/keyring_probe.rs` stores, reads back
//! (through a new `KeyringStore`), checks with `secret-tool` and deletes a random
//! secret in a throwaway, unlocked gnome-keyring on a private D-Bus session inside a
//! private kernel session keyring. And the two ways it goes wrong on a desktop-less
//! machine must be readable errors, not panics.
//!
//! Needs gnome-keyring, libsecret-tools (secret-tool), keyutils (keyctl), dbus
//! (dbus-run-session), bash and coreutils `timeout` (scripts/deps.sh installs them).
//! Missing tools fail these tests; they never skip.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const SERVICE: &str = "firedoor-test";
/// Upper bound for one probe run (it takes well under a second).
const TIMEOUT_SECS: &str = "60";

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

fn require_tools() {
    let missing: Vec<&str> = [
        "keyctl",
        "dbus-run-session",
        "gnome-keyring-daemon",
        "secret-tool",
        "bash",
        "timeout",
    ]
    .into_iter()
    .filter(|t| !on_path(t))
    .collect();
    assert!(
        missing.is_empty(),
        "the keyring tests need {} on PATH (run scripts/deps.sh: gnome-keyring libsecret-tools keyutils dbus)",
        missing.join(", ")
    );
}

/// Builds the probe with the cargo running these tests and returns its path (from
/// cargo's own artifact message, so any target dir or profile layout works).
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--example",
                "keyring_probe",
                "-p",
                "firedoor-client",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build --example keyring_probe");
        assert!(
            out.status.success(),
            "cargo build --example keyring_probe failed"
        );
        let exe = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "keyring_probe"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no executable for the keyring_probe example");
        assert!(exe.is_file(), "{} does not exist", exe.display());
        exe
    })
}

/// A private XDG_DATA_HOME (gnome-keyring's keyring files) and XDG_RUNTIME_DIR
/// (its control socket), so runs never share a keyring.
fn private_dirs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
    }
    dir
}

/// Runs `script` (bash) under `timeout`, in a new anonymous kernel session keyring and
/// a private D-Bus session, with `$PROBE` set to the probe's path.
fn in_session(dirs: &Path, script: &str) -> Output {
    Command::new("timeout")
        .args([
            "-k",
            "5",
            TIMEOUT_SECS,
            "keyctl",
            "session",
            "-",
            "dbus-run-session",
            "--",
            "bash",
            "-c",
            script,
        ])
        .env("PROBE", probe())
        .env("XDG_DATA_HOME", dirs.join("data"))
        .env("XDG_RUNTIME_DIR", dirs.join("run"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .output()
        .expect("run keyctl session - dbus-run-session")
}

/// The probe's one line of JSON.
fn report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "the probe printed no JSON; stdout: {stdout}\nstderr: {}",
                stderr(out)
            )
        });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON from the probe ({e}): {line}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure must be the probe's readable error: exit code 1 (a panic is 101), the
/// failed stage and the store's message in the JSON, no panic text.
fn assert_readable_failure(out: &Output, why: &str) -> Value {
    let err = stderr(out);
    assert!(
        !err.contains("panicked"),
        "{why}: the probe panicked:\n{err}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{why}: expected exit code 1\nstderr: {err}"
    );
    let r = report(out);
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(
        r["stage"], "set",
        "{why}: the first keyring call should fail: {r}"
    );
    let msg = r["error"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("OS keyring: "),
        "{why}: error should name the store: {msg}"
    );
    assert!(
        err.contains("keyring_probe: failed at set: OS keyring"),
        "{why}: stderr: {err}"
    );
    r
}

#[test]
fn round_trip_through_an_unlocked_gnome_keyring() {
    require_tools();
    let dirs = private_dirs();
    let out = in_session(
        dirs.path(),
        r#"set -e
eval "$(printf pw | gnome-keyring-daemon --unlock --components=secrets)"
exec "$PROBE" --service firedoor-test --secret-tool"#,
    );
    let r = report(&out);
    assert!(
        out.status.success(),
        "probe failed ({}): {r}\nstderr: {}",
        out.status,
        stderr(&out)
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["store"], "OS keyring");
    assert_eq!(r["service"], SERVICE);
    let account = r["account"].as_str().unwrap();
    assert!(
        account.starts_with("probe-") && account.len() > 20,
        "random account: {account}"
    );
    // Read back through a new KeyringStore.
    assert_eq!(r["set"], true);
    assert_eq!(r["read_back"], "found");
    assert_eq!(r["read_back_matches"], true);
    // In the Secret Service itself, under the attributes the app's docs rely on.
    assert_eq!(r["secret_service_lookup"], "found");
    assert_eq!(r["secret_service_matches"], true);
    let attrs = &r["secret_service_attributes"];
    assert_eq!(attrs["service"], SERVICE, "{attrs}");
    assert_eq!(attrs["username"], account, "{attrs}");
    // Gone everywhere after delete.
    assert_eq!(r["deleted"], true);
    assert_eq!(r["get_after_delete"], "none");
    assert_eq!(r["secret_service_after_delete"], "absent");
    // The secret itself is never printed (only its length).
    assert!(r["secret_len"].as_u64().unwrap() >= 32);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains("fdt_"), "the secret leaked into the output");
}

/// The app's token accounts are `api-token:<broker URL>`: such names round-trip too,
/// and two services never see each other's items.
#[test]
fn url_account_names_round_trip() {
    require_tools();
    let dirs = private_dirs();
    let out = in_session(
        dirs.path(),
        r#"set -e
eval "$(printf pw | gnome-keyring-daemon --unlock --components=secrets)"
"$PROBE" --service firedoor-test --account-prefix "api-token:http://127.0.0.1:7878/" --secret-tool
exec "$PROBE" --service "firedoor test b" --account-prefix "api-token:https://broker.example:8443 " --secret-tool"#,
    );
    assert!(
        out.status.success(),
        "probe failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let reports: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    for (r, service, prefix) in [
        (
            &reports[0],
            "firedoor-test",
            "api-token:http://127.0.0.1:7878/",
        ),
        (
            &reports[1],
            "firedoor test b",
            "api-token:https://broker.example:8443 ",
        ),
    ] {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["secret_service_matches"], true, "{r}");
        assert_eq!(r["secret_service_attributes"]["service"], service, "{r}");
        assert!(r["account"].as_str().unwrap().starts_with(prefix), "{r}");
        assert_eq!(
            r["secret_service_attributes"]["username"], r["account"],
            "{r}"
        );
    }
}

/// No session bus at all (a server, an SSH login without a desktop): the store says
/// so; nothing panics.
#[test]
fn no_session_bus_is_a_readable_error() {
    require_tools();
    let dirs = private_dirs();
    let out = Command::new("timeout")
        .args(["-k", "5", TIMEOUT_SECS])
        .arg(probe())
        .arg("--secret-tool")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        // No X11 autolaunch of a bus, no $XDG_RUNTIME_DIR/bus fallback.
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_RUNTIME_DIR", dirs.path().join("run"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = assert_readable_failure(&out, "no session bus");
    let msg = r["error"].as_str().unwrap();
    assert!(
        msg.to_lowercase().contains("dbus"),
        "the error should say D-Bus is the problem: {msg}"
    );
}

/// A session bus but no unlocked keyring: D-Bus starts gnome-keyring on demand, which
/// has no unlocked collection to write to.
#[test]
fn no_unlocked_keyring_is_a_readable_error() {
    require_tools();
    let dirs = private_dirs();
    let out = in_session(dirs.path(), r#"exec "$PROBE""#);
    let r = assert_readable_failure(&out, "locked keyring");
    let msg = r["error"].as_str().unwrap();
    assert!(
        msg.contains("secure storage"),
        "the error should say the keyring is unavailable: {msg}"
    );
}
