"""One contract for scheduling the scoring of many videos, wherever it runs: ``Work`` in; results,
failures and progress out to one ``ResultSink``.

Three schedulers implement it: ``InProcess`` here (one video after another), the decoding pool
(``batch.parallel.PoolScorer``: decoding processes feeding one encoder) and Ray
(``cluster.scorer.ClusterScorer``).  What becomes of a result (kept for the exports, stored once
per content, its clips cut) is the sink's business: ``store.keeper`` is the library's, and
``flashback score`` wraps it with progress bars.  So a folder scored from Python on the pool or on
Ray is stored exactly as ``flashback score`` stores it (``store.keeper.keep_all``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import FlashbackError, one_line
from .pipeline import Detector, VideoResult, Work, video_id_for


class ResultSink(Protocol):
    """Where a scheduler hands what it learns about each item of work, from the thread that calls
    ``run`` unless said otherwise."""

    def claim(self, work: Work, video_id: str) -> bool:
        """The item's content address is known: False if this content was already scored in this
        run (the same bytes at another path), and the scheduler then drops the item; an item
        dropped so is finished."""
        ...

    def seconds(self, work: Work, done: float, total: float | None) -> None:
        """How far into the item scoring has come, in seconds of video (``total`` when the
        container says).  Called from the scheduler's worker threads by Ray's scheduler."""
        ...

    def result(self, work: Work, result: VideoResult) -> None:
        """The item's result, whole; the item is finished."""
        ...

    def failure(self, work: Work, reason: str, error: BaseException | None = None) -> None:
        """The item failed, said in one line; ``error`` when the scheduler holds the exception (a
        bug's traceback is the sink's to show).  The item is finished."""
        ...


class Scheduler(Protocol):
    def run(self, work: Sequence[Work], sink: ResultSink) -> bool:
        """Every item of ``work`` to the sink, scored or failed, in the order they finish (the
        sink's ``result`` runs in the thread that called ``run``); True if Ctrl-C stopped it."""
        ...


class InProcess:
    """One video after another in this process: the scheduler of a CPU machine."""

    def __init__(self, detector: Detector):
        self.detector = detector

    def run(self, work: Sequence[Work], sink: ResultSink) -> bool:
        for w in work:
            try:
                video_id = video_id_for(w.source)
                if not sink.claim(w, video_id):
                    continue
                result = self.detector.score(w.source, lambda done, total, w=w: sink.seconds(w, done, total),
                                             video_id=video_id, region=w.region, scope=w.scope)
            except KeyboardInterrupt:
                return True
            except FlashbackError as e:
                sink.failure(w, str(e), e)
                continue
            except Exception as e:  # noqa: BLE001 - the isolation boundary: a bug on one video must not end the run
                sink.failure(w, f"{w.source}: internal error (a bug in flashback): {type(e).__name__}: {one_line(e)}", e)
                continue
            try:
                sink.result(w, result)
            except KeyboardInterrupt:
                return True
        return False


@dataclass
class Callbacks:
    """A sink made of plain functions, for scripts, benchmarks and tests: every item is claimed."""

    on_result: Callable[[Work, VideoResult], None] = lambda work, result: None
    on_failure: Callable[[Work, str], None] = lambda work, reason: None
    on_seconds: Callable[[Work, float, float | None], None] = lambda work, done, total: None

    def claim(self, work: Work, video_id: str) -> bool:
        return True

    def seconds(self, work: Work, done: float, total: float | None) -> None:
        self.on_seconds(work, done, total)

    def result(self, work: Work, result: VideoResult) -> None:
        self.on_result(work, result)

    def failure(self, work: Work, reason: str, error: BaseException | None = None) -> None:
        self.on_failure(work, reason)
