#!/usr/bin/env bash
# Compare earlier commits with the working tree in one run (README,
# "Benchmarks"): builds each named commit in a temporary git worktree and
# the working tree as it is, then measures them in interleaved rounds with
# the working tree's own `dispatch bench` client, so every build is driven
# the same way, on the same machine, minutes apart.
#
#   scripts/bench-compare.sh                 # c7680d4 against the working tree
#   scripts/bench-compare.sh c7680d4 main    # two earlier commits and the tree
#
# Shapes (SHAPES, all by default):
#   sqlite  CLIENTS clients (8), one chat each, MESSAGES messages (12000)
#   python  the Python original's shape: 100 chats x 10 messages, 8 clients
#   python0 the same without the live cap (sessions.max_live: 0, as before
#           the cap existed): what the cap's hibernations cost at this shape
#   pg1     as sqlite, one node on a fresh PostgreSQL database
#   pg3     as sqlite, three nodes on one fresh PostgreSQL database, the
#           clients and messages split over them
# A build that cannot run a shape (no PostgreSQL before the cluster
# release) shows "n/a". Each figure is the median of ROUNDS rounds (3); the
# builds take turns within a round, in an order that rotates each round.
# Ratios are medians of the ratios measured in the same round. "CPU
# µs/msg" is the daemons' CPU time per message from its accept until it
# was answered: on a machine other work keeps busy it moves far less than
# the rates do, so it is the figure to trust there.
#
# The daemons run with their default configuration (log level info: the
# chat logs get their lines) but for the echo agent and the store.
#
# Loopback only: the daemons listen on unix sockets in a temporary dir and
# PostgreSQL is DSN (127.0.0.1:5432 by default); each pg round creates and
# drops its own database. Everything it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
DSN=${DSN:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
CLIENTS=${CLIENTS:-8}
MESSAGES=${MESSAGES:-12000}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-sqlite python python0 pg1 pg3}
TTL=${TTL:-15s}
[ $# -gt 0 ] || set -- c7680d4

work=$(mktemp -d /tmp/dcmp.XXXXXX)
mkdir -p "$work/bin" "$work/res"
pids=()
dbs=()
trees=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for db in "${dbs[@]}"; do psql -q "$DSN" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  for t in "${trees[@]}"; do git worktree remove --force "$t" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Builds: every named commit, then the working tree ("tree").
builds=()
for c in "$@"; do
  short=$(git rev-parse --short "$c^{commit}")
  echo "building $c ($short)" >&2
  git worktree add --detach "$work/src-$short" "$short" >/dev/null 2>&1
  trees+=("$work/src-$short")
  (cd "$work/src-$short" && go build -o "$work/bin/$short" ./cmd/dispatch)
  git worktree remove --force "$work/src-$short" >/dev/null
  builds+=("$short")
done
tree_id=$(git describe --always --dirty)
echo "building the working tree ($tree_id)" >&2
go build -o "$work/bin/tree" ./cmd/dispatch
builds+=(tree)
client=$work/bin/tree

# newdb: creates a database, its DSN in $newdsn (not a subshell: the
# cleanup must know it).
newdb() {
  local db="dispatch_cmp_$RANDOM$RANDOM"
  psql -q "$DSN" -c "CREATE DATABASE $db" >/dev/null
  dbs+=("$db")
  newdsn="${DSN%%/postgres\?*}/$db?sslmode=disable"
}

# start BUILD DIR [DBDSN NODEID [EXTRA]]: starts a daemon; prints nothing,
# returns 1 if the build cannot run this configuration. EXTRA is YAML added
# to its config; a build that does not know it starts without it.
start() {
  local b=$1 dir=$2 dsn=${3:-} id=${4:-} extra=${5:-}
  mkdir -p "$dir"
  {
    echo "state_dir: $dir/state"
    echo "agent: {kind: echo}"
    if [ -n "$dsn" ]; then
      echo "store: {driver: postgres, dsn: \"$dsn\"}"
      echo "node: {id: $id, lease_ttl: $TTL}"
    fi
    [ -z "$extra" ] || echo "$extra"
  } >"$dir/config.yaml"
  if [ -n "$extra" ] && ! "$work/bin/$b" config show --config "$dir/config.yaml" >/dev/null 2>&1; then
    start "$b" "$dir" "$dsn" "$id"
    return
  fi
  "$work/bin/$b" daemon --config "$dir/config.yaml" >"$dir/out.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  echo "$pid" >"$dir/pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 1
    [ -S "$dir/state/dispatch.sock" ] && "$client" status --config "$dir/config.yaml" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$b did not start in $dir:" >&2
  cat "$dir/out.log" >&2
  exit 2
}

stop() {
  local pid
  pid=$(cat "$1/pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

load() { cut -d' ' -f1 /proc/loadavg; }

# measure SHAPE BUILD ROUND: one measurement, its merged figures in
# $work/res/SHAPE.BUILD.ROUND.json ({"na": true} when the build cannot).
measure() {
  local shape=$1 b=$2 r=$3 dir=$work/run/$1.$2.$3 out=$work/res/$1.$2.$3.json
  local nodes=1 dsn="" clients=$CLIENTS msgs=$MESSAGES extra=() conf=""
  case $shape in
    sqlite) ;;
    python) clients=8 msgs=1000 extra=(--chats 100) ;;
    python0) clients=8 msgs=1000 extra=(--chats 100) conf="sessions: {max_live: 0}" ;;
    pg1) newdb; dsn=$newdsn ;;
    pg3) newdb; dsn=$newdsn nodes=3 ;;
  esac
  local l0
  l0=$(load)
  for i in $(seq "$nodes"); do
    if ! start "$b" "$dir/n$i" "$dsn" "n$i" "$conf"; then
      echo '{"na": true}' >"$out"
      for j in $(seq "$i"); do stop "$dir/n$j"; done
      return 0
    fi
  done
  # Every node sees the others before the load (renewals every ttl/3).
  [ "$nodes" -gt 1 ] && sleep 6
  local benches=() files=()
  for i in $(seq "$nodes"); do
    local c=$((clients / nodes + (i <= clients % nodes ? 1 : 0)))
    local m=$((msgs / nodes + (i <= msgs % nodes ? 1 : 0)))
    "$client" bench --socket "$dir/n$i/state/dispatch.sock" --phases throughput \
      --clients "$c" --messages "$m" "${extra[@]}" --json >"$dir/b$i.json" 2>"$dir/b$i.err" &
    benches+=($!)
    files+=("$dir/b$i.json")
  done
  local failed=0
  for p in "${benches[@]}"; do wait "$p" || failed=1; done
  for i in $(seq "$nodes"); do stop "$dir/n$i"; done
  if [ -n "$dsn" ]; then
    local db=${dsn##*/}
    psql -q "$DSN" -c "DROP DATABASE IF EXISTS ${db%%\?*} WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ "$failed" = 1 ]; then
    echo "bench failed for $shape/$b round $r:" >&2
    cat "$dir"/b*.err >&2
    exit 2
  fi
  python3 - "$l0" "$(load)" "${files[@]}" >"$out" <<'PY'
import json, sys
l0, l1 = float(sys.argv[1]), float(sys.argv[2])
rs = [json.load(open(f))["throughput"] for f in sys.argv[3:]]
acc = sum(r["accepted"] for r in rs)
el = max(r["elapsed_ns"] for r in rs) / 1e9
done = max(r["all_done_ns"] for r in rs) / 1e9
turns = sum(r.get("turns", -1) for r in rs) if all(r.get("turns", -1) >= 0 for r in rs) else -1
cpu = [r.get("cpu_all", {}) for r in rs]
print(json.dumps({
    "accepts": acc / el,
    "p99_ms": max(r["latency"]["p99_ns"] for r in rs) / 1e6,
    "answered": acc / done,
    "turns": turns / done if turns >= 0 else None,
    # the daemons' CPU time per message, accept to answer (all nodes)
    "cpu_us": sum(c["daemon_per_msg_ns"] * r["accepted"] for c, r in zip(cpu, rs)) / acc / 1e3
              if all(c.get("ok") for c in cpu) else None,
    "load": (l0 + l1) / 2,
}))
PY
  rm -rf "$dir"
}

