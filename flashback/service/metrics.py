"""Prometheus metrics of a running service (prometheus-client, a registry of the service's own).

Counters and the latency histogram are brought up to date when Prometheus scrapes, from the
running watcher's own counters (each feed's frames, drops, segments and latencies), so the watch
loop does no extra work per frame; events and outages are counted as they happen (``MetricsSink``),
verdicts as the API stores them.  A restarted watcher starts its counters at zero: what is read is
the growth since the last scrape, so the exported counters never go back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..live.sinks.base import FeedSession, LiveSink

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
WRITE_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.frames = Counter("flashback_feed_frames", "frames decoded per feed", ["feed"], registry=r)
        self.dropped = Counter("flashback_feed_samples_dropped", "grid samples dropped (late, or over capacity)", ["feed"], registry=r)
        self.segments = Counter("flashback_feed_segments_scored", "segments scored per feed", ["feed"], registry=r)
        self.latency = Histogram("flashback_feed_latency_seconds", "frame capture to its segment's score", ["feed"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.outages = Counter("flashback_feed_outages", "outages per feed", ["feed"], registry=r)
        self.events = Counter("flashback_feed_events", "events opened per feed", ["feed"], registry=r)
        self.up = Gauge("flashback_feed_up", "1 while the feed delivers frames", ["feed"], registry=r)
        self.batch = Gauge("flashback_encoder_batch_size", "images in the encoder's last call", registry=r)
        self.busy = Gauge("flashback_encoder_busy_share", "share of the time since the last scrape the encoder was busy", registry=r)
        self.store_write = Histogram("flashback_store_write_seconds", "one flush of live results to the store",
                                     buckets=WRITE_BUCKETS, registry=r)
        self.queue = Gauge("flashback_queue_depth", "messages waiting: MQTT and webhook outboxes, the store's buffer", ["queue"], registry=r)
        self.verdicts = Counter("flashback_verdicts", "verdicts stored through the API", ["verdict"], registry=r)
        self.restarts = Counter("flashback_part_restarts", "parts of the service restarted after they stopped", ["part"], registry=r)
        self._watcher: Callable[[], object | None] = lambda: None
        self._seen: dict[int, dict] = {}  # per FeedState (id): counters read so far
        self._busy = (time.monotonic(), None, 0.0)  # (when, which watcher, its busy seconds then)

    def follow(self, watcher: Callable[[], object | None]) -> None:
        """Read the running watcher (``live.watcher.Watcher``) at each scrape; None while there is none."""
        self._watcher = watcher

    def verdict(self, verdict: str) -> None:
        self.verdicts.labels(verdict).inc()

    def queues(self) -> dict[str, int]:
        w = self._watcher()
        return dict(d for s in (w.sinks if w is not None else []) if (d := s.depth()) is not None)

    def exposition(self) -> bytes:
        w = self._watcher()
        if w is not None:
            self._read(w)
        for name, depth in self.queues().items():
            self.queue.labels(name).set(depth)
        return generate_latest(self.registry)

    def _read(self, w) -> None:
        for name, fs in list(w.feeds.items()):
            seen = self._seen.setdefault(id(fs), {"frames": 0, "dropped": 0, "segments": 0})
            st = fs.stats()
            now = {"frames": st["frames_decoded"], "dropped": st["samples_dropped"], "segments": st["segments_scored"]}
            for counter, key in ((self.frames, "frames"), (self.dropped, "dropped"), (self.segments, "segments")):
                if now[key] > seen[key]:
                    counter.labels(name).inc(now[key] - seen[key])
            new = now["segments"] - seen["segments"]
            for seconds in list(fs.latencies)[-new:] if new > 0 else []:
                self.latency.labels(name).observe(seconds)
            self._seen[id(fs)] = now
        self.batch.set(w.last_batch)
        t, who, busy = self._busy
        now_t = time.monotonic()
        if who == id(w) and now_t > t:
            self.busy.set(min(1.0, (w.encoder_busy_s - busy) / (now_t - t)))
        self._busy = (now_t, id(w), w.encoder_busy_s)
        for s in w.sinks:
            if hasattr(s, "write_s"):
                got, s.write_s = s.write_s, []  # swapped, not cleared: the watcher thread appends to it
                for seconds in got:
                    self.store_write.observe(seconds)


class MetricsSink(LiveSink):
    """Events and outages as the watcher reports them, and each feed up or down."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def start(self, session: FeedSession) -> None:
        name = session.spec.name
        for c in (self.m.frames, self.m.dropped, self.m.segments, self.m.outages, self.m.events):
            c.labels(name)  # every feed's series exists from the start, at zero
        self.m.up.labels(name).set(0)

    def segments(self, session, segments, captions, frames_per_s) -> None:
        self.m.up.labels(session.spec.name).set(1)

    def event(self, session, update) -> None:
        if update.kind == "opened":
            self.m.events.labels(session.spec.name).inc()

    def outage(self, session, outage, started: bool) -> None:
        if started:
            self.m.outages.labels(session.spec.name).inc()
        self.m.up.labels(session.spec.name).set(0 if outage.end_s is None else 1)

    def feed_stats(self, session, stats: dict, active: bool) -> None:
        if not active:
            self.m.up.labels(session.spec.name).set(0)
