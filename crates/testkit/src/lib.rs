//! A real PostgreSQL server for tests and benchmarks: `initdb` in a temp dir, a free
//! loopback port, SCRAM password authentication over TCP (so a wrong or dropped
//! role's password really fails). PostgreSQL refuses to run as root, so as root the
//! server runs as the `postgres` user.
//!
//! There is no skip: if PostgreSQL is missing, [`PgServer::start`] panics saying how
//! to install it. [`mariadb`] does the same for a real MariaDB server, [`oidc`] for
//! a real OpenID Provider.
#![allow(clippy::unwrap_used)]

pub mod alertmanager;
pub mod haproxy;
pub mod mariadb;
pub mod oidc;
pub mod rsyslog;
pub mod sshd;

use rand::distributions::{Alphanumeric, DistString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct PgServer {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: String,
    running: bool,
}

fn is_root() -> bool {
    // SAFETY-free check: the effective uid is what `id -u` prints.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory holding initdb/pg_ctl: $FIREDOOR_PG_BINDIR, or the newest
/// /usr/lib/postgresql/*/bin.
pub fn pg_bindir() -> PathBuf {
    if let Ok(d) = std::env::var("FIREDOOR_PG_BINDIR") {
        return PathBuf::from(d);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|x| x.1).unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb). \
             Install them: apt-get install -y postgresql (the test command's setup does this)"
        )
    })
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// Starts a fresh server. Statement logging is on, so tests can prove that no
    /// secret reaches the server's log.
    pub fn start() -> PgServer {
        let bin = pg_bindir();
        let dir = tempfile::Builder::new()
            .prefix("firedoor-pg-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        set_mode(&root, 0o755);
        let admin_password = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, &admin_password).unwrap();
        let data = root.join("data");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            for p in [&root, &data, &pwfile] {
                let st = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(p)
                    .status()
                    .unwrap();
                assert!(
                    st.success(),
                    "chown to the postgres user failed (is the postgres package installed?)"
                );
            }
        }
        let mut s = PgServer {
            _dir: dir,
            root,
            bin,
            port: free_port(),
            admin_user: "firedoor_admin".into(),
            admin_password,
            running: false,
        };
        let init = s.run_pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "firedoor_admin",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        std::fs::remove_file(&pwfile).unwrap();
        s.start_again();
        s
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()))
    }

    /// Starts the server (again, after [`PgServer::stop`]) on the same port.
    pub fn start_again(&mut self) {
        let data = self.root.join("data");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='' -c fsync=off \
             -c full_page_writes=off -c log_statement=all \
             -c max_connections=200",
            self.port
        );
        let out = self.run_pg(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                self.log_path().to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.running = true;
    }

    /// Stops the server at once (connections are cut).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.root.join("data");
            let _ = self.run_pg(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
            self.running = false;
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The admin connection URL for a database.
    pub fn admin_url(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{db}",
            self.admin_user, self.admin_password, self.port
        )
    }

    /// Creates (or resets), as the superuser, the broker's admin role
    /// `firedoor_broker` the way an operator should: `LOGIN`, `CREATEROLE`, not a
    /// superuser, ADMIN OPTION on `roles` (the roles bundles grant and the
    /// break-glass roles it rotates: PostgreSQL 16+ requires it to grant, alter or
    /// drop them; 15 lets any CREATEROLE role do that to every non-superuser role),
    /// and CONNECT on `databases` WITH GRANT OPTION (so it can pass CONNECT on to
    /// the roles it issues). Returns its connection URL to database `postgres`.
    ///
    /// The password is set with statement logging off for that session, so it does
    /// not reach the server log that tests inspect.
    pub fn broker_url(&self, roles: &[&str], databases: &[&str]) -> String {
        let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        let exists = self.admin(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'firedoor_broker'",
        ) == "1";
        let verb = if exists { "ALTER" } else { "CREATE" };
        // Statement logging off for this one session (a superuser may set it at
        // connection start): the password is in the statement.
        let out = self.psql_opts(
            &self.admin_user,
            &self.admin_password,
            "postgres",
            &format!(
                "{verb} ROLE firedoor_broker LOGIN PASSWORD '{password}' CREATEROLE NOSUPERUSER
                   NOCREATEDB NOREPLICATION NOBYPASSRLS INHERIT"
            ),
            "-c log_statement=none",
        );
        assert!(
            out.status.success(),
            "creating firedoor_broker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut sql = String::new();
        for r in roles {
            sql.push_str(&format!(
                "GRANT \"{r}\" TO firedoor_broker WITH ADMIN OPTION;"
            ));
        }
        for d in databases {
            sql.push_str(&format!(
                "GRANT CONNECT ON DATABASE \"{d}\" TO firedoor_broker WITH GRANT OPTION;"
            ));
        }
        if !sql.is_empty() {
            self.admin("postgres", &sql);
        }
        format!(
            "postgres://firedoor_broker:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// [`PgServer::broker_url`] for the database [`PgServer::seed_app`] makes: ADMIN
    /// OPTION on app_read and app_write (plus `extra_roles`, e.g. a break-glass role),
    /// CONNECT on app.
    pub fn app_broker_url(&self, extra_roles: &[&str]) -> String {
        let mut roles = vec!["app_read", "app_write"];
        roles.extend_from_slice(extra_roles);
        self.broker_url(&roles, &["app"])
    }

    /// Runs SQL as `user` with `password` through the real `psql` client over TCP.
    pub fn psql(&self, user: &str, password: &str, db: &str, sql: &str) -> Output {
        self.psql_opts(user, password, db, sql, "")
    }

    /// [`PgServer::psql`] with server options for the session (`PGOPTIONS`).
    fn psql_opts(&self, user: &str, password: &str, db: &str, sql: &str, opts: &str) -> Output {
        Command::new("psql")
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-U", user, "-d", db, "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGOPTIONS", opts)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .expect("psql is installed (apt-get install postgresql-client)")
    }

    /// Runs SQL as the admin; panics on failure.
    pub fn admin(&self, db: &str, sql: &str) -> String {
        let out = self.psql(
            &self.admin_user.clone(),
            &self.admin_password.clone(),
            db,
            sql,
        );
        assert!(
            out.status.success(),
            "admin SQL failed: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates database `app` with table `orders`, a read role and a write role.
    pub fn seed_app(&self) {
        self.admin("postgres", "CREATE DATABASE app");
        self.admin(
            "app",
            "CREATE ROLE app_read NOLOGIN; CREATE ROLE app_write NOLOGIN;
             CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL);
             INSERT INTO orders (item) VALUES ('coffee'), ('tea');
             GRANT USAGE ON SCHEMA public TO app_read, app_write;
             GRANT SELECT ON orders TO app_read;
             GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO app_write;
             GRANT USAGE ON SEQUENCE orders_id_seq TO app_write;
             REVOKE CONNECT ON DATABASE app FROM PUBLIC;",
        );
    }
}

/// One server for the whole test binary (one server per binary, not per test),
/// started on first use. A static is never dropped, so a watchdog process stops the
/// server and removes its directory once this process has exited, however it ends.
pub fn shared_server() -> &'static PgServer {
    static SHARED: std::sync::OnceLock<PgServer> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let s = PgServer::start();
        let data = s.root.join("data");
        let pg_ctl = s.bin.join("pg_ctl");
        let stop = if is_root() {
            format!("runuser -u postgres -- {} -D {} -m immediate -w stop", pg_ctl.display(), data.display())
        } else {
            format!("{} -D {} -m immediate -w stop", pg_ctl.display(), data.display())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
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
            .expect("sh starts the PostgreSQL watchdog");
        s
    })
}

impl PgServer {
    /// Every row of database `db` as `pg_dump` writes it (data only, text form): what
    /// someone with a copy of the database would read.
    pub fn dump(&self, db: &str) -> Vec<u8> {
        let out = Command::new(self.bin.join("pg_dump"))
            .args([
                "--data-only",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", &self.admin_user, "-d", db])
            .env("PGPASSWORD", &self.admin_password)
            .stdin(Stdio::null())
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Creates a fresh, empty database and returns its admin URL: each test gets its
    /// own store on the binary's shared server.
    pub fn fresh_database(&self) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("store_{}_{n}", std::process::id());
        self.admin("postgres", &format!("CREATE DATABASE {name}"));
        self.admin_url(&name)
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
