//! Round trip through the real OS keyring with [`KeyringStore`], the store the desktop
//! app keeps its API token in.
//!
//! Stores a random secret under a random account, reads it back through a *new*
//! `KeyringStore`, deletes it and checks that `get` then returns `None`. With
//! `--secret-tool` it also asks the Secret Service directly (`secret-tool`, from
//! libsecret-tools) whether the item is there while stored and gone after deletion,
//! and which attributes it carries. Prints one line of JSON; exits 1 on any failure
//! (with the failed stage and a readable error), never printing the secret itself.
//!
//! ```text
//! keyring_probe [--service NAME] [--account-prefix PREFIX] [--secret-tool]
//! ```
//!
//! The account is PREFIX (default `probe-`) followed by a random id.
//!
//! Headless, with a throwaway unlocked keyring (see crates/client/tests/keyring.rs):
//! `keyctl session - dbus-run-session -- bash -c 'eval "$(printf pw |
//! gnome-keyring-daemon --unlock --components=secrets)"; exec keyring_probe --secret-tool'`

use firedoor_client::secrets::{KeyringStore, SecretStore};
use serde_json::{Map, Value};
use std::process::{Command, ExitCode, Stdio};

struct Probe {
    report: Map<String, Value>,
}

/// A failed stage: its name and a readable message.
struct Failure {
    stage: &'static str,
    error: String,
}

fn fail(stage: &'static str, error: impl Into<String>) -> Failure {
    Failure {
        stage,
        error: error.into(),
    }
}

impl Probe {
    fn put(&mut self, key: &str, value: impl Into<Value>) {
        self.report.insert(key.to_string(), value.into());
    }
}

/// `secret-tool lookup service S username A`: `Some(secret)` if the Secret Service has
/// the item, `None` if not (secret-tool exits 1 with no output).
fn secret_tool_lookup(service: &str, account: &str) -> Result<Option<String>, String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", service, "username", account])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run secret-tool (install libsecret-tools): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && !stdout.is_empty() {
        return Ok(Some(stdout.trim_end_matches('\n').to_string()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.is_empty() {
        Ok(None)
    } else {
        Err(format!(
            "secret-tool lookup failed ({}): {stderr}",
            out.status
        ))
    }
}

/// The item's attributes as `secret-tool search` shows them (never its secret).
fn secret_tool_attributes(service: &str, account: &str) -> Result<Map<String, Value>, String> {
    let out = Command::new("secret-tool")
        .args(["search", "--all", "service", service, "username", account])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run secret-tool (install libsecret-tools): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "secret-tool search failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // secret-tool writes the item's fields as `name = value` lines on stdout or stderr
    // depending on its version; read both, keep only `attribute.*`.
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut attrs = Map::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(" = ") {
            if let Some(name) = k.trim().strip_prefix("attribute.") {
                attrs.insert(name.to_string(), Value::String(v.trim().to_string()));
            }
        }
    }
    Ok(attrs)
}

/// Whether the kernel keyring (keyutils) holds the key keyring-rs would cache there.
fn keyutils_has(service: &str, account: &str) -> Result<bool, String> {
    let desc = format!("keyring-rs:{account}@{service}");
    let out = Command::new("keyctl")
        .args(["search", "@s", "user", &desc])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run keyctl (install keyutils): {e}"))?;
    Ok(out.status.success())
}

