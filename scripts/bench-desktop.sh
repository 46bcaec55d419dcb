#!/usr/bin/env bash
# Desktop benchmark: Firedoor against a minimal Tauri v2 hello world built in the same
# run with the same profile, on this machine, headless (Xvfb).
#
#   (a) cold start to interactive, median of $RUNS runs each: from process start to
#       the page having rendered (Firedoor: its UI shows cached data and calls
#       `ui_ready`, which prints "firedoor: interactive after N ms"; hello world: its
#       page calls a command on DOMContentLoaded, which prints "hello: interactive
#       after N ms"). Fresh XDG_DATA_HOME / XDG_CONFIG_HOME / XDG_CACHE_HOME per run;
#       Firedoor in demo mode. Page cache is warm (one discarded warm-up run each).
#   (b) memory: PSS summed over the app's whole process tree (the app and its
#       WebKitWebProcess / WebKitNetworkProcess children) after $SETTLE_SECS s settling and $IDLE_SECS s idle (the idle CPU is measured over the $IDLE_SECS s).
#       Firedoor is signed in to a real broker on loopback (token in a throwaway,
#       unlocked gnome-keyring; cache pre-seeded with the broker URL and user) and
#       lists $N_GRANTS grants and $N_PENDING pending requests. The hello world runs
#       in the same keyring + D-Bus + Xvfb setting.
#
# Usage: scripts/bench-desktop.sh            (from the repository root; assumes
#        scripts/deps.sh has run). Takes ~10 min on 2 cores plus the builds.
# Knobs (environment): RUNS=5 IDLE_SECS=60 SETTLE_SECS=20 N_GRANTS=100 N_PENDING=100
#   PROFILE=release|debug  SKIP_BUILD=1 (use existing binaries)
#   BUILD_RETRY_MINUTES=30 (retry a failing Firedoor build, e.g. mid-edit tree)
#   START_TIMEOUT=60 (s per launch)  KEEP=1 (keep the temp dir)
#   OUT_DIR=target/bench-desktop (logs, screenshots, summary.txt)
# Only loopback traffic: cargo runs --offline, the broker listens on 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${RUNS:-5}
IDLE_SECS=${IDLE_SECS:-60}
SETTLE_SECS=${SETTLE_SECS:-20}
N_GRANTS=${N_GRANTS:-100}
N_PENDING=${N_PENDING:-100}
PROFILE=${PROFILE:-release}
SKIP_BUILD=${SKIP_BUILD:-0}
BUILD_RETRY_MINUTES=${BUILD_RETRY_MINUTES:-30}
START_TIMEOUT=${START_TIMEOUT:-60}
KEEP=${KEEP:-0}
OUT_DIR=${OUT_DIR:-$ROOT/target/bench-desktop}
SCREEN="-screen 0 1280x800x24"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$PROFILE" in
  release) PROFILE_FLAG=(--release); PROFILE_DIR=release ;;
  debug | dev) PROFILE_FLAG=(); PROFILE_DIR=debug ;;
  *) die "PROFILE must be release or debug" ;;
esac

for t in cargo python3 curl xvfb-run Xvfb xauth keyctl dbus-run-session gnome-keyring-daemon \
  secret-tool setsid timeout pgrep import xdotool; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found: run scripts/deps.sh"
done

mkdir -p "$OUT_DIR"
WORK=$(mktemp -d /tmp/fd-bench-desktop.XXXXXX)
# Every process this script starts inherits this marker; cleanup ends exactly those
# (including daemons that detach, like gnome-keyring-daemon) and nothing else.
export FD_BENCH_MARK="$WORK"
# Keep apps from reaching an accessibility bus or a real session.
export NO_AT_BRIDGE=1
unset DBUS_SESSION_BUS_ADDRESS DISPLAY WAYLAND_DISPLAY FIREDOOR_DATA_DIR FIREDOOR_DEMO

