"""Where live results go: JSON lines, the DuckDB store, a webhook; each one a ``LiveSink``.

Sinks are called from the watcher's one loop thread only (the webhook posts from its own thread).
None of them may lose what it was handed: the store keeps rows buffered while the file is locked
or a write fails and writes them at the next flush; the webhook keeps every undelivered update in
an outbox file on disk from the moment it is queued until it is delivered, so neither a receiver
that is down nor a kill -9 loses one, and the next watch sends what is left first.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

import numpy as np

from ..atomic import atomic_write_text
from ..errors import StoreError, first_line
from ..memory.bundle import CaptionTable
from ..scoring.events import Event
from ..scoring.scoring import Segments
from ..store import ResultStore, RunRecord, writers
from ..video.media import EventMedia
from .causal import EventUpdate
from .feeds import Backoff, FeedSpec, Outage

if TYPE_CHECKING:
    from .packets import PacketRing


@dataclass
class FeedSession:
    """One feed for the length of one watch: the unit stored as a 'video'."""

    spec: FeedSpec
    video_id: str
    started_at: datetime  # UTC wall time of feed time 0
    packets: PacketRing | None = None  # its recent packets, for event clips (None: no clips kept)


class LiveSink(Protocol):
    """What the watcher hands its outputs, in order, from its one thread.  Each method does
    nothing unless a sink overrides it (subclass this to write a new output)."""

    def start(self, session: FeedSession) -> None:
        """A feed starts (before any of its segments)."""

    def segments(self, session: FeedSession, segments: Segments, captions: CaptionTable,
                 frames_per_s: float | None) -> None:
        """Newly scored segments of one feed, with their causally smoothed scores."""

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        """An event opened or closed."""

    def outage(self, session: FeedSession, outage: Outage, started: bool) -> None:
        """A feed was lost (``started``), is back (``end_s`` set), or is still down at the end."""

    def feed_stats(self, session: FeedSession, stats: dict, active: bool) -> None:
        """Per-feed counters and latency, every ``--stats-every`` seconds and at the end."""

    def media(self, session: FeedSession, event: Event, media: EventMedia) -> None:
        """An event's clip and thumbnail are written (some time after it closed), or could not be."""

    def tick(self) -> None:
        """Called every watcher round, for time-based work."""


class JsonLinesSink(LiveSink):
    """One JSON object per line, flushed as written, so `tail -f` or a pipe sees events at once."""

    def __init__(self, target: Path | None):
        self._own = target is not None
        self._f: TextIO = open(target, "a", encoding="utf-8") if target is not None else sys.stdout

    def write(self, doc: dict) -> None:
        self._f.write(json.dumps(doc) + "\n")
        self._f.flush()

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        e = update.event
        self.write({**update.to_dict(), "video_id": session.video_id,
                    "wall_time": _wall(session, e.end_s if update.kind == "closed" else e.start_s)})

    def outage(self, session: FeedSession, outage: Outage, started: bool) -> None:
        if started or outage.end_s is not None:
            self.write({"type": "outage_started" if started else "outage_ended", "feed": outage.feed,
                        "video_id": session.video_id, "start_s": round(outage.start_s, 3),
                        "end_s": None if outage.end_s is None else round(outage.end_s, 3),
                        "reason": outage.reason, "attempts": outage.attempts,
                        "wall_time": _wall(session, outage.start_s if started else outage.end_s)})

    def feed_stats(self, session: FeedSession, stats: dict, active: bool) -> None:
        self.write({"type": "feed_stats", "video_id": session.video_id, "active": active, **stats})

    def media(self, session: FeedSession, event: Event, media: EventMedia) -> None:
        self.write(media_doc(session, event, media))

    def close(self) -> None:
        if self._own:
            self._f.close()


def media_doc(session: FeedSession, event: Event, m: EventMedia, folder: Path | None = None) -> dict:
    """An event's media as the JSON outputs say it: paths relative to the media folder, or under
    ``folder`` when given."""
    where = (lambda rel: rel and str(folder / rel)) if folder is not None else (lambda rel: rel)
    return {"type": "event_media", "feed": session.spec.name, "event": event.index,
            "event_key": f"{session.spec.name}/{event.index}", "video_id": session.video_id,
            "clip": where(m.clip), "clip_start_s": m.clip_start_s, "clip_end_s": m.clip_end_s,
            "thumbnail": where(m.thumb), "thumbnail_s": m.thumb_s, **({"note": m.note} if m.note else {})}


def _wall(session: FeedSession, t_s: float) -> str:
    return datetime.fromtimestamp(session.started_at.timestamp() + t_s, timezone.utc).isoformat(timespec="milliseconds")


