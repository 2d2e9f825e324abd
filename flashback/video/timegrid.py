"""The global sampling grid that lets overlapping segments share frame embeddings.

Sample i sits at time (i + 0.5) * step seconds after the first frame; segment s takes the
``frames_per_segment`` consecutive samples starting at ``s * stride``.  Because the stride is a
whole number of steps, a sample belongs to several segments but is decoded and encoded once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..settings import ScoringSettings


@dataclass(frozen=True)
class TimeGrid:
    step_s: float
    frames_per_segment: int
    stride: int  # in samples

    @classmethod
    def from_settings(cls, settings: ScoringSettings) -> "TimeGrid":
        return cls(
            step_s=settings.sample_step_s,
            frames_per_segment=settings.frames_per_segment,
            stride=int(round(settings.stride_s / settings.sample_step_s)),
        )

    @property
    def segment_s(self) -> float:
        return self.frames_per_segment * self.step_s

    @property
    def stride_s(self) -> float:
        return self.stride * self.step_s

    def sample_time(self, i: int) -> float:
        return (i + 0.5) * self.step_s

    def n_samples(self, duration_s: float) -> int:
        """Samples whose time falls inside a video of this duration (at least one)."""
        return max(1, math.ceil(duration_s / self.step_s - 0.5))

    def n_segments(self, n_samples: int) -> int:
        """Segments up to the first one that reaches the last sample; the last may be partial."""
        if n_samples <= self.frames_per_segment:
            return 1
        return math.ceil((n_samples - self.frames_per_segment) / self.stride) + 1

    def segment_samples(self, s: int, n_samples: int) -> range:
        start = s * self.stride
        return range(start, min(start + self.frames_per_segment, n_samples))

    def segment_spans(self, n_segments: int, duration_s: float) -> np.ndarray:
        """(n, 2) start/end seconds of each segment, the ends clipped to the video."""
        starts = np.arange(n_segments) * self.stride_s
        ends = np.minimum(starts + self.segment_s, max(duration_s, starts[-1] + self.step_s))
        return np.stack([starts, ends], axis=1)


def pool(frame_vectors: np.ndarray) -> np.ndarray:
    """A segment's vector: the mean of its frames' embeddings, re-normalised to unit length.

    The one pooling rule, for files, caches and live feeds alike.  Frames are along axis 0; with
    the ``tiles`` frame fit each frame is (tiles, D) and every tile is pooled on its own.
    """
    return unit(np.asarray(frame_vectors, dtype=np.float32).mean(axis=0))


def unit(v: np.ndarray) -> np.ndarray:
    """Each vector along the last axis at unit length, float32 (a zero vector stays zero)."""
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def average_over_covering_segments(
    frame_times: np.ndarray, spans: np.ndarray, segment_scores: np.ndarray
) -> np.ndarray:
    """Each frame's score is the mean of the segments whose [start, end) contains its time.

    A frame past the last segment's end (the tail of a video) takes the last segment's score.
    Segments are ordered with equal length and stride, so the covering ones are a contiguous run
    found by two binary searches; a cumulative sum gives their mean in O(frames).
    """
    starts, ends = spans[:, 0], spans[:, 1]
    hi = np.searchsorted(starts, frame_times, side="right") - 1  # last segment starting <= t
    lo = np.searchsorted(ends, frame_times, side="right")  # first segment ending > t
    hi = np.clip(hi, 0, len(starts) - 1)
    lo = np.minimum(lo, hi)  # no covering segment (tail): fall back to the nearest one
    csum = np.concatenate([[0.0], np.cumsum(segment_scores, dtype=np.float64)])
    return (csum[hi + 1] - csum[lo]) / (hi - lo + 1)
