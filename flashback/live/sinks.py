"""Where live results go: JSON lines, the DuckDB store, a webhook.

Sinks are called from the watcher's one loop thread only (the webhook posts from its own thread).
None of them may lose what it was handed: the store keeps rows buffered while the file is locked
by someone else and writes them at the next flush; the webhook retries with backoff and, at
shutdown, writes what it could not deliver to an outbox file that the next watch sends first.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import duckdb
import numpy as np

from ..bundle import CaptionTable
from ..errors import StoreError
from ..scoring import explain
from ..store import ResultStore, RunRecord, insert_frame_scores, insert_segment_rows
from .causal import EventUpdate, ScoredSegment
from .feeds import Backoff, FeedSpec, Outage


@dataclass
class FeedSession:
    """One feed for the length of one watch: the unit stored as a 'video'."""

    spec: FeedSpec
    video_id: str
    started_at: datetime  # UTC wall time of feed time 0


class JsonLinesSink:
    """One JSON object per line, flushed as written, so `tail -f` or a pipe sees events at once."""

    def __init__(self, target: Path | None):
        self._own = target is not None
        self._f: TextIO = open(target, "a", encoding="utf-8") if target is not None else sys.stdout

    def write(self, doc: dict) -> None:
        self._f.write(json.dumps(doc) + "\n")
        self._f.flush()

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        self.write({**update.to_dict(), "video_id": session.video_id,
                    "wall_time": _wall(session, update.end_s if update.kind == "closed" else update.start_s)})

    def outage(self, session: FeedSession, outage: Outage) -> None:
        self.write({"type": "outage", "feed": outage.feed, "video_id": session.video_id,
                    "start_s": round(outage.start_s, 3), "end_s": None if outage.end_s is None else round(outage.end_s, 3),
                    "reason": outage.reason, "attempts": outage.attempts})

    def feed_stats(self, session: FeedSession, stats: dict, active: bool) -> None:
        self.write({"type": "feed_stats", "video_id": session.video_id, "active": active, **stats})

    def close(self) -> None:
        if self._own:
            self._f.close()


def _wall(session: FeedSession, t_s: float) -> str:
    return datetime.fromtimestamp(session.started_at.timestamp() + t_s, timezone.utc).isoformat(timespec="milliseconds")


class LiveStoreSink:
    """Append live rows to the results store, one transaction per flush, so the review app sees them."""

    def __init__(self, store: ResultStore, run: RunRecord, flush_every_s: float = 2.0):
        self.store, self.run, self.flush_every_s = store, run, flush_every_s
        self._pending: list[tuple[str, tuple]] = []
        self._last_flush = 0.0
        self.write_errors = 0
        self.last_error = ""

    def start(self, session: FeedSession) -> None:
        rid, vid = self.run.run_id, session.video_id
        now = session.started_at.replace(tzinfo=None)
        self._queue("run", (rid, json.dumps(self.run.settings, sort_keys=True), self.run.memory_id,
                            self.run.memory_path, self.run.encoder_id, self.run.flashback_version))
        self._queue("video", (vid, session.spec.location))
        self._queue("feed", (vid, session.spec.name, session.spec.location, now))
        self.flush(force=True)

    def segments(self, session: FeedSession, segs: list[ScoredSegment], captions) -> None:
        for s in segs:
            self._queue("segment", (session.video_id, s, captions))

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        self._queue("event", (session.video_id, update))
        self.flush(force=True)

    def outage(self, session: FeedSession, outage: Outage) -> None:
        self._queue("outage", (session.video_id, outage))
        self.flush(force=True)

    def feed_stats(self, session: FeedSession, stats: dict, active: bool) -> None:
        self._queue("stats", (session.video_id, stats, active))

    def tick(self) -> None:
        """Called every watcher round: write buffered segment scores every ``flush_every_s``."""
        self.flush()

    def _queue(self, kind: str, row: tuple) -> None:
        self._pending.append((kind, row))

    def flush(self, force: bool = False) -> bool:
        """Write everything buffered in one transaction; on a lock or error keep it for the next try."""
        if not self._pending or (not force and time.monotonic() - self._last_flush < self.flush_every_s):
            return True
        self._last_flush = time.monotonic()
        batch = self._pending
        try:
            with self.store.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    rid, i = self.run.run_id, 0
                    while i < len(batch):
                        kind, row = batch[i]
                        if kind == "segment":  # a run of segments: a few bulk inserts, not rows one by one
                            j = i
                            while j < len(batch) and batch[j][0] == "segment":
                                j += 1
                            _w_segments(con, rid, [r for _, r in batch[i:j]])
                            i = j
                            continue
                        _WRITERS[kind](con, rid, *row)
                        i += 1
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        except (StoreError, OSError, duckdb.Error) as e:
            self.write_errors += 1
            self.last_error = str(e)
            return False
        self._pending = self._pending[len(batch):]
        return True

    def close(self) -> bool:
        """Final flush, retried for a few seconds if another process holds the file."""
        deadline = time.monotonic() + 15
        while not self.flush(force=True):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True


def _w_run(con, rid, _rid, settings, memory_id, memory_path, encoder_id, version):
    con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, now()) ON CONFLICT (run_id) DO NOTHING",
                [rid, settings, memory_id, memory_path, encoder_id, version])


def _w_video(con, rid, vid, location):
    con.execute("""INSERT INTO videos VALUES (?, ?, NULL, 0, 0, NULL, NULL, NULL, now())
                   ON CONFLICT (video_id) DO UPDATE SET updated_at = excluded.updated_at""", [vid, location])
    con.execute("DELETE FROM scorings WHERE run_id = ? AND video_id = ?", [rid, vid])
    con.execute("INSERT INTO scorings VALUES (?, ?, ?, now(), false, 'live feed', 0, 0, 0, NULL)", [rid, vid, location])


def _w_feed(con, rid, vid, feed, location, started):
    con.execute("""INSERT INTO live_feeds VALUES (?, ?, ?, ?, now(), true, 0, 0, 0, 0, 0, NULL, NULL, NULL)
                   ON CONFLICT (video_id) DO NOTHING""", [vid, feed, location, started])


def _w_segments(con, rid, items: list[tuple[str, ScoredSegment, CaptionTable]]) -> None:
    """Scored segments of any feeds in bulk, through the store's own row writers."""
    vids = np.array([v for v, _, _ in items], dtype=object)
    segs = [s for _, s, _ in items]
    captions = items[0][2]
    index = np.array([s.index for s in segs], np.int32)
    spans = np.array([[s.start_s, s.end_s] for s in segs])
    ends = spans[:, 1]
    raw = np.array([s.raw for s in segs])
    ids, sims, weights = (np.stack([getattr(s, k) for s in segs]) for k in ("ids", "sims", "weights"))
    anomalous = np.stack([s.anomalous for s in segs])
    dominant = [explain(s.ids, s.sims, s.weights, captions).dominant_category for s in segs]
    insert_frame_scores(con, rid, vids, index, ends, raw, [s.score for s in segs])
    insert_segment_rows(con, rid, vids, index, spans, raw, dominant, ids, sims, weights, anomalous, captions)
    for vid in dict.fromkeys(vids):
        mine = vids == vid
        con.execute("""UPDATE scorings SET n_segments = n_segments + ?, max_score = greatest(coalesce(max_score, 0), ?),
                       scored_at = now() WHERE run_id = ? AND video_id = ?""",
                    [int(mine.sum()), float(max(s.score for s, m in zip(segs, mine) if m)), rid, vid])
        con.execute("UPDATE videos SET duration_s = ?, n_frames = ?, updated_at = now() WHERE video_id = ?",
                    [float(ends[mine].max()), int(index[mine].max()) + 1, vid])


