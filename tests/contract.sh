#!/usr/bin/env bash
# The published contract, fuzzed: starts the release todo-host (memory store, a free port) and runs
# schemathesis against the /openapi.json it serves, with every check (tests/schemathesis.toml) and
# every phase, the stateful one included (it chains the document's links: create, then read,
# change, replace, delete, read again). Fails on any finding; prints the case count.
#
# Bounded twice: `--max-examples` cases per operation and phase in a round, and `--max-time`
# seconds for the whole run, during which schemathesis repeats its fuzzing and stateful rounds.
# The defaults fit CI (about 2.5 minutes on 2 cores); a longer run:
#   CONTRACT_MAX_TIME=840 CONTRACT_MAX_EXAMPLES=1000 tests/contract.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

host_bin=${TODO_HOST_BIN:-target/release/todo-host}
max_examples=${CONTRACT_MAX_EXAMPLES:-100}
max_time=${CONTRACT_MAX_TIME:-150}

work=$(mktemp -d)
host_pid=
stop_host() {
  if [ -n "$host_pid" ]; then
    kill "$host_pid" 2>/dev/null || true
    wait "$host_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop_host EXIT

"$host_bin" --listen 127.0.0.1:0 --store memory:// --no-access-log \
  >"$work/host.out" 2>"$work/host.err" &
host_pid=$!
# The host prints one start-up line, `Serving HTTP on http://ADDR/ ...`, once it listens.
url=
for _ in $(seq 300); do
  url=$(grep -o 'http://[0-9.:]*/' "$work/host.out" | head -n 1 || true)
  [ -n "$url" ] && break
  kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.err" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "todo-host did not start" >&2; cat "$work/host.err" >&2; exit 1; }
echo "todo-host at $url"

# schemathesis keeps its example database and cache in the working directory: a scratch one.
# One worker: the stateful checks read each scenario's own history, and a second worker's
# `DELETE /todos` would delete a todo a scenario has just created.
status=0
(cd "$work" && st --config-file "$root/tests/schemathesis.toml" run "${url}openapi.json" \
  --workers 1 --max-examples "$max_examples" --max-time "$max_time" --no-color) \
  | tee "$work/st.log" || status=$?
cases=$(grep -A1 '^Test cases:' "$work/st.log" | tail -n 1 | sed 's/^ *//')
echo "contract: schemathesis ${cases:-(no summary)}, exit status $status"
exit "$status"
