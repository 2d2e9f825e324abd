"""A throwaway Ray cluster of real processes on this machine: a head and worker nodes on loopback.

For trying ``--ray`` without a cluster, for the tests (which kill its nodes) and for
``benchmarks/cluster.py``.  Each node is one ``ray start --block`` process in a session of its
own, so a node can be killed whole (its raylet, its workers) and stopping touches only the
processes started here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClusterError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    here = Path(sys.executable).with_name("ray")
    found = str(here) if here.exists() else shutil.which("ray")
    if not found:
        raise ClusterError("the ray command is not installed: pip install 'flashback[ray]'")
    return found


@dataclass
class Node:
    process: subprocess.Popen
    cpus: int
    log: Path  # what its ``ray start`` printed
    head: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def started(self) -> bool:
        """``ray start`` says so once the node has joined (a worker: registered with the head)."""
        return self.log.exists() and b"Ray runtime started" in self.log.read_bytes()


class LocalCluster:
    """``with LocalCluster(head_cpus=2, workers=[2]) as c:`` ... ``c.address`` ..."""

    def __init__(self, head_cpus: int = 1, workers: list[int] = (), env: dict | None = None, log_dir: Path | None = None):
        self.head_cpus, self.worker_cpus = head_cpus, list(workers)
        # no token authentication on this loopback-only cluster: Ray turns it on for a head when it
        # finds ~/.ray/auth_token (which a ``--ray local`` run leaves), but not for the worker nodes
        # that then try to join it, and those fail ("InvalidAuthToken")
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})}
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="flashback-ray-"))

    def __enter__(self) -> "LocalCluster":
        try:
            self.nodes.append(self._start(["--head", "--port", str(self.port), "--include-dashboard=false"], self.head_cpus, True))
            self.wait_for(self.nodes)
            for cpus in self.worker_cpus:  # one at a time: nodes of one machine number their sockets as they start
                self.add_node(cpus)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, args: list[str], cpus: int, head: bool = False) -> Node:
        log = self.log_dir / f"node-{len(self.nodes)}.log"
        cmd = [_ray_cli(), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
               "--disable-usage-stats", *args]
        with open(log, "wb") as f:
            process = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        return Node(process, cpus, log, head)

    def add_node(self, cpus: int, wait: bool = True) -> Node:
        node = self._start(["--address", self.address], cpus)
        self.nodes.append(node)
        if wait:
            self.wait_for([node])
        return node

    def wait_for(self, nodes: list[Node], timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(n.started for n in nodes):
            dead = [n for n in nodes if not n.alive]
            if dead or time.monotonic() > deadline:
                why = f"exited (see {dead[0].log})" if dead else f"not up after {timeout_s:.0f} s"
                raise ClusterError(f"local Ray cluster {self.address}: a node {why}")
            time.sleep(0.1)

    def node_of(self, pid: int) -> Node | None:
        """The node a process (a Ray worker, say) belongs to: the one whose session it is in."""
        try:
            sid = os.getsid(pid)
        except OSError:
            return None
        return next((n for n in self.nodes if n.process.pid == sid), None)

    def kill_node(self, node: Node) -> None:
        """The whole node at once (SIGKILL to every process of its session: raylet, object store,
        workers), as a machine that loses power."""
        _kill_session(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=30)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.alive:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3  # a head node may take its time over SIGTERM; then SIGKILL
        for node in self.nodes:
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _kill_session(node.process.pid, signal.SIGKILL)  # whatever of the node is left
            node.process.wait(timeout=30)
        from .connect import CURRENT_CLUSTER

        if CURRENT_CLUSTER.exists() and CURRENT_CLUSTER.read_text().strip().endswith(f":{self.port}"):
            CURRENT_CLUSTER.unlink()  # as ``ray stop`` does: --ray auto must not find a cluster that is gone


def _kill_session(sid: int, sig: int) -> None:
    """Every process of session ``sid`` (Ray puts each worker in a process group of its own, but
    they stay in the session of the ``ray start`` that made the node)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getsid(int(d.name)) == sid:
                    os.kill(int(d.name), sig)
            except OSError:
                pass
