#!/usr/bin/env bash
# Builds the broker's Debian package with dpkg-deb: /usr/bin/firedoor-server, the
# systemd unit firedoor-server.service (its own system user `firedoor`, data in
# /var/lib/firedoor, loopback only, hardened), and /etc/firedoor/policy.toml (a
# conffile: a safe example that provisions nothing real).
#
#   scripts/package-server.sh [--release|--debug] [--no-build] [--out DIR]
#
# --release (default) builds with `cargo build --release`; --debug packages the
# debug build (the install test uses it: no second, slow release build).
# --no-build packages the binary already in the target dir. Prints the .deb's path
# as its last line.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
profile=release
build=1
out="$root/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release ;;
    --debug) profile=debug ;;
    --no-build) build=0 ;;
    --out) out="$2"; shift ;;
    *) echo "package-server: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ "$build" = 1 ]; then
  if [ "$profile" = release ]; then
    cargo build --locked --release -p firedoor-server --manifest-path "$root/Cargo.toml" >&2
  else
    cargo build --locked -p firedoor-server --manifest-path "$root/Cargo.toml" >&2
  fi
fi
bin="$target_dir/$profile/firedoor-server"
[ -x "$bin" ] || { echo "package-server: $bin is missing (build it, or drop --no-build)" >&2; exit 1; }

version="$(cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml" \
  | jq -r '.packages[] | select(.name == "firedoor-server") | .version')"
arch="$(dpkg --print-architecture)"
pkg=firedoor-server
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/$pkg"

install -D -m 0755 "$bin" "$stage/usr/bin/firedoor-server"
install -D -m 0644 "$root/packaging/server/firedoor-server.service" \
  "$stage/lib/systemd/system/firedoor-server.service"
install -D -m 0644 "$root/packaging/server/policy.toml" "$stage/etc/firedoor/policy.toml"
install -D -m 0644 "$root/README.md" "$stage/usr/share/doc/$pkg/README.md"
install -D -m 0644 "$root/examples/demo-policy.toml" "$stage/usr/share/doc/$pkg/examples/demo-policy.toml"
for f in "$root"/examples/*-policy.toml; do
  install -m 0644 "$f" "$stage/usr/share/doc/$pkg/examples/"
done
cat > "$stage/usr/share/doc/$pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: firedoor

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0.
EOF

# The shared libraries the binary links, as Debian package dependencies.
mkdir -p "$work/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" > "$work/shlibs/debian/control"
shlibs="$(cd "$work/shlibs" && dpkg-shlibdeps -O "$stage/usr/bin/firedoor-server" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')"
[ -n "$shlibs" ] || { echo "package-server: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -d -m 0755 "$stage/DEBIAN"
for s in postinst prerm postrm; do
  install -m 0755 "$root/packaging/server/$s" "$stage/DEBIAN/$s"
done
echo "/etc/firedoor/policy.toml" > "$stage/DEBIAN/conffiles"
size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<EOF
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: Firedoor developers <firedoor@localhost>
Installed-Size: $size
Depends: $shlibs, adduser
Section: admin
Priority: optional
Description: Firedoor access broker
 The broker behind the Firedoor desktop console: time-boxed access requests,
 approvals, grants provisioned in real systems and revoked on time, sealed
 break-glass credentials, and a hash-chained audit log.
 .
 Runs as the systemd service firedoor-server (user firedoor, data in
 /var/lib/firedoor, policy in /etc/firedoor/policy.toml), on loopback by default.
EOF

mkdir -p "$out"
deb="$out/${pkg}_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >&2
echo "$deb"
