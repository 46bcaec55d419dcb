//! Writing a grant's credentials for a shell or a client: `env` (`export` lines,
//! shell-quoted), `pgpass` (lines of a PostgreSQL password file, escaped) and `json`.
//! Only PostgreSQL credentials (and the demo connector's, which stand for them) have
//! an `env` and a `pgpass` form; any credential has the `json` one.

use firedoor_core::api::{CredentialItem, Credentials};
use zeroize::Zeroizing;

/// Kinds whose credentials are PostgreSQL logins (the demo connector stands for one).
fn is_postgres(kind: &str) -> bool {
    matches!(kind, "postgres" | "demo")
}

/// A value in POSIX shell single quotes: safe for any text without a NUL byte.
pub fn shell_quote(value: &str) -> Result<String, String> {
    if value.contains('\0') {
        return Err("a value contains a NUL byte and cannot be given to a shell".into());
    }
    Ok(format!("'{}'", value.replace('\'', r"'\''")))
}

/// One field of a pgpass line: `\` and `:` escaped with `\`. A line break cannot be
/// written in that file.
pub fn pgpass_field(value: &str) -> Result<String, String> {
    if value.contains(['\n', '\r', '\0']) {
        return Err("a value contains a line break and cannot be written as a pgpass line".into());
    }
    Ok(value.replace('\\', r"\\").replace(':', r"\:"))
}

fn refuse(item: &CredentialItem, format: &str) -> String {
    format!(
        "the {} credential for {} has no {format} form (only PostgreSQL ones do): use --format json",
        item.kind, item.resource
    )
}

/// `export PGHOST='…' PGPORT='…' PGDATABASE='…' PGUSER='…' PGPASSWORD='…'`, one line
/// per item (host and port only when the broker gives them).
pub fn env_lines(items: &[&CredentialItem]) -> Result<Zeroizing<String>, String> {
    let mut out = Zeroizing::new(String::new());
    for item in items {
        if !is_postgres(&item.kind) {
            return Err(refuse(item, "env"));
        }
        let mut vars: Vec<(&str, String)> = Vec::new();
        if let Some(h) = &item.host {
            vars.push(("PGHOST", h.clone()));
        }
        if let Some(p) = item.port {
            vars.push(("PGPORT", p.to_string()));
        }
        vars.push(("PGDATABASE", item.resource.clone()));
        vars.push(("PGUSER", item.username.clone()));
        out.push_str("export");
        for (k, v) in &vars {
            out.push_str(&format!(" {k}={}", shell_quote(v)?));
        }
        let secret = Zeroizing::new(shell_quote(&item.secret)?);
        out.push_str(" PGPASSWORD=");
        out.push_str(&secret);
        out.push('\n');
    }
    Ok(out)
}

/// `host:port:database:user:password`, one line per item (`*` where the broker gives
/// no host or port).
pub fn pgpass_lines(items: &[&CredentialItem]) -> Result<Zeroizing<String>, String> {
    let mut out = Zeroizing::new(String::new());
    for item in items {
        if !is_postgres(&item.kind) {
            return Err(refuse(item, "pgpass"));
        }
        let host = match &item.host {
            Some(h) => pgpass_field(h)?,
            None => "*".into(),
        };
        let port = item
            .port
            .map(|p| p.to_string())
            .unwrap_or_else(|| "*".into());
        out.push_str(&format!(
            "{host}:{port}:{}:{}:",
            pgpass_field(&item.resource)?,
            pgpass_field(&item.username)?
        ));
        let secret = Zeroizing::new(pgpass_field(&item.secret)?);
        out.push_str(&secret);
        out.push('\n');
    }
    Ok(out)
}

/// The items to write: all, or those of one resource.
pub fn select<'a>(creds: &'a Credentials, resource: Option<&str>) -> Vec<&'a CredentialItem> {
    creds
        .items
        .iter()
        .filter(|i| resource.is_none_or(|r| i.resource == r))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn item(kind: &str, user: &str, secret: &str) -> CredentialItem {
        CredentialItem {
            integration: "db".into(),
            kind: kind.into(),
            resource: "app".into(),
            username: user.into(),
            secret: secret.into(),
            host: Some("db.internal".into()),
            port: Some(5432),
            note: None,
        }
    }

    /// What a POSIX shell makes of the `export` line: the exact values back.
    fn through_sh(line: &str, var: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{line}\nprintf %s \"${var}\""))
            .output()
            .unwrap();
        assert!(out.status.success(), "sh accepts the line: {line}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn env_lines_survive_a_real_shell_with_hostile_values() {
        let nasty = "it's $(rm -rf /) `x` \"q\" \\ ; * \n end";
        let i = item("postgres", "fd_alice'x", nasty);
        let text = env_lines(&[&i]).unwrap();
        assert!(text.starts_with("export PGHOST='db.internal' PGPORT='5432' PGDATABASE='app'"));
        assert_eq!(through_sh(&text, "PGPASSWORD"), nasty, "password exact");
        assert_eq!(through_sh(&text, "PGUSER"), "fd_alice'x", "user exact");
    }

    #[test]
    fn pgpass_escapes_colons_and_backslashes() {
        let i = item("postgres", "u:1", r"p:a\ss");
        let text = pgpass_lines(&[&i]).unwrap();
        assert_eq!(text.as_str(), "db.internal:5432:app:u\\:1:p\\:a\\\\ss\n");
        let mut j = item("demo", "u", "s");
        j.host = None;
        j.port = None;
        assert_eq!(pgpass_lines(&[&j]).unwrap().as_str(), "*:*:app:u:s\n");
        assert!(pgpass_lines(&[&item("postgres", "u", "a\nb")]).is_err());
    }

    #[test]
    fn other_kinds_have_only_json() {
        let i = item("mysql", "u", "s");
        assert!(env_lines(&[&i]).unwrap_err().contains("--format json"));
        assert!(pgpass_lines(&[&i]).unwrap_err().contains("--format json"));
        assert!(shell_quote("a\0b").is_err());
    }
}
