//! `firedoor-server ssh host-setup`: what a host needs to accept the broker's
//! certificates and refuse revoked ones — files, `sshd_config` lines, and a fetch
//! script with a systemd timer for the revocation list and CA keys.

use firedoor_core::ssh::SshHostSet;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Where the setup puts things on a host.
pub const CA_FILE: &str = "/etc/ssh/firedoor_user_ca.pub";
pub const KRL_FILE: &str = "/etc/ssh/firedoor.krl";
pub const PRINCIPALS_DIR: &str = "/etc/ssh/firedoor_principals";
pub const FETCH_SCRIPT: &str = "/usr/local/sbin/firedoor-ssh-fetch";

/// The fetch script: downloads the KRL and the CA keys, checks each parses
/// (`ssh-keygen`), and replaces the old file atomically only then. If the broker
/// cannot be reached the files stay as they were (a host keeps the last list).
pub fn fetch_script(integration: &str, broker_url: &str) -> String {
    fetch_script_to(integration, broker_url, KRL_FILE, CA_FILE)
}

/// [`fetch_script`] writing to other paths (tests).
pub fn fetch_script_to(
    integration: &str,
    broker_url: &str,
    krl_file: &str,
    ca_file: &str,
) -> String {
    let base = broker_url.trim_end_matches('/');
    format!(
        r#"#!/bin/sh
# Fetches Firedoor's SSH revocation list and CA keys ({integration}); run by
# firedoor-ssh-fetch.timer every minute. A file is replaced only by one that parses.
set -eu
BROKER="{base}/api/v1"
fetch() {{ # URL DEST CHECK
  tmp=$(mktemp "$2.XXXXXX")
  if curl -fsS --max-time 20 -o "$tmp" "$1" && sh -c "$3" _ "$tmp" >/dev/null 2>&1; then
    chmod 0644 "$tmp" && mv -f "$tmp" "$2"
  else
    rm -f "$tmp"; echo "firedoor-ssh-fetch: kept the old $2" >&2; return 1
  fi
}}
rc=0
fetch "$BROKER/ssh/krl" {krl_file} 'ssh-keygen -Q -l -f "$1"' || rc=1
fetch "$BROKER/ssh/{integration}/ca" {ca_file} 'ssh-keygen -l -f "$1"' || rc=1
exit $rc
"#
    )
}

/// The whole setup as text to read and apply.
pub fn host_setup(
    integration: &str,
    broker_url: &str,
    ca_keys: &str,
    host_sets: &BTreeMap<String, SshHostSet>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Firedoor SSH host setup, integration '{integration}' (broker {broker_url})\n#"
    );
    let _ = writeln!(
        s,
        "# 1. {CA_FILE}: the CA keys this host trusts (the fetch script keeps it current)"
    );
    for l in ca_keys.lines() {
        let _ = writeln!(s, "{l}");
    }
    let _ = writeln!(
        s,
        "#\n# 2. /etc/ssh/sshd_config (then: sshd -t && systemctl reload ssh)\n\
         TrustedUserCAKeys {CA_FILE}\n\
         AuthorizedPrincipalsFile {PRINCIPALS_DIR}/%u\n\
         RevokedKeys {KRL_FILE}\n\
         # sshd refuses every key while {KRL_FILE} is missing: run the fetch script once first."
    );
    let _ = writeln!(
        s,
        "#\n# 3. {PRINCIPALS_DIR}/ACCOUNT: who may log in as which account, per host set"
    );
    for (name, set) in host_sets {
        let hosts = if set.hosts.is_empty() {
            String::new()
        } else {
            format!(" ({})", set.hosts.join(", "))
        };
        let _ = writeln!(s, "#    host set {name}{hosts}:");
        for (account, principals) in set.principals_files() {
            let _ = writeln!(
                s,
                "#    {PRINCIPALS_DIR}/{account}: {}",
                principals.join(" ")
            );
        }
    }
    let _ = writeln!(s, "#\n# 4. {FETCH_SCRIPT} (mode 0755):");
    for l in fetch_script(integration, broker_url).lines() {
        let _ = writeln!(s, "#    {l}");
    }
    let _ = writeln!(
        s,
        "#\n# 5. /etc/systemd/system/firedoor-ssh-fetch.service:\n\
         #    [Unit]\n#    Description=Fetch Firedoor's SSH revocation list and CA keys\n\
         #    [Service]\n#    Type=oneshot\n#    ExecStart={FETCH_SCRIPT}\n\
         #  /etc/systemd/system/firedoor-ssh-fetch.timer:\n\
         #    [Timer]\n#    OnBootSec=10s\n#    OnUnitActiveSec=60s\n#    AccuracySec=5s\n\
         #    [Install]\n#    WantedBy=timers.target\n\
         #  then: systemctl enable --now firedoor-ssh-fetch.timer"
    );
    s
}
