"""Reaching a Ray cluster: ``--ray ADDRESS`` (``auto``, ``host:port``, ``ray://host:10001`` or
``local``), what it offers, and the environment its workers need.

Workers are other processes, often on other machines: they see what their node was started with,
not the driver's shell.  The variables that choose models and caches travel with the job
(``runtime_env``), so a worker resolves the same encoder and the same offline models as the driver.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClusterError, FlashbackError, first_line, one_line

PASSED_ENV = ("FLASHBACK_MODEL_CONFIGS", "FLASHBACK_CACHE_DIR", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
              "TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME")


def ray_module():
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray, which is not installed: pip install 'flashback[ray]'") from None
    return ray


@dataclass(frozen=True)
class Cluster:
    """What the cluster offered when the job started."""

    address: str
    nodes: int
    cpus: float
    gpus: float

    def describe(self) -> str:
        gpus = f", {self.gpus:g} GPU(s)" if self.gpus else ", no GPU"
        return f"Ray cluster {self.address}: {self.nodes} node(s), {self.cpus:g} CPU(s){gpus}"


def _probe(address: str) -> None:
    """A ``host:port`` that nothing answers fails in a second, with the reason, instead of Ray's
    own retries."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as e:
        raise ClusterError(f"--ray {address}: cannot connect ({e.strerror or e})") from None


CURRENT_CLUSTER = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # where ``ray start --head`` says it is


def _auto() -> str:
    """What ``auto`` means to Ray: $RAY_ADDRESS, else the cluster ``ray start`` last started on this
    machine.  Checked here, because Ray waits without end on a cluster that has since gone."""
    found = os.environ.get("RAY_ADDRESS") or (CURRENT_CLUSTER.read_text().strip() if CURRENT_CLUSTER.exists() else "")
    if not found:
        raise ClusterError("--ray auto: no Ray cluster on this machine (start one with ray start --head, "
                           "or give its address; --ray local starts a one-machine Ray for this run)")
    return found


def connect(address: str) -> Cluster:
    """Join the cluster at ``address`` as this job's driver (``local``: start a one-machine Ray)."""
    ray = ray_module()
    if address != "local":
        _probe(_auto() if address == "auto" else address)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    kwargs = {"runtime_env": {"env_vars": env} if env else None, "log_to_driver": False,
              "logging_level": logging.ERROR, "configure_logging": True}
    try:
        if address == "local":  # a new one, even where a cluster runs (Ray's address "local")
            ray.init(address="local", include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"--ray {address}: cannot join the cluster ({first_line(e)})") from None
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return Cluster(address, nodes, float(res.get("CPU", 0)), float(res.get("GPU", 0)))


def disconnect() -> None:
    ray = ray_module()
    if ray.is_initialized():
        ray.shutdown()


@dataclass(frozen=True)
class ActorPlan:
    """How many actors hold a model, with what: one per GPU (or per ``gpus_per_actor``) where the
    cluster has GPUs, else one per ``cpus_per`` CPUs; ``actors`` overrides the count."""

    n: int
    options: dict  # Ray resources of each
    device: str

    @classmethod
    def for_cluster(cls, cluster: Cluster, actors: int | None, gpus_per_actor: float, cpus_per: int,
                    reserve_cpu: bool = True) -> "ActorPlan":
        """``reserve_cpu=False``: each actor still uses a CPU, but Ray does not hold one for it.
        Scoring needs that: its decoding tasks wait, CPU held, for actors to take their batches, so
        an actor restarted after its node was lost could otherwise find every CPU held by tasks that
        wait for it.  The driver then keeps its decoding tasks to the CPUs the actors leave."""
        cpu = {"num_cpus": 1 if reserve_cpu else 0}
        if cluster.gpus > 0 and gpus_per_actor > 0:
            return cls(actors or max(1, int(cluster.gpus // gpus_per_actor)), {"num_gpus": gpus_per_actor, **cpu}, "cuda")
        return cls(actors or max(1, int(cluster.cpus // cpus_per)), cpu, "cpu")

    @property
    def cpus(self) -> int:
        """The CPUs the actors use, held by Ray or not."""
        return self.n


def task_failure(e: BaseException) -> tuple[str, bool]:
    """What a task's own exception (a ``RayTaskError``) said, and whether it was ours: a
    ``FlashbackError`` keeps its one line, anything else is named with its type (a bug)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, FlashbackError):
        return str(cause), True
    return (f"{type(cause).__name__}: {one_line(cause)}" if cause is not None else first_line(e)), False
