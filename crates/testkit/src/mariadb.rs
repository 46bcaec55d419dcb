//! A real MariaDB server for tests and benchmarks: `mariadb-install-db` in a temp dir,
//! `mariadbd` on a free loopback port (and a socket in that dir for the superuser),
//! the general query log on, so tests can prove that no secret reaches it. As root the
//! server runs as root (`--user=root`), which `mariadbd` otherwise refuses.
//!
//! There is no skip: if MariaDB is missing, [`MariaDb::start`] panics saying how to
//! install it.

use crate::{free_port, is_root};
use rand::distributions::{Alphanumeric, DistString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct MariaDb {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

/// `mariadbd` lives in /usr/sbin, which is not on every PATH.
fn mariadbd() -> PathBuf {
    for p in [
        "/usr/sbin/mariadbd",
        "/usr/bin/mariadbd",
        "/usr/local/sbin/mariadbd",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "MariaDB server not found (no mariadbd in /usr/sbin). Install it: \
         apt-get install -y mariadb-server (scripts/deps.sh does this)"
    )
}

static N: AtomicU32 = AtomicU32::new(0);

impl MariaDb {
    /// Starts a fresh server with the general query log on.
    pub fn start() -> MariaDb {
        // Fails early, saying how to install it.
        mariadbd();
        let dir = tempfile::Builder::new()
            .prefix("firedoor-mariadb-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let mut init = Command::new("mariadb-install-db");
        init.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        if is_root() {
            init.arg("--user=root");
        }
        let out = init.stdin(Stdio::null()).output().unwrap_or_else(|e| {
            panic!(
                "running mariadb-install-db: {e} (apt-get install -y mariadb-server; \
                     scripts/deps.sh does this)"
            )
        });
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = MariaDb {
            _dir: dir,
            root,
            port: free_port(),
            child: None,
        };
        s.start_again();
        s
    }

    fn socket(&self) -> PathBuf {
        self.root.join("mysqld.sock")
    }

    /// Starts the server (again, after [`MariaDb::stop`]) on the same port.
    pub fn start_again(&mut self) {
        let mut cmd = Command::new(mariadbd());
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.root.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.root.join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.root.join("error.log").display()
            ))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--general-log=1",
            ])
            .arg(format!("--general-log-file={}", self.log_path().display()))
            .args([
                "--max-connections=300",
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--skip-log-bin",
            ]);
        if is_root() {
            cmd.arg("--user=root");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ping = Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket().display()))
                .args(["-u", "root", "--connect-timeout=2", "ping"])
                .stdin(Stdio::null())
                .output()
                .expect("mariadb-admin is installed (mariadb-client)");
            if ping.status.success() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("mariadbd exited ({st}): {}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not come up: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = Some(child);
    }

    /// Stops the server at once (SIGKILL: connections are cut).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("general.log")
    }

    /// The general query log so far: every statement the server received.
    pub fn general_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.root.join("error.log")).unwrap_or_default()
    }

    /// Runs SQL as the superuser (root over the socket); panics on failure. Output is
    /// tab-separated, no column names.
    pub fn root_sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "-N", "-B", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .expect("the mariadb client is installed (mariadb-client)");
        assert!(
            out.status.success(),
            "root SQL failed: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn client_cmd(&self, user: &str, password: &str, db: &str, sql: &str) -> Command {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .args(["--protocol=TCP", "-h", "127.0.0.1", "-P"])
            .arg(self.port.to_string())
            .args([
                "-u",
                user,
                "-D",
                db,
                "-N",
                "-B",
                "--connect-timeout=5",
                "-e",
                sql,
            ])
            // The password through the environment, not argv (ps shows argv).
            .env("MYSQL_PWD", password)
            .stdin(Stdio::null());
        c
    }

    /// Runs SQL as `user` with `password` through the real `mariadb` client over TCP.
    pub fn client(&self, user: &str, password: &str, db: &str, sql: &str) -> Output {
        self.client_cmd(user, password, db, sql)
            .output()
            .expect("the mariadb client is installed (mariadb-client)")
    }

    /// A session held open as `user` (it sleeps on the server for two minutes).
    pub fn open_session(&self, user: &str, password: &str, db: &str) -> Child {
        self.client_cmd(user, password, db, "SELECT SLEEP(120)")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the mariadb client runs")
    }

    /// Creates a fresh database `app_<n>` with a table `orders` (two rows) and
    /// returns its name. The `_` in the name makes grants prove they escape it.
    pub fn fresh_app(&self) -> String {
        let db = format!("app_{}", N.fetch_add(1, Ordering::Relaxed));
        self.root_sql(&format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(200) NOT NULL);
             INSERT INTO {db}.orders (item) VALUES ('coffee'), ('tea');"
        ));
        db
    }

    /// Creates account `'name'@'%'` with a fresh random password and runs `grants`
    /// (each with `{acct}` standing for the account) as root, with the general log
    /// off for that session (the password is in the statement). Returns its
    /// `mysql://` URL.
    pub fn account_url(&self, name: &str, grants: &[String]) -> String {
        let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        let acct = format!("'{name}'@'%'");
        let mut sql = format!(
            "SET SESSION sql_log_off = 1; DROP USER IF EXISTS {acct}; \
             CREATE USER {acct} IDENTIFIED BY '{password}';"
        );
        for g in grants {
            sql.push_str(&g.replace("{acct}", &acct));
            sql.push(';');
        }
        self.root_sql(&sql);
        format!("mysql://{name}:{password}@127.0.0.1:{}", self.port)
    }

    /// The broker's admin account the way an operator should make it: `CREATE USER`,
    /// `PROCESS`, `CONNECTION ADMIN` on `*.*`, and on each of `databases` the
    /// privileges permission levels may grant WITH GRANT OPTION (plus DROP, to drop
    /// the views grantees define). Nothing else. Returns its URL.
    pub fn broker_url(&self, databases: &[&str]) -> String {
        let name = format!("firedoor_broker_{}", N.fetch_add(1, Ordering::Relaxed));
        let mut grants =
            vec!["GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {acct}".to_string()];
        for db in databases {
            grants.push(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, \
                 ALTER ROUTINE, EXECUTE, TRIGGER, EVENT ON `{}`.* TO {{acct}} WITH GRANT OPTION",
                db.replace('_', "\\_")
            ));
        }
        self.account_url(&name, &grants)
    }
}

/// One server for the whole test binary, started on first use. A static is never
/// dropped, so a watchdog process stops the server and removes its directory once
/// this process has exited, however it ends.
pub fn shared_mariadb() -> &'static MariaDb {
    static SHARED: std::sync::OnceLock<MariaDb> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let s = MariaDb::start();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill -9 {server} 2>/dev/null; \
             sleep 0.5; rm -rf {root}",
            pid = std::process::id(),
            server = s.pid().expect("running"),
            root = s.root.display()
        );
        // Detached on purpose: it must outlive this process (init reaps it).
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh starts the MariaDB watchdog");
        s
    })
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}
