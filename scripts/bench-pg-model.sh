#!/usr/bin/env bash
# The PostgreSQL store's ceiling on this machine, without the broker: pgbench runs one
# grant lifecycle's store work (crates/server/benches/pg-model/lifecycle.sql, modelled
# on the statements the store sends) from 16 connections against a throwaway server
# with the broker's own schema (its migrations) and the test harness's settings
# (fsync off). Two variants, alternated: one statement per round trip (as today) and
# the same statements in pipelines per unit of work (what a pipelining driver would
# send). Prints lifecycles/s, CPU per lifecycle (all cores, and pgbench's own share)
# and round trips per lifecycle; pgbench's C client costs far less than a broker.
# CPU is counted machine-wide: run it on an otherwise idle machine.
#
# Usage: scripts/bench-pg-model.sh   (root or a user that can run initdb; after
#        scripts/deps.sh). Knobs: SECS=15 RUNS=3 CLIENTS=16
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECS=${SECS:-15}
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-16}
MODEL=crates/server/benches/pg-model
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
TMP=$(mktemp -d /tmp/firedoor-pgmodel-XXXXXX)
PORT=$((20000 + RANDOM % 20000))
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$TMP"
cleanup() {
  as_pg "$BIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

as_pg "$BIN/initdb" -D "$TMP/data" -U bench --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
as_pg "$BIN/pg_ctl" -D "$TMP/data" -l "$TMP/log" -w -o "-c listen_addresses=127.0.0.1 -p $PORT \
  -c unix_socket_directories='' -c fsync=off -c full_page_writes=off -c max_connections=200" start >/dev/null
psql_() { psql -h 127.0.0.1 -p "$PORT" -U bench -v ON_ERROR_STOP=1 -qAt "$@"; }
psql_ postgres -c "CREATE DATABASE model"
URL="postgres://bench@127.0.0.1:$PORT/model"
# The broker's schema: its migrations run when it opens the store.
cargo run -q --locked -p firedoor-server -- --data-dir "$TMP/broker" --database "$URL" user list >/dev/null
psql_ model -c "INSERT INTO users (name, groups_json, admin, created_at) VALUES ('bench', '[\"dba\"]', 0, now());
  INSERT INTO tokens (id, user_name, hash, created_at, expires_at) VALUES ('t1', 'bench', 'h1', now(), now() + interval '1 day');"

# The same statements one round trip each: the pipeline lines taken out.
cp "$MODEL/lifecycle.sql" "$TMP/lifecycle-pipelined.sql"
grep -v '^\\\(start\|end\)pipeline' "$MODEL/lifecycle.sql" > "$TMP/lifecycle.sql"
statements=$(grep -cv '^\(--\|\\\)' "$TMP/lifecycle.sql")
trips_pipe=$(awk '/^\\startpipeline/{p=1; n++; next} /^\\endpipeline/{p=0; next} /^(--|\\)/{next} {if(!p) n++} END{print n}' "$TMP/lifecycle-pipelined.sql")
echo "model: $statements statements per lifecycle; round trips: $statements one at a time, $trips_pipe pipelined; $CLIENTS connections, ${SECS} s per run, $(nproc) cores"

# Time this machine ran something (user, nice, system, irq, softirq), not steal.
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
# A fresh database's first seconds are slower (tables grow from empty): not measured.
pgbench -h 127.0.0.1 -p "$PORT" -U bench -n -M prepared -c "$CLIENTS" -j 2 -T 5 -f "$TMP/lifecycle.sql" model >/dev/null 2>&1
for run in $(seq 1 "$RUNS"); do
  for v in lifecycle lifecycle-pipelined; do
    psql_ model -c "VACUUM ANALYZE" >/dev/null
    b0=$(busy)
    TIMEFORMAT='%U %S'
    { time pgbench -h 127.0.0.1 -p "$PORT" -U bench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" \
        -f "$TMP/$v.sql" model > "$TMP/out" 2>&1; } 2> "$TMP/time"
    b1=$(busy)
    n=$(awk '/number of transactions actually processed/{print $NF}' "$TMP/out" | cut -d/ -f1)
    failed=$(awk '/number of failed transactions/{print $5}' "$TMP/out")
    read -r u s < "$TMP/time"
    ticks=$(getconf CLK_TCK)
    awk -v v="$v" -v n="$n" -v secs="$SECS" -v b="$((b1 - b0))" -v hz="$ticks" -v u="$u" -v s="$s" -v f="${failed:-0}" 'BEGIN {
      all = b * 1000 / hz / n; own = (u + s) * 1000 / n;
      printf "  run: %-20s %6.0f lifecycles/s   CPU per lifecycle %.2f ms (pgbench %.2f ms, store %.2f ms)   failed %s\n",
        v, n / secs, all, own, all - own, f }'
  done
done
