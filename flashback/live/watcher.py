"""The watch loop: many feeds, one encoder call per batch, one retrieval per round.

Each round takes every feed's queued grid samples, encodes one chunk of the oldest that can still
make the latency budget (frames of all feeds together; the rest wait or are dropped), adds them to
their feed's open segments, closes every segment whose samples have all arrived or can no longer
come, retrieves for all closed segments of all feeds at once, then scores them causally and hands
segments, events and outages to the sinks.  Samples from all
feeds share a batch, so a GPU's throughput grows with the number of feeds until it is saturated.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..bundle import MemoryBundle
from ..pipeline import Detector
from ..scoring import segment_scores
from ..settings import ScoringSettings
from .causal import CausalSmoother, EventUpdate, OnlineEvents, ScoredSegment
from .feeds import Backoff, FeedReader, FeedSpec, Outage, Sample
from .sinks import FeedSession


CLOSE_GRACE_S = 0.25
CHUNK_SHARE = 0.25  # of the latency budget, the most one encoder call may take


@dataclass(frozen=True)
class WatchConfig:
    max_latency_s: float = 1.0  # budget from frame capture to its segment's score
    batch_size: int = 64
    queue_len: int = 64  # grid samples buffered per feed before the oldest is dropped
    read_timeout_s: float = 5.0  # a feed silent this long counts as stalled and is reopened
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    stats_every_s: float = 10.0
    duration_s: float | None = None  # stop after this long (None: until every feed ends or a signal)


@dataclass
class FeedState:
    session: FeedSession
    reader: FeedReader
    smoother: CausalSmoother
    events: OnlineEvents
    held: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)  # sample -> (vector, captured_at)
    next_segment: int = 0
    segments_scored: int = 0
    segments_lost: int = 0
    samples_encoded: int = 0
    samples_late: int = 0  # taken in time, but could no longer be scored within the budget
    latencies: deque = field(default_factory=lambda: deque(maxlen=10_000))  # seconds, the most recent segments

    def stats(self) -> dict:
        lat = np.array(self.latencies) if self.latencies else None
        q = (lambda p: None if lat is None else round(float(np.percentile(lat, p)), 4))
        st = self.reader.stats
        return {"feed": self.session.spec.name, "segments_scored": self.segments_scored, "segments_lost": self.segments_lost,
                "frames_decoded": st.frames_decoded, "samples_encoded": self.samples_encoded,
                "samples_dropped": st.samples_dropped + self.samples_late, "reconnects": st.reconnects, "outages": len(st.outages),
                "latency_p50_s": q(50), "latency_p95_s": q(95), "latency_max_s": None if lat is None else round(float(lat.max()), 4)}


class Watcher:
    def __init__(self, memory: MemoryBundle, encoder, settings: ScoringSettings, feeds: list[FeedSpec],
                 sinks: list, config: WatchConfig = WatchConfig(), log: Callable[[str], None] = lambda m: None):
        names = [f.name for f in feeds]
        if len(set(names)) != len(names):
            raise ValueError(f"feed names must be unique (got {', '.join(names)})")
        self.detector = Detector(memory, encoder, settings)
        self.settings, self.grid = self.detector.settings, self.detector.grid
        self.memory, self.encoder, self.config, self.sinks, self.log = memory, encoder, config, sinks, log
        self.specs = feeds
        self._outages: queue.Queue = queue.Queue()
        self._pending: list[Sample] = []  # taken from the readers, not yet encoded
        self._rate: float | None = None  # encoder frames/s, measured (moving average)
        self.stop_event = threading.Event()
        self.feeds: dict[str, FeedState] = {}
        self.stuck_readers: list[str] = []  # feeds whose reader thread was still blocked at shutdown

    @property
    def delays(self) -> dict:
        """What causal scoring adds, stated once at start (and in the JSON lines)."""
        s = self.settings
        return {"segment_s": s.segment_s, "smoothing_lag_s": round(CausalSmoother(s.smoothing_sigma_s).lag_s, 3),
                "event_open_after_s": s.min_event_s, "event_close_after_s": s.merge_gap_s}

    def _start_feeds(self) -> None:
        t0 = time.monotonic()
        started = datetime.now(timezone.utc)
        s = self.settings
        for spec in self.specs:
            vid = "live-{}-{}-{}".format(spec.name, hashlib.sha256(spec.location.encode()).hexdigest()[:8],
                                         started.strftime("%Y%m%dT%H%M%SZ"))
            session = FeedSession(spec, vid, started)
            reader = FeedReader(spec, self.encoder.image_size, self.grid.step_s, t0, self.config.queue_len,
                                self.config.read_timeout_s, Backoff(self.config.backoff_base_s, self.config.backoff_cap_s),
                                on_outage=self._outages.put, log=self.log)
            self.feeds[spec.name] = FeedState(session, reader, CausalSmoother(s.smoothing_sigma_s),
                                              OnlineEvents(spec.name, s.threshold, s.min_event_s, s.merge_gap_s,
                                                           self.memory.captions, self.grid.stride_s))
            self._emit("start", session)
        for fs in self.feeds.values():
            fs.reader.start()

    def _emit(self, what: str, session: FeedSession, *args) -> None:
        for sink in self.sinks:
            fn = getattr(sink, what, None)
            if fn is not None:
                fn(session, *args)

    def run(self) -> dict[str, dict]:
        """Until every feed has ended, ``duration_s`` has passed, or ``stop_event`` is set."""
        self._start_feeds()
        started = time.monotonic()
        last_stats = started
        try:
            while not self.stop_event.is_set():
                if self.config.duration_s is not None and time.monotonic() - started >= self.config.duration_s:
                    break
                busy = self._round()
                self._drain_outages()
                for sink in self.sinks:  # time-based work of the sinks (the store's periodic flush)
                    tick = getattr(sink, "tick", None)
                    if tick is not None:
                        tick()
                if time.monotonic() - last_stats >= self.config.stats_every_s:
                    last_stats = time.monotonic()
                    self._stats(active=True)
                if not busy and all(fs.reader.finished.is_set() for fs in self.feeds.values()):
                    break  # every feed ended (files); _shutdown scores what they left behind
                if not busy:
                    self.stop_event.wait(0.01)
        finally:
            self._shutdown()
        return {name: fs.stats() for name, fs in self.feeds.items()}

    # ------------------------------------------------------------ one round

    def _round(self) -> bool:
        """Encode one chunk of the oldest fresh samples, then close and score what can be closed.

        The chunk is sized from the encoder's measured speed so that encoding it takes at most
        ``CHUNK_SHARE`` of the latency budget; samples that could no longer be encoded within the
        budget are dropped (counted).  Everything else waits in ``_pending`` for the next round, so
        an overloaded machine sheds frames instead of letting latency grow.
        """
        limits: dict[str, int] = {}
        for name, fs in self.feeds.items():
            # Read before take(): every sample below it is in hand or dropped.  Grid times already
            # past (less a grace for a frame being converted right now) can never get a sample, since
            # readers do not back-fill: a stalled or lost feed still closes its segments on time.
            r = fs.reader
            by_clock = int((r.now_s() - CLOSE_GRACE_S) / self.grid.step_s - 0.5)
            limits[name] = r.next_index if r.finished.is_set() else max(r.next_index, by_clock)
            self._pending += r.take(self.config.max_latency_s)
        n = self._chunk_size()
        # a sample encoded at age a is scored by about a + 2 chunk times (its chunk, then the round
        # that closes its segment), so older ones could not make the budget any more
        budget = self.config.max_latency_s
        max_age = max(0.1 * budget, budget - 2 * n / self._rate) if self._rate else budget
        now = time.monotonic()
        fresh = []
        for x in self._pending:
            if now - x.captured_at <= max_age:
                fresh.append(x)
            else:
                self.feeds[x.feed].samples_late += 1
        fresh.sort(key=lambda x: x.captured_at)
        chunk, self._pending = fresh[:n], fresh[n:]
        if chunk:
            t = time.perf_counter()
            vecs = self.encoder.encode_images(np.stack([x.rgb for x in chunk]))
            rate = len(chunk) / max(time.perf_counter() - t, 1e-6)
            self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
            for x, v in zip(chunk, vecs):
                fs = self.feeds[x.feed]
                fs.held[x.index] = (v, x.captured_at)
                fs.samples_encoded += 1
        waiting: dict[str, int] = {}
        for x in self._pending:  # a segment cannot close while one of its samples still waits
            waiting[x.feed] = min(waiting.get(x.feed, x.index), x.index)
        closed: list[tuple[FeedState, int, np.ndarray, float]] = []
        for name, fs in self.feeds.items():
            limit = min(limits[name], waiting.get(name, limits[name]))
            final = fs.reader.finished.is_set() and not fs.reader.queue and name not in waiting
            closed += self._close_segments(fs, limit, final)
        if closed:
            self._score(closed)
        return bool(chunk or closed or self._pending)

    def _chunk_size(self) -> int:
        if self._rate is None:
            return min(self.config.batch_size, 8)  # a first, small call measures the encoder
        return int(np.clip(self._rate * CHUNK_SHARE * self.config.max_latency_s, 1, self.config.batch_size))

    def _close_segments(self, fs: FeedState, limit: int, final: bool) -> list:
        """Segments whose every sample index is below ``limit`` (all in hand or dropped); with
        ``final``, also the partial last one.  A segment with no sample at all is lost, not scored."""
        g = self.grid
        out = []
        while True:
            first = fs.next_segment * g.stride
            last = first + g.frames_per_segment - 1
            if not (last < limit or (final and first < limit)):
                return out
            got = [fs.held[i] for i in range(first, last + 1) if i in fs.held]
            if got:
                v = np.mean([x[0] for x in got], axis=0)
                out.append((fs, fs.next_segment, v / max(float(np.linalg.norm(v)), 1e-12), max(x[1] for x in got)))
            elif fs.segments_scored or out:  # before a feed's first frame nothing is lost
                fs.segments_lost += 1
            fs.next_segment += 1
            for i in range(first, first + g.stride):
                fs.held.pop(i, None)

    def _score(self, closed: list) -> None:
        s, g = self.settings, self.grid
        r = self.detector.searcher.search(np.stack([c[2] for c in closed]).astype(np.float32))
        scores, weights = segment_scores(r, s.logit_scale)
        now = time.monotonic()
        per_feed: dict[str, list[ScoredSegment]] = {}
        for k, (fs, seg, _v, newest) in enumerate(closed):
            start = seg * g.stride_s
            end = start + g.segment_s
            smoothed = fs.smoother.push(end, float(scores[k]))
            ss = ScoredSegment(seg, start, end, float(scores[k]), smoothed, r.ids[k], r.sims[k], weights[k], r.anomalous[k])
            fs.segments_scored += 1
            fs.latencies.append(now - newest)
            per_feed.setdefault(fs.session.spec.name, []).append(ss)
            for u in fs.events.push(ss):
                self._event(fs, u)
        for name, segs in per_feed.items():
            fs = self.feeds[name]
            self._emit("segments", fs.session, segs, self.memory.captions)

    def _event(self, fs: FeedState, u: EventUpdate) -> None:
        self.log(f"feed {u.feed}: event {u.event} {u.kind} at {u.start_s if u.kind == 'opened' else u.end_s:.1f} s "
                 f"({u.explanation.dominant_category or '-'}, peak {u.peak_score:.2f})" + (f", {u.reason}" if u.reason else ""))
        self._emit("event", fs.session, u)

    def _drain_outages(self) -> None:
        while True:
            try:
                o: Outage = self._outages.get_nowait()
            except queue.Empty:
                return
            fs = self.feeds[o.feed]
            for u in fs.events.close("outage"):  # an event cannot be vouched for across a gap
                self._event(fs, u)
            self._emit("outage", fs.session, o)

    def _stats(self, active: bool) -> None:
        for fs in self.feeds.values():
            self._emit("feed_stats", fs.session, fs.stats(), active)

    def _shutdown(self) -> None:
        for fs in self.feeds.values():
            fs.reader.stop()
        self.stuck_readers = [name for name, fs in self.feeds.items()
                              if not fs.reader.join(timeout=self.config.read_timeout_s + 2)]
        for name in self.stuck_readers:
            self.log(f"feed {name}: its reader did not stop within {self.config.read_timeout_s + 2:g} s (blocked in FFmpeg)")
        deadline = time.monotonic() + self.config.max_latency_s + 1.0
        while self._round() and time.monotonic() < deadline:
            pass  # what was decoded before the stop is still scored (or ages out of the budget)
        closed = [seg for fs in self.feeds.values() for seg in self._close_segments(fs, fs.reader.next_index, final=True)]
        if closed:
            self._score(closed)
        self._drain_outages()
        for fs in self.feeds.values():
            reason = "feed ended" if fs.reader.finished.is_set() and not self.stop_event.is_set() else "shutdown"
            for u in fs.events.close(reason):
                self._event(fs, u)
        self._stats(active=False)
