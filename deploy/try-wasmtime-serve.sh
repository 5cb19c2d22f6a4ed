#!/usr/bin/env bash
# Serves the todo component with a host this project did not write, `wasmtime serve` (wasmtime-cli
# 48, its own wasi:http and its in-memory wasi:keyvalue), and checks what that host can show.
#
#   cargo install wasmtime-cli --version 48.0.8 --locked    # once; a long build, so not in CI
#   deploy/try-wasmtime-serve.sh                             # WASMTIME=/path/to/wasmtime to pick one
#
# wasmtime's in-memory key-value store copies its data into every instance when the bucket is
# opened and drops it with the instance, so nothing a request writes reaches the next request:
# every create gets id 1 and nothing can be read back. The component itself runs unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

wasmtime=${WASMTIME:-$(command -v wasmtime || true)}
[ -n "$wasmtime" ] || { echo "no wasmtime on PATH: cargo install wasmtime-cli --version 48.0.8 --locked" >&2; exit 2; }
cargo build --release -q -p todo-host   # builds target/wasm/wasm32-wasip2/release/todo_guest.wasm
component=target/wasm/wasm32-wasip2/release/todo_guest.wasm
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$wasmtime" serve -S cli=y -S keyvalue=y --addr "127.0.0.1:$port" "$component" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

passed=0 failed=0
check() { # check NAME EXPECTED-SUBSTRING CURL-ARGS...
  local name=$1 expected=$2; shift 2
  local got
  got=$(curl -s -w ' %{http_code}' "$@" || true)
  if [[ "$got" == *"$expected"* ]]; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name: wanted ...$expected..., got $got"
  fi
}
base="http://127.0.0.1:$port"
json=(-H 'content-type: application/json')
check "the page is served" "<title>Todos</title>" "$base/"
check "GET /todos answers an empty list" "[] 200" "$base/todos"
check "POST /todos creates a todo" '"id":1' -X POST "${json[@]}" -d '{"title":"on wasmtime serve"}' "$base/todos"
check "a second POST gets id 1 again: the store kept nothing" '"id":1' -X POST "${json[@]}" -d '{"title":"again"}' "$base/todos"
check "the created todo cannot be read back" " 404" "$base/todos/1"
check "bad input still gets its JSON 400" '"error"' -X POST "${json[@]}" -d '{' "$base/todos"
check "the legacy API answers" '"success":true' "$base/api/rule"
echo "wasmtime serve ($("$wasmtime" --version)): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
