#!/usr/bin/env python3
"""Accounts, measured on one todo-host in `optional` mode (memory store), printed as markdown.

    accounts.py HOST_BIN [TRIES]

- sign-in: TRIES (default 50) correct sign-ins one after the other, on a host whose instances may
  use at most 32 MiB (`--max-memory 32MiB`): a sign-in that needed more would fail;
- unknown user against wrong password: TRIES × 4 sign-ins of each, interleaved (unknown names
  are new each time; wrong passwords spread over accounts so none reaches the limit of 10);
- 50 concurrent wrong passwords for one name: how many were hashed (answered 200) and how many
  refused (429), and the server time of the refusals (the access log's `total_us`);
- an authenticated `GET /todos/1` (cookie) against an anonymous one on the same host: wrk in
  alternating one-second turns, req/s summed per side.

Client times are wall-clock over a keep-alive connection; server times come from the access log.
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading

HOST_BIN = sys.argv[1]
TRIES = int(sys.argv[2]) if len(sys.argv) > 2 else 50
PASSWORD = "correct horse battery"
ACCESS = re.compile(r'method=(\w+) path="([^"]*)" status=(\d+) total_us=(\d+) instantiate_us=\d+ guest_us=(\d+)')

log = tempfile.NamedTemporaryFile(prefix="accounts-bench-", suffix=".log", delete=False)
host = subprocess.Popen(
    [HOST_BIN, "--listen", "127.0.0.1:0", "--store", "memory://", "--max-memory", "32MiB",
     "--config", "accounts=optional", "--config", "signups_per_minute=100000"],
    stdout=subprocess.PIPE, stderr=log, env={**os.environ, "RUST_LOG": "info"}, text=True)
banner = host.stdout.readline()
port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))


def call(conn, method, path, body=None, headers=None):
    """One request; answers (status, headers, body, seconds)."""
    import time
    headers = dict(headers or {})
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, dict(response.getheaders()), data, time.perf_counter() - start


def connect():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def creds(name, password=PASSWORD):
    return {"userName": name, "password": password, "type": "account"}


def access_lines():
    with open(log.name) as f:
        return [m.groups() for m in map(ACCESS.search, f) if m]


def median_ms(values):
    return statistics.median(values) * 1000


try:
    conn = connect()
    status, headers, _, _ = call(conn, "POST", "/api/register", creds("ann"))
    assert status == 201, status
    cookie = headers["set-cookie"].split(";")[0]
    assert call(conn, "POST", "/todos", {"title": "public"})[0] == 201
    assert call(conn, "POST", "/todos", {"title": "ann's"}, {"Cookie": cookie})[0] == 201

    # Sign-in, correct password.
    before = len(access_lines())
    times = []
    for _ in range(TRIES):
        status, _, body, seconds = call(conn, "POST", "/api/login/account", creds("ann"))
        assert status == 200 and json.loads(body)["status"] == "ok", body
        times.append(seconds)
    guest = [int(g) / 1e6 for (_, p, _, _, g) in access_lines()[before:] if p == "/api/login/account"]
    times.sort()
    signin = (median_ms(times), times[int(len(times) * 0.9)] * 1000, median_ms(guest))

    # Unknown user against wrong password, interleaved.
    pairs = TRIES * 4
    accounts = [f"wrong{i}" for i in range(pairs // 8 + 1)]
    for name in accounts:
        assert call(conn, "POST", "/api/register", creds(name))[0] == 201
    unknown, wrong = [], []
    before = len(access_lines())
    for i in range(pairs):
        status, _, body, seconds = call(conn, "POST", "/api/login/account", creds(f"nobody{i}", "wrong password"))
        assert status == 200 and json.loads(body)["status"] == "error", body
        unknown.append(seconds)
        status, _, body, seconds = call(conn, "POST", "/api/login/account", creds(accounts[i // 8], "wrong password"))
        assert status == 200 and json.loads(body)["status"] == "error", (status, body)
        wrong.append(seconds)
    server = [int(g) for (_, p, _, _, g) in access_lines()[before:] if p == "/api/login/account"]
    server_unknown, server_wrong = server[0::2], server[1::2]

    # 50 concurrent wrong passwords for one name.
    assert call(conn, "POST", "/api/register", creds("victim"))[0] == 201
    statuses = []
    before = len(access_lines())

    def attempt():
        c = connect()
        statuses.append(call(c, "POST", "/api/login/account", creds("victim", "wrong password"))[0])
        c.close()

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused_us = sorted(int(t) for (_, p, s, t, _) in access_lines()[before:] if p == "/api/login/account" and s == "429")
    hashed = statuses.count(200)

    # Authenticated against anonymous GET /todos/1, alternating one-second wrk turns.
    turns = {"anonymous": 0.0, "cookie": 0.0}
    for _ in range(6):
        for side in ("anonymous", "cookie"):
            args = ["wrk", "-t1", "-c16", "-d1s", f"http://127.0.0.1:{port}/todos/1"]
            if side == "cookie":
                args[1:1] = ["-H", f"Cookie: {cookie}"]
            out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            turns[side] += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
finally:
    host.terminate()
    host.wait()

print("## Accounts")
print()
print("`bench/accounts.py` (the `accounts` section of `bench/run.sh`): one `todo-host --store memory:// "
      "--max-memory 32MiB --config accounts=optional`; Argon2id at 19 MiB, 2 passes, 1 lane. Client "
      "times over one keep-alive connection; server times from the access log.")
print()
print("| measure | figure |")
print("|---|---|")
print(f"| sign-in, correct password, {TRIES} in a row (instances capped at 32 MiB) | p50 {signin[0]:.1f} ms, "
      f"p90 {signin[1]:.1f} ms; guest p50 {signin[2]:.1f} ms |")
print(f"| unknown user vs wrong password, {pairs} each interleaved: client medians | "
      f"{median_ms(unknown):.1f} ms vs {median_ms(wrong):.1f} ms (ratio {statistics.median(unknown) / statistics.median(wrong):.3f}) |")
print(f"| the same, guest medians | {statistics.median(server_unknown) / 1000:.1f} ms vs "
      f"{statistics.median(server_wrong) / 1000:.1f} ms (ratio {statistics.median(server_unknown) / statistics.median(server_wrong):.3f}) |")
print(f"| 50 concurrent wrong passwords for one name | {hashed} hashed (200), {statuses.count(429)} refused (429); "
      f"server time of a refusal p50 {statistics.median(refused_us) / 1000:.2f} ms, max {refused_us[-1] / 1000:.2f} ms |")
print(f"| `GET /todos/1` with a session cookie vs anonymous (wrk -c16, 6 alternating 1 s turns) | "
      f"{turns['cookie'] / 6:.0f} vs {turns['anonymous'] / 6:.0f} req/s: the anonymous one is "
      f"{turns['anonymous'] / turns['cookie']:.2f}x the authenticated |")
print()
os.unlink(log.name)
