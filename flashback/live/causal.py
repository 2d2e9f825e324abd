"""Causal scoring for live feeds: smoothing and event closing that use only the past.

Offline scoring smooths with a centred Gaussian and finds events after the whole video is known.
Live, a score must be final when it is emitted, so:

- smoothing is a *half* Gaussian over the segment scores already seen (no look-ahead, so no added
  delay; the price is a lag: its centre of mass sits sigma * sqrt(2/pi), about 0.8 sigma, behind);
- an event is **opened** (reported) once it has stayed above the threshold for ``min_event_s``:
  that is the added delay before an alarm, on top of the segment length;
- it is **closed** once the score has stayed below for ``merge_gap_s``: the added delay before its
  end is final.  A feed outage or shutdown closes an open event at its last scored time, so every
  reported opening gets exactly one closing.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..bundle import CaptionTable
from ..events import CAPTIONS_PER_EVENT
from ..scoring import Explanation, explain


class CausalSmoother:
    def __init__(self, sigma_s: float):
        self.sigma_s = sigma_s
        self._past: deque[tuple[float, float]] = deque()

    def push(self, t_s: float, raw: float) -> float:
        if self.sigma_s <= 0:
            return raw
        self._past.append((t_s, raw))
        while self._past and t_s - self._past[0][0] > 3 * self.sigma_s:
            self._past.popleft()
        ts = np.array([p[0] for p in self._past])
        w = np.exp(-0.5 * ((t_s - ts) / self.sigma_s) ** 2)
        return float(np.dot(w, [p[1] for p in self._past]) / w.sum())

    @property
    def lag_s(self) -> float:
        return self.sigma_s * math.sqrt(2 / math.pi)


@dataclass
class ScoredSegment:
    index: int
    start_s: float
    end_s: float
    raw: float
    score: float  # causally smoothed
    ids: np.ndarray  # (K,)
    sims: np.ndarray
    weights: np.ndarray
    anomalous: np.ndarray  # (K,) bool, as retrieved


@dataclass
class EventUpdate:
    kind: str  # "opened" or "closed"
    feed: str
    event: int  # per feed, counts up for the whole watch
    start_s: float
    end_s: float
    start_segment: int
    end_segment: int
    peak_score: float
    peak_s: float
    peak_segment: int
    explanation: Explanation
    reason: str = ""  # for "closed": "score fell", "outage", "feed ended", "shutdown"

    @property
    def key(self) -> str:
        return f"{self.feed}/{self.event}"

    def to_dict(self) -> dict:
        return {"type": f"event_{self.kind}", "feed": self.feed, "event": self.event, "event_key": self.key,
                "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "start_segment": self.start_segment, "end_segment": self.end_segment,
                "peak_score": round(self.peak_score, 6), "peak_s": round(self.peak_s, 3), "peak_segment": self.peak_segment,
                **({"reason": self.reason} if self.reason else {}), **self.explanation.to_dict()}


@dataclass
class _Open:
    index: int
    start: ScoredSegment
    last_above: ScoredSegment
    peak: ScoredSegment
    rows: list[ScoredSegment] = field(default_factory=list)
    gap: list[ScoredSegment] = field(default_factory=list)  # below-threshold segments since last_above
    reported: bool = False


class OnlineEvents:
    """Threshold events for one feed, decided as segments arrive."""

    def __init__(self, feed: str, threshold: float, min_event_s: float, merge_gap_s: float, captions: CaptionTable,
                 stride_s: float):
        self.feed, self.threshold, self.min_event_s, self.merge_gap_s = feed, threshold, min_event_s, merge_gap_s
        self.stride_s = stride_s
        self.captions = captions
        self._open: _Open | None = None
        self._count = 0

    @property
    def is_open(self) -> bool:
        return self._open is not None and self._open.reported

    def push(self, seg: ScoredSegment) -> list[EventUpdate]:
        ev = self._open
        if seg.score >= self.threshold:
            if ev is None:
                ev = self._open = _Open(self._count, seg, seg, seg)
                self._count += 1
            ev.rows += ev.gap + [seg]
            ev.gap = []
            ev.last_above = seg
            if seg.score > ev.peak.score:
                ev.peak = seg
            if not ev.reported and self._above_s(ev) >= self.min_event_s - 1e-9:
                ev.reported = True
                return [self._update("opened", ev)]
            return []
        if ev is None:
            return []
        ev.gap.append(seg)
        if seg.end_s - ev.last_above.end_s > self.merge_gap_s:
            return self._close("score fell")
        return []

    def close(self, reason: str) -> list[EventUpdate]:
        """Close whatever is open (outage, feed end, shutdown); a run too short to report is dropped."""
        return self._close(reason) if self._open is not None else []

    def _close(self, reason: str) -> list[EventUpdate]:
        ev, self._open = self._open, None
        if not ev.reported:
            if self._above_s(ev) < self.min_event_s - 1e-9:
                self._count -= 1  # never reported: its number is free again
                return []
            return [self._update("opened", ev), self._update("closed", ev, reason)]
        return [self._update("closed", ev, reason)]

    def _above_s(self, ev: _Open) -> float:
        """How long the score has been above: each segment adds its stride (overlapping segments
        would otherwise let a single 1-s segment pass as a 1-s event)."""
        return (ev.last_above.index - ev.start.index + 1) * self.stride_s

    def _update(self, kind: str, ev: _Open, reason: str = "") -> EventUpdate:
        rows = ev.rows
        explanation = explain(np.stack([r.ids for r in rows]), np.stack([r.sims for r in rows]),
                              np.stack([r.weights for r in rows]), self.captions, limit=CAPTIONS_PER_EVENT)
        return EventUpdate(kind, self.feed, ev.index, ev.start.start_s, ev.last_above.end_s, ev.start.index,
                           ev.last_above.index, ev.peak.score, ev.peak.end_s, ev.peak.index, explanation, reason)