class LiveStoreSink(LiveSink):
    """Append live rows to the results store, one transaction per flush, so the review app sees them.

    Writes go through ``store.writers``, the same functions the file path uses.
    """

    def __init__(self, store: ResultStore, run: RunRecord, flush_every_s: float = 2.0, retention_days: float | None = None,
                 prune_every_s: float = 3600.0, log=lambda m: None):
        self.store, self.run, self.flush_every_s, self.log = store, run, flush_every_s, log
        self._pending: list[tuple[str, object]] = []  # ("segments", (video_id, Segments, captions, fps)) or ("write", fn)
        self._last_flush = 0.0
        self.last_error = ""  # why the last flush failed (its rows are still buffered)
        self.retention_days, self.prune_every_s = retention_days, prune_every_s
        self._last_prune = -float("inf")

    def _queue(self, fn) -> None:
        self._pending.append(("write", fn))

    def start(self, session: FeedSession) -> None:
        rid, vid, spec = self.run.run_id, session.video_id, session.spec
        self._queue(lambda con: writers.write_run(con, self.run))
        self._queue(lambda con: writers.write_video(con, vid, spec.location, None, 0.0, 0))
        self._queue(lambda con: writers.replace_scoring(con, rid, vid, spec.location, "segment", 0, 0, 0, None,
                                                        note="live feed",
                                                        region=spec.region.describe() if spec.region else None))
        self._queue(lambda con: writers.write_feed(con, vid, spec.name, spec.location,
                                                   session.started_at.astimezone().replace(tzinfo=None)))
        self.flush(force=True)

    def segments(self, session: FeedSession, segments: Segments, captions: CaptionTable,
                 frames_per_s: float | None) -> None:
        self._pending.append(("segments", (session.video_id, segments, captions, frames_per_s)))

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
        self._queue(lambda con: writers.update_feed_stats(con, vid, stats, active))
        self._queue(lambda con: writers.set_live_counts(con, rid, vid, stats["samples_encoded"]))

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
                    if kind == "write":
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
            return False
        self._pending = self._pending[len(batch):]
        return True

    def _write_segments(self, con, items: list[tuple]) -> None:
        rid = self.run.run_id
        segs = Segments.concat([s for _, s, _, _ in items])
        vids = np.concatenate([np.full(len(s), v, dtype=object) for v, s, _, _ in items])
        writers.insert_frame_scores(con, rid, vids, segs.index, segs.spans[:, 1], segs.scores, segs.smoothed)
        writers.insert_segments(con, rid, vids, segs, items[0][2])
        writers.insert_segment_vectors(con, rid, vids, segs)
        for vid, s, _, fps in items:
            writers.add_live_progress(con, rid, vid, s, fps)

    def close(self) -> bool:
        """Final flush, retried for a few seconds if another process holds the file."""
        deadline = time.monotonic() + 15
        while not self.flush(force=True):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True


class WebhookSink(LiveSink):
    """POST each event update as JSON; retry with backoff until delivered, in order, at least once.

    Each POST carries an ``Idempotency-Key`` header, ``<event uid>/<event_opened|event_closed>``: the
    uid is random per event, so a receiver that drops repeats never drops a new incident.
    Undelivered updates live in the outbox file (rewritten atomically whenever the queue changes,
    removed once it is empty); a watch that starts sends an earlier watch's outbox first.
    """

    def __init__(self, url: str, outbox: Path, timeout_s: float = 5.0, backoff: Backoff | None = None,
                 log=lambda m: None):
        self.url, self.outbox, self.timeout_s, self.log = url, Path(outbox), timeout_s, log
        self.backoff = backoff or Backoff(0.5, 30.0)
        self._pending: deque[dict] = deque(self._read_outbox())
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def _read_outbox(self) -> list[dict]:
        """What an earlier watch could not deliver; a damaged outbox is named and set aside, not lost."""
        if not self.outbox.is_file():
            return []
        docs = []
        try:
            for lineno, line in enumerate(self.outbox.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    doc = json.loads(line)
                    if not isinstance(doc, dict):
                        raise ValueError(f"line {lineno} is not a JSON object")
                    docs.append(doc)
        except (ValueError, UnicodeDecodeError) as e:
            aside = self.outbox.with_name(f"{self.outbox.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            self.outbox.rename(aside)
            self.log(f"webhook outbox {self.outbox}: not readable ({first_line(e)[:120]}); set aside as {aside}")
            return []
        if docs:
            self.log(f"webhook: {len(docs)} update(s) left by an earlier watch in {self.outbox}; sending them first")
        return docs

    def _persist(self) -> None:
        """The outbox mirrors the queue (called under the lock)."""
        if self._pending:
            atomic_write_text(self.outbox, "".join(json.dumps(d) + "\n" for d in self._pending))
        elif self.outbox.exists():
            self.outbox.unlink()

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        with self._lock:
            self._pending.append({**update.to_dict(), "video_id": session.video_id})
            self._persist()
            self._lock.notify()

    @staticmethod
    def idempotency_key(doc: dict) -> str:
        return f"{doc.get('event_uid') or doc.get('event_key')}/{doc.get('type')}"

    def _post(self, doc: dict) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(doc).encode(), method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": self.idempotency_key(doc)})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
            if not 200 <= r.status < 300:
                raise urllib.error.HTTPError(self.url, r.status, "not 2xx", r.headers, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stop.is_set():
                    self._lock.wait(0.1)
                if not self._pending:
                    return
                head = self._pending[0]
            try:
                self._post(head)
            except (urllib.error.URLError, OSError, ValueError) as e:
                self.failures += 1
                if self.failures == 1 or self.failures % 10 == 0:
                    self.log(f"webhook {self.url}: {getattr(e, 'reason', e)}; retrying")
                if self._stop.wait(self.backoff.next_delay()):
                    return
                continue
            with self._lock:
                self._pending.popleft()
                self._persist()
            self.backoff.reset()

    def close(self, drain_s: float = 5.0) -> int:
        """Give the queue ``drain_s`` to empty; what is left stays in the outbox. Returns its length."""
        deadline = time.monotonic() + drain_s
        if self._pending:
            self.log(f"webhook: delivering {len(self._pending)} update(s) before exit (up to {drain_s:g} s)")
        while time.monotonic() < deadline and self._pending and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1)
        with self._lock:
            self._persist()
            return len(self._pending)
