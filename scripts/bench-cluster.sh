#!/usr/bin/env bash
# Cluster benchmarks (README, "Several nodes on PostgreSQL"): the same
# `dispatch bench` throughput load against 1 and 3 echo-agent nodes on one
# PostgreSQL database, the takeover time after kill -9 of a chat's owner,
# and one node's answered messages and turns per second on SQLite.
#
#   DSN=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable scripts/bench-cluster.sh
#
# DSN names a server and a database to connect to for CREATE DATABASE; each
# run makes (and drops) its own databases. CLIENTS (24), DURATION (10s),
# TTL (15s), TAKEOVERS (3) and PHASES ("throughput takeover sqlite") tune
# it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
DSN=${DSN:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
CLIENTS=${CLIENTS:-24}
DURATION=${DURATION:-10s}
TTL=${TTL:-15s}
TAKEOVERS=${TAKEOVERS:-3}
work=$(mktemp -d /tmp/dbench.XXXXXX)
bin=$work/dispatch
go build -o "$bin" ./cmd/dispatch
pids=()
dbs=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  sleep 0.5
  for db in "${dbs[@]}"; do psql -q "$DSN" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

newdb() {
  local db="dispatch_bench_$RANDOM$RANDOM"
  psql -q "$DSN" -c "CREATE DATABASE $db" >/dev/null
  dbs+=("$db")
  echo "${DSN%%/postgres\?*}/$db?sslmode=disable"
}

# node NAME DBDSN: starts a node and prints its config path
node() {
  local name=$1 dsn=$2 dir=$work/$1
  mkdir -p "$dir"
  cat >"$dir/config.yaml" <<YAML
state_dir: $dir/state
agent: {kind: echo}
store: {driver: postgres, dsn: "$dsn"}
node: {id: $name, lease_ttl: $TTL}
log: {level: warn}
YAML
  "$bin" daemon --config "$dir/config.yaml" >"$dir/out.log" 2>&1 &
  pids+=($!)
  echo $! >"$dir/pid"
  for _ in $(seq 100); do
    [ -S "$dir/state/dispatch.sock" ] && "$bin" status --config "$dir/config.yaml" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node $name did not start:" >&2; cat "$dir/out.log" >&2; exit 2
}

# throughput N: the bench's throughput phase, CLIENTS clients split over N nodes
throughput() {
  local n=$1 dsn
  dsn=$(newdb)
  for i in $(seq "$n"); do node "t$n-$i" "$dsn"; done
  sleep 6 # every node sees the others (renewals every ttl/3)
  local per=$((CLIENTS / n)) benches=()
  for i in $(seq "$n"); do
    "$bin" bench --socket "$work/t$n-$i/state/dispatch.sock" --phases throughput \
      --clients "$per" --duration "$DURATION" --json >"$work/t$n-$i.json" 2>"$work/t$n-$i.err" &
    benches+=($!)
  done
  wait "${benches[@]}"
  python3 - "$n" "$work"/t"$n"-*.json <<'PY'
import json, sys
n = int(sys.argv[1]); acc = 0; per = 0.0; done = 0.0; p99 = []
for f in sys.argv[2:]:
    r = json.load(open(f))["throughput"]
    acc += r["accepted"]; per += r["per_sec"]; done += r.get("done_per_sec", 0)
    p99.append(r["latency"]["p99_ns"] / 1e6)
print(f"postgres, {n} node(s): {per:,.0f} accepts/s in all ({acc} accepted), answered {done:,.0f}/s, accept p99 per node {', '.join(f'{x:.1f}' for x in p99)} ms")
PY
  for i in $(seq "$n"); do kill -TERM "$(cat "$work/t$n-$i/pid")"; done
  sleep 2
}

takeover() {
  local dsn
  dsn=$(newdb)
  for i in 1 2 3; do node "k-$i" "$dsn"; done
  sleep 6
  for r in $(seq "$TAKEOVERS"); do
    local chat="takeover-$r" owner cfg alive
    "$bin" send "$chat" "warm up" --wait --timeout 30s --config "$work/k-1/config.yaml" >/dev/null
    owner=$("$bin" status --json --config "$work/k-1/config.yaml" | python3 -c "import json,sys; print([s['owner'] for s in json.load(sys.stdin)['sessions'] if s['chat_id']=='$chat'][0])")
    alive=""
    for i in 1 2 3; do
      [ "k-$i" != "$owner" ] && kill -0 "$(cat "$work/k-$i/pid")" 2>/dev/null && alive="k-$i"
    done
    cfg=$work/$alive/config.yaml
    local t0 t1
    t0=$(date +%s.%N)
    kill -9 "$(cat "$work/$owner/pid")"
    "$bin" send "$chat" "after the kill" --wait --timeout 120s --config "$cfg" >/dev/null
    t1=$(date +%s.%N)
    python3 -c "print(f'takeover after kill -9 of $owner (lease_ttl $TTL): answered {($t1-$t0):.2f} s after the kill')"
    "$bin" daemon --config "$work/$owner/config.yaml" >>"$work/$owner/out.log" 2>&1 &
    pids+=($!); echo $! >"$work/$owner/pid"
    sleep 1
  done
}

sqlite_turns() {
  local dir=$work/sqlite
  mkdir -p "$dir"
  printf 'state_dir: %s/state\nagent: {kind: echo}\nlog: {level: warn}\n' "$dir" >"$dir/config.yaml"
  "$bin" daemon --config "$dir/config.yaml" >"$dir/out.log" 2>&1 &
  pids+=($!); echo $! >"$dir/pid"
  for _ in $(seq 100); do "$bin" status --config "$dir/config.yaml" >/dev/null 2>&1 && break; sleep 0.1; done
  "$bin" bench --socket "$dir/state/dispatch.sock" --phases throughput --clients 8 --duration "$DURATION" --json >"$work/sqlite.json" 2>/dev/null
  local turns
  turns=$("$bin" events --json --config "$dir/config.yaml" 2>/dev/null | grep -c '"type":"reply"' || true)
  python3 - "$work/sqlite.json" "$turns" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["throughput"]; turns = int(sys.argv[2])
secs = r["all_done_ns"] / 1e9
print(f"sqlite, 1 node, echo agent, 8 clients: {r['accepted']} messages answered in {turns} turns over {secs:.1f} s: {turns/secs:,.0f} turns/s, {r['accepted']/secs:,.0f} messages/s (accepts {r['per_sec']:,.0f}/s)")
PY
  kill -TERM "$(cat "$dir/pid")"
}

echo "machine: $(nproc) cores, $(uptime | sed 's/.*load/load/')"
for phase in ${PHASES:-throughput takeover sqlite}; do
  case $phase in
    throughput) throughput 1; throughput 3 ;;
    takeover) takeover ;;
    sqlite) sqlite_turns ;;
  esac
done
