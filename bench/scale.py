#!/usr/bin/env python3
"""Scaling out and in under load: processes join and leave one port while clients keep asking.

    scale.py MODE CYCLES HOST ARGS...
    scale.py serve N HOST ARGS... --listen 127.0.0.1:PORT

The second form is a parent for throughput runs: it binds the address, hands the socket to N
hosts, prints their start-up line once all serve, and stops them on SIGTERM.

MODE is how the processes share the port:
    shared     one listening socket, bound here and handed to every process as systemd does
               (descriptor 3, LISTEN_FDS, LISTEN_PID): a process that stops leaves the
               connections queued on the socket to the others
    reuseport  each process binds the port itself with --reuse-port (SO_REUSEPORT): the kernel
               gives each its own accept queue

One process runs throughout the start; each cycle adds two, waits, stops the two oldest with
SIGTERM (so every process is replaced in turn), waits. Eight client threads make requests the
whole time, half of them on a new connection each (so accept queues are never empty), half over
keep-alive. Prints one tab-separated row: MODE, cycles, requests, failed, the first failures.
"""
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

mode, cycles, host, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
if mode == "serve" and "--listen" in args:
    at = args.index("--listen")
    port = int(args[at + 1].rsplit(":", 1)[1])
    del args[at:at + 2]
shared = None
if mode in ("shared", "serve"):
    shared = socket.socket()
    shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    shared.bind(("127.0.0.1", port))
    shared.listen(1024)
    port = shared.getsockname()[1]


def start():
    if shared is not None:
        # Descriptor 3 in the child, as systemd passes it; bash sets LISTEN_PID to its own pid,
        # which `exec` gives to the host.
        def place():
            os.dup2(shared.fileno(), 3)
        process = subprocess.Popen(
            ["bash", "-c", 'export LISTEN_PID=$$; exec "$0" "$@"', host, *args],
            env={**os.environ, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"},
            preexec_fn=place, pass_fds=(3,), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    else:
        process = subprocess.Popen(
            [host, *args, "--listen", f"127.0.0.1:{port}", "--reuse-port"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = process.stdout.readline().decode()
    assert line.startswith("Serving HTTP on"), line
    return process


stop_load = threading.Event()
lock = threading.Lock()
done = [0]
failures = []


def client(fresh):
    conn = None
    while not stop_load.is_set():
        try:
            if conn is None or fresh:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"Connection": "close"} if fresh else {}
            conn.request("GET", "/todos", headers=headers)
            response = conn.getresponse()
            response.read()
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
            ok = 200 <= response.status < 300
            with lock:
                if ok:
                    done[0] += 1
                else:
                    failures.append(f"status {response.status}")
        except Exception as err:  # noqa: BLE001: every client-side failure is counted
            with lock:
                failures.append(f"{type(err).__name__}: {err}")
            conn = None


if mode == "serve":
    processes = [start() for _ in range(cycles)]
    # Blocked only now: the hosts must not inherit a mask that keeps SIGTERM from them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    print(f"Serving HTTP on http://127.0.0.1:{port}/ ({cycles} processes on one socket)", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for process in processes:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    sys.exit(0)

processes = [start()]
threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(8)]
for t in threads:
    t.start()
time.sleep(1)
for _ in range(cycles):
    processes += [start(), start()]
    time.sleep(1)
    for process in processes[:2]:
        process.send_signal(signal.SIGTERM)
    for process in processes[:2]:
        process.wait(timeout=30)
    processes = processes[2:]
    time.sleep(1)
stop_load.set()
for t in threads:
    t.join()
for process in processes:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
first = "; ".join(sorted(set(failures))[:3])
print(f"{mode}\t{cycles}\t{done[0] + len(failures)}\t{len(failures)}\t{first}")
