"""Flag events: runs of frames whose smoothed score reaches the threshold.

Runs closer than ``merge_gap_s`` are joined (a score that dips for a moment is one incident, not
two), then runs shorter than ``min_event_s`` are dropped (a single spike is rarely worth a
reviewer's time).  Each event carries the explanation pooled over the segments it spans.

``Event`` is the one shape of an event, for files and live feeds: a live feed's events come from
``live/causal.py``, where "frames" are segment numbers (the store says so in ``scorings.frame_unit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..memory.bundle import CaptionTable
from ..settings import ScoringSettings
from .scoring import Explanation, Segments

CAPTIONS_PER_EVENT = 8


@dataclass(frozen=True)
class Event:
    index: int
    start_s: float
    end_s: float
    start_frame: int  # the event's first frame: with run and video, what a verdict is keyed by
    end_frame: int  # inclusive
    peak_score: float
    peak_frame: int
    peak_s: float
    explanation: Explanation

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def category(self) -> str | None:
        return self.explanation.dominant_category

    def to_dict(self) -> dict:
        return {"index": self.index, "start_s": round(self.start_s, 4), "end_s": round(self.end_s, 4),
                "start_frame": self.start_frame, "end_frame": self.end_frame,
                "peak_score": round(self.peak_score, 6), "peak_frame": self.peak_frame,
                "peak_s": round(self.peak_s, 4), **self.explanation.to_dict()}


def threshold_runs(above: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) frame index of each run of True values."""
    padded = np.concatenate([[False], above, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def find_events(frame_times: np.ndarray, duration_s: float, scores: np.ndarray, segments: Segments,
                captions: CaptionTable, settings: ScoringSettings) -> list[Event]:
    """Events of one video from its smoothed frame scores, explained by the segments they overlap."""
    times = np.asarray(frame_times, np.float64)
    frame_end = np.append(times[1:], duration_s)  # each frame is on screen until the next one
    merged: list[list[int]] = []
    for a, b in threshold_runs(np.asarray(scores) >= settings.threshold):
        if merged and times[a] - frame_end[merged[-1][1]] <= settings.merge_gap_s:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    events = []
    spans = segments.spans
    for a, b in merged:
        start, end = float(times[a]), float(frame_end[b])
        if end - start < settings.min_event_s:
            continue
        peak = a + int(np.argmax(scores[a : b + 1]))
        overlapping = (spans[:, 0] < end) & (spans[:, 1] > start)
        events.append(Event(
            index=len(events), start_s=start, end_s=end, start_frame=a, end_frame=b,
            peak_score=float(scores[peak]), peak_frame=peak, peak_s=float(times[peak]),
            explanation=segments.take(overlapping).explain(captions, limit=CAPTIONS_PER_EVENT),
        ))
    return events
