//! A real OpenSSH server (Debian package `openssh-server`) for tests, on a loopback
//! port, trusting a user CA file and loading a key revocation list, as
//! `firedoor-server ssh host-setup` sets a host up. Logins are for the account the
//! test runs as; its principals file lists who may log in as it. And `ssh` itself,
//! run with a key and certificate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// The account logins are for (the one the test runs as).
    pub user: String,
}

/// The account the test runs as.
pub fn current_user() -> String {
    let o = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Sshd {
    /// Starts sshd trusting the CA keys `ca_keys` (OpenSSH lines), with `krl` as
    /// its revocation list and `principals` allowed to log in as the current
    /// account. Returns once it accepts connections.
    pub fn start(ca_keys: &str, krl: &[u8], principals: &[&str]) -> Sshd {
        let bin = Path::new("/usr/sbin/sshd");
        assert!(
            bin.exists(),
            "sshd not found: apt-get install -y openssh-server (scripts/deps.sh does this)"
        );
        // Privilege separation needs its empty directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("firedoor-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let host_key = d.join("host_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success(), "host key: {out:?}");
        std::fs::create_dir_all(d.join("principals")).expect("principals dir");
        let user = current_user();
        std::fs::write(
            d.join("principals").join(&user),
            principals.join("\n") + "\n",
        )
        .expect("principals file");
        std::fs::write(d.join("ca.pub"), ca_keys).expect("ca file");
        std::fs::write(d.join("krl"), krl).expect("krl file");
        let port = crate::free_port();
        let cfg = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile none\nTrustedUserCAKeys {d}/ca.pub\n\
             AuthorizedPrincipalsFile {d}/principals/%u\nRevokedKeys {d}/krl\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel VERBOSE\n",
            hk = host_key.display(),
            d = d.display()
        );
        let cfg_path = d.join("sshd_config");
        std::fs::write(&cfg_path, cfg).expect("sshd_config");
        let log = std::fs::File::create(d.join("sshd.log")).expect("log file");
        let child = Command::new(bin)
            .args(["-D", "-e", "-f"])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting sshd");
        let mut s = Sshd {
            child,
            dir,
            port,
            user,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("sshd exited at start ({status}):\n{}", s.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the revocation list (as the host's fetch script does).
    pub fn set_krl(&self, krl: &[u8]) {
        let tmp = self.dir.path().join("krl.new");
        std::fs::write(&tmp, krl).expect("krl");
        std::fs::rename(&tmp, self.dir.path().join("krl")).expect("krl");
    }

    /// Replaces the trusted CA keys.
    pub fn set_ca_keys(&self, ca_keys: &str) {
        std::fs::write(self.dir.path().join("ca.pub"), ca_keys).expect("ca file");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Runs `command` on this host with `ssh`, authenticating with the private key
    /// file `key` and its certificate `cert` (files), nothing else.
    pub fn ssh(&self, key: &Path, cert: &Path, command: &str) -> Output {
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "IdentityAgent=none",
                "-o",
            ])
            .arg(format!("CertificateFile={}", cert.display()))
            .arg("-i")
            .arg(key)
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("running ssh")
    }

    /// Runs `command` with `ssh` using only the keys in the agent at `agent`.
    pub fn ssh_with_agent(&self, agent: &Path, command: &str) -> Output {
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-o")
            .arg(format!("IdentityAgent={}", agent.display()))
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("running ssh")
    }

    /// The directory holding its files.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `ssh-agent` on a socket in a temp dir, stopped on drop.
pub struct SshAgent {
    child: Child,
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl SshAgent {
    pub fn start() -> SshAgent {
        let dir = tempfile::Builder::new()
            .prefix("firedoor-agent-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ssh-agent (apt-get install -y openssh-client)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        SshAgent {
            child,
            _dir: dir,
            socket,
        }
    }

    /// What `ssh-add -l` says (fingerprint, comment, type per key).
    pub fn list(&self) -> String {
        let o = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .expect("ssh-add");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
