#!/usr/bin/env bash
# Load benchmark: `stackgen router serve` (Alertmanager webhook receiver) against Debian's Alertmanager 0.25.
#
#   cargo build --release && bench/router-load.sh
#   cargo build --release && TARGETS="router router-pg router-pg2" bench/router-load.sh   # + the PostgreSQL store
#
# What it measures, for each target and for bodies of 1 and of 100 alerts (see bench/README.md):
#   - max throughput with wrk (THREADS x CONNECTIONS, DURATION): req/s, accepted alerts/s (2xx only), p50/p99
#   - p50/p99 at about half of that rate (paced, HALF_CONNECTIONS connections), with the achieved req/s
#   - VmRSS after MEM_ALERTS distinct active alerts have been posted
# Everything runs on 127.0.0.1, in a temp dir removed at exit; every process started here is killed by its PID.
#
# Environment knobs (defaults in brackets):
#   STACKGEN          stackgen binary [<repo>/target/release/stackgen]
#   TARGETS           which servers to benchmark ["router alertmanager"]: router (embedded store),
#                     router-pg (one replica on PostgreSQL), router-pg2 (two replicas on one PostgreSQL database,
#                     wrk's threads split between them), alertmanager
#   ALERTMANAGER      Alertmanager binary [/usr/bin/prometheus-alertmanager]
#   DURATION          wrk duration of every load run [10s]
#   REPEATS           max-throughput runs per body size; the median one is reported, with all req/s [3]
#   THREADS           wrk threads [2]
#   CONNECTIONS       wrk connections for the max-throughput runs [32]
#   HALF_CONNECTIONS  wrk connections for the half-rate runs [8]
#   SIZES             alerts per request body ["1 100"]
#   BODIES            distinct request bodies cycled per wrk thread [256]
#   SERVICES          services (alert groups) the load bodies are spread over [16]
#   MEM_ALERTS        distinct active alerts posted for the memory figure [100000]; 0 skips the memory phase
#   MEM_BATCH         alerts per request while filling [100]
#   MEM_SERVICES      services the fill alerts are spread over [100]
#   MEM_CONNS         parallel connections while filling [4]
#   READY_TIMEOUT     seconds to wait for a server to become ready [30]
#   WRK_TIMEOUT       wrk per-request timeout [30s] (a request slower than this is counted as a timeout error)
#   SUMMARY_OUT       also write the final markdown summary to this file [unset]
#   KEEP_TMP          1 = keep the temp dir (configs, server logs, wrk output) for inspection [0]

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

