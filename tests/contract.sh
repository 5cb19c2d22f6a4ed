#!/usr/bin/env bash
# The published contract, fuzzed: starts the release todo-host (memory store, a free port, accounts
# on) and runs schemathesis against the /openapi.json it serves, twice, with every check
# (tests/schemathesis.toml) and every phase, the stateful one included (it chains the document's
# links: create, then read, change, replace, delete, read again):
#
# 1. anonymously: every operation, the account routes included (sign-up, sign-in, tokens,
#    sign-out, who is signed in), and the todo routes on the public list;
# 2. signed in: a user signed up with curl, its bearer token from `POST /api/tokens` sent as
#    `Authorization: Bearer` on every request, so the todo routes act on that user's own list.
#    The operations that read a credential, but sign-out (it would end the run's session; the
#    first run fuzzes it): sign-up, sign-in and tokens read none, and the first run covers them.
#
# Fails on any finding of either run; prints each run's case count.
#
# Accounts are `optional`: an anonymous request is answered as with accounts off, on the public
# list, so the first run is the contract as it was before accounts, plus the account routes. With
# accounts off (the default) those routes are a 404 and nothing else changes, which
# guest/tests/openapi.rs checks against the document. The sign-up limit is raised for the fuzzer:
# at its default (20 a minute) nearly every generated sign-up would be a 429 (documented, so it
# would pass) and sign-up itself would go untested.
#
# Bounded twice, per run: `--max-examples` cases per operation and phase in a round, and
# `--max-time` seconds, during which schemathesis repeats its fuzzing and stateful rounds. The
# defaults fit CI (about 3 minutes for both runs on 2 cores); a longer run:
#   CONTRACT_MAX_TIME=840 CONTRACT_MAX_EXAMPLES=1000 tests/contract.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

host_bin=${TODO_HOST_BIN:-target/release/todo-host}
max_examples=${CONTRACT_MAX_EXAMPLES:-100}
max_time=${CONTRACT_MAX_TIME:-90}

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
  --config accounts=optional --config signups_per_minute=100000 \
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
echo "todo-host at $url (accounts optional)"

# The signed-in run's user: signed up, then a bearer token for it, as an API client gets one.
credentials='{"userName":"contract","password":"contract-fuzzing"}'
curl -sS --fail-with-body -o /dev/null -H 'Content-Type: application/json' \
  -d "$credentials" "${url}api/register"
token=$(curl -sS --fail-with-body -H 'Content-Type: application/json' \
  -d "$credentials" "${url}api/tokens" | grep -o '"token":"[A-Za-z0-9_-]*"' | cut -d '"' -f 4)
[ -n "$token" ] || { echo "no bearer token from ${url}api/tokens" >&2; exit 1; }

# One run of schemathesis: its name, then options of its own. schemathesis keeps its example
# database and cache in the working directory: a scratch one per run. One worker: the stateful
# checks read each scenario's own history, and a second worker's `DELETE /todos` would delete a
# todo a scenario has just created.
status=0
fuzz() {
  local name=$1
  shift
  local dir="$work/$name" run_status=0
  mkdir -p "$dir"
  echo "contract: the $name run"
  (cd "$dir" && st --config-file "$root/tests/schemathesis.toml" run "${url}openapi.json" \
    --workers 1 --max-examples "$max_examples" --max-time "$max_time" --no-color "$@") \
    | tee "$dir/st.log" || run_status=$?
  local cases
  cases=$(grep -A1 '^Test cases:' "$dir/st.log" | tail -n 1 | sed 's/^ *//' || true)
  echo "contract ($name): schemathesis ${cases:-(no summary)}, exit status $run_status"
  [ "$run_status" -eq 0 ] || status=$run_status
}

fuzz anonymous
fuzz signed-in --header "Authorization: Bearer $token" \
  --exclude-path-regex '^/api/(register|login/|tokens)'
exit "$status"
