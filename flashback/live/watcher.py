"""The watch loop: many feeds, one encoder call per batch, one retrieval per round.

Each round takes every feed's queued grid samples, encodes one chunk of the oldest that can still
make the latency budget (frames of all feeds together; the rest wait or are dropped), adds them to
their feed's open segments, closes every segment whose samples have all arrived or can no longer
come, retrieves for all closed segments of all feeds at once, then scores them causally and hands
segments, events and outages to the sinks.  Samples from all
feeds share a batch, so a GPU's throughput grows with the number of feeds until it is saturated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ..checks import COUNT, POSITIVE, Range, check_fields, knob, raise_problems
from ..encoders.protocols import ImageEncoder, encode_views
from ..memory.bundle import MemoryBundle
from ..memory.extras import Extras
from ..scoring.pipeline import Detector
from ..scoring.scoring import score_views
from ..settings import ScoringSettings
from ..store import RunRecord
from ..video.cameras import UserText
from ..video.media import CONTEXT_S
from ..video.timegrid import pool
from .causal import CausalSmoother, EventUpdate, OnlineEvents
from .feeds import Backoff, FeedReader, FeedSpec, Outage, Sample, check_unique_names
from .health import ADVICE, Capacity, FeedHealth, measure_capacity
from .packets import PacketRing
from .sinks import FeedSession, LiveSink
from .state import FeedState

CLOSE_GRACE_S = 0.25
CHUNK_SHARE = 0.25  # of the latency budget, the most one encoder call may take
READER_STOP_WAIT_S = 1.0  # at shutdown, how long a reader blocked inside FFmpeg is waited for


@dataclass(frozen=True)
class WatchConfig:
    max_latency_s: float = knob(1.0, Range(0.05, 3600), "--max-latency")  # frame capture to its segment's score
    batch_size: int = knob(64, Range(1, 65_536, integer=True), "--batch-size")
    queue_len: int = knob(64, COUNT)  # grid samples buffered per feed before the oldest is dropped
    read_timeout_s: float = knob(5.0, Range(0.1, 3600), "--read-timeout")  # a silent feed counts as stalled
    backoff_base_s: float = knob(0.5, POSITIVE)
    backoff_cap_s: float = knob(30.0, Range(0.01, 86_400), "--reconnect-max")
    stats_every_s: float = knob(10.0, Range(0.1, 86_400), "--stats-every")
    duration_s: float | None = knob(None, POSITIVE, "--duration", optional=True)  # None: until the feeds end or a signal
    clips: bool = False  # keep a ring of each feed's packets, for event clips (live/sinks/media.py)
    hwaccel: str | None = None  # the hardware decoder feeds are decoded on (decode.open_input); None: software
    review_url: str | None = None  # the review app's public address: event messages link to their page

    def __post_init__(self) -> None:
        raise_problems(check_fields(self), "watch")


class Watcher:
    def __init__(self, memory: MemoryBundle, encoder: ImageEncoder, settings: ScoringSettings, feeds: list[FeedSpec],
                 sinks: list[LiveSink], config: WatchConfig = WatchConfig(), log: Callable[[str], None] = lambda m: None,
                 texts: list[UserText] = (), overlays: Extras | None = None):
        check_unique_names(feeds)
        self.detector = Detector(memory, encoder, settings, texts=texts, overlays=overlays, hwaccel=config.hwaccel)
        self.settings, self.grid = self.detector.settings, self.detector.grid
        self.memory, self.encoder, self.config, self.sinks, self.log = memory, encoder, config, sinks, log
        self.specs = feeds
        self._outages: queue.Queue = queue.Queue()
        self._pending: list[Sample] = []  # taken from the readers, not yet encoded
        self._rate: float | None = None  # encoder frames/s, measured (moving average)
        self.capacity: Capacity | None = None  # measured at start (``health.measure_capacity``)
        self.run_record = RunRecord.of(self.detector)  # what the store keeps its feeds under (and events' links name)
        self.stop_event = threading.Event()
        self.feeds: dict[str, FeedState] = {}
        self.ended: dict[str, dict] = {}  # stats of feeds removed while running (``replace_feeds``)
        self._wanted: list[FeedSpec] | None = None
        self.last_batch, self.encoder_busy_s = 0, 0.0  # the encoder's last call and its time so far (metrics)
        self.keep_running = False  # a service: run on when every feed has ended (or none is left), until stopped
        self._sessions: dict[str, int] = {}
        self.stuck_readers: list[str] = []  # feeds whose reader thread was still blocked at shutdown
        self._outages_seen: set[tuple[str, float]] = set()

    @property
    def shutdown_bound_s(self) -> float:
        """The longest a stop takes here: readers, then what they decoded, scored within the budget."""
        return READER_STOP_WAIT_S + self.config.max_latency_s + 1.0

    @property
    def ring_s(self) -> float:
        """Packets kept per feed: an event is reported this long after it began at most (its
        minimum length, the smoothing lag, a segment, the latency budget), plus the clip's context."""
        s = self.settings
        return CONTEXT_S + s.min_event_s + CausalSmoother(s.smoothing_sigma_s).lag_s + s.segment_s + self.config.max_latency_s + 1.0

    @property
    def delays(self) -> dict:
        """What causal scoring adds, stated once at start (and in the JSON lines)."""
        s = self.settings
        return {"segment_s": s.segment_s, "smoothing_lag_s": round(CausalSmoother(s.smoothing_sigma_s).lag_s, 3),
                "event_open_after_s": s.min_event_s, "event_close_after_s": s.merge_gap_s}

    def _measure(self) -> None:
        """The encoder timed here against what the feeds need: said at start, a warning if they do not fit."""
        cap = self.capacity = measure_capacity(self.encoder, 1.0 / self.grid.step_s, len(self.specs),
                                               batch=min(self.config.batch_size, 8))
        self._rate = cap.images_per_s
        if cap.needed_per_s > 0.9 * cap.images_per_s:
            self.log(f"warning: {cap.line(len(self.specs))}: expect dropped samples and lost segments ({ADVICE})")
        else:
            self.log(cap.line(len(self.specs)))

    def _start_feeds(self) -> None:
        self._measure()
        for spec in self.specs:
            self._start_feed(spec)

    def _start_feed(self, spec: FeedSpec) -> None:
        s = self.settings
        started = datetime.now(timezone.utc)
        vid = "live-{}-{}-{}".format(spec.name, hashlib.sha256(spec.shown.encode()).hexdigest()[:8],
                                     started.strftime("%Y%m%dT%H%M%SZ"))
        self._sessions[vid] = self._sessions.get(vid, -1) + 1
        vid += f"-{self._sessions[vid]}" if self._sessions[vid] else ""  # the same feed restarted within the second
        session = FeedSession(spec, vid, started, PacketRing(self.ring_s) if self.config.clips else None,
                              run_id=self.run_record.run_id, review_url=self.config.review_url)
        reader = FeedReader(spec, self.detector.frame_fit(spec.region, f"feed {spec.name}"), self.grid.step_s, time.monotonic(),
                            self.config.queue_len, self.config.read_timeout_s,
                            Backoff(self.config.backoff_base_s, self.config.backoff_cap_s),
                            on_outage=self._outages.put, log=self.log, packets=session.packets)
        threshold = s.threshold if spec.threshold is None else spec.threshold
        self.feeds[spec.name] = FeedState(session, reader, CausalSmoother(s.smoothing_sigma_s),
                                          OnlineEvents(spec.name, threshold, s.min_event_s, s.merge_gap_s,
                                                       self.detector.captions, self.grid.stride_s),
                                          health=FeedHealth(spec.name, self.config.max_latency_s))
        for sink in self.sinks:
            sink.start(session)
        reader.start()

    def replace_feeds(self, specs: list[FeedSpec]) -> None:
        """From any thread: watch ``specs`` from the next round.  A feed whose spec changed, or that
        is gone, ends as at shutdown (its open event closed, its last segments scored); a new one
        starts; the others run on without a gap."""
        check_unique_names(specs)
        self._wanted = list(specs)

    def _apply_wanted(self) -> None:
        wanted, self._wanted = self._wanted, None
        if wanted is None:
            return
        by_name = {spec.name: spec for spec in wanted}
        for name in [n for n, fs in self.feeds.items() if by_name.get(n) != fs.session.spec]:
            self._end_feed(name, "feed changed" if name in by_name else "feed removed")
        for spec in wanted:
            if spec.name not in self.feeds:
                self.log(f"feed {spec.name}: starting")
                self._start_feed(spec)
        self.specs = wanted

    def _end_feed(self, name: str, reason: str) -> None:
        fs = self.feeds[name]
        fs.reader.stop()
        fs.reader.join(timeout=READER_STOP_WAIT_S)
        self._pending = [x for x in self._pending if x.feed != name]
        closed = self._close_segments(fs, fs.reader.next_index, final=True)
        if closed:
            self._score(closed)
        for u in fs.events.close(reason):
            self._event(fs, u)
        self.ended[name] = self._feed_stats(fs, active=False)
        del self.feeds[name]
        self.log(f"feed {name}: {reason}; stopped")

    def run(self) -> dict[str, dict]:
        """Until every feed has ended, ``duration_s`` has passed, or ``stop_event`` is set."""
        self._start_feeds()
        started = time.monotonic()
        last_stats = started
        try:
            while not self.stop_event.is_set():
                if self.config.duration_s is not None and time.monotonic() - started >= self.config.duration_s:
                    break
                self._apply_wanted()
                self._drain_outages()  # before the round: a reconnection is known before its segments close
                busy = self._round()
                self._drain_outages()
                for sink in self.sinks:  # time-based work of the sinks (the store's periodic flush)
                    sink.tick()
                if time.monotonic() - last_stats >= self.config.stats_every_s:
                    last_stats = time.monotonic()
                    self._stats(active=True)
                if not busy and not self.keep_running and all(fs.reader.finished.is_set() for fs in self.feeds.values()):
                    break  # every feed ended (files); _shutdown scores what they left behind
                if not busy:
                    self.stop_event.wait(0.01)
        finally:
            self._shutdown()
        return {**self.ended, **{name: fs.stats() for name, fs in self.feeds.items()}}

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
            vecs = encode_views(self.encoder, np.stack([x.rgb for x in chunk]))
            took = time.perf_counter() - t
            self.last_batch, self.encoder_busy_s = len(chunk), self.encoder_busy_s + took
            rate = len(chunk) / max(took, 1e-6)
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
            start_s, end_s = fs.next_segment * g.stride_s, fs.next_segment * g.stride_s + g.segment_s
            if got and any(start_s < back < end_s for back in fs.reconnected_at):
                got = []  # it spans the gap: an event must not start before the feed came back, nor join the two sides
            if got:
                out.append((fs, fs.next_segment, pool([x[0] for x in got]), max(x[1] for x in got)))
            elif fs.segments_scored or out:  # before a feed's first frame nothing is lost
                fs.segments_lost += 1
            fs.next_segment += 1
            for i in range(first, first + g.stride):
                fs.held.pop(i, None)

    def _score(self, closed: list) -> None:
        """One retrieval for the closed segments of every feed, then each feed's causal scoring."""
        s, g = self.settings, self.grid
        index = np.array([c[1] for c in closed])
        spans = np.stack([index * g.stride_s, index * g.stride_s + g.segment_s], axis=1)
        allowed = None
        if self.detector.extras.scoped:  # camera-specific entries: each segment its own feed's
            per_feed = {name: self.detector.extras.allowed(name) for name in {c[0].session.spec.name for c in closed}}
            allowed = np.stack([per_feed[c[0].session.spec.name] for c in closed])
        scored = score_views(self.detector.searcher, np.stack([c[2] for c in closed]), s.logit_scale, spans, index, allowed)
        now = time.monotonic()
        for name in dict.fromkeys(c[0].session.spec.name for c in closed):
            fs = self.feeds[name]
            rows = [k for k, c in enumerate(closed) if c[0] is fs]
            mine = scored.take(rows)
            smoothed = np.array([fs.smoother.push(float(end), float(raw)) for end, raw in zip(mine.spans[:, 1], mine.scores)])
            mine = dataclasses.replace(mine, smoothed=smoothed)
            fs.segments_scored += len(rows)
            fs.latencies.extend(now - closed[k][3] for k in rows)
            updates = fs.events.push(mine)
            for sink in self.sinks:
                sink.segments(fs.session, mine, self.detector.captions, self._frames_per_s(fs))
            for u in updates:
                self._event(fs, u)

    @staticmethod
    def _frames_per_s(fs: FeedState) -> float | None:
        elapsed = time.monotonic() - fs.started
        return round(fs.reader.stats.frames_decoded / elapsed, 3) if elapsed > 0 and fs.reader.stats.frames_decoded else None

    def _event(self, fs: FeedState, u: EventUpdate) -> None:
        e = u.event
        self.log(f"feed {u.feed}: event {e.index} {u.kind} at {e.start_s if u.kind == 'opened' else e.end_s:.1f} s "
                 f"({e.category or '-'}, peak {e.peak_score:.2f})" + (f", {u.reason}" if u.reason else ""))
        for sink in self.sinks:
            sink.event(fs.session, u)

    def _drain_outages(self) -> None:
        """Outages as the readers report them: a new one closes its feed's open event (an event cannot
        be vouched for across a gap) as soon as the segments from before it are scored, at once when
        scoring has kept up; every report goes to the sinks."""
        while True:
            try:
                o: Outage = self._outages.get_nowait()
            except queue.Empty:
                break
            fs = self.feeds.get(o.feed)
            if fs is None:  # a feed ended by replace_feeds
                continue
            if o.end_s is not None and o.end_s not in fs.reconnected_at:
                fs.reconnected_at.append(o.end_s)
                del fs.reconnected_at[:-8]  # only the last few can still meet a segment that is not closed yet
            started = (o.feed, o.start_s) not in self._outages_seen
            if started:
                self._outages_seen.add((o.feed, o.start_s))
                for u in fs.events.outage(o.start_s, fs.next_segment * self.grid.stride_s):
                    self._event(fs, u)
            for sink in self.sinks:
                sink.outage(fs.session, o, started)
        for fs in self.feeds.values():  # a backlog from before an outage has been scored: close now
            for u in fs.events.settle(fs.next_segment * self.grid.stride_s):
                self._event(fs, u)

    def _stats(self, active: bool) -> None:
        """Every feed's counters and its last window's health (``health.FeedHealth``) to the sinks;
        while running, an overloaded feed is said."""
        for fs in self.feeds.values():
            self._feed_stats(fs, active)

    def _feed_stats(self, fs: FeedState, active: bool) -> dict:
        """One feed's counters and window to the sinks (and, while running, an overload said); the counters."""
        stats = fs.stats()
        window = fs.health.window(stats, fs.latencies)
        line = fs.health.say(window) if active else None
        if line:
            self.log(line)
        for sink in self.sinks:
            sink.feed_stats(fs.session, {**stats, **window}, active)
        return stats

    def _shutdown(self) -> None:
        for fs in self.feeds.values():
            fs.reader.stop()
        deadline = time.monotonic() + READER_STOP_WAIT_S  # a reader inside a blocking FFmpeg read is not waited
        self.stuck_readers = [name for name, fs in self.feeds.items()  # for: what it decoded is in its queue
                              if not fs.reader.join(timeout=max(0.0, deadline - time.monotonic()))]
        for name in self.stuck_readers:
            self.log(f"feed {name}: its reader is blocked in FFmpeg; not waiting for it")
        deadline = time.monotonic() + self.shutdown_bound_s - READER_STOP_WAIT_S
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
