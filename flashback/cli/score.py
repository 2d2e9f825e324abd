"""``flashback score``: files, folders and URLs -> frame scores, events, explanations, store, exports."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..checks import Range
from ..errors import UsageError
from ..scoring.pipeline import Detector, Work, video_id_for
from ..store import RunRecord
from ..video.cameras import camera_of, load_cameras, user_texts
from ..video.media import file_event_media
from ..video.sources import expand_inputs
from .cluster import add_ray_args, connect_cluster, score_on_cluster
from .common import Guard, nothing_to_do, progress_bars, say, warn
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
    keeper = Keeper(a, store, RunRecord.of(detector))
    work = [Work(s, cameras.for_file(s.location), frozenset(scopes_of(s, cameras))) for s in expansion.sources]
    if cluster is not None:
        interrupted = score_on_cluster(a, cluster, detector, texts, overlays, work, keeper, guard)
    elif workers := default_workers(a, encoder.device):
        interrupted = score_in_pool(a, detector, workers, work, keeper, guard)
    else:
        interrupted = score_here(a, detector, work, keeper, guard)
    return export_and_summarise(a, keeper.run, keeper.results, guard.failures, store, interrupted)


def score_here(a, detector: Detector, work: list[Work], keeper: "Keeper", guard: Guard) -> bool:
    """One video after another in this process; True if Ctrl-C stopped it."""
    with progress_bars(a.quiet) as progress:
        n = len(work)
        overall = progress.add_task("all videos", total=n, done=f"0/{n} videos")

        def one(w: Work) -> None:
            task = progress.add_task(f"  {w.source.name[:40]}", total=None, done="")
            try:
                video_id = video_id_for(w.source)
                if keeper.duplicate(video_id, w.source):
                    return
                result = detector.score(w.source, lambda done, total: seconds_bar(progress, task, done, total),
                                        video_id=video_id, region=w.region, scope=w.scope)
                keeper.keep(w.source, result, lambda note: progress.update(task, done=note))
            finally:
                progress.remove_task(task)

        return guard.each(work, one, "videos", name=lambda w: str(w.source),
                          after=lambda k: progress.update(overall, advance=1, done=f"{k + 1}/{n} videos"))


def seconds_bar(progress, task, done: float, total: float | None) -> None:
    """A video's bar: seconds of video scored, of how many (when the container says)."""
    label = f"{done:.0f}/{total:.0f} s of video" if total else f"{done:.0f} s of video"
    progress.update(task, completed=round(done, 1), total=round(total, 1) if total else None, done=label)


def score_in_pool(a, detector: Detector, workers: int, work, keeper: "Keeper", guard: Guard) -> bool:
    """Decoding in ``workers`` processes, encoding here (``flashback.batch.parallel``): the same bars,
    results and store rows as ``score_here``; True if Ctrl-C stopped it."""
    from ..batch.parallel import PoolScorer

    scorer = PoolScorer(detector, workers)
    with progress_bars(a.quiet) as progress:
        n = len(work)
        overall = progress.add_task("all videos", total=n, done=f"0/{n} videos")
        bars: dict = {}

        def on_seconds(w: Work, done: float, total: float | None) -> None:
            if w not in bars:
                bars[w] = progress.add_task(f"  {w.source.name[:40]}", total=None, done="")
            seconds_bar(progress, bars[w], done, total)

        def finished(w: Work) -> None:
            if w in bars:
                progress.remove_task(bars.pop(w))
            k = int(progress.tasks[overall].completed) + 1
            progress.update(overall, completed=k, done=f"{k}/{n} videos")

        def on_result(w: Work, result) -> None:
            if not keeper.duplicate(result.video_id, w.source):
                guard.run(str(w.source), lambda: keeper.keep(w.source, result, lambda note: on_note(w, note)))
            finished(w)

        def on_note(w: Work, note: str) -> None:
            if w in bars:
                progress.update(bars[w], done=note)

        def on_failure(w: Work, reason: str) -> None:
            guard.problem(str(w.source), reason)
            finished(w)

        interrupted = scorer.run(work, on_result, on_failure, on_seconds)
    order = {str(w.source): k for k, w in enumerate(work)}  # results arrive as they finish; list them as given
    keeper.results.sort(key=lambda r: order.get(r.source, len(order)))
    if interrupted:
        warn("interrupted: the decoding workers are stopped; videos finished so far are stored and exported")
    if not a.quiet:
        say(scorer.report.line(workers))
    return interrupted


class Keeper:
    """What becomes of a scored video, wherever it was scored: kept for the exports, stored once
    per content with its events' clips and thumbnails."""

    def __init__(self, a: argparse.Namespace, store, run: RunRecord):
        self.a, self.store, self.run = a, store, run
        self.results: list = []
        self.seen: dict[str, str] = {}  # video id -> the path it was first scored from

    def duplicate(self, video_id: str, source) -> bool:
        """Content-addressed: the same bytes at a second path are one video, scored and stored once."""
        if video_id in self.seen:
            warn(f"{source}: the same bytes as {self.seen[video_id]}; scored and stored once, under that video")
            return True
        self.seen[video_id] = str(source)
        return False

    def keep(self, source, result, note=lambda text: None) -> None:
        if result.truncated:
            warn(f"{source}: {result.note}")
        self.results.append(result)  # exported even if the store refuses it below
        if self.store is None:
            return
        media = []
        if result.events and not self.a.no_media and not source.is_url:
            note(f"clips of {len(result.events)} event(s)")
            media = file_event_media(source.path, result.video_id, self.run.run_id, result.events, result.duration_s,
                                     self.store.media_dir)
            failed = [m.note for m in media if m.clip is None]
            if failed:
                warn(f"{source}: no clip for {len(failed)} of {len(media)} event(s) ({failed[0]})")
        self.store.save(self.run, result, media)


def scopes_of(source, cameras) -> set:
    """The cameras a file belongs to: the camera-file glob it matches, and its folder (overlays)."""
    folder = source.location if source.is_url else camera_of(str(Path(source.location).resolve()), live=False)
    return {cameras.camera_of_file(source.location), folder} - {None}
