"""What the watcher keeps per feed while it runs: its session, reader, causal scoring and counters."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .causal import CausalSmoother, OnlineEvents
from .feeds import FeedReader
from .health import FeedHealth
from .sinks import FeedSession


@dataclass
class FeedState:
    session: FeedSession
    reader: FeedReader
    smoother: CausalSmoother
    events: OnlineEvents
    held: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)  # sample -> (vector, captured_at)
    next_segment: int = 0
    segments_scored: int = 0
    started: float = field(default_factory=time.monotonic)
    segments_lost: int = 0
    samples_encoded: int = 0
    samples_late: int = 0  # taken in time, but could no longer be scored within the budget
    reconnected_at: list[float] = field(default_factory=list)  # feed times the feed came back after an outage
    latencies: deque = field(default_factory=lambda: deque(maxlen=10_000))  # seconds, the most recent segments
    health: FeedHealth | None = None

    def stats(self) -> dict:
        lat = np.array(self.latencies) if self.latencies else None
        q = (lambda p: None if lat is None else round(float(np.percentile(lat, p)), 4))
        st = self.reader.stats
        return {"feed": self.session.spec.name, "segments_scored": self.segments_scored, "segments_lost": self.segments_lost,
                "frames_decoded": st.frames_decoded, "samples_encoded": self.samples_encoded,
                "samples_dropped": st.samples_dropped + self.samples_late, "reconnects": st.reconnects, "outages": len(st.outages),
                "latency_p50_s": q(50), "latency_p95_s": q(95), "latency_max_s": None if lat is None else round(float(lat.max()), 4)}
