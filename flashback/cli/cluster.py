"""``--ray ADDRESS`` for ``score`` and ``memory build``: the same command, run on a Ray cluster.

The driver (this process) keeps everything a local run keeps: the inputs, the store (its one
writer), the exports and the summary; the cluster decodes and encodes (``flashback.cluster``).
"""

from __future__ import annotations

import argparse
import dataclasses

from ..checks import Range
from .common import Guard, say
from .drive import drive

ACTORS = Range(1, 4096, integer=True)
GPUS_PER_ACTOR = Range(0.01, 64)


def add_ray_args(p: argparse.ArgumentParser, builds: bool) -> None:
    g = p.add_argument_group("cluster (Ray; pip install 'flashback[ray]')")
    what = "generate and embed the shards" if builds else "decode and encode the videos"
    g.add_argument("--ray", metavar="ADDRESS",
                   help=f"{what} on a Ray cluster: auto, HOST:PORT, ray://HOST:10001, or local (a one-machine Ray)")
    g.add_argument("--actors", type=ACTORS.argtype(), metavar="N",
                   help="encoder actors (default: one per GPU, or one per 4 CPUs on a cluster without GPUs)")
    g.add_argument("--gpus-per-actor", type=GPUS_PER_ACTOR.argtype(), default=1.0, metavar="G",
                   help="GPUs each encoder actor holds; a fraction shares a GPU (1)")


def connect_cluster(a: argparse.Namespace):
    """The cluster of ``--ray``, joined now, or None for a local run."""
    if not getattr(a, "ray", None):
        return None
    from ..cluster.connect import connect

    cluster = connect(a.ray)
    say(cluster.describe())
    return cluster


def absolute(source):
    from ..video.sources import VideoSource

    return source if source.is_url else VideoSource(str(source.path.resolve()))


def score_on_cluster(a, cluster, detector, work, keeper, guard: Guard) -> bool:
    """Every ``pipeline.Work`` of ``work`` scored on the cluster, each result kept here as it
    arrives; True if Ctrl-C stopped it."""
    from ..cluster.connect import disconnect
    from ..cluster.scorer import ClusterScorer
    from .options import encoder_runtime, encoder_spec

    try:
        scorer = ClusterScorer(cluster, detector, encoder_spec(a), encoder_runtime(a), a.actors, a.gpus_per_actor)
        where = ", ".join(sorted({p["host"] for p in scorer.placement}))
        say(f"{len(scorer.actors)} encoder actor(s) on {where}; up to {scorer.in_flight} video(s) in flight")
        keeper.run = dataclasses.replace(keeper.run, runtime=scorer.placement[0]["runtime"])  # theirs, not the driver's
        # workers open files by the path the driver has (a folder every node mounts at the same place)
        jobs = [dataclasses.replace(w, source=absolute(w.source)) for w in work]
        interrupted = drive(scorer, jobs, keeper, guard, a.quiet,
                            "interrupted: the cluster's tasks for this job are cancelled; videos finished so far are stored and exported")
        say(scorer.report.line())
        return interrupted
    finally:
        disconnect()
