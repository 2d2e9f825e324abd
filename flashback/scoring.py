"""From retrieved similarities to segment scores, frame scores and explanations.

Segment score = sum_k softmax(lambda * sim)_k * is_anomalous_k, a number in [0, 1]: the share of
the retrieval's (sharpened) weight that falls on anomalous captions.  The weights are kept, since
they are the explanation: which captions the score came from, on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .bundle import CaptionTable
from .retrieval import Retrieved
from .timegrid import average_over_covering_segments


def retrieval_weights(sims: np.ndarray, logit_scale: float) -> np.ndarray:
    """Row-wise softmax of lambda * sims; missing neighbours (-inf) get weight 0."""
    z = np.float64(logit_scale) * sims.astype(np.float64)
    z -= np.max(z, axis=1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(axis=1, keepdims=True)


def segment_scores(r: Retrieved, logit_scale: float) -> tuple[np.ndarray, np.ndarray]:
    w = retrieval_weights(r.sims, logit_scale)
    return (w * r.anomalous).sum(axis=1), w


def frame_scores(frame_times: np.ndarray, spans: np.ndarray, seg_scores: np.ndarray) -> np.ndarray:
    return average_over_covering_segments(np.asarray(frame_times, np.float64), spans, seg_scores)


def smooth(scores: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing over frames (offline: uses frames on both sides of each one)."""
    if sigma_frames <= 0 or len(scores) < 2:
        return scores.astype(np.float64, copy=True)
    return gaussian_filter1d(scores.astype(np.float64), sigma=sigma_frames, mode="nearest")


@dataclass(frozen=True)
class CaptionHit:
    caption_id: int
    text: str
    label: str
    category: str
    similarity: float  # after alpha
    weight: float

    def to_dict(self) -> dict:
        return {"caption_id": self.caption_id, "text": self.text, "label": self.label,
                "category": self.category, "similarity": round(self.similarity, 6),
                "weight": round(self.weight, 6)}


@dataclass(frozen=True)
class Explanation:
    """Why a stretch of video scored as it did; both sides' weight so contradictions show."""

    dominant_category: str | None  # the anomalous category with the most weight, if any
    anomalous_weight: float
    normal_weight: float
    captions: list[CaptionHit]

    def to_dict(self) -> dict:
        return {"dominant_category": self.dominant_category,
                "anomalous_weight": round(self.anomalous_weight, 6),
                "normal_weight": round(self.normal_weight, 6),
                "captions": [c.to_dict() for c in self.captions]}


def explain(
    ids: np.ndarray, sims: np.ndarray, weights: np.ndarray, captions: CaptionTable, limit: int | None = None
) -> Explanation:
    """Explain one or more retrievals (rows), pooling each caption's weight across rows.

    For a single segment the hits are its K captions in rank order; for an event spanning several
    segments a caption's weight is its mean weight over them and its similarity the best one.
    """
    ids, sims, weights = np.atleast_2d(ids), np.atleast_2d(sims), np.atleast_2d(weights)
    n_rows = len(ids)
    pooled: dict[int, list[float]] = {}
    for cid, s, w in zip(ids.ravel(), sims.ravel(), weights.ravel()):
        if cid < 0:
            continue
        entry = pooled.setdefault(int(cid), [-np.inf, 0.0])
        entry[0] = max(entry[0], float(s))
        entry[1] += float(w) / n_rows
    hits = [
        CaptionHit(cid, captions.texts[cid], captions.label(cid), captions.categories[cid], s, w)
        for cid, (s, w) in pooled.items()
    ]
    hits.sort(key=lambda h: (-h.weight, -h.similarity, h.caption_id))
    by_category: dict[str, float] = {}
    for h in hits:
        if h.label == "anomalous":
            by_category[h.category] = by_category.get(h.category, 0.0) + h.weight
    anomalous_weight = sum(by_category.values())
    normal_weight = sum(h.weight for h in hits if h.label == "normal")
    dominant = max(by_category, key=lambda c: (by_category[c], c)) if by_category else None
    return Explanation(dominant, anomalous_weight, normal_weight, hits[:limit] if limit else hits)
