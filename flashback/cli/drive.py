"""The one driver of scoring work for the commands: any ``Scheduler`` (in process, the decoding pool,
Ray) into the library's ``Keeper``, with a bar for the run and one per video in flight, each
failure named through the command's ``Guard``, and the interrupt said."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..errors import FlashbackError
from ..scoring.pipeline import VideoResult, Work
from ..scoring.schedule import Scheduler
from ..store.keeper import Keeper, keep_all
from .common import Guard, progress_bars, warn


def drive(scheduler: Scheduler, work: Sequence[Work], keeper: Keeper, guard: Guard, quiet: bool, interrupted_note: str) -> bool:
    """Every item of ``work`` scored by ``scheduler`` and kept by ``keeper``, its results then in
    input order; True if Ctrl-C stopped it (what was finished stays stored and is exported)."""
    with progress_bars(quiet) as progress:
        interrupted = keep_all(work, scheduler, keeper, _Bars(progress, keeper, guard, len(work)))
    if interrupted:
        warn(interrupted_note)
    return interrupted


def seconds_bar(progress, task, done: float, total: float | None) -> None:
    """A video's bar: seconds of video scored, of how many (when the container says)."""
    label = f"{done:.0f}/{total:.0f} s of video" if total else f"{done:.0f} s of video"
    progress.update(task, completed=round(done, 1), total=round(total, 1) if total else None, done=label)


class _Bars:
    """The ``ResultSink`` of a command: the keeper's, with bars; a store that refuses a result, or a
    bug, fails that video only, named by the guard."""

    def __init__(self, progress, keeper: Keeper, guard: Guard, n: int):
        self.progress, self.keeper, self.guard, self.n = progress, keeper, guard, n
        self.overall = progress.add_task("all videos", total=n, done=f"0/{n} videos")
        self.bars: dict[Work, int] = {}
        self.lock = threading.Lock()  # Ray's scheduler reports seconds from its videos' threads

    def _bar(self, w: Work):
        with self.lock:
            if w not in self.bars:
                self.bars[w] = self.progress.add_task(f"  {w.source.name[:40]}", total=None, done="")
            return self.bars[w]

    def _finished(self, w: Work) -> None:
        with self.lock:
            bar = self.bars.pop(w, None)
        if bar is not None:
            self.progress.remove_task(bar)
        k = int(self.progress.tasks[self.overall].completed) + 1
        self.progress.update(self.overall, completed=k, done=f"{k}/{self.n} videos")

    def claim(self, work: Work, video_id: str) -> bool:
        if self.keeper.claim(work, video_id):
            return True
        self._finished(work)
        return False

    def seconds(self, work: Work, done: float, total: float | None) -> None:
        seconds_bar(self.progress, self._bar(work), done, total)

    def result(self, work: Work, result: VideoResult) -> None:
        def note(text: str) -> None:
            with self.lock:
                bar = self.bars.get(work)
            if bar is not None:
                self.progress.update(bar, done=text)

        self.guard.run(str(work.source), lambda: self.keeper.keep(work, result, note))
        self._finished(work)

    def failure(self, work: Work, reason: str, error: BaseException | None = None) -> None:
        if error is not None and not isinstance(error, FlashbackError):
            self.guard.bug(str(work.source), error)
        else:
            self.guard.problem(str(work.source), reason)
        self._finished(work)
