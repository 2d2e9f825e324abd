"""The results store: live rows appended through the store's writers, one transaction per flush."""

from __future__ import annotations

import time

import numpy as np

from ...errors import StoreError
from ...memory.bundle import CaptionTable
from ...scoring.events import Event
from ...scoring.scoring import Segments
from ...store import ResultStore, RunRecord, writers
from ...video.media import EventMedia
from ..causal import EventUpdate
from ..feeds import Outage
from .base import Closed, FeedSession, LiveSink

MAX_PENDING = 20_000  # buffered items (a feed adds about one segments item a second) while the store fails
SAY_EVERY_S = 60.0  # while it keeps failing, a line this often


class LiveStoreSink(LiveSink):
    """Append live rows to the results store, one transaction per flush, so the review app sees them.

    Writes go through ``store.writers``, the same functions the file path uses.  While the store
    refuses writes (locked, disk full, gone read-only) rows wait in memory and every flush retries:
    the first failure is logged at once, then a line every ``SAY_EVERY_S`` and one when it writes
    again.  The wait is bounded (``MAX_PENDING`` items): the oldest segment scores go first, then
    superseded feed statistics, never events, outages, clips or a feed's own rows; what was dropped
    is counted and said.
    """

    def __init__(self, store: ResultStore, run: RunRecord, flush_every_s: float = 2.0, retention_days: float | None = None,
                 prune_every_s: float = 3600.0, log=lambda m: None):
        self.store, self.run, self.flush_every_s, self.log = store, run, flush_every_s, log
        self.write_s: list[float] = []  # the last flushes' seconds (the service's metrics take them)
        self._pending: list[tuple[str, object]] = []  # ("segments", (video_id, Segments, captions, fps)) or ("write", fn)
        self._last_flush = 0.0
        self.last_error = ""  # why the last flush failed (its rows are still buffered)
        self.dropped = {"segments": 0, "stats": 0}  # items given up while the store failed
        self._failing_since: float | None = None
        self._said_at = 0.0
        self.retention_days, self.prune_every_s = retention_days, prune_every_s
        self._last_prune = -float("inf")

    def _queue(self, fn, kind: str = "write") -> None:
        self._pending.append((kind, fn))
        self._bound()

    def _bound(self) -> None:
        """Keep the buffer within ``MAX_PENDING``: the oldest segment scores go first, then feed statistics."""
        over = len(self._pending) - MAX_PENDING
        for kind in ("segments", "stats"):
            if over <= 0:
                return
            gone = [i for i, (k, _) in enumerate(self._pending) if k == kind][:over]
            if gone:
                drop = set(gone)
                self._pending = [item for i, item in enumerate(self._pending) if i not in drop]
                self.dropped[kind] += len(gone)
                over -= len(gone)

    def start(self, session: FeedSession) -> None:
        rid, vid, spec = self.run.run_id, session.video_id, session.spec
        self._queue(lambda con: writers.write_run(con, self.run))
        local_start = session.started_at.astimezone().replace(tzinfo=None)
        self._queue(lambda con: writers.write_video(con, vid, spec.shown, None, 0.0, 0, started_at=local_start,
                                                    started_from="feed clock"))
        self._queue(lambda con: writers.replace_scoring(con, rid, vid, spec.shown, "segment", 0, 0, 0, None,
                                                        note="live feed",
                                                        region=spec.region.describe() if spec.region else None,
                                                        runtime=self.run.runtime))
        self._queue(lambda con: writers.write_feed(con, vid, spec.name, spec.shown,
                                                   session.started_at.astimezone().replace(tzinfo=None)))
        self.flush(force=True)

    def segments(self, session: FeedSession, segments: Segments, captions: CaptionTable,
                 frames_per_s: float | None) -> None:
        self._pending.append(("segments", (session.video_id, segments, captions, frames_per_s)))
        self._bound()

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        rid, vid, e = self.run.run_id, session.video_id, update.event
        self._queue(lambda con: writers.write_event(con, rid, vid, e))
        self.flush(force=True)

    def media(self, session: FeedSession, event: Event, media: EventMedia) -> None:
        rid, vid = self.run.run_id, session.video_id
        self._queue(lambda con: writers.write_event_media(con, rid, vid, media))
        self.flush(force=True)

    def outage(self, session: FeedSession, outage: Outage, started: bool) -> None:
        vid, o = session.video_id, outage
        self._queue(lambda con: writers.write_outage(con, vid, o.feed, o.start_s, o.end_s, o.reason, o.attempts))
        self.flush(force=True)

    def feed_stats(self, session: FeedSession, stats: dict, active: bool) -> None:
        rid, vid = self.run.run_id, session.video_id
        self._queue(lambda con: writers.update_feed_stats(con, vid, stats, active), "stats")
        self._queue(lambda con: writers.set_live_counts(con, rid, vid, stats["samples_encoded"]), "stats")

    def depth(self) -> tuple[str, int]:
        return "store", len(self._pending)

    def tick(self) -> None:
        """Write buffered segment scores every ``flush_every_s``; apply the retention every ``prune_every_s``."""
        self.flush()
        if self.retention_days is not None and time.monotonic() - self._last_prune >= self.prune_every_s:
            self._last_prune = time.monotonic()
            self.prune()

    def prune(self) -> None:
        """What is older than the retention goes (``ResultStore.prune``: verdicts and their events stay)."""
        try:
            r = self.store.prune(self.retention_days)
        except StoreError as e:
            self.log(f"retention: not applied this time ({e})")
            return
        if any(r.rows.values()) or r.files:
            self.log(f"retention: deleted {sum(r.rows.values()):,} row(s) and {r.files} media file(s) "
                     f"older than {self.retention_days:g} day(s)")

    def flush(self, force: bool = False) -> bool:
        """Write everything buffered in one transaction; on a lock or error keep it for the next try."""
        if not self._pending or (not force and time.monotonic() - self._last_flush < self.flush_every_s):
            return True
        self._last_flush = time.monotonic()
        batch = self._pending
        try:
            with self.store.transaction() as con:
                i = 0
                while i < len(batch):
                    kind, item = batch[i]
                    if kind != "segments":
                        item(con)
                        i += 1
                        continue
                    j = i  # a run of segments: a few bulk inserts, not rows one by one
                    while j < len(batch) and batch[j][0] == "segments":
                        j += 1
                    self._write_segments(con, [it for _, it in batch[i:j]])
                    i = j
        except StoreError as e:
            self.last_error = str(e)
            self._failing(len(batch))
            return False
        self._pending = self._pending[len(batch):]
        self.write_s.append(time.monotonic() - self._last_flush)
        del self.write_s[:-100]
        if self._failing_since is not None:
            lost = self._lost()
            self.log(f"{self.store.path}: writing again after {time.monotonic() - self._failing_since:.0f} s; "
                     f"{len(batch):,} buffered item(s) written" + (f", {lost} dropped meanwhile" if lost else ""))
            self._failing_since = None
        return True

    def _failing(self, pending: int) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since, self._said_at = now, now
            self.log(f"{self.store.path}: cannot write live results ({self.last_error}); keeping them in memory and "
                     f"retrying (at most {MAX_PENDING:,} items; the oldest scores are dropped first)")
        elif now - self._said_at >= SAY_EVERY_S:
            self._said_at = now
            lost = self._lost()
            self.log(f"{self.store.path}: still cannot write, for {now - self._failing_since:.0f} s ({self.last_error}); "
                     f"{pending:,} item(s) waiting" + (f", {lost} dropped" if lost else ""))

    def _lost(self) -> str:
        parts = [f"{n:,} {'segment batch(es)' if k == 'segments' else 'statistics update(s)'}"
                 for k, n in self.dropped.items() if n]
        return " and ".join(parts)

    def _write_segments(self, con, items: list[tuple]) -> None:
        rid = self.run.run_id
        segs = Segments.concat([s for _, s, _, _ in items])
        vids = np.concatenate([np.full(len(s), v, dtype=object) for v, s, _, _ in items])
        writers.insert_frame_scores(con, rid, vids, segs.index, segs.spans[:, 1], segs.scores, segs.smoothed)
        writers.insert_segments(con, rid, vids, segs, items[0][2])
        writers.insert_segment_vectors(con, rid, vids, segs)
        for vid, s, _, fps in items:
            writers.add_live_progress(con, rid, vid, s, fps)

    def close(self) -> Closed:
        """Final flush, retried for a few seconds if another process holds the file."""
        deadline = time.monotonic() + 15
        while not self.flush(force=True):
            if time.monotonic() > deadline:
                lost = self._lost()
                return Closed(problem=f"{self.store.path}: could not write the last results ({self.last_error})"
                                      + (f"; {lost} had been dropped while it failed" if lost else ""))
            time.sleep(0.5)
        return Closed()
