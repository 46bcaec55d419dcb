//! Shared by the root package's tests (`tests/cli.rs`, `tests/e2e.rs`): running the
//! real `firedoor` binary as a command line, and a "machine" for it: a private D-Bus
//! session with an unlocked gnome-keyring (the OS keyring the app and the CLI keep
//! the token in), its own HOME and data dir. Two users need two machines: the
//! keyring entry is named after the broker URL, as on a real laptop.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const APP: &str = env!("CARGO_BIN_EXE_firedoor");

/// What a `firedoor` run printed, and its exit code.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout as JSON (one document).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {self:?}");
        })
    }
    /// stderr as JSON (a `--json` error).
    pub fn error_json(&self) -> serde_json::Value {
        serde_json::from_str(self.stderr.trim()).unwrap_or_else(|e| {
            panic!("stderr is not JSON ({e}): {self:?}");
        })
    }
    /// Asserts the exit code, showing everything printed when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Out {
        assert_eq!(self.code, code, "exit code of firedoor: {self:#?}");
        self
    }
}

/// Runs `firedoor ARGS` with exactly this environment (nothing inherited but PATH),
/// stdin from `stdin`.
pub async fn firedoor_with(env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = tokio::process::Command::new(APP);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run firedoor");
    if let Some(text) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut s = child.stdin.take().unwrap();
        s.write_all(text.as_bytes()).await.unwrap();
        drop(s);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("firedoor finished within 2 minutes")
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn need(cmd: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd} is not installed: run scripts/deps.sh");
}

/// A private session bus with an unlocked gnome-keyring on it (the Secret Service):
/// returns the bus address, the keyring's environment lines and the processes.
pub async fn keyring_session(
    env: &[(String, String)],
) -> (String, Vec<(String, String)>, Vec<Child>) {
    need("dbus-daemon");
    need("gnome-keyring-daemon");
    let mut children = Vec::new();
    let mut dbus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut addr = String::new();
    BufReader::new(dbus.stdout.take().unwrap())
        .read_line(&mut addr)
        .unwrap();
    let addr = addr.trim().to_string();
    children.push(dbus);
    let mut gk = Command::new("gnome-keyring-daemon")
        .args(["--unlock", "--components=secrets", "--foreground"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("DBUS_SESSION_BUS_ADDRESS", &addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = gk.stdin.take().unwrap();
        stdin.write_all(b"test-keyring-password").unwrap();
    }
    let mut extra = Vec::new();
    let mut gk_out = BufReader::new(gk.stdout.take().unwrap());
    for _ in 0..4 {
        let mut l = String::new();
        if gk_out.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        if let Some((k, v)) = l.trim().split_once('=') {
            extra.push((k.to_string(), v.to_string()));
        }
    }
    children.push(gk);
    let bus = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let proxy = zbus::fdo::DBusProxy::new(&bus).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .name_has_owner("org.freedesktop.secrets".try_into().unwrap())
        .await
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "gnome-keyring did not register the Secret Service"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (addr, extra, children)
}

/// One user's laptop, as far as the command line sees it: HOME, XDG dirs, a session
/// bus with an unlocked keyring, an ssh-agent.
pub struct Machine {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    children: Vec<Child>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Machine {
    /// A machine whose data dir is `$FIREDOOR_DATA_DIR`.
    pub async fn start() -> Machine {
        Self::start_with(true).await
    }

    /// `explicit_data_dir = false`: no `FIREDOOR_DATA_DIR`, so the app's default
    /// (`$XDG_DATA_HOME/dev.firedoor.console`) is used.
    pub async fn start_with(explicit_data_dir: bool) -> Machine {
        need("ssh-agent");
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let p = |s: &str| dir.path().join(s).display().to_string();
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), home.display().to_string()),
            ("XDG_DATA_HOME".into(), p("data")),
            ("XDG_CONFIG_HOME".into(), p("config")),
            ("XDG_CACHE_HOME".into(), p("cache")),
            ("XDG_RUNTIME_DIR".into(), dir.path().display().to_string()),
        ];
        if explicit_data_dir {
            env.push(("FIREDOOR_DATA_DIR".into(), p("app")));
        }
        let (addr, extra, mut children) = keyring_session(&env).await;
        env.push(("DBUS_SESSION_BUS_ADDRESS".into(), addr));
        env.extend(extra);
        let agent_sock = dir.path().join("agent.sock");
        children.push(
            Command::new("ssh-agent")
                .arg("-D")
                .arg("-a")
                .arg(&agent_sock)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        env.push(("SSH_AUTH_SOCK".into(), agent_sock.display().to_string()));
        Machine { dir, env, children }
    }

    pub async fn firedoor(&self, args: &[&str]) -> Out {
        firedoor_with(&self.env, args, None).await
    }

    pub async fn firedoor_stdin(&self, args: &[&str], stdin: &str) -> Out {
        firedoor_with(&self.env, args, Some(stdin)).await
    }

    /// Signs in with `token` read from stdin.
    pub async fn login(&self, url: &str, token: &str) -> Out {
        self.firedoor_stdin(&["login", "--url", url, "--token-stdin"], token)
            .await
    }

    /// The data dir the app would use on this machine.
    pub fn data_dir(&self) -> PathBuf {
        match self.env.iter().find(|(k, _)| k == "FIREDOOR_DATA_DIR") {
            Some((_, v)) => PathBuf::from(v),
            None => self.dir.path().join("data").join("dev.firedoor.console"),
        }
    }
}

/// Whether any file under `dir` contains `needle` (a token or a secret must not).
pub fn any_file_contains(dir: &Path, needle: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Waits (up to 20 s) until `f` gives a value.
pub async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