echo "machine: $(nproc) cores, $(uptime | sed 's/.*load/load/')" >&2
for r in $(seq "$ROUNDS"); do
  # Rotate the builds' order each round.
  order=("${builds[@]:$(((r - 1) % ${#builds[@]}))}" "${builds[@]:0:$(((r - 1) % ${#builds[@]}))}")
  for shape in $SHAPES; do
    for b in "${order[@]}"; do
      echo "round $r/$ROUNDS: $shape, $b (load $(load))" >&2
      measure "$shape" "$b" "$r"
    done
  done
done

python3 - "$work/res" "$ROUNDS" "$SHAPES" "$MESSAGES" "$CLIENTS" "$tree_id" "${builds[@]}" <<'PY'
import json, os, statistics, sys
res, rounds, shapes, msgs, clients, tree_id, builds = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:]
names = {
    "sqlite": f"SQLite, {clients} clients, {msgs} messages",
    "python": "SQLite, Python original's shape: 100 chats x 10 messages, 8 clients",
    "python0": "SQLite, the same without the live cap (sessions.max_live: 0)",
    "pg1": f"PostgreSQL, one node, {clients} clients, {msgs} messages",
    "pg3": f"PostgreSQL, three nodes on one database, {clients} clients, {msgs} messages",
}
def get(shape, b, r):
    return json.load(open(os.path.join(res, f"{shape}.{b}.{r}.json")))
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def f(v, fmt):
    return "n/a" if v is None else fmt.format(v)