STACKGEN=${STACKGEN:-$REPO/target/release/stackgen}
TARGETS=${TARGETS:-router alertmanager}
ALERTMANAGER=${ALERTMANAGER:-/usr/bin/prometheus-alertmanager}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
HALF_CONNECTIONS=${HALF_CONNECTIONS:-8}
SIZES=${SIZES:-1 100}
BODIES=${BODIES:-256}
SERVICES=${SERVICES:-16}
MEM_ALERTS=${MEM_ALERTS:-100000}
MEM_BATCH=${MEM_BATCH:-100}
MEM_SERVICES=${MEM_SERVICES:-100}
MEM_CONNS=${MEM_CONNS:-4}
READY_TIMEOUT=${READY_TIMEOUT:-30}
WRK_TIMEOUT=${WRK_TIMEOUT:-30s}
SUMMARY_OUT=${SUMMARY_OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
REPEATS=${REPEATS:-3}

LUA=$HERE/load.lua
LIB=$HERE/benchlib.py

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench/router-load.sh: error: %s\n' "$*" >&2; exit 1; }

wants() { [[ " $TARGETS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------------------------
# prerequisites (checked before anything is started)

for t in $TARGETS; do
  [[ $t == router || $t == router-pg || $t == router-pg2 || $t == alertmanager ]] \
    || die "TARGETS: unknown target '$t' (use router, router-pg, router-pg2, alertmanager)"
done
wants_router() { wants router || wants router-pg || wants router-pg2; }
wants_pg() { wants router-pg || wants router-pg2; }
[[ -n ${TARGETS// /} ]] || die "TARGETS is empty"
for n in $SIZES; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "SIZES: '$n' is not a positive integer"; done
for v in REPEATS THREADS CONNECTIONS HALF_CONNECTIONS BODIES SERVICES MEM_BATCH MEM_SERVICES MEM_CONNS READY_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $MEM_ALERTS =~ ^[0-9]+$ ]] || die "MEM_ALERTS must be an integer (got '$MEM_ALERTS')"
(( CONNECTIONS >= THREADS )) || die "CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)"

command -v python3 >/dev/null || die "python3 is required"
[[ -f $LUA && -f $LIB ]] || die "missing $LUA or $LIB"

# install_pkg COMMAND PACKAGE: make COMMAND available from the Debian package PACKAGE (root only)
install_pkg() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null && return 0
  if [[ $(id -u) -ne 0 ]]; then
    die "'$cmd' not found: install the Debian package '$pkg' (apt-get install -y $pkg)"
  fi
  command -v apt-get >/dev/null || die "'$cmd' not found and no apt-get: install the Debian package '$pkg'"
  log "installing Debian package $pkg"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null \
      || die "apt-get install $pkg failed"
  fi
  command -v "$cmd" >/dev/null || die "'$cmd' still not found after installing $pkg"
}

install_pkg wrk wrk

if wants_router; then
  [[ -x $STACKGEN && -f $STACKGEN ]] \
    || die "stackgen binary '$STACKGEN' is missing or not executable: run 'cargo build --release' or set STACKGEN (or TARGETS=alertmanager)"
  STACKGEN=$(cd "$(dirname "$STACKGEN")" && pwd)/$(basename "$STACKGEN")   # absolute: the router runs in $TMP
  "$STACKGEN" router serve --help >/dev/null 2>&1 \
    || die "'$STACKGEN router serve --help' failed: this stackgen build has no 'router serve' (rebuild with 'cargo build --release')"
fi
PG_BIN=
pg_bindir() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [[ -n $d && -x $d/initdb && -x $d/postgres ]]; then echo "$d"; return 0; fi
  for d in /usr/lib/postgresql/*/bin; do
    if [[ -x $d/initdb && -x $d/postgres ]]; then echo "$d"; return 0; fi
  done
  return 1
}
if wants_pg && ! PG_BIN=$(pg_bindir); then
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL's server binaries not found: install the Debian package 'postgresql'"
  log "installing Debian package postgresql"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null || die "apt-get install postgresql failed"
  PG_BIN=$(pg_bindir) || die "PostgreSQL's server binaries still not found after installing postgresql"
fi
if wants alertmanager; then
  if [[ ! -x $ALERTMANAGER ]]; then
    if [[ $ALERTMANAGER == /usr/bin/prometheus-alertmanager ]]; then
      install_pkg prometheus-alertmanager prometheus-alertmanager
    fi
    [[ -x $ALERTMANAGER ]] || die "Alertmanager binary '$ALERTMANAGER' not found (Debian package prometheus-alertmanager)"
  fi
fi

# ---------------------------------------------------------------------------------------------------------------
# temp dir and cleanup

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stackgen-router-bench.XXXXXX")
mkdir -p "$TMP/results" "$TMP/repeats"
PIDS=()

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do   # up to 5 s for a graceful exit, then SIGKILL
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP_TMP == 1 ]]; then
    log "kept temp dir $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_pid PID: graceful stop of one process started here
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

freeport() { python3 "$LIB" freeport; }

# show_log FILE: last lines of a server log, for failures
show_log() {
  [[ -s $1 ]] || return 0
  printf -- '--- last lines of %s ---\n' "$1" >&2
  tail -n 40 "$1" >&2
  printf -- '---\n' >&2
}

# ---------------------------------------------------------------------------------------------------------------
# one wrk run: run_wrk TARGET PHASE SIZE CONNS RATE URL FORMAT TOKEN SERVER_PID SERVER_LOG RESULT_JSON
# writes RESULT_JSON

run_wrk() {
  local target=$1 phase=$2 size=$3 conns=$4 rate=$5 url=$6 format=$7 token=$8 spid=$9 slog=${10} result=${11}
  local base
  base=$(basename "$result" .json)
  local threads=$THREADS out=$TMP/wrk-$base.out err=$TMP/wrk-$base.err
  (( conns < threads )) && threads=$conns
  log "$target: wrk -t$threads -c$conns -d$DURATION, $size alert(s)/request, $phase$( (( rate > 0 )) && echo ", paced to $rate req/s")"
  BENCH_FORMAT=$format BENCH_ALERTS=$size BENCH_BODIES=$BODIES BENCH_SERVICES=$SERVICES BENCH_TOKEN=$token \
    BENCH_RATE=$rate BENCH_THREADS=$threads BENCH_LABEL="$target/$size/$phase" BENCH_ADDRS=${BENCH_ADDRS:-} \
    wrk -t"$threads" -c"$conns" -d"$DURATION" --timeout "$WRK_TIMEOUT" --latency -s "$LUA" "$url" \
    >"$out" 2>"$err" &
  local wpid=$!
  PIDS+=("$wpid")
  local rc=0
  wait "$wpid" || rc=$?
  if (( rc != 0 )); then
    cat "$out" "$err" >&2
    die "wrk failed (exit $rc) against $target"
  fi
  grep -v '^BENCH_RESULT ' "$out" | sed 's/^/    /' >&2
  [[ -s $err ]] && sed 's/^/    /' "$err" >&2
  local line
  line=$(grep '^BENCH_RESULT ' "$out" | tail -n 1) || die "wrk printed no BENCH_RESULT line (see above)"
  kill -0 "$spid" 2>/dev/null || { show_log "$slog"; die "$target died during the $phase run with $size alert(s)/request"; }
  if ! python3 - "$result" "$target" "$phase" "$conns" "${line#BENCH_RESULT }" <<'EOF'
import json, sys
path, target, phase, conns, raw = sys.argv[1:]
r = json.loads(raw)
r.update(target=target, phase=phase, connections=int(conns))
json.dump(r, open(path, "w"), indent=1)
dur = r["duration_s"] or 1e-9
sys.stderr.write(
    f"    => {r['requests'] / dur:,.1f} req/s, {r['ok_2xx'] / dur * r['alerts_per_request']:,.1f} accepted alerts/s, "
    f"p50 {r['lat_p50_us'] / 1000:.2f} ms, p99 {r['lat_p99_us'] / 1000:.2f} ms, non-2xx {r['non_2xx']}, "
    f"socket errors {r['errors_connect'] + r['errors_read'] + r['errors_write'] + r['errors_timeout']}\n")
if r["ok_2xx"] == 0:
    sys.exit(3)
EOF
  then
    show_log "$slog"
    die "no 2xx response at all from $target ($size alert(s)/request): check its log above"
  fi
}

# ---------------------------------------------------------------------------------------------------------------
# one target: load runs, then memory. bench_target TARGET PID LOG URL FORMAT TOKEN [COUNT_URL]
# COUNT_URL (Alertmanager only): GET it after the memory reading to check how many alerts the server holds

bench_target() {
  local target=$1 pid=$2 slog=$3 url=$4 format=$5 token=$6 count_url=${7:-}
  local n i half
  for n in $SIZES; do
    # REPEATS max runs; the one with the median req/s is reported, with the req/s of all of them
    for ((i = 1; i <= REPEATS; i++)); do
      run_wrk "$target" max "$n" "$CONNECTIONS" 0 "$url" "$format" "$token" "$pid" "$slog" \
        "$TMP/repeats/run-$target-$n-max-$i.json"
    done
    half=$(python3 - "$TMP/results/run-$target-$n-max.json" "$TMP/repeats/run-$target-$n-max-"*.json <<'EOF'
import json, sys
out, paths = sys.argv[1], sys.argv[2:]
runs = [json.load(open(p)) for p in paths]
rps = lambda r: r["requests"] / (r["duration_s"] or 1e-9)
runs.sort(key=rps)
median = runs[(len(runs) - 1) // 2]  # lower median: an actual run, not an average of two
median["rps_runs"] = [round(rps(r), 1) for r in runs]
json.dump(median, open(out, "w"), indent=1)
if len(runs) > 1:
    sys.stderr.write(f"    => median of {len(runs)} runs: {rps(median):,.1f} req/s "
                     f"(range {rps(runs[0]):,.1f} .. {rps(runs[-1]):,.1f})\n")
print(max(1, round(rps(median) / 2)))
EOF
    )
    run_wrk "$target" half "$n" "$HALF_CONNECTIONS" "$half" "$url" "$format" "$token" "$pid" "$slog" \
      "$TMP/results/run-$target-$n-half.json"
  done

  (( MEM_ALERTS > 0 )) || return 0
  # On PostgreSQL the router keeps no state of its own: its memory says nothing about the alerts.
  [[ $target != router-pg* ]] || return 0
  local before after fill active=null rc=0
  before=$(python3 "$LIB" rss "$pid")
  log "$target: posting $MEM_ALERTS distinct firing alerts, $MEM_BATCH per request, over $MEM_SERVICES services"
  BENCH_TOKEN=$token python3 "$LIB" fill --format "$format" --url "$url" --alerts "$MEM_ALERTS" \
    --batch "$MEM_BATCH" --services "$MEM_SERVICES" --conns "$MEM_CONNS" >"$TMP/fill-$target.json" &
  local fpid=$!
  PIDS+=("$fpid")
  wait "$fpid" || rc=$?
  # exit 2: ran to the end but not every alert was accepted (recorded, shown in the summary); other: broken
  if (( rc != 0 && rc != 2 )) || [[ ! -s $TMP/fill-$target.json ]]; then
    show_log "$slog"; die "$target: filling with $MEM_ALERTS alerts failed (exit $rc)"
  fi
  fill=$(cat "$TMP/fill-$target.json")
  kill -0 "$pid" 2>/dev/null || { show_log "$slog"; die "$target died while being filled"; }
  after=$(python3 "$LIB" rss "$pid")
  if [[ -n $count_url ]]; then
    active=$(python3 "$LIB" am-count "$count_url") || active=null
  fi
  python3 - "$TMP/results/mem-$target.json" "$target" "$before" "$after" "$fill" "$active" <<'EOF'
import json, sys
path, target, before, after, fill, active = sys.argv[1:]
m = {"target": target, "before": json.loads(before), "after": json.loads(after), "fill": json.loads(fill),
     "active_reported": json.loads(active)}
json.dump(m, open(path, "w"), indent=1)
sys.stderr.write(f"    => {m['fill']['ok_alerts']:,} alerts accepted in {m['fill']['elapsed_s']:.1f} s; "
                 f"VmRSS {m['before']['vmrss_kb'] / 1024:.1f} MiB before, {m['after']['vmrss_kb'] / 1024:.1f} MiB after"
                 f" (VmHWM {m['after']['vmhwm_kb'] / 1024:.1f} MiB)"
                 + (f"; the server now holds {m['active_reported']:,} alerts" if m["active_reported"] is not None else "")
                 + "\n")
EOF
}

# start_until_ready NAME READY_URL LOG CMD...: starts CMD in the background, logging to LOG, and waits until
# READY_URL answers 200; sets STARTED_PID
start_until_ready() {
  local name=$1 ready_url=$2 slog=$3
  shift 3
  "$@" >"$slog" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  if ! python3 "$LIB" wait-ready "$ready_url" --pid "$STARTED_PID" --timeout "$READY_TIMEOUT"; then
    show_log "$slog"
    die "$name did not become ready ($ready_url answering 200, deadline ${READY_TIMEOUT}s): see above"
  fi
  log "$name: ready (pid $STARTED_PID)"
}

# ---------------------------------------------------------------------------------------------------------------
# the router

# start_router NAME STORE_YAML: starts a router in $TMP/NAME with the given `store:` block; sets ROUTER_PORT, ROUTER_PID
start_router() {
  local name=$1 store=$2 port slog=$TMP/$1.log
  port=$(freeport)
  mkdir -p "$TMP/$name"
  cat >"$TMP/$name/router.yaml" <<EOF
listen: 127.0.0.1:$port
auth:
  bearer_token_env: STACKGEN_ROUTER_TOKEN
body_limit: 8Mi
$store
teams:
  bench:
    destinations:
      - kind: log
ownership:
  default_team: bench
EOF
  log "$name: $STACKGEN router serve $TMP/$name/router.yaml (listen 127.0.0.1:$port)"
  start_until_ready "$name" "http://127.0.0.1:$port/readyz" "$slog" \
    env -C "$TMP/$name" "$STACKGEN" router serve "$TMP/$name/router.yaml"
  ROUTER_PID=$STARTED_PID
  ROUTER_PORT=$port
}

bench_router() {
  local token
  token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
  export STACKGEN_ROUTER_TOKEN=$token
  start_router router "store:
  path: $TMP/router/router.db"
  bench_target router "$ROUTER_PID" "$TMP/router.log" "http://127.0.0.1:$ROUTER_PORT/api/v1/alertmanager" webhook "$token"
  stop_pid "$ROUTER_PID"
  unset STACKGEN_ROUTER_TOKEN
}

# ---------------------------------------------------------------------------------------------------------------
# the router on PostgreSQL: a server of its own in $TMP (Debian's binaries, durable defaults: fsync and
# synchronous_commit on), as the postgres user when run as root; a fresh database per target

PG_PORT=''
PG_PID=''
start_postgres() {
  local data=$TMP/pg sockets=$TMP/pg-sockets run=()
  mkdir -p "$data" "$sockets"
  if [[ $(id -u) -eq 0 ]]; then
    chmod o+x "$TMP"   # the postgres user passes through (it lists and reads nothing else here)
    chown postgres:postgres "$data" "$sockets"
    run=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi
  "${run[@]}" "$PG_BIN/initdb" -D "$data/cluster" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    --no-instructions >"$TMP/initdb.log" 2>&1 || { show_log "$TMP/initdb.log"; die "initdb failed"; }
  PG_PORT=$(freeport)
  log "postgres: $("$PG_BIN/postgres" --version) on 127.0.0.1:$PG_PORT"
  "${run[@]}" "$PG_BIN/postgres" -D "$data/cluster" -p "$PG_PORT" -k "$sockets" \
    -c listen_addresses=127.0.0.1 -c max_connections=100 >"$TMP/postgres.log" 2>&1 &
  PG_PID=$!
  PIDS+=("$PG_PID")
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && return 0
    kill -0 "$PG_PID" 2>/dev/null || { show_log "$TMP/postgres.log"; die "postgres exited at start"; }
    sleep 0.1
  done
  show_log "$TMP/postgres.log"
  die "postgres did not accept connections within ${READY_TIMEOUT}s"
}

# bench_router_pg TARGET REPLICAS: REPLICAS routers on one fresh database; wrk's threads spread over them
bench_router_pg() {
  local target=$1 replicas=$2 token db i pids=() addrs=()
  [[ -n $PG_PID ]] || start_postgres
  db=bench_${target//-/_}
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null \
    || die "creating database $db failed"
  token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
  export STACKGEN_ROUTER_TOKEN=$token
  export STACKGEN_DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db"
  for ((i = 1; i <= replicas; i++)); do
    start_router "$target-$i" "store:
  postgres:
    url_env: STACKGEN_DB_URL"
    pids+=("$ROUTER_PID")
    addrs+=("127.0.0.1:$ROUTER_PORT")
  done
  if (( replicas > 1 )); then
    (( THREADS >= replicas && HALF_CONNECTIONS >= replicas )) \
      || die "$target needs THREADS and HALF_CONNECTIONS >= $replicas (a wrk thread per replica)"
    BENCH_ADDRS=$(IFS=,; echo "${addrs[*]}")
    export BENCH_ADDRS
    log "$target: wrk threads spread over $BENCH_ADDRS"
  fi
  bench_target "$target" "${pids[0]}" "$TMP/$target-1.log" "http://${addrs[0]}/api/v1/alertmanager" webhook "$token"
  local addr received
  for addr in "${addrs[@]}"; do
    received=$(python3 -c 'import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
m = re.search(r"^stackgen_alerts_received_total (\d+)", text, re.M)
print(m.group(1) if m else 0)' "http://$addr/metrics") || received=0
    log "$target: the replica on $addr accepted $received alerts in all"
    (( received > 0 )) || die "$target: the replica on $addr got no load (BENCH_ADDRS spreading failed)"
  done
  for i in "${pids[@]}"; do
    kill -0 "$i" 2>/dev/null || { show_log "$TMP/$target-1.log"; die "a $target replica died during the runs"; }
    stop_pid "$i"
  done
  unset STACKGEN_ROUTER_TOKEN STACKGEN_DB_URL BENCH_ADDRS
}

# ---------------------------------------------------------------------------------------------------------------
# Alertmanager

bench_alertmanager() {
  local port sink pid slog=$TMP/alertmanager.log
  port=$(freeport)
  sink=$(freeport)   # nothing listens there: notifications fail fast (connection refused), as a down receiver
  mkdir -p "$TMP/am-data"
  cat >"$TMP/alertmanager.yml" <<EOF
global:
  resolve_timeout: 5m
route:
  receiver: sink
  group_by: ['alertname', 'service']
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:$sink/alertmanager/webhook
        send_resolved: true
EOF
  log "alertmanager: $("$ALERTMANAGER" --version 2>&1 | head -n 1) (listen 127.0.0.1:$port)"
  start_until_ready alertmanager "http://127.0.0.1:$port/-/ready" "$slog" \
    "$ALERTMANAGER" --config.file="$TMP/alertmanager.yml" --storage.path="$TMP/am-data" \
    --web.listen-address="127.0.0.1:$port" --cluster.listen-address=
  pid=$STARTED_PID
  bench_target alertmanager "$pid" "$slog" "http://127.0.0.1:$port/api/v2/alerts" am "" \
    "http://127.0.0.1:$port/api/v2/alerts"
  stop_pid "$pid"
}

# ---------------------------------------------------------------------------------------------------------------

log "temp dir $TMP; targets: $TARGETS; sizes: $SIZES; wrk -t$THREADS -c$CONNECTIONS -d$DURATION (half rate: -c$HALF_CONNECTIONS)"
if wants router; then bench_router; fi
if wants router-pg; then bench_router_pg router-pg 1; fi
if wants router-pg2; then bench_router_pg router-pg2 2; fi
if wants alertmanager; then bench_alertmanager; fi

{
  echo "## stackgen router load benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)); $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
  if wants_router; then echo "router: \`$("$STACKGEN" --version 2>&1 | head -n 1)\`"; fi
  if wants_pg; then echo "postgresql: \`$("$PG_BIN/postgres" --version)\` (initdb defaults: fsync and synchronous_commit on) on this machine"; fi
  if wants alertmanager; then echo "alertmanager: \`$("$ALERTMANAGER" --version 2>&1 | head -n 1)\`"; fi
  echo "wrk: $THREADS threads, $CONNECTIONS connections (half rate: $HALF_CONNECTIONS), $DURATION per run, max runs repeated $REPEATS times (median reported); load generator and server share this machine."
  echo
  python3 "$LIB" summary "$TMP/results"
} | if [[ -n $SUMMARY_OUT ]]; then tee "$SUMMARY_OUT"; else cat; fi
