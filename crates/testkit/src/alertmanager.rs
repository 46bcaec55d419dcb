//! A real Prometheus Alertmanager (Debian package `prometheus-alertmanager`) for
//! tests: one receiver, a webhook to the URL the test gives, with a bearer token.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Alertmanager {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn binary() -> Option<PathBuf> {
    ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Alertmanager {
    /// Starts Alertmanager sending every alert (grouped by `alertname`, at once,
    /// and again when resolved) to `webhook_url` with `Authorization: Bearer
    /// token`. Returns once its API answers.
    pub fn start(webhook_url: &str, token: &str) -> Alertmanager {
        let bin = binary().unwrap_or_else(|| {
            panic!("alertmanager not found: apt-get install -y prometheus-alertmanager (scripts/deps.sh does this)")
        });
        let dir = tempfile::Builder::new()
            .prefix("firedoor-alertmanager-")
            .tempdir()
            .expect("temp dir");
        let port = crate::free_port();
        let cfg = format!(
            "route:\n  receiver: firedoor\n  group_by: ['alertname']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: firedoor\n    webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: true\n        \
             http_config:\n          authorization:\n            type: Bearer\n            credentials: '{token}'\n"
        );
        let cfg_path = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg_path, cfg).expect("write config");
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log file");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut a = Alertmanager { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = a.child.try_wait() {
                panic!("alertmanager exited at start ({status}):\n{}", a.log());
            }
            let ready = std::net::TcpStream::connect(("127.0.0.1", port))
                .map(|mut s| {
                    use std::io::{Read, Write};
                    let _ = s.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n");
                    let mut buf = String::new();
                    let _ = s.read_to_string(&mut buf);
                    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
                })
                .unwrap_or(false);
            if ready {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager was not ready within 20 s:\n{}",
                a.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its API (`/api/v2`).
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}/api/v2", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
