//! A real OpenID Provider for the SSO tests: the npm package `oidc-provider` (a
//! certified OpenID Provider) run by node from `crates/testkit/oidc/provider.mjs` on
//! a loopback port. Its clients are public native clients (no secret, PKCE
//! required, any loopback port); its users are the table the test passes (name,
//! password, groups, the last in a `groups` claim); [`login`] signs a user in through
//! its login and consent forms as a browser would. The signing key lives in a file
//! the harness owns: [`OidcProvider::rotate_key`] restarts the provider with a new
//! one.
//!
//! There is no skip: without node the harness panics saying what to install. The
//! npm dependencies are installed with `npm ci` on first use (or by `make deps`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The desktop app's client at the provider (the broker's `sso.client_id`).
pub const CLIENT_ID: &str = "firedoor-desktop";
/// Another app registered at the same provider: its ID tokens have another audience.
pub const OTHER_CLIENT_ID: &str = "other-app";

/// A person at the IdP.
#[derive(Debug, Clone)]
pub struct OidcUser {
    pub name: String,
    pub password: String,
    pub groups: Vec<String>,
}

impl OidcUser {
    pub fn new(name: &str, password: &str, groups: &[&str]) -> OidcUser {
        OidcUser {
            name: name.into(),
            password: password.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

pub struct OidcProvider {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    users: Vec<OidcUser>,
}

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Installs the provider's npm packages once (`npm ci` from the lock file).
fn npm_ci() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = package_dir();
        if dir.join("node_modules/oidc-provider/package.json").exists() {
            return;
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("npm not found ({e}): install Node.js and npm (scripts/deps.sh does this)")
            });
        assert!(
            out.status.success(),
            "npm ci in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

impl OidcProvider {
    /// Starts a provider knowing `users`; returns once its discovery document is
    /// served.
    pub fn start(users: &[OidcUser]) -> OidcProvider {
        npm_ci();
        let dir = tempfile::Builder::new()
            .prefix("firedoor-oidc-")
            .tempdir()
            .expect("temp dir");
        let mut p = OidcProvider {
            child: None,
            dir,
            port: crate::free_port(),
            users: users.to_vec(),
        };
        p.launch_with(true);
        p
    }

    /// One provider per test binary, for the tests that do not stop it, rotate its
    /// key or change its users (those start their own): the first caller's
    /// `users` are its users. It ends with the test binary (its stdin closes).
    pub fn shared(users: &[OidcUser]) -> &'static OidcProvider {
        static SHARED: std::sync::OnceLock<OidcProvider> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| OidcProvider::start(users))
    }

    /// The issuer URL (the broker's `sso.issuer`).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `kid` of the key it signs with now.
    pub fn kid(&self) -> String {
        let text = std::fs::read_to_string(self.keys_file()).expect("keys file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("keys JSON");
        v["keys"][0]["kid"].as_str().expect("kid").to_string()
    }

    fn keys_file(&self) -> PathBuf {
        self.dir.path().join("keys.json")
    }

    /// Starts node and waits until the discovery document is served. A start that
    /// does not come up is logged, stopped and tried again (three times in all): on
    /// a busy machine a start has been seen to hang with nothing in its log. Before
    /// the provider was first reached (`new_port_on_retry`) a retry also takes
    /// another port, in case another process took this one.
    fn launch_with(&mut self, new_port_on_retry: bool) {
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            // Starting node and loading the provider takes a second on an idle
            // machine, much longer on a busy one.
            let wait = Duration::from_secs(if attempt == 3 { 120 } else { 45 });
            match self.launch_once(wait) {
                Ok(()) => return,
                Err(why) => {
                    failures.push(format!(
                        "attempt {attempt} on port {}: {why}; its log:\n{}",
                        self.port,
                        self.log()
                    ));
                    let _ = std::fs::remove_file(self.dir.path().join("provider.log"));
                    if new_port_on_retry {
                        self.port = crate::free_port();
                    }
                }
            }
        }
        panic!("oidc-provider did not start:\n{}", failures.join("\n"));
    }

    fn launch(&mut self) {
        self.launch_with(false)
    }

    fn launch_once(&mut self, wait: Duration) -> Result<(), String> {
        let clients: Vec<serde_json::Value> = [CLIENT_ID, OTHER_CLIENT_ID]
            .iter()
            .map(|id| {
                serde_json::json!({
                    "client_id": id,
                    "redirect_uris": ["http://127.0.0.1/callback", "http://[::1]/callback"],
                })
            })
            .collect();
        let users: Vec<serde_json::Value> = self
            .users
            .iter()
            .map(|u| serde_json::json!({ "name": u.name, "password": u.password, "groups": u.groups }))
            .collect();
        let cfg = serde_json::json!({
            "port": self.port,
            "keys_file": self.keys_file(),
            "users": users,
            "clients": clients,
        });
        let cfg_path = self.dir.path().join("config.json");
        std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("provider.log"))
            .expect("log file");
        let child = Command::new("node")
            .arg(package_dir().join("provider.mjs"))
            .arg(&cfg_path)
            // The provider exits when this pipe closes: a test binary that ends
            // without dropping it (a panic, a static) leaves no node behind.
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("node not found ({e}): install Node.js (scripts/deps.sh does this)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + wait;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("it exited at start ({status})"));
            }
            if self.discovery_served() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!("it was not serving within {} s", wait.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One bounded probe: a connection that hangs (nothing answering, or a socket
    /// that connected to itself) counts as not ready instead of blocking the wait.
    fn discovery_served(&self) -> bool {
        use std::io::Write;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                if s.local_addr().map(|a| a.port()).ok() == Some(self.port) {
                    // TCP simultaneous open onto our own port: not the provider.
                    return false;
                }
                let _ = s.write_all(
                    b"GET /.well-known/openid-configuration HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                );
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
            })
            .unwrap_or(false)
    }

    /// Stops the provider (the IdP is down: nothing answers on its port).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same key and users (its sessions
    /// are gone: it keeps them in memory).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Rotates the signing key: a new key with a new `kid`, the old one gone.
    pub fn rotate_key(&mut self) {
        self.stop();
        std::fs::remove_file(self.keys_file()).expect("remove keys file");
        self.launch();
    }

    /// Replaces the users table (e.g. a person left a group at the IdP).
    pub fn set_users(&mut self, users: &[OidcUser]) {
        self.users = users.to_vec();
        self.restart();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Signs `user` in at the provider as a browser would: opens `authorization_url`,
/// submits the login form, then the consent form, following the provider's
/// redirects with its cookies, until it redirects to the app; then opens that
/// redirect (delivering the code to the app's loopback listener) and returns the
/// app's page. A refused password is an `Err` with the provider's message.
pub async fn login(authorization_url: &str, user: &str, password: &str) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let base = {
        let u = reqwest::Url::parse(authorization_url).map_err(|e| e.to_string())?;
        format!("{}://{}", u.scheme(), u.authority())
    };
    let mut resp = http
        .get(authorization_url)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..20 {
        let status = resp.status();
        if status.is_redirection() {
            let loc = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or("redirect without Location")?
                .to_string();
            let next = if loc.starts_with('/') {
                format!("{base}{loc}")
            } else {
                loc
            };
            if !next.starts_with(&base) {
                // Back to the app, with the code (or an error).
                let app = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| e.to_string())?;
                let r = app.get(&next).send().await.map_err(|e| e.to_string())?;
                return r.text().await.map_err(|e| e.to_string());
            }
            resp = http.get(&next).send().await.map_err(|e| e.to_string())?;
            continue;
        }
        let url = resp.url().clone();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let msg = if body.contains("Wrong user name or password") {
                "the IdP refused the user name or password".to_string()
            } else {
                format!("the IdP answered {status} at {url}: {}", strip_tags(&body))
            };
            return Err(msg);
        }
        let action = body
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .ok_or_else(|| format!("no form on the IdP's page: {}", strip_tags(&body)))?
            .to_string();
        let target = format!("{base}{action}");
        resp = if action.ends_with("/login") {
            http.post(&target)
                .form(&[("username", user), ("password", password)])
                .send()
                .await
        } else {
            http.post(&target).form(&[("allow", "yes")]).send().await
        }
        .map_err(|e| e.to_string())?;
    }
    Err("the IdP redirected too often".into())
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port taken by someone else between choosing it and node binding it: the
    /// start is retried on another port instead of failing the test binary.
    #[test]
    fn a_start_on_a_taken_port_is_retried_on_another() {
        npm_ci();
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = squatter.local_addr().expect("addr").port();
        let mut p = OidcProvider {
            child: None,
            dir: tempfile::Builder::new()
                .prefix("firedoor-oidc-")
                .tempdir()
                .expect("temp dir"),
            port: taken,
            users: vec![OidcUser::new("alice", "pw", &["oncall"])],
        };
        p.launch_with(true);
        assert_ne!(p.port, taken, "it moved off the taken port");
        assert!(p.discovery_served());
        drop(squatter);
    }
}