kill_marked() {
  local sig=$1 d p
  local -a envv
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$$" ] && continue
    # Builtins only: spawning a helper here would put a marked process in the scan.
    mapfile -d "" envv 2>/dev/null <"$d/environ" || continue
    local e
    for e in "${envv[@]}"; do
      if [ "$e" = "FD_BENCH_MARK=$WORK" ]; then
        kill "-$sig" "$p" 2>/dev/null || true
        break
      fi
    done
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  kill_marked TERM
  sleep 1
  kill_marked KILL
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TARGET_DIR=$(cargo metadata --offline --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') ||
  TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR="$TARGET_DIR/$PROFILE_DIR"
FIREDOOR="$BIN_DIR/firedoor"
SERVER="$BIN_DIR/firedoor-server"
HELLO="$BIN_DIR/fd-bench-hello"

# ---------------------------------------------------------------- builds

# Runs a command with its output in a log, printing a heartbeat while it works.
run_logged() {
  local logf=$1 limit=$2
  shift 2
  timeout -k 10 "$limit" "$@" >"$logf" 2>&1 &
  local pid=$! n=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    n=$((n + 5))
    if [ $((n % 60)) -eq 0 ]; then
      log "  … ${n}s: $(grep -E '^\s*(Compiling|Finished|Blocking)' "$logf" | tail -n 1 | sed 's/^ *//')"
    fi
  done
  wait "$pid"
}

build_ui_if_missing() {
  if [ ! -f ui/dist/index.html ]; then
    log "ui/dist is missing: building the web UI"
    run_logged "$OUT_DIR/build-ui.log" 900 bash -c 'npm --prefix ui ci && npm --prefix ui run build' ||
      { tail -n 30 "$OUT_DIR/build-ui.log" >&2; die "UI build failed"; }
  elif [ -n "$(find ui/src ui/index.html -newer ui/dist/index.html -print -quit 2>/dev/null)" ]; then
    log "note: ui/src is newer than ui/dist (the app embeds ui/dist as built)"
  fi
}

build_firedoor() {
  local deadline=$(($(date +%s) + BUILD_RETRY_MINUTES * 60)) attempt=1
  while :; do
    log "building firedoor + firedoor-server ($PROFILE), attempt $attempt; log: $OUT_DIR/build-firedoor.log"
    local t0=$SECONDS
    if run_logged "$OUT_DIR/build-firedoor.log" 3600 \
      cargo build --offline "${PROFILE_FLAG[@]}" -p firedoor -p firedoor-server; then
      log "firedoor built in $((SECONDS - t0)) s"
      return 0
    fi
    tail -n 25 "$OUT_DIR/build-firedoor.log" >&2
    [ "$(date +%s)" -lt "$deadline" ] ||
      die "firedoor did not build within $BUILD_RETRY_MINUTES min (see $OUT_DIR/build-firedoor.log)"
    log "build failed (the tree may be mid-edit); retrying in 3 min"
    sleep 180
    attempt=$((attempt + 1))
  done
}

build_hello() {
  local src="$WORK/hello"
  cp -r "$ROOT/scripts/bench-desktop/hello" "$src"
  mv "$src/Cargo.toml.in" "$src/Cargo.toml"
  mkdir -p "$src/icons"
  cp "$ROOT/icons/icon.png" "$src/icons/icon.png"
  # Firedoor's lock file: the same tauri / wry / webkit2gtk versions, offline, and the
  # shared target dir reuses whatever compiled artifacts match.
  cp "$ROOT/Cargo.lock" "$src/Cargo.lock"
  log "building the hello world ($PROFILE) in $src; log: $OUT_DIR/build-hello.log"
  local t0=$SECONDS
  CARGO_TARGET_DIR="$TARGET_DIR" run_logged "$OUT_DIR/build-hello.log" 3600 \
    cargo build --offline "${PROFILE_FLAG[@]}" --manifest-path "$src/Cargo.toml" ||
    { tail -n 30 "$OUT_DIR/build-hello.log" >&2; die "hello world build failed"; }
  log "hello world built in $((SECONDS - t0)) s; tauri $(grep -A1 '^name = "tauri"$' "$src/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')"
}

if [ "$SKIP_BUILD" = 1 ]; then
  log "SKIP_BUILD=1: using existing binaries in $BIN_DIR"
else
  build_ui_if_missing
  build_firedoor
  build_hello
fi
for b in "$FIREDOOR" "$SERVER" "$HELLO"; do
  [ -x "$b" ] || die "$b is missing"
done

# ---------------------------------------------------------------- helpers

# Prints N from the first "<prefix>: interactive after N ms" line in a file, waiting
# up to $3 s while process $4 lives.
wait_interactive() {
  local file=$1 prefix=$2 limit=$3 pid=$4 end=$((SECONDS + $3)) n
  while [ "$SECONDS" -lt "$end" ]; do
    n=$(sed -n "s/^$prefix: interactive after \([0-9][0-9]*\) ms.*/\1/p" "$file" 2>/dev/null | head -n 1)
    if [ -n "$n" ]; then
      echo "$n"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Ends a process group started with setsid (its leader is $1).
stop_group() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

fresh_dirs() { # dir: per-run XDG dirs
  mkdir -p "$1/data" "$1/config" "$1/cache" "$1/run"
  chmod 700 "$1/run"
}

# The app's pid inside process session $1 (a setsid leader), by its command name.
app_pid() { pgrep -s "$1" -x "$2" | head -n 1; }

# The process and all its descendants.
tree_pids() {
  local p=$1 c
  echo "$p"
  for c in $(pgrep -P "$p"); do tree_pids "$c"; done
}

# "PSS_kB USS_kB RSS_kB<TAB>name PSS MB/cpu s, …" for a process tree, from smaps_rollup.
# PSS splits each shared page among all processes mapping it, including processes
# outside the tree (other WebKit apps share libwebkit2gtk's pages); USS (private pages
# only) does not depend on what else runs.
tree_mem() {
  local pss=0 uss=0 rss=0 parts="" p v name a b c
  for p in $(tree_pids "$1"); do
    v=$(awk '/^Pss:/ {p=$2} /^Rss:/ {r=$2} /^Private_(Clean|Dirty|Hugetlb):/ {u+=$2}
             END {if (p != "") print p, u + 0, r + 0}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
    [ -n "$v" ] || continue
    read -r a b c <<<"$v"
    name=$(cat "/proc/$p/comm" 2>/dev/null || echo "?")
    pss=$((pss + a))
    uss=$((uss + b))
    rss=$((rss + c))
    parts="$parts${parts:+, }$name $((a / 1024)) MB/$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$p/stat" 2>/dev/null)s cpu"
  done
  printf '%s %s %s\t%s\n' "$pss" "$uss" "$rss" "$parts"
}

# How many processes outside tree $1 map WebKitGTK (they lower the tree's PSS).
foreign_webkit() {
  local ours n=0 m p
  ours=" $(tree_pids "$1" | tr '\n' ' ') "
  for m in $(grep -l -e libwebkit2gtk -e libjavascriptcoregtk /proc/[0-9]*/maps 2>/dev/null); do
    p=${m#/proc/}
    p=${p%/maps}
    case "$ours" in *" $p "*) ;; *) n=$((n + 1)) ;; esac
  done
  echo "$n"
}

# CPU seconds (user+system) used so far by a process tree.
tree_cpu() {
  local t=0 p
  for p in $(tree_pids "$1"); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }'
}

# Clock ticks (user+system) of each process in a tree, as "pid ticks" lines.
tree_ticks() {
  local p
  for p in $(tree_pids "$1"); do
    awk -v p="$p" '{print p, $14 + $15}' "/proc/$p/stat" 2>/dev/null || true
  done
}

# A readable name for a process of the tree: "app" for the app itself, WebKit's
# helpers by their full names (comm is cut at 15 characters).
proc_label() {
  case "$2" in
    "$1") echo app ;;
    WebKitWebProces*) echo WebKitWebProcess ;;
    WebKitNetworkPr*) echo WebKitNetworkProcess ;;
    *) echo "$2" ;;
  esac
}

