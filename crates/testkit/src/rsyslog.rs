//! A real rsyslog (Debian package `rsyslog`) for tests: `rsyslogd -n` with its own
//! configuration in a temp dir, one `imtcp` input on a loopback port, and every
//! message it receives written as received (`%rawmsg%`, one per line) to a file the
//! test reads. It loads no other module: it does not open the system's /dev/log
//! (imuxsock) or the kernel log (imklog), writes nothing under /var, and needs no
//! privilege (it runs as the test's user, on a port above 1024).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Rsyslog {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn binary() -> PathBuf {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("rsyslogd not found: apt-get install -y rsyslog (scripts/deps.sh does this)")
        })
}

impl Rsyslog {
    /// Starts rsyslog on a free loopback port; returns once it accepts connections.
    pub fn start() -> Rsyslog {
        let dir = tempfile::Builder::new()
            .prefix("firedoor-rsyslog-")
            .tempdir()
            .expect("temp dir");
        let port = crate::free_port();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        let conf = format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"64k\")\n\
             module(load=\"imtcp\")\n\
             template(name=\"fd_raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             ruleset(name=\"fd\") {{\n\
             \x20 action(type=\"omfile\" file=\"{out}\" template=\"fd_raw\" flushOnTXEnd=\"on\" asyncWriting=\"off\")\n\
             }}\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"fd\")\n",
            work = work.display(),
            out = dir.path().join("messages.log").display(),
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).expect("write config");
        let mut r = Rsyslog {
            child: None,
            dir,
            port,
        };
        r.start_again();
        r
    }

    /// Starts it again (after [`Rsyslog::stop`]) on the same port, appending to
    /// the same file.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "rsyslog is running already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("rsyslogd.log"))
            .expect("log file");
        let bin = binary();
        let child = Command::new(&bin)
            .arg("-n")
            .arg("-f")
            .arg(self.dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("rsyslogd exited at start ({status}):\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {} within 20 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it as an operator would (SIGTERM: it writes what it holds, then
    /// exits) and waits until the port is closed.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file of received messages.
    pub fn messages_path(&self) -> PathBuf {
        self.dir.path().join("messages.log")
    }

    /// Every message received so far, in order, as received.
    pub fn messages(&self) -> Vec<String> {
        read_lines(&self.messages_path())
    }

    /// rsyslogd's own output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.log")).unwrap_or_default()
    }
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
