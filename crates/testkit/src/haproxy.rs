//! A real HAProxy in front of brokers, configured by `examples/haproxy.cfg` (the file
//! operators get): the harness only moves the frontend to a free loopback port,
//! lists the given backends and puts the stats socket in a temp dir.
//!
//! There is no skip: if `haproxy` is missing, [`Haproxy::start`] panics saying how
//! to install it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The operator's example configuration.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../examples/haproxy.cfg");

pub struct Haproxy {
    child: Child,
    dir: tempfile::TempDir,
    /// The frontend's port on 127.0.0.1.
    pub port: u16,
    /// The `host:port` of each backend, in the order given (named `broker1`, …).
    pub backends: Vec<String>,
}

/// The example configuration with the frontend on `127.0.0.1:port`, one `server`
/// line per backend (`broker1`, `broker2`, …) and the stats socket at `socket`.
pub fn config(port: u16, backends: &[String], socket: &Path) -> String {
    let mut out = String::new();
    let mut servers_written = false;
    for line in EXAMPLE_CONFIG.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if t.starts_with("bind ") {
            out.push_str(&format!("{indent}bind 127.0.0.1:{port}\n"));
        } else if t.starts_with("stats socket ") {
            out.push_str(&format!(
                "{indent}stats socket {} mode 600 level user\n",
                socket.display()
            ));
        } else if t.starts_with("server ") {
            if !servers_written {
                for (i, b) in backends.iter().enumerate() {
                    out.push_str(&format!("{indent}server broker{} {b} check\n", i + 1));
                }
                servers_written = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        servers_written,
        "examples/haproxy.cfg has no server lines to replace"
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Where the `haproxy` binary is: $FIREDOOR_HAPROXY, or the first on PATH or in
/// /usr/sbin.
pub fn haproxy_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FIREDOOR_HAPROXY") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join("haproxy"))
        .find(|p| p.is_file());
    found
}

impl Haproxy {
    /// Starts HAProxy in the foreground (a child process, stopped on drop) in front
    /// of `backends` (`host:port` each). Returns once the frontend accepts
    /// connections; the backends may not be UP yet (see [`Haproxy::wait_up`]).
    pub fn start(backends: &[String]) -> Haproxy {
        let bin = haproxy_binary().unwrap_or_else(|| {
            panic!(
                "haproxy not found (not on PATH, not in /usr/sbin). Install it: \
                 apt-get install -y haproxy (scripts/deps.sh does this)"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("firedoor-haproxy-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let socket = dir.path().join("stats.sock");
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, config(port, backends, &socket)).expect("write config");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log file");
        let child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut h = Haproxy {
            child,
            dir,
            port,
            backends: backends.to_vec(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = h.child.try_wait() {
                panic!("haproxy exited at start ({status}):\n{}", h.log());
            }
            if socket.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen within 10 s:\n{}",
                h.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// Asks the runtime API (stats socket) a command; returns its answer.
    pub fn ask(&self, command: &str) -> std::io::Result<String> {
        let mut s = UnixStream::connect(self.dir.path().join("stats.sock"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(command.as_bytes())?;
        s.write_all(b"\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// Each backend server's name and status as HAProxy sees it now (`UP`, `DOWN`,
    /// `UP 1/2` while rising, `MAINT`, …), from `show stat`.
    pub fn server_status(&self) -> std::io::Result<Vec<(String, String)>> {
        let csv = self.ask("show stat")?;
        let mut lines = csv.lines();
        let header = lines.next().unwrap_or("").trim_start_matches("# ");
        let cols: Vec<&str> = header.split(',').collect();
        let col = |name: &str| cols.iter().position(|c| *c == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return Err(std::io::Error::other(format!(
                "unexpected show stat header: {header}"
            )));
        };
        Ok(lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| {
                f.len() > st && f[px] == "brokers" && f[sv] != "BACKEND" && f[sv] != "FRONTEND"
            })
            .map(|f| (f[sv].to_string(), f[st].to_string()))
            .collect())
    }

    /// The names of the backend servers that get traffic now: `UP`, and also
    /// `UP 1/2` (failing checks but not yet taken out); `DOWN 1/2` (passing checks
    /// but not yet put back) is not.
    pub fn up(&self) -> Vec<String> {
        self.server_status()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, s)| s.starts_with("UP"))
            .map(|(n, _)| n)
            .collect()
    }

    /// Polls until exactly the servers named in `names` are UP (and no other), or
    /// `within` passes; returns how long it took, or the last status seen.
    pub fn wait_for_up(&self, names: &[&str], within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let mut up = self.up();
            up.sort();
            let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            want.sort();
            if up == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                return Err(format!(
                    "after {within:?}: servers {:?}, wanted UP exactly {want:?}",
                    self.server_status()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls until at least `n` backend servers are UP.
    pub fn wait_until_n_up(&self, n: usize, within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if self.up().len() >= n {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                return Err(format!(
                    "after {within:?}: servers {:?}, wanted {n} UP",
                    self.server_status()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