def _w_event(con, rid, vid, u: EventUpdate):
    con.execute("DELETE FROM events WHERE run_id = ? AND video_id = ? AND event = ?", [rid, vid, u.event])
    e = u.explanation
    con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [rid, vid, u.event, u.start_s, u.end_s, u.start_segment, u.end_segment, u.peak_score,
                 u.peak_segment, u.peak_s, e.dominant_category, e.anomalous_weight, e.normal_weight,
                 json.dumps([c.to_dict() for c in e.captions])])
    con.execute("""UPDATE scorings SET n_events = (SELECT count(*) FROM events WHERE run_id = ? AND video_id = ?)
                   WHERE run_id = ? AND video_id = ?""", [rid, vid, rid, vid])


def _w_outage(con, rid, vid, o: Outage):
    con.execute("INSERT INTO outages VALUES (?, ?, ?, ?, ?, ?)", [vid, o.feed, o.start_s, o.end_s, o.reason, o.attempts])


def _w_stats(con, rid, vid, st: dict, active: bool):
    con.execute("""UPDATE live_feeds SET updated_at = now(), active = ?, segments_scored = ?, segments_lost = ?,
                   frames_decoded = ?, samples_dropped = ?, reconnects = ?, latency_p50_s = ?, latency_p95_s = ?,
                   latency_max_s = ? WHERE video_id = ?""",
                [active, st["segments_scored"], st["segments_lost"], st["frames_decoded"], st["samples_dropped"],
                 st["reconnects"], st["latency_p50_s"], st["latency_p95_s"], st["latency_max_s"], vid])
    con.execute("UPDATE scorings SET n_samples = ? WHERE run_id = ? AND video_id = ?", [st["samples_encoded"], rid, vid])


