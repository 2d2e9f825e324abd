"""Causal scoring for live feeds: smoothing and event closing that use only the past.

Offline scoring smooths with a centred Gaussian and finds events after the whole video is known.
Live, a score must be final when it is emitted, so:

- smoothing is a *half* Gaussian over the segment scores already seen (no look-ahead, so no added
  delay; the price is a lag: its centre of mass sits sigma * sqrt(2/pi), about 0.8 sigma, behind);
- an event is **opened** (reported) once it has stayed above the threshold for ``min_event_s``:
  that is the added delay before an alarm, on top of the segment length;
- it is **closed** once the score has stayed below for ``merge_gap_s``: the added delay before its
  end is final.  A feed outage or shutdown closes an open event at its last scored time, so every
  reported opening gets exactly one closing.  An outage is a cut in feed time: segments from before
  it that are still being scored (a backlog) are pushed first, then the event is closed, so the
  backlog cannot reopen the incident as a second event after its outage close.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..memory.bundle import CaptionTable
from ..scoring.events import CAPTIONS_PER_EVENT, Event
from ..scoring.scoring import Segments


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


@dataclass(frozen=True)
class EventUpdate:
    """An event of a live feed opening or closing.  Its frames are segment numbers."""

    kind: str  # "opened" or "closed"
    feed: str
    event: Event  # as it stands at this update (a closed event's end is final)
    uid: str  # unique for ever (a receiver that de-duplicates never confuses two incidents)
    reason: str = ""  # for "closed": "score fell", "outage", "feed ended", "shutdown"

    @property
    def key(self) -> str:
        return f"{self.feed}/{self.event.index}"

    def to_dict(self) -> dict:
        e = self.event
        return {"type": f"event_{self.kind}", "feed": self.feed, "event": e.index, "event_key": self.key,
                "event_uid": self.uid, "start_s": round(e.start_s, 3), "end_s": round(e.end_s, 3),
                "start_segment": e.start_frame, "end_segment": e.end_frame,
                "peak_score": round(e.peak_score, 6), "peak_s": round(e.peak_s, 3), "peak_segment": e.peak_frame,
                **({"reason": self.reason} if self.reason else {}), **e.explanation.to_dict()}


@dataclass
class _Open:
    index: int
    uid: str
    last_above: int  # row numbers into rows
    peak: int
    rows: list[Segments] = field(default_factory=list)  # one-segment rows, from the first above on
    gap: list[Segments] = field(default_factory=list)  # below-threshold rows since last_above
    reported: bool = False


class OnlineEvents:
    """Threshold events for one feed, decided as segments arrive (each with its ``smoothed`` score)."""

    def __init__(self, feed: str, threshold: float, min_event_s: float, merge_gap_s: float, captions: CaptionTable,
                 stride_s: float):
        self.feed, self.threshold, self.min_event_s, self.merge_gap_s = feed, threshold, min_event_s, merge_gap_s
        self.stride_s = stride_s
        self.captions = captions
        self._open: _Open | None = None
        self._count = 0
        self._cut_s: float | None = None  # feed time of an outage whose close waits for the segments before it

    def push(self, segments: Segments) -> list[EventUpdate]:
        out: list[EventUpdate] = []
        for i in range(len(segments)):
            out += self.settle(float(segments.spans[i, 0]))
            out += self._push_one(segments.take([i]))
        return out

    def outage(self, start_s: float, next_start_s: float) -> list[EventUpdate]:
        """The feed was lost at feed time ``start_s``; ``next_start_s`` is where the next segment to be
        pushed starts.  The open event closes (reason outage) once no segment from before the loss
        can still come: at once when scoring has caught up, else when the first segment at or after
        the cut is pushed (or ``settle`` sees the feed's segments pass it)."""
        self._cut_s = start_s if self._cut_s is None else min(self._cut_s, start_s)
        return self.settle(next_start_s)

    def settle(self, next_start_s: float) -> list[EventUpdate]:
        """Close for a pending outage once ``next_start_s`` (the next segment's start) has reached it."""
        if self._cut_s is None or next_start_s < self._cut_s:
            return []
        self._cut_s = None
        return self.close("outage")

    def _push_one(self, seg: Segments) -> list[EventUpdate]:
        ev = self._open
        if seg.smoothed[0] >= self.threshold:
            if ev is None:
                ev = self._open = _Open(self._count, uuid.uuid4().hex, 0, 0)
                self._count += 1
            ev.rows += ev.gap + [seg]
            ev.gap = []
            ev.last_above = len(ev.rows) - 1
            if seg.smoothed[0] > ev.rows[ev.peak].smoothed[0]:
                ev.peak = ev.last_above
            if not ev.reported and self._above_s(ev) >= self.min_event_s - 1e-9:
                ev.reported = True
                return [self._update("opened", ev)]
            return []
        if ev is None:
            return []
        ev.gap.append(seg)
        if seg.spans[0, 1] - ev.rows[ev.last_above].spans[0, 1] > self.merge_gap_s:
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
        return (ev.rows[ev.last_above].index[0] - ev.rows[0].index[0] + 1) * self.stride_s

    def _update(self, kind: str, ev: _Open, reason: str = "") -> EventUpdate:
        rows = Segments.concat(ev.rows[: ev.last_above + 1])
        first, last, peak = rows.take([0]), rows.take([-1]), rows.take([ev.peak])
        event = Event(index=ev.index, start_s=float(first.spans[0, 0]), end_s=float(last.spans[0, 1]),
                      start_frame=int(first.index[0]), end_frame=int(last.index[0]),
                      peak_score=float(peak.smoothed[0]), peak_frame=int(peak.index[0]), peak_s=float(peak.spans[0, 1]),
                      explanation=rows.explain(self.captions, limit=CAPTIONS_PER_EVENT))
        return EventUpdate(kind, self.feed, event, ev.uid, reason)
