"""``--ray ADDRESS`` for ``score`` and ``memory build``: the same command, run on a Ray cluster.

The driver (this process) keeps everything a local run keeps: the inputs, the store (its one
writer), the exports and the summary; the cluster decodes and encodes (``flashback.cluster``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from ..checks import Range
from .common import Guard, progress_bars, say, warn

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


def score_on_cluster(a, cluster, detector, texts, overlays, work, keeper, guard: Guard) -> bool:
    """Every ``pipeline.Work`` of ``work`` scored on the cluster, each result kept here as it
    arrives; True if Ctrl-C stopped it."""
    from ..cluster.connect import disconnect
    from ..cluster.scorer import ClusterScorer
    from .options import encoder_spec

    try:
        scorer = ClusterScorer(cluster, detector, encoder_spec(a), a.precision, a.actors, a.gpus_per_actor, texts, overlays)
        where = ", ".join(sorted({p["host"] for p in scorer.placement}))
        say(f"{len(scorer.actors)} encoder actor(s) on {where}; up to {scorer.in_flight} video(s) in flight")
        # workers open files by the path the driver has (a folder every node mounts at the same place)
        jobs = [dataclasses.replace(w, source=absolute(w.source)) for w in work]
        with progress_bars(a.quiet) as progress:
            n = len(jobs)
            videos = progress.add_task("videos", total=n, done=f"0/{n} videos")
            seconds = progress.add_task("video seconds", total=None, done="")
            start, frames = time.perf_counter(), 0

            def advance() -> None:
                k = int(progress.tasks[videos].completed) + 1
                fps = frames / max(time.perf_counter() - start, 1e-9)
                progress.update(videos, completed=k, done=f"{k}/{n} videos, {fps:,.0f} video FPS")

            def on_result(job, result) -> float:
                nonlocal frames
                frames += len(result.frame_times)
                t0 = time.perf_counter()
                if not keeper.duplicate(result.video_id, job.source):
                    guard.run(str(job.source), lambda: keeper.keep(job.source, result))
                advance()
                return time.perf_counter() - t0

            def on_failure(job, reason: str) -> None:
                guard.problem(str(job.source), reason)
                advance()

            def on_seconds(total_s: float) -> None:
                rate = total_s / max(time.perf_counter() - start, 1e-9)
                progress.update(seconds, completed=total_s, done=f"{total_s:,.0f} s of video, {rate:,.1f} video-s/s")

            report, interrupted = scorer.run(jobs, on_result, on_failure, on_seconds)
        order = {str(j.source): k for k, j in enumerate(jobs)}  # results arrive as they finish; list them as given
        keeper.results.sort(key=lambda r: order.get(r.source, len(order)))
        if interrupted:
            warn("interrupted: the cluster's tasks for this job are cancelled; videos finished so far are stored and exported")
        say(report.line())
        return interrupted
    finally:
        disconnect()