# Per process of tree $1 (app comm $2): "label PSS MB, CPU % of a core over the idle
# window" (ticks at the window's start in file $3, window length $4 s), e.g.
# "app 52 MB 0.02%; WebKitWebProcess 160 MB 0.30%; …", plus the tree's total CPU %
# in TREE_IDLE_PCT.
tree_breakdown() {
  local root=$1 comm=$2 before=$3 secs=$4 hz out="" p t0 t1 pss name total=0
  hz=$(getconf CLK_TCK)
  for p in $(tree_pids "$root"); do
    t1=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
    # A process started during the window counts from 0.
    t0=$(awk -v p="$p" '$1 == p {print $2}' "$before")
    t0=${t0:-0}
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
    name=$(proc_label "$comm" "$(cat "/proc/$p/comm" 2>/dev/null || echo "?")")
    total=$((total + t1 - t0))
    out="$out${out:+; }$name $((pss / 1024)) MB $(awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.2f%%", 100 * d / hz / s }')"
  done
  TREE_IDLE_PCT=$(awk -v d="$total" -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.2f", 100 * d / hz / s }')
  echo "$out"
}

# Runs an X client against the Xvfb display inside session $1 (display and auth file
# from the Xvfb command line that xvfb-run wrote).
on_display() {
  local sid=$1 xpid args disp auth="" i
  shift
  xpid=$(pgrep -s "$sid" -x Xvfb | head -n 1) || return 1
  mapfile -d '' args <"/proc/$xpid/cmdline"
  disp=${args[1]}
  for i in "${!args[@]}"; do [ "${args[$i]}" = "-auth" ] && auth=${args[$((i + 1))]}; done
  DISPLAY=$disp XAUTHORITY=$auth timeout 20 "$@"
}

