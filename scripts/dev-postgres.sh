#!/usr/bin/env bash
# A throwaway PostgreSQL server for trying Firedoor's PostgreSQL connector:
#   eval "$(scripts/dev-postgres.sh start)"   # starts it, exports FIREDOOR_PG_URL
#                                             # and FIREDOOR_STORE_URL
#   scripts/dev-postgres.sh stop
# It listens on 127.0.0.1:${FIREDOOR_DEV_PG_PORT:-55432}, keeps its data in
# /tmp/firedoor-dev-pg, and has a database "app" with a table "orders" and the roles
# app_read / app_write that examples/postgres-policy.toml grants.
#
# The superuser (firedoor_admin) only sets things up. The broker gets its own role,
# firedoor_broker: LOGIN, CREATEROLE, not a superuser, ADMIN OPTION on the roles the
# policy grants and on the break-glass role, CONNECT on app WITH GRANT OPTION.
# FIREDOOR_PG_URL is its URL; the broker refuses a superuser URL.
#
# For several brokers sharing one store (README "Running several brokers") it also
# has a database "firedoor" owned by the role firedoor_store, which owns nothing
# else: FIREDOOR_STORE_URL is its URL (pass it as --database; it is not exported as
# FIREDOOR_DATABASE_URL so the single-broker walkthrough keeps its SQLite store).
set -euo pipefail
port=${FIREDOOR_DEV_PG_PORT:-55432}
root=/tmp/firedoor-dev-pg
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-}" in
start)
  if [ ! -d "$root/data" ]; then
    mkdir -p "$root/data"
    pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    printf '%s' "$pw" > "$root/pw"
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$root/broker-pw"
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$root/store-pw"
    chmod 600 "$root/pw" "$root/broker-pw" "$root/store-pw"
    chmod 755 "$root"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$root"
    as_pg "$bindir/initdb" -D "$root/data" -U firedoor_admin --auth-local=trust \
      --auth-host=scram-sha-256 --pwfile="$root/pw" -E UTF8 --locale=C >/dev/null
  fi
  pw=$(cat "$root/pw")
  broker_pw=$(cat "$root/broker-pw")
  store_pw=$(cat "$root/store-pw")
  if ! as_pg "$bindir/pg_ctl" -D "$root/data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$root/data" -l "$root/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=''" start >/dev/null
  fi
  export PGPASSWORD=$pw
  if ! psql -X -q -h 127.0.0.1 -p "$port" -U firedoor_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='app'" | grep -q 1; then
    psql -X -q -h 127.0.0.1 -p "$port" -U firedoor_admin -d postgres -c "CREATE DATABASE app" >/dev/null
    psql -X -q -h 127.0.0.1 -p "$port" -U firedoor_admin -d app >/dev/null <<'SQL'
CREATE ROLE app_read NOLOGIN; CREATE ROLE app_write NOLOGIN;
CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL);
INSERT INTO orders (item) VALUES ('coffee'), ('tea');
GRANT USAGE ON SCHEMA public TO app_read, app_write;
GRANT SELECT ON orders TO app_read;
GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO app_write;
GRANT USAGE ON SEQUENCE orders_id_seq TO app_write;
REVOKE CONNECT ON DATABASE app FROM PUBLIC;
-- The break-glass login. No password: the broker sets one (as a SCRAM verifier) when
-- it rotates the secret payments-db-breakglass of examples/postgres-policy.toml.
CREATE ROLE fd_breakglass LOGIN;
GRANT CONNECT ON DATABASE app TO fd_breakglass;
GRANT app_write TO fd_breakglass;
SQL
    # The broker's admin role (not a superuser; PostgreSQL 16+ rules, fine on 15).
    psql -X -q -h 127.0.0.1 -p "$port" -U firedoor_admin -d app -v broker_pw="$broker_pw" >/dev/null <<'SQL'
CREATE ROLE firedoor_broker LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS
  PASSWORD :'broker_pw';
GRANT app_read, app_write, fd_breakglass TO firedoor_broker WITH ADMIN OPTION;
GRANT CONNECT ON DATABASE app TO firedoor_broker WITH GRANT OPTION;
SQL
  fi
  if ! psql -X -q -h 127.0.0.1 -p "$port" -U firedoor_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='firedoor'" | grep -q 1; then
    psql -X -q -h 127.0.0.1 -p "$port" -U firedoor_admin -d postgres -v store_pw="$store_pw" >/dev/null <<'SQL'
CREATE ROLE firedoor_store LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'store_pw';
CREATE DATABASE firedoor OWNER firedoor_store;
REVOKE CONNECT ON DATABASE firedoor FROM PUBLIC;
SQL
  fi
  echo "export FIREDOOR_PG_URL='postgres://firedoor_broker:$broker_pw@127.0.0.1:$port/postgres'"
  echo "export FIREDOOR_STORE_URL='postgres://firedoor_store:$store_pw@127.0.0.1:$port/firedoor'"
  echo "# PostgreSQL for Firedoor is up on 127.0.0.1:$port (data in $root)" >&2
  ;;
stop)
  as_pg "$bindir/pg_ctl" -D "$root/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$root"
  echo "stopped and removed $root" >&2
  ;;
*)
  echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
