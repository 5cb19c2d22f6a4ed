#!/usr/bin/env python3
"""Cold start from zero: how long the first answer takes when no server process runs.

    cold.py activated NAME RUNS CMD...   systemd-socket-activate holds the socket; the clock
                                         starts when the client connects (no process runs yet)
                                         and stops at the end of the first answer.
    cold.py spawned NAME RUNS CMD...     the clock starts when CMD is spawned (it binds the port
                                         itself; `{port}` in CMD is replaced) and stops at the
                                         end of the first answer; the client retries refused
                                         connections every millisecond.

Each run is a fresh process, stopped (SIGTERM) after its answer; one run before the measured ones
warms what a deployment would have warm (the artifact cache, the page cache). Prints one
tab-separated row: NAME, mode, runs, median ms, p90 ms, min ms, max ms.
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

PATH = "/todos"
REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer(sock):
    """Sends the request on `sock` and reads the whole answer; returns its status line."""
    sock.sendall(REQUEST)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = data.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 200 " not in status + " ":
        raise RuntimeError(f"unexpected answer: {status!r}")
    return status


def stop(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def activated_once(cmd):
    port = free_port()
    process = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=http", *cmd],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    # systemd-socket-activate says "Listening on ..." once the socket listens, and starts the
    # command only at the first connection.
    line = process.stderr.readline().decode()
    if "Listening on" not in line:
        stop(process)
        raise RuntimeError(f"systemd-socket-activate did not listen: {line!r}")
    try:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            answer(sock)
        return time.perf_counter() - started
    finally:
        stop(process)


def spawned_once(cmd):
    port = free_port()
    cmd = [part.replace("{port}", str(port)) for part in cmd]
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port))
                break
            except ConnectionRefusedError:
                if process.poll() is not None:
                    raise RuntimeError(f"{cmd[0]} exited with {process.returncode}")
                time.sleep(0.001)
        with sock:
            answer(sock)
        return time.perf_counter() - started
    finally:
        stop(process)


def main():
    mode, name, runs, cmd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    once = {"activated": activated_once, "spawned": spawned_once}[mode]
    once(cmd)  # warm-up, not counted
    times = sorted(once(cmd) * 1000 for _ in range(runs))
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(f"{name}\t{mode}\t{runs}\t{statistics.median(times):.1f}\t{p90:.1f}\t{times[0]:.1f}\t{times[-1]:.1f}")


if __name__ == "__main__":
    main()