screenshot() { on_display "$1" import -window root "$2" 2>/dev/null; }

# Focuses the window titled $2 and presses keys $3… (there is no window manager).
press_keys() {
  local sid=$1 title=$2 k
  shift 2
  for k in "$@"; do
    on_display "$sid" xdotool search --onlyvisible --name "^$title\$" windowfocus --sync key --clearmodifiers "$k" ||
      return 1
    sleep 2
  done
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%d\n", (a[NR/2]+a[NR/2+1])/2}'; }

# ---------------------------------------------------------------- (a) cold start

# One launch under Xvfb with fresh XDG dirs; prints the app's own figure (ms).
cold_run() {
  local tag=$1 prefix=$2 bin=$3
  shift 3
  local d="$WORK/cold/$tag"
  fresh_dirs "$d"
  setsid env XDG_DATA_HOME="$d/data" XDG_CONFIG_HOME="$d/config" XDG_CACHE_HOME="$d/cache" \
    XDG_RUNTIME_DIR="$d/run" FIREDOOR_EXIT_ON_CLOSE=1 \
    timeout -k 5 $((START_TIMEOUT + 30)) xvfb-run -a -s "$SCREEN" "$bin" "$@" \
    >"$d/stdout.log" 2>"$d/stderr.log" </dev/null &
  local pid=$! ms
  if ! ms=$(wait_interactive "$d/stderr.log" "$prefix" "$START_TIMEOUT" "$pid"); then
    cp "$d/stderr.log" "$OUT_DIR/failed-$tag.stderr.log"
    stop_group "$pid"
    tail -n 20 "$d/stderr.log" >&2
    die "$tag: no \"$prefix: interactive after\" line within ${START_TIMEOUT}s (log: $OUT_DIR/failed-$tag.stderr.log)"
  fi
  stop_group "$pid"
  echo "$ms"
}

# Other work on the machine skews both parts (2 cores: a concurrent build shows).
busy() { echo "load $(cut -d' ' -f1-3 /proc/loadavg), $(pgrep -c -x rustc || true) rustc running"; }
LOAD_A="before: $(busy)"
log "(a) cold start to interactive: 1 warm-up + $RUNS runs each, interleaved ($LOAD_A)"
ms=$(cold_run fd-warmup firedoor "$FIREDOOR" --demo) || exit 1
log "  warm-up: firedoor $ms ms"
ms=$(cold_run hello-warmup hello "$HELLO") || exit 1
log "  warm-up: hello-world $ms ms"
FD_MS=()
HELLO_MS=()
for i in $(seq "$RUNS"); do
  ms=$(cold_run "fd-$i" firedoor "$FIREDOOR" --demo) || exit 1
  FD_MS+=("$ms")
  ms=$(cold_run "hello-$i" hello "$HELLO") || exit 1
  HELLO_MS+=("$ms")
  log "  run $i: firedoor ${FD_MS[-1]} ms, hello-world ${HELLO_MS[-1]} ms"
done
LOAD_A="$LOAD_A; after: $(busy)"
FD_MED=$(median "${FD_MS[@]}")
HELLO_MED=$(median "${HELLO_MS[@]}")

# ---------------------------------------------------------------- (b) memory

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
BROKER_DIR="$WORK/broker"
log "(b) memory: broker on $URL with $N_GRANTS grants and $N_PENDING pending requests"
TOKEN=$("$SERVER" --data-dir "$BROKER_DIR" user add bench --group oncall | tail -n 1)
[ -n "$TOKEN" ] || die "firedoor-server user add printed no token"
umask 077
printf '%s' "$TOKEN" >"$WORK/token"
printf 'Authorization: Bearer %s\n' "$TOKEN" >"$WORK/auth-header"
umask 022
unset TOKEN

setsid timeout -k 5 3600 "$SERVER" --data-dir "$BROKER_DIR" serve \
  --policy "$ROOT/examples/demo-policy.toml" --listen "127.0.0.1:$PORT" \
  >"$WORK/broker.log" 2>&1 </dev/null &
BROKER_PID=$!
for _ in $(seq 100); do
  curl -fsS --max-time 2 "$URL/api/v1/health" >/dev/null 2>&1 && break
  kill -0 "$BROKER_PID" 2>/dev/null || { cat "$WORK/broker.log" >&2; die "the broker exited"; }
  sleep 0.1
done
curl -fsS --max-time 2 "$URL/api/v1/health" >/dev/null || die "the broker did not come up"

api() { # method path [json]
  local args=(-sS --max-time 10 -o "$WORK/api.out" -w '%{http_code}' -H @"$WORK/auth-header" -X "$1")
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' -d "$3")
  curl "${args[@]}" "$URL/api/v1$2"
}
for i in $(seq "$N_GRANTS"); do
  code=$(api POST /requests '{"bundle":"staging-shell"}')
  [ "$code" = 201 ] || die "creating grant $i: HTTP $code $(cat "$WORK/api.out")"
done
for i in $(seq "$N_PENDING"); do
  code=$(api POST /requests "{\"bundle\":\"prod-db-read\",\"justification\":\"bench $i\"}")
  [ "$code" = 201 ] || die "creating request $i: HTTP $code $(cat "$WORK/api.out")"
done
count_json() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/api.out"; }
[ "$(api GET '/grants?scope=mine&state=live')" = 200 ] || die "listing grants failed"
BROKER_GRANTS=$(count_json)
[ "$(api GET '/requests?scope=mine')" = 200 ] || die "listing requests failed"
BROKER_REQUESTS=$(count_json)
log "  broker has $BROKER_GRANTS live grants and $BROKER_REQUESTS requests for user bench"

# One idle-memory launch inside a throwaway unlocked keyring on a private D-Bus, under
# Xvfb. Sets MEM_KB, MEM_PARTS, MEM_CPU, MEM_READY_MS; leaves the run dir in $d.
mem_run() {
  local tag=$1 comm=$2 prefix=$3 bin=$4 store_token=$5 title=$6 keys=$7
  MEM_VIEW="initial view"
  d="$WORK/mem/$tag"
  fresh_dirs "$d"
  mkdir -p "$d/keyring-data" "$d/fd-data"
  if [ "$store_token" = 1 ]; then
    # The app's cache, pre-seeded so it resumes the session from keyring + cache.
    python3 - "$d/fd-data/cache.db" "$URL" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
db.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
               [("broker_url", sys.argv[2]), ("user", "bench")])
db.commit()
EOF
  fi
  # keyring-rs (3.6, Secret Service) looks items up by target/service/username;
  # these are exactly the attributes it writes itself.
  setsid env XDG_DATA_HOME="$d/data" XDG_CONFIG_HOME="$d/config" XDG_CACHE_HOME="$d/cache" \
    XDG_RUNTIME_DIR="$d/run" FIREDOOR_DATA_DIR="$d/fd-data" FIREDOOR_EXIT_ON_CLOSE=1 \
    BENCH_KEYRING_DIR="$d/keyring-data" BENCH_URL="$URL" BENCH_TOKEN_FILE="$WORK/token" \
    BENCH_STORE="$store_token" BENCH_BIN="$bin" BENCH_SCREEN="$SCREEN" \
    timeout -k 5 $((START_TIMEOUT + IDLE_SECS + 90)) \
    keyctl session - dbus-run-session -- bash -c '
      set -e
      eval "$(printf pw | XDG_DATA_HOME="$BENCH_KEYRING_DIR" gnome-keyring-daemon --unlock --components=secrets)"
      if [ "$BENCH_STORE" = 1 ]; then
        secret-tool store --label=firedoor service firedoor username "api-token:$BENCH_URL" \
          target default application rust-keyring <"$BENCH_TOKEN_FILE"
      fi
      exec xvfb-run -a -s "$BENCH_SCREEN" "$BENCH_BIN"' \
    >"$d/stdout.log" 2>"$d/stderr.log" </dev/null &
  local sid=$!
  if ! MEM_READY_MS=$(wait_interactive "$d/stderr.log" "$prefix" "$START_TIMEOUT" "$sid"); then
    cp "$d/stderr.log" "$OUT_DIR/failed-$tag.stderr.log"
    stop_group "$sid"
    tail -n 20 "$d/stderr.log" >&2
    die "$tag: not interactive within ${START_TIMEOUT}s (log: $OUT_DIR/failed-$tag.stderr.log)"
  fi
  log "  $tag: interactive after $MEM_READY_MS ms"
  if [ -n "$keys" ]; then
    # Let the first sync land, then show the lists (each view renders its list).
    sleep 3
    # shellcheck disable=SC2086
    if press_keys "$sid" "$title" $keys; then
      MEM_VIEW="pressed $keys"
    else
      MEM_VIEW="could not press $keys"
      log "  WARNING: could not press $keys in the $title window"
    fi
  fi
  # The first seconds after the lists show are start-up, not idle: the first sync
  # lands, the lists render, WebKit settles (the hello world too). The idle window
  # starts after them.
  log "  $tag: settling ${SETTLE_SECS}s, then idling ${IDLE_SECS}s"
  sleep "$SETTLE_SECS"
  local pid mem t=0 step cpu prev_cpu foreign
  pid=$(app_pid "$sid" "$comm") || true
  [ -n "$pid" ] || { stop_group "$sid"; tail -n 20 "$d/stderr.log" >&2; die "$tag: the app is not running"; }
  # A sample every 10 s shows whether the app has settled.
  MEM_SERIES=""
  prev_cpu=$(tree_cpu "$pid")
  # CPU over the idle window (the lists have rendered), per process.
  tree_ticks "$pid" >"$d/ticks-start"
  while [ "$t" -lt "$IDLE_SECS" ]; do
    step=$((IDLE_SECS - t < 10 ? IDLE_SECS - t : 10))
    sleep "$step"
    t=$((t + step))
    kill -0 "$pid" 2>/dev/null || { stop_group "$sid"; tail -n 20 "$d/stderr.log" >&2; die "$tag: the app exited while idling"; }
    mem=$(tree_mem "$pid")
    cpu=$(tree_cpu "$pid")
    foreign=$(foreign_webkit "$pid")
    read -r MEM_KB MEM_USS_KB MEM_RSS_KB <<<"${mem%%$'\t'*}"
    local note=""
    [ "$foreign" -eq 0 ] || note=" [$foreign other WebKit processes]"
    MEM_SERIES="$MEM_SERIES${MEM_SERIES:+, }${t}s $((MEM_KB / 1024))/$((MEM_USS_KB / 1024)) MB +$(awk -v a="$cpu" -v b="$prev_cpu" 'BEGIN { printf "%.1f", a - b }')s$note"
    prev_cpu=$cpu
  done
  log "  $tag idle samples (PSS/USS, cpu used in the interval): $MEM_SERIES"
  MEM_FOREIGN=$foreign
  # Not in $(…): it sets TREE_IDLE_PCT.
  tree_breakdown "$pid" "$comm" "$d/ticks-start" "$IDLE_SECS" >"$d/breakdown"
  MEM_BREAKDOWN=$(cat "$d/breakdown")
  MEM_IDLE_PCT=$TREE_IDLE_PCT
  MEM_PARTS=${mem#*$'\t'}
  MEM_CPU=$(tree_cpu "$pid")
  screenshot "$sid" "$OUT_DIR/$tag-idle.png" || log "  (no screenshot)"
  MEM_SID=$sid
}

# Firedoor: visit Requests (Alt+3), then stay on My access (Alt+2), the grants list
# with its live countdowns.
mem_run firedoor-mem firedoor firedoor "$FIREDOOR" 1 Firedoor "alt+3 alt+2"
FD_BREAKDOWN=$MEM_BREAKDOWN FD_IDLE_PCT=$MEM_IDLE_PCT
FD_KB=$MEM_KB FD_USS=$MEM_USS_KB FD_RSS=$MEM_RSS_KB FD_FOREIGN=$MEM_FOREIGN FD_PARTS=$MEM_PARTS FD_CPU=$MEM_CPU FD_SID=$MEM_SID FD_DIR=$d FD_VIEW=$MEM_VIEW FD_SERIES=$MEM_SERIES
# What the app synced from the broker, read from its cache while it runs.
FD_CACHE=$(python3 - "$FD_DIR/fd-data/cache.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
lists = dict(db.execute("SELECT list, COUNT(*) FROM items GROUP BY list").fetchall())
pending = db.execute("SELECT COUNT(*) FROM items WHERE list = 'my_requests' AND json_extract(body, '$.state') = 'pending'").fetchone()[0]
synced = db.execute("SELECT value FROM kv WHERE key = 'last_synced_at'").fetchone()
print(f"{lists.get('grants', 0)} {lists.get('my_requests', 0)} {pending} {lists.get('approvals', 0)} {synced[0] if synced else 'never'}")
EOF
) || FD_CACHE="? ? ? ? unreadable"
read -r C_GRANTS C_REQS C_PENDING C_APPROVALS C_SYNCED <<<"$FD_CACHE"
cp "$FD_DIR/stderr.log" "$OUT_DIR/firedoor-mem.stderr.log"
stop_group "$FD_SID"
log "  firedoor: PSS $((FD_KB / 1024)) MB ($FD_PARTS), USS $((FD_USS / 1024)) MB; cpu ${FD_CPU}s; cache: $C_GRANTS grants, $C_REQS my requests ($C_PENDING pending), $C_APPROVALS approvals, synced $C_SYNCED"
# The token only exists in the keyring: a full cache means the app resumed the session
# from keyring + cache and synced.
[ "$C_GRANTS" = "$BROKER_GRANTS" ] && [ "$C_PENDING" = "$N_PENDING" ] ||
  die "the app's cache does not hold what the broker has ($BROKER_GRANTS grants, $N_PENDING pending): did it find the token in the keyring? (log: $OUT_DIR/firedoor-mem.stderr.log)"

mem_run hello-mem fd-bench-hello hello "$HELLO" 0 Hello ""
HELLO_BREAKDOWN=$MEM_BREAKDOWN HELLO_IDLE_PCT=$MEM_IDLE_PCT
HELLO_KB=$MEM_KB HELLO_USS=$MEM_USS_KB HELLO_RSS=$MEM_RSS_KB HELLO_FOREIGN=$MEM_FOREIGN HELLO_PARTS=$MEM_PARTS HELLO_CPU=$MEM_CPU HELLO_SERIES=$MEM_SERIES
stop_group "$MEM_SID"
log "  hello-world: PSS $((HELLO_KB / 1024)) MB ($HELLO_PARTS), USS $((HELLO_USS / 1024)) MB; cpu ${HELLO_CPU}s"

stop_group "$BROKER_PID"
LOAD_B=$(busy)

# ---------------------------------------------------------------- summary

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r <= g ? "meets" : "MISSES") }'; }
R_START=$(ratio "$FD_MED" "$HELLO_MED")
R_MEM=$(ratio "$FD_KB" "$HELLO_KB")
R_USS=$(ratio "$FD_USS" "$HELLO_USS")
R_RSS=$(ratio "$FD_RSS" "$HELLO_RSS")
MEM_NOTE=""
if [ "$FD_FOREIGN" != 0 ] || [ "$HELLO_FOREIGN" != 0 ]; then
  MEM_NOTE=" [other WebKit processes on the machine at measurement: firedoor run $FD_FOREIGN, hello run $HELLO_FOREIGN; PSS is skewed, see USS]"
