#!/usr/bin/env bash
# Installs what Firedoor needs on Debian 12: system packages for the tests (a real
# PostgreSQL server and client, openssl for TLS test certificates, jq and curl for
# the README walkthrough). Installs only what is missing; uses sudo when not root.
set -euo pipefail

pkgs=(build-essential pkg-config postgresql postgresql-client openssl curl jq ca-certificates)

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
