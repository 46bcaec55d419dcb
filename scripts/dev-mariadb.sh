#!/usr/bin/env bash
# A throwaway MariaDB server for trying Firedoor's MySQL connector:
#   eval "$(scripts/dev-mariadb.sh start)"   # starts it, exports FIREDOOR_MYSQL_URL
#   scripts/dev-mariadb.sh stop
# It listens on 127.0.0.1:${FIREDOOR_DEV_MYSQL_PORT:-53306} (the superuser, root,
# only through the socket /tmp/firedoor-dev-mariadb/mysqld.sock), keeps its data in
# /tmp/firedoor-dev-mariadb, and has a database "app" with a table "orders" that
# examples/mysql-policy.toml grants on.
#
# root only sets things up. The broker gets its own account, firedoor_broker: CREATE
# USER, PROCESS and CONNECTION ADMIN on *.*, and on app the privileges the permission
# levels grant WITH GRANT OPTION, plus what it needs to drop what grantees define.
# Nothing else: the broker refuses SUPER, SET USER, FILE, global data privileges and
# any privilege on the mysql schema. FIREDOOR_MYSQL_URL is its URL.
set -euo pipefail
port=${FIREDOOR_DEV_MYSQL_PORT:-53306}
root=/tmp/firedoor-dev-mariadb
sock=$root/mysqld.sock
mysqld=$(command -v mariadbd || echo /usr/sbin/mariadbd)
as_user=()
[ "$(id -u)" -eq 0 ] && as_user=(--user=root)
sql() { mariadb --no-defaults --socket="$sock" -u root "$@"; }
up() { mariadb-admin --no-defaults --socket="$sock" -u root --connect-timeout=2 ping >/dev/null 2>&1; }

case "${1:-}" in
start)
  if [ ! -d "$root/data" ]; then
    mkdir -p "$root"
    chmod 700 "$root"
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$root/broker-pw"
    mariadb-install-db --no-defaults --datadir="$root/data" --auth-root-authentication-method=normal \
      --skip-test-db --skip-name-resolve "${as_user[@]}" >/dev/null
  fi
  broker_pw=$(cat "$root/broker-pw")
  if ! up; then
    nohup "$mysqld" --no-defaults --datadir="$root/data" --socket="$sock" --port="$port" \
      --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$root/mysqld.pid" \
      --log-error="$root/error.log" "${as_user[@]}" >/dev/null 2>&1 &
    for _ in $(seq 1 150); do up && break; sleep 0.2; done
    up || { echo "mariadbd did not start; see $root/error.log" >&2; exit 1; }
  fi
  if [ -z "$(sql -N -e "SHOW DATABASES LIKE 'app'")" ]; then
    sql <<SQL
CREATE DATABASE app;
CREATE TABLE app.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(200) NOT NULL);
INSERT INTO app.orders (item) VALUES ('coffee'), ('tea');
-- The broker's account (not root; the broker refuses a root-like account).
CREATE USER 'firedoor_broker'@'%' IDENTIFIED BY '$broker_pw';
GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'firedoor_broker'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, DROP, CREATE VIEW, SHOW VIEW, CREATE ROUTINE,
      ALTER ROUTINE, EXECUTE, TRIGGER, EVENT ON app.* TO 'firedoor_broker'@'%' WITH GRANT OPTION;
SQL
  fi
  echo "export FIREDOOR_MYSQL_URL='mysql://firedoor_broker:$broker_pw@127.0.0.1:$port'"
  echo "# MariaDB for Firedoor is up on 127.0.0.1:$port (data in $root)" >&2
  ;;
stop)
  if [ -f "$root/mysqld.pid" ]; then
    kill "$(cat "$root/mysqld.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do up || break; sleep 0.2; done
  fi
  rm -rf "$root"
  echo "stopped and removed $root" >&2
  ;;
*)
  echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
