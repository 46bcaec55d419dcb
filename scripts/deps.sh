#!/usr/bin/env bash
# Installs what Firedoor needs on Debian 12: system packages for the tests (a real
# PostgreSQL server and client, a real MariaDB server and client, openssl for TLS
# test certificates, jq and curl for the README walkthrough, HAProxy and promtool for
# the replica and alert tests, Alertmanager for the incident tests, rsyslog for the
# audit-to-SIEM tests, sshd and ssh-agent for the SSH tests).
# Installs only what is missing; uses sudo when not root.
set -euo pipefail

pkgs=(build-essential pkg-config postgresql postgresql-client openssl curl jq ca-certificates
  # the desktop app (Tauri v2 on WebKitGTK)
  libssl-dev libwebkit2gtk-4.1-dev libxdo-dev libayatana-appindicator3-dev librsvg2-dev file
  # its headless tests: a real window under Xvfb, WebDriver, session bus, keyrings, notifications
  xvfb xauth dbus-x11 webkit2gtk-driver gnome-keyring libsecret-tools keyutils libnotify-bin
  x11-utils xdotool imagemagick
  # offline break glass: the reference age tool opens envelopes in the interop tests
  age
  # several replicas: a real HAProxy in front of brokers, and promtool (in the
  # prometheus package) to check examples/prometheus-alerts.yml
  haproxy prometheus
  # incidents: a real Alertmanager fires alerts at the broker in the incident tests
  prometheus-alertmanager
  # audit to a SIEM: a real rsyslog receives the audit stream in the siem tests
  rsyslog
  # SSH certificates: a real sshd (started by the tests on a loopback port, never
  # the system's) and the ssh client, ssh-keygen and ssh-agent
  openssh-server openssh-client
  # the MySQL / MariaDB connector: a real MariaDB server (and its client) in the tests
  mariadb-server mariadb-client
  # packages: dpkg-dev builds the broker's .deb (dpkg-shlibdeps); the install test
  # checks the firedoor:// handler with xdg-mime / xdg-open, and desktop-file-utils
  # keeps the desktop database (mimeinfo.cache) current when a .desktop file is installed
  dpkg-dev xdg-utils desktop-file-utils)
# Node.js and npm build the web UI and run the SSO tests' OpenID Provider; the machine
# image ships them (nodesource, Node 20), a bare Debian gets its own.
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi

# WebDriver bridge for the end-to-end tests of the real app window (2.x: the registry
# also has 3.0 alphas).
if ! command -v tauri-driver >/dev/null 2>&1; then
  echo "installing tauri-driver 2.1.0" >&2
  cargo install tauri-driver --version 2.1.0 --locked --quiet
fi

# The SSO tests' OpenID Provider (npm `oidc-provider`, pinned by its lock file); the
# harness (crates/testkit/src/oidc.rs) also runs this on first use.
oidc_dir="$(dirname "$0")/../crates/testkit/oidc"
if [ ! -d "$oidc_dir/node_modules/oidc-provider" ]; then
  echo "installing the test OpenID Provider (npm ci in crates/testkit/oidc)" >&2
  (cd "$oidc_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