fn run(
    p: &mut Probe,
    service: &str,
    account: &str,
    secret: &str,
    secret_tool: bool,
) -> Result<(), Failure> {
    let store = KeyringStore::new(service);
    p.put("store", store.describe());

    store
        .set(account, secret)
        .map_err(|e| fail("set", e.to_string()))?;
    p.put("set", true);

    // A new instance: nothing carried over in memory.
    let again = KeyringStore::new(service);
    let read = again.get(account).map_err(|e| fail("get", e.to_string()))?;
    let matches = read.as_deref() == Some(secret);
    p.put(
        "read_back",
        if read.is_some() { "found" } else { "missing" },
    );
    p.put("read_back_matches", matches);
    if !matches {
        return Err(fail(
            "get",
            if read.is_some() {
                "a new KeyringStore read back a different secret"
            } else {
                "a new KeyringStore found no secret right after storing it"
            },
        ));
    }

    // Informational: whether keyring-rs also cached the secret in the kernel keyring.
    match keyutils_has(service, account) {
        Ok(b) => p.put("keyutils_cached", b),
        Err(e) => p.put("keyutils_cached", format!("unknown: {e}")),
    }

    if secret_tool {
        let found =
            secret_tool_lookup(service, account).map_err(|e| fail("secret_tool_lookup", e))?;
        let ss_matches = found.as_deref() == Some(secret);
        p.put(
            "secret_service_lookup",
            if found.is_some() { "found" } else { "missing" },
        );
        p.put("secret_service_matches", ss_matches);
        if !ss_matches {
            return Err(fail(
                "secret_tool_lookup",
                if found.is_some() {
                    "the Secret Service holds a different secret for this account"
                } else {
                    "the Secret Service has no item with these service/username attributes"
                },
            ));
        }
        let attrs =
            secret_tool_attributes(service, account).map_err(|e| fail("secret_tool_search", e))?;
        p.put("secret_service_attributes", Value::Object(attrs));
    }

    store
        .delete(account)
        .map_err(|e| fail("delete", e.to_string()))?;
    p.put("deleted", true);

    let after = KeyringStore::new(service)
        .get(account)
        .map_err(|e| fail("get_after_delete", e.to_string()))?;
    p.put(
        "get_after_delete",
        if after.is_none() {
            "none"
        } else {
            "still present"
        },
    );
    if after.is_some() {
        return Err(fail(
            "get_after_delete",
            "the secret is still there after delete",
        ));
    }

    if secret_tool {
        let found = secret_tool_lookup(service, account)
            .map_err(|e| fail("secret_tool_after_delete", e))?;
        p.put(
            "secret_service_after_delete",
            if found.is_none() {
                "absent"
            } else {
                "still present"
            },
        );
        if found.is_some() {
            return Err(fail(
                "secret_tool_after_delete",
                "the Secret Service still has the item after delete",
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut service = "firedoor-test".to_string();
    let mut secret_tool = false;
    let mut prefix = "probe-".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--service" => match args.next() {
                Some(s) if !s.is_empty() => service = s,
                _ => {
                    eprintln!("keyring_probe: --service needs a name");
                    return ExitCode::from(2);
                }
            },
            "--account-prefix" => match args.next() {
                Some(s) => prefix = s,
                None => {
                    eprintln!("keyring_probe: --account-prefix needs a value");
                    return ExitCode::from(2);
                }
            },
            "--secret-tool" => secret_tool = true,
            "-h" | "--help" => {
                println!("usage: keyring_probe [--service NAME] [--account-prefix PREFIX] [--secret-tool]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("keyring_probe: unknown argument {other:?} (see --help)");
                return ExitCode::from(2);
            }
        }
    }

    let account = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let secret = format!(
        "fdt_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut p = Probe { report: Map::new() };
    p.put("service", service.clone());
    p.put("account", account.clone());
    p.put("secret_len", secret.len());

    let result = run(&mut p, &service, &account, &secret, secret_tool);
    let code = match &result {
        Ok(()) => {
            p.put("ok", true);
            ExitCode::SUCCESS
        }
        Err(f) => {
            // Best effort: leave nothing behind.
            let _ = KeyringStore::new(&service).delete(&account);
            p.put("ok", false);
            p.put("stage", f.stage);
            p.put("error", f.error.clone());
            eprintln!("keyring_probe: failed at {}: {}", f.stage, f.error);
            ExitCode::FAILURE
        }
    };
    // Never the secret: the report only says whether it matched.
    let line = Value::Object(p.report).to_string();
    debug_assert!(!line.contains(&secret));
    println!("{line}");
    code
}
