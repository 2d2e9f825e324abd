"""``flashback review`` run as a user runs it, for the tests: on a free loopback port, stopped by a
signal at the end, and checked to leave no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import FLASHBACK, free_port


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc (a zombie counts as gone)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    def running(p: int) -> bool:
        try:
            return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    return {p for p in pids if running(p)}


def start_review(db: Path, args=(), **popen) -> tuple[subprocess.Popen, str]:
    """``flashback review`` (with ``args``) on a free loopback port, once it answers its health check."""
    port = free_port()
    popen = popen or {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    proc = subprocess.Popen([FLASHBACK, "review", "--db", str(db), "--port", str(port),
                             *args], env=os.environ.copy(), **popen)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"review server did not start: {proc.stdout.read() if proc.stdout else proc.returncode}")
        time.sleep(0.5)


@contextlib.contextmanager
def review_server(db: Path, stop_signal=signal.SIGTERM, args=()):
    """``flashback review`` on a free loopback port, until the block ends; then stopped with
    ``stop_signal`` as a service manager would, and checked to leave no process behind."""
    proc, url = start_review(db, args)
    servers = descendants(proc.pid)
    assert servers, "flashback review runs Streamlit as its child"
    try:
        yield url
    finally:
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"flashback review ignored {stop_signal.name} for 20 s")
        deadline = time.monotonic() + 5
        while alive(servers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(servers), f"{stop_signal.name} left the Streamlit server running: {alive(servers)}"
        assert proc.returncode == 0
