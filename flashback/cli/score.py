"""``flashback score``: files, folders and URLs -> frame scores, events, explanations, store, exports."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..checks import Range
from ..errors import UsageError
from ..scoring.pipeline import Detector, Work
from ..scoring.schedule import InProcess
from ..store import RunRecord
from ..store.keeper import Keeper
from ..video.cameras import camera_of, load_cameras, user_texts
from ..video.sources import expand_inputs
from .cluster import add_ray_args, connect_cluster, score_on_cluster
from .common import Guard, nothing_to_do, say, sigterm_as_ctrl_c, warn
from .drive import drive
from .options import add_decode_arg, add_media_arg, add_memory_arg, add_output_args, add_region_args, hwaccel_for, settings_from_args
from .output import export_and_summarise
from .setup import check_overlay_dirs, image_encoder, memory_for, open_store, overlays_for


def add_parser(sub) -> None:
    s = sub.add_parser("score", help="score video files, folders or stream URLs",
                       description="Score videos: per-frame anomaly scores, flagged events and the captions that explain them.")
    s.add_argument("paths", nargs="*", metavar="PATH", help="video file, folder (searched recursively) or URL")
    s.add_argument("--sample", action="store_true",
                   help="also score flashback's own 16 s sample clip (a drawn street where a car catches fire at 9 s): "
                        "a first run needs no video of your own")
    add_media_arg(s)
    add_memory_arg(s)
    add_region_args(s, "its name a glob matched against each file's path")
    add_output_args(s)
    add_decode_arg(s)
    s.add_argument("--workers", type=WORKERS.argtype(), metavar="N",
                   help="decode in N worker processes feeding one encoder; a file that is a large share of the work is "
                        "decoded in time spans at once, with the same scores (default: one per core but one with "
                        "--device cuda, 0 on a CPU, where the encoder needs the cores; 0: in this process)")
    add_ray_args(s, builds=False)
    s.set_defaults(run=run)


WORKERS = Range(0, 1024, integer=True)


def default_workers(a: argparse.Namespace, device: str) -> int:
    if a.workers is not None:
        return a.workers
    return max(1, len(os.sched_getaffinity(0)) - 1) if device.startswith("cuda") else 0


def run(a: argparse.Namespace) -> int:
    settings = settings_from_args(a)
    cameras = load_cameras(a.cameras, a.roi)
    texts = user_texts(a.alert, a.ignore) + list(cameras.texts)
    check_overlay_dirs(a)
    if not a.paths and not a.sample:
        raise UsageError("score: give at least one PATH (a video, a folder or a URL), or --sample")
    if a.ray and a.workers is not None:
        raise UsageError("score: --workers decodes on this machine and --ray on a cluster's workers: choose one")
    paths = list(a.paths)
    if a.sample:
        from ..memory.default_memory import cache_dir
        from ..video.sample import sample_video

        paths.append(str(sample_video(cache_dir() / "sample")))
    expansion = expand_inputs(paths)
    guard = Guard()
    guard.arguments(expansion.problems)
    if not expansion.sources:
        return nothing_to_do("video")
    store = open_store(a)
    cluster = connect_cluster(a)  # before any model loads: an unreachable cluster fails in a second
    encoder = image_encoder(a)
    overlays = overlays_for(a, store, encoder)
    detector = Detector(memory_for(a, encoder), encoder, settings, batch_size=a.batch_size, texts=texts, overlays=overlays,
                        hwaccel=hwaccel_for(a, encoder))
    keeper = Keeper(store, RunRecord.of(detector), media=not a.no_media, warn=warn)
    work = [Work(s, cameras.for_file(s.location), frozenset(scopes_of(s, cameras)), cameras.camera_of_file(s.location))
            for s in expansion.sources]
    for name in sorted(set(cameras.names) - {w.camera for w in work}):
        warn(f"{a.cameras} [{name}]: matches none of the inputs; its region and texts were not used")
    with sigterm_as_ctrl_c():
        interrupted = _score_all(a, cluster, detector, work, keeper, guard, encoder)
    return export_and_summarise(a, keeper.run, keeper.results, guard.failures, store, interrupted, keeper.runs)


def _score_all(a, cluster, detector, work, keeper, guard, encoder) -> bool:
    """On the cluster, the decoding pool, or here; True if interrupted (Ctrl-C or SIGTERM)."""
    if cluster is not None:
        return score_on_cluster(a, cluster, detector, work, keeper, guard)
    if workers := default_workers(a, encoder.device):
        from ..batch.parallel import PoolScorer

        scorer = PoolScorer(detector, workers)
        interrupted = drive(scorer, work, keeper, guard, a.quiet,
                            "interrupted: the decoding workers are stopped; videos finished so far are stored and exported")
        if not a.quiet:
            say(scorer.report.line(workers))
        return interrupted
    return drive(InProcess(detector), work, keeper, guard, a.quiet,
                 "interrupted: videos finished so far are stored and exported; the current one is not")


def scopes_of(source, cameras) -> set:
    """The cameras a file belongs to: the camera-file glob it matches, and its folder (overlays)."""
    folder = str(source) if source.is_url else camera_of(str(Path(source.location).resolve()), live=False)
    return {cameras.camera_of_file(source.location), folder} - {None}
