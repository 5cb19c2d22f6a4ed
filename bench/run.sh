#!/usr/bin/env bash
# Benchmarks, side by side in one run on this machine; writes bench/RESULTS.md and
# bench/scaling.svg. Not part of CI. Usage: bench/run.sh   (DURATION=10s bench/run.sh for longer runs;
# SCALING_SIZES="1000 10000" for a shorter scaling table)
#
# Every server runs on loopback and is driven by wrk (Debian's package) from the same machine,
# so server and load generator share the cores: compare the ratios, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNECTIONS=64
results=bench/RESULTS.md
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

if ! command -v wrk >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

echo "== building release binaries" >&2
cargo build --release -q -p todo-host -p todo-bench  # todo-bench: native-baseline, microbench, seed
cargo build --release -q --target wasm32-wasip2 --target-dir target/wasm-fixtures -p counter-fixture
HOST=target/release/todo-host
NATIVE=target/release/native-baseline
HELLO=target/wasm-fixtures/wasm32-wasip2/release/counter_fixture.wasm

pid=""
port=""
# start NAME COMMAND...: starts a server on a free port, waits for its start-up line.
start() {
  local name=$1; shift
  "$@" --listen 127.0.0.1:0 >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  for _ in $(seq 200); do
    if grep -q "Serving HTTP on" "$work/$name.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/$name.out" | head -1)
  [ -n "$port" ] || { cat "$work/$name.err" >&2; echo "$name did not start" >&2; exit 1; }
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
peak_rss_mib() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status"; }

# seed COUNT: creates COUNT todos over one keep-alive connection.
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

# load SERVER WORKLOAD PATH [SCRIPT] [CONNECTIONS]: one wrk run, one line in $work/rows.tsv.
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
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$workload" "$conns" "$rps" "$p50" "$p99" "$errors" >>"$work/rows.tsv"
  echo "  $server / $workload (c=$conns): $rps req/s, p50 $p50, p99 $p99, errors $errors" >&2
}

# suite NAME COMMAND...: every workload against fresh servers of one kind.
suite() {
  local name=$1; shift
  local rss=0
  echo "== $name" >&2
  start "$name" "$@"; seed 10
  load "$name" "GET /todos (10 todos)" /todos
  load "$name" "GET /todos (10 todos), c=200" /todos "" 200
  load "$name" "GET /todos/1" /todos/1
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

suite "todo-host, memory" "$HOST" --store memory://
suite "native, memory" "$NATIVE" --store memory://
suite "todo-host, SQLite" "$HOST" --store "$(db host)"
suite "native, SQLite" "$NATIVE" --store "$(db native)"

echo "== worker threads" >&2
for workers in 1 2; do
  start "workers-$workers" "$HOST" --store memory:// --workers "$workers"; seed 10
  load "todo-host, memory, --workers $workers" "GET /todos (10 todos)" /todos
  stop
done

echo "== hello component" >&2
start hello "$HOST" --store memory:// --component "$HELLO"
load "todo-host" "hello component GET /" /
stop
if command -v wasmtime >/dev/null; then
  # The hello component, like any Rust wasm32-wasip2 component, imports wasi:cli too.
  wasmtime serve -S cli=y --addr 127.0.0.1:0 "$HELLO" >"$work/serve.out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "Serving HTTP" "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
  port=$(grep -o '127.0.0.1:[0-9]*' "$work/serve.out" | head -1 | cut -d: -f2)
  if [ -n "$port" ]; then
    load "wasmtime serve $(wasmtime --version | awk '{print $2}')" "hello component GET /" /
    serve_note="measured, see the rows \"hello component GET /\" above"
  else
    serve_note="wasmtime serve did not start: $(head -1 "$work/serve.out")"
  fi
  stop
else
  serve_note="skipped: no \`wasmtime\` binary on PATH (it is not in Debian's packages; \`cargo install wasmtime-cli --version 48.0.8 --locked\` builds one)"
fi

# ---- a million todos, and group commit (issue 11) ----
# Each section below adds rows to rows.tsv (and, for memory, rss.tsv); add a store or a
# workload by adding a line.
SEED=target/release/seed

echo "== SQLite POST at c=64: group commit off vs on" >&2
for mode in 0 1; do
  label=$([ "$mode" = 1 ] && echo on || echo off)
  TODO_HOST_SQLITE_GROUP_COMMIT=$mode start "gc-$label" "$HOST" --store "$(db "gc-$label")"
  load "todo-host, SQLite, group commit $label" "POST /todos" /todos post.lua 64
  stop
done

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

echo "== in-process micro-benchmark" >&2
HELLO_WASM="$HELLO" TODO_HOST_BIN="$HOST" target/release/microbench bench/scaling.svg >"$work/micro.md"

# ---- the report ----
python3 - "$work" "$results" "$DURATION" "$serve_note" <<'PY'
import csv, os, platform, subprocess, sys, datetime
work, out, duration, serve_note = sys.argv[1:]
rows = list(csv.reader(open(f"{work}/rows.tsv"), delimiter="\t"))
rss = dict(csv.reader(open(f"{work}/rss.tsv"), delimiter="\t"))
rps = {(r[0], r[1]): float(r[3] or 0) for r in rows}
def native_of(server):
    return server.replace("todo-host", "native") if server.startswith("todo-host, ") else None
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
    "# Benchmark results", "",
    f"Generated by `bench/run.sh` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
    f"- machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, Linux {platform.release()}",
    f"- load: `wrk -t2 -c{{64|200}} -d{duration} --latency` on loopback, sharing the cores with the server; scripts in `bench/wrk/`",
    "- servers: `todo-host` (a fresh wasm instance per request) and `native-baseline` (the same todo logic compiled natively, called directly by hyper, same `KvBackend`), each with `--store memory://` and with SQLite; every workload starts from a fresh server seeded over HTTP",
    "", "## Throughput and latency", "",
    "| server | workload | conns | req/s | p50 | p99 | errors | vs native |",
    "|---|---|---|---|---|---|---|---|",
]
for server, workload, conns, r, p50, p99, errors in rows:
    native = native_of(server)
    ratio = ""
    if native and (native, workload) in rps and rps[(native, workload)]:
        ratio = f"{float(r) / rps[(native, workload)]:.2f}x"
    lines.append(f"| {server} | {workload} | {conns} | {r} | {p50} | {p99} | {errors} | {ratio} |")
lines += ["", "## Peak memory (VmHWM of the server process)", "", "| server | peak RSS MiB |", "|---|---|"]
lines += [f"| {k} | {v} |" for k, v in rss.items()]
lines += ["", f"`wasmtime serve` on the same hello component: {serve_note}.", ""]
lines += [open(f"{work}/micro.md").read(), "", open("bench/steps.md").read()]
open(out, "w").write("\n".join(lines))
PY
echo "wrote $results and bench/scaling.svg" >&2