fi
{
  echo
  echo "Firedoor desktop benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, profile $PROFILE, $(uname -r)"
  echo "cold start runs (ms): firedoor ${FD_MS[*]}; hello-world ${HELLO_MS[*]} (machine $LOAD_A)"
  echo "machine after the memory runs: $LOAD_B"
  echo "firedoor idle tree: $FD_PARTS; cpu ${FD_CPU}s since start"
  echo "firedoor idle samples (PSS/USS, cpu in the interval): $FD_SERIES"
  echo "hello-world idle tree: $HELLO_PARTS; cpu ${HELLO_CPU}s since start"
  echo "hello-world idle samples (PSS/USS, cpu in the interval): $HELLO_SERIES"
  echo "USS (private) after $IDLE_SECS s: firedoor $((FD_USS / 1024)) MB, hello-world $((HELLO_USS / 1024)) MB, ratio $R_USS; RSS: $((FD_RSS / 1024)) MB vs $((HELLO_RSS / 1024)) MB, ratio $R_RSS"
  echo "firedoor synced from the broker (its cache): $C_GRANTS grants, $C_REQS own requests of which $C_PENDING pending, last sync $C_SYNCED"
  echo "firedoor view while idling: $FD_VIEW (alt+3 = Requests, alt+2 = My access, the grants list)"
  echo "screenshots: $OUT_DIR/firedoor-mem-idle.png, $OUT_DIR/hello-mem-idle.png"
  echo
  echo "per process after $SETTLE_SECS s settling + $IDLE_SECS s idle (PSS; CPU in % of one core over the idle window):"
  echo "  firedoor:    $FD_BREAKDOWN"
  echo "  hello-world: $HELLO_BREAKDOWN"
  echo
  echo "cold start to interactive (median of $RUNS): firedoor $FD_MED ms, hello-world $HELLO_MED ms, ratio $R_START (goal <= 1.2: $(verdict "$R_START" 1.2))"
  echo "PSS after $SETTLE_SECS+$IDLE_SECS s idle: firedoor $((FD_KB / 1024)) MB ($C_GRANTS grants + $C_PENDING pending requests listed), hello-world $((HELLO_KB / 1024)) MB, ratio $R_MEM (goal <= 1.2: $(verdict "$R_MEM" 1.2))$MEM_NOTE"
  echo "idle CPU of the whole tree over $IDLE_SECS s on My access: firedoor ${FD_IDLE_PCT}% of a core, hello-world ${HELLO_IDLE_PCT}% (goal <= 0.5%: $(verdict "$FD_IDLE_PCT" 0.5))"
} | tee "$OUT_DIR/summary.txt"