base = builds[0]
print(f"builds: {', '.join(builds[:-1])} and tree = the working tree at {tree_id}")
print(f"median of {rounds} interleaved rounds; load = 1-min load average during the runs (min-max)")
for shape in shapes:
    print(f"\n{names[shape]}")
    print(f"  {'build':10} {'accepts/s':>10} {'p99 ms':>7} {'answered/s':>11} {'turns/s':>8} {'CPU µs/msg':>11}   load")
    for b in builds:
        rs = [get(shape, b, r) for r in range(1, rounds + 1)]
        if any(x.get("na") for x in rs):
            print(f"  {b:10} {'n/a':>10}")
            continue
        loads = [x["load"] for x in rs]
        print(f"  {b:10} {f(med([x['accepts'] for x in rs]), '{:,.0f}'):>10} {f(med([x['p99_ms'] for x in rs]), '{:.1f}'):>7}"
              f" {f(med([x['answered'] for x in rs]), '{:,.0f}'):>11} {f(med([x['turns'] for x in rs]), '{:,.0f}'):>8}"
              f" {f(med([x.get('cpu_us') for x in rs]), '{:.0f}'):>11}"
              f"   {min(loads):.1f}-{max(loads):.1f}")
    for b in builds[:-1]:
        ratios = {k: [] for k in ("accepts", "p99_ms", "answered", "cpu_us")}
        for r in range(1, rounds + 1):
            o, n = get(shape, b, r), get(shape, "tree", r)
            if o.get("na") or n.get("na"):
                break
            for k in ratios:
                if n.get(k) and o.get(k):
                    ratios[k].append(n[k] / o[k])
        else:
            print(f"  tree / {b}: accepts {med(ratios['accepts']):.2f}x, accept p99 {med(ratios['p99_ms']):.2f}x,"
                  f" answered {med(ratios['answered']):.2f}x, CPU per message {f(med(ratios['cpu_us']), '{:.2f}')}x"
                  f" (per round: {', '.join(f'{x:.2f}' for x in ratios['accepts'])})")
# Cross-shape ratios of the working tree, per round.
def ratio(a, b, k="accepts"):
    xs = []
    for r in range(1, rounds + 1):
        x, y = get(a, "tree", r), get(b, "tree", r)
        if x.get("na") or y.get("na"):
            return None
        xs.append(x[k] / y[k])
    return med(xs)
if "pg1" in shapes and "sqlite" in shapes:
    print(f"\ntree: one PostgreSQL node accepts {f(ratio('pg1', 'sqlite'), '{:.2f}')}x SQLite")
if "pg1" in shapes and "pg3" in shapes:
    print(f"tree: three PostgreSQL nodes accept {f(ratio('pg3', 'pg1'), '{:.2f}')}x one node")
PY
