"""What becomes of a scored video, wherever it was scored (in process, on the decoding pool, on
Ray): kept for the exports, and stored once per content with its events' clips and thumbnails.

``Keeper`` is that rule, shared by ``flashback score`` and Python callers; ``keep_all`` runs any
``Scheduler`` into it, so a folder scored from Python on the pool or on Ray is stored exactly as
the command stores it::

    from flashback.batch.parallel import PoolScorer
    from flashback.scoring.pipeline import Work
    from flashback.store import ResultStore, RunRecord
    from flashback.store.keeper import Keeper, keep_all
    from flashback.video.sources import expand_inputs

    store = ResultStore("results.duckdb")
    keeper = Keeper(store, RunRecord.of(detector))
    work = [Work(s) for s in expand_inputs(["recordings/"]).sources]
    interrupted = keep_all(work, PoolScorer(detector, workers=4), keeper)
    keeper.results, keeper.failures  # what was scored (in input order), and what failed, and why
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..encoders.encoder_registry import file_sha256
from ..errors import FlashbackError, InputError
from ..scoring.pipeline import VideoResult, Work
from ..scoring.schedule import ResultSink, Scheduler
from ..video.media import file_event_media
from .db import ResultStore
from .writers import RunRecord

log = logging.getLogger(__name__)


class Keeper:
    """Results kept for the exports, each stored once per content with its events' media.  Also a
    ``ResultSink``: it claims each content once, keeps results, and records failures."""

    def __init__(self, store: ResultStore | None, run: RunRecord, media: bool = True, warn: Callable[[str], None] = log.warning):
        self.store, self.run, self.media, self.warn = store, run, media, warn
        self.results: list[VideoResult] = []
        self.failures: list[dict] = []  # {"source", "error"}, as the exports record them
        self.seen: dict[str, str] = {}  # video id -> the path it was first scored from
        self.runs: dict[str, RunRecord] = {}  # result source -> the run it is stored under (``run_of``)

    def claim(self, work: Work, video_id: str) -> bool:
        """Content-addressed: the same bytes at a second path are one video, scored and stored once."""
        if video_id in self.seen:
            self.warn(f"{work.source}: the same bytes as {self.seen[video_id]}; scored and stored once, under that video")
            return False
        self.seen[video_id] = str(work.source)
        return True

    def keep(self, work: Work, result: VideoResult, note: Callable[[str], None] = lambda text: None) -> None:
        """Kept for the exports first (even if the store then refuses it), then stored with its media;
        a store that refuses it raises its ``StoreError``."""
        source = work.source
        if self.store is not None and not source.is_url and _content_id(source.path) != result.video_id:
            raise InputError(str(source), "the file was replaced or changed while it was scored; nothing of it is stored "
                                          "(its clips would be cut from other content): score it again")
        if result.truncated:
            self.warn(f"{source}: {result.note}")
        self.results.append(result)
        run = self.runs[result.source] = self.run_of(work, result)
        if self.store is None:
            return
        media = []
        if result.events and self.media and not source.is_url:
            note(f"clips of {len(result.events)} event(s)")
            media = file_event_media(source.path, result.video_id, run.run_id, result.events, result.duration_s,
                                     self.store.media_dir)
            failed = [m.note for m in media if m.clip is None]
            if failed:
                self.warn(f"{source}: no clip for {len(failed)} of {len(media)} event(s) ({failed[0]})")
        self.store.save(run, result, media)

    def run_of(self, work: Work, result: VideoResult) -> RunRecord:
        """The run this input is stored under (``RunRecord.for_input``): with a region or another
        camera table it is another run, so an earlier result without them is kept, not replaced."""
        return self.run.for_input(result.region, work.camera, work.scope)

    # ResultSink
    def seconds(self, work: Work, done: float, total: float | None) -> None:
        pass

    def result(self, work: Work, result: VideoResult) -> None:
        try:
            self.keep(work, result)
        except FlashbackError as e:
            self.failure(work, str(e), e)

    def failure(self, work: Work, reason: str, error: BaseException | None = None) -> None:
        self.failures.append({"source": str(work.source), "error": reason})

    def in_order(self, work: Sequence[Work]) -> None:
        """Results arrive as they finish; list them as the work was given."""
        order = {str(w.source): k for k, w in enumerate(work)}
        self.results.sort(key=lambda r: order.get(r.source, len(order)))


def _content_id(path) -> str | None:
    """The file's content address now (``video_id_for``'s), or None if it is gone: the store names
    the file by its path, so the path must still hold what was scored when the rows are written."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def keep_all(work: Sequence[Work], scheduler: Scheduler, keeper: Keeper, sink: ResultSink | None = None) -> bool:
    """Every item of ``work`` scored by ``scheduler`` and kept by ``keeper``, its results then in
    input order; True if Ctrl-C stopped it (what was finished stays stored).  ``sink``: one that
    wraps the keeper (``flashback score``'s, with bars), so the command keeps exactly this way too."""
    interrupted = scheduler.run(work, sink or keeper)
    keeper.in_order(work)
    return interrupted