_WRITERS = {"run": _w_run, "video": _w_video, "feed": _w_feed, "event": _w_event,
            "outage": _w_outage, "stats": _w_stats}


class WebhookSink:
    """POST each event update as JSON; retry with backoff until delivered, in order, at least once.

    Each POST carries an ``Idempotency-Key`` header (feed/event/kind): a receiver that saw a POST
    whose answer was lost can drop the repeat.
    """

    def __init__(self, url: str, outbox: Path, timeout_s: float = 5.0, backoff: Backoff | None = None,
                 log=lambda m: None):
        self.url, self.outbox, self.timeout_s, self.log = url, Path(outbox), timeout_s, log
        self.backoff = backoff or Backoff(0.5, 30.0)
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.delivered = 0
        self.failures = 0
        if self.outbox.is_file():  # left over from an earlier watch: send those first, in order
            for line in self.outbox.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self._q.put(json.loads(line))
            self.outbox.unlink()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        self._q.put({**update.to_dict(), "video_id": session.video_id})

    def _post(self, doc: dict) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(doc).encode(), method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": f"{doc.get('event_key')}/{doc.get('type')}"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
            if not 200 <= r.status < 300:
                raise urllib.error.HTTPError(self.url, r.status, "not 2xx", r.headers, None)

    def _run(self) -> None:
        head = None
        while True:
            if head is None:
                try:
                    head = self._q.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
            try:
                self._post(head)
                self.delivered += 1
                self.backoff.reset()
                head = None
            except (urllib.error.URLError, OSError, ValueError) as e:
                self.failures += 1
                if self.failures == 1 or self.failures % 10 == 0:
                    self.log(f"webhook {self.url}: {getattr(e, 'reason', e)}; retrying")
                if self._stop.wait(self.backoff.next_delay()):
                    self._q.queue.appendleft(head)  # keep it first for the outbox
                    return

    def close(self, drain_s: float = 5.0) -> int:
        """Give the queue ``drain_s`` to empty; write what is left to the outbox. Returns its length."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and (self._q.qsize() or self._thread.is_alive() and self._busy()):
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1)
        left = list(self._q.queue)
        if left:
            with open(self.outbox, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(d) + "\n" for d in left)
        return len(left)

    def _busy(self) -> bool:
        return self.backoff.attempt > 0
