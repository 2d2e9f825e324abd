"""From retrieved similarities to segment scores, frame scores and explanations.

Segment score = sum_k softmax(lambda * sim)_k * is_anomalous_k, a number in [0, 1]: the share of
the retrieval's (sharpened) weight that falls on anomalous captions.  The weights are kept, since
they are the explanation: which captions the score came from, on both sides.

``Segments`` is the one shape of scored segments, whether they are one file's or a round of live
segments from many feeds; ``score_views`` is the one way they are made from segment vectors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..memory.bundle import CaptionTable
from ..memory.retrieval import MemorySearcher
from ..video.timegrid import average_over_covering_segments


def retrieval_weights(sims: np.ndarray, logit_scale: float) -> np.ndarray:
    """Row-wise softmax of lambda * sims; missing neighbours (-inf) get weight 0."""
    z = np.float64(logit_scale) * sims.astype(np.float64)
    z -= np.max(z, axis=1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class CaptionHit:
    caption_id: int
    text: str
    label: str
    category: str
    similarity: float  # after alpha; for a span of segments, the highest
    weight: float  # for a span of segments, the mean

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


@dataclass(frozen=True)
class Segments:
    """Scored segments, one row each, in time order per video or feed.

    ``scores`` are the raw segment scores; live feeds also carry ``smoothed``, their causally
    smoothed score (files smooth per frame instead, after ``frame_scores``).
    """

    index: np.ndarray  # (S,) segment number within its video or feed
    spans: np.ndarray  # (S, 2) start/end seconds
    scores: np.ndarray  # (S,) share of the retrieval weight on anomalous captions
    ids: np.ndarray  # (S, K) caption ids, -1 where an approximate index returned fewer
    sims: np.ndarray  # (S, K) similarities after alpha
    weights: np.ndarray  # (S, K) softmax weights
    anomalous: np.ndarray  # (S, K) bool
    smoothed: np.ndarray | None = None  # (S,) live feeds only
    vectors: np.ndarray | None = None  # (S, D) the vector each segment was retrieved with (its best view)

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, rows) -> "Segments":
        """The rows selected by an index array, slice or boolean mask, as Segments."""
        return Segments(*(None if a is None else a[rows] for a in self._columns()))

    @staticmethod
    def concat(parts: list["Segments"]) -> "Segments":
        cols = list(zip(*(p._columns() for p in parts)))
        return Segments(*(None if any(c is None for c in col) else np.concatenate(col) for col in cols))

    def _columns(self) -> tuple:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    @property
    def anomalous_weight(self) -> np.ndarray:
        return (self.weights * self.anomalous).sum(axis=1)

    def explain(self, captions: CaptionTable, limit: int | None = None) -> Explanation:
        """Why these segments scored as they did, pooled over all of them.

        For one segment the hits are its K captions in rank order; over several, a caption's weight
        is its mean weight over them and its similarity the highest one.
        """
        pooled: dict[int, list[float]] = {}
        n_rows = max(len(self), 1)
        for cid, s, w in zip(self.ids.ravel(), self.sims.ravel(), self.weights.ravel()):
            if cid < 0:
                continue
            entry = pooled.setdefault(int(cid), [-np.inf, 0.0])
            entry[0] = max(entry[0], float(s))
            entry[1] += float(w) / n_rows
        hits = [CaptionHit(cid, captions.texts[cid], captions.label(cid), captions.categories[cid], s, w)
                for cid, (s, w) in pooled.items()]
        hits.sort(key=lambda h: (-h.weight, -h.similarity, h.caption_id))
        by_category = _weight_by_category((h.category, h.weight) for h in hits if h.label == "anomalous")
        return Explanation(_dominant(by_category), sum(by_category.values()),
                           sum(h.weight for h in hits if h.label == "normal"), hits[:limit] if limit else hits)

    def dominant_categories(self, captions: CaptionTable) -> list[str | None]:
        """Each segment's ``explain(captions).dominant_category``, without building its explanation
        (this runs for every stored segment): its anomalous hits, in the same order, summed the same way."""
        out = []
        for ids, sims, weights, anomalous in zip(self.ids, self.sims, self.weights, self.anomalous):
            hits = [(float(w), float(s), int(c)) for c, s, w, a in zip(ids, sims, weights, anomalous) if c >= 0 and a]
            hits.sort(key=lambda h: (-h[0], -h[1], h[2]))  # explain's order
            out.append(_dominant(_weight_by_category((captions.categories[c], w) for w, _, c in hits)))
        return out


def _weight_by_category(pairs) -> dict[str, float]:
    by_category: dict[str, float] = {}
    for category, weight in pairs:
        by_category[category] = by_category.get(category, 0.0) + weight
    return by_category


def _dominant(by_category: dict[str, float]) -> str | None:
    """The category with the most weight; a tie goes to the later name."""
    return max(by_category, key=lambda c: (by_category[c], c)) if by_category else None


def score_views(searcher: MemorySearcher, vectors: np.ndarray, logit_scale: float, spans: np.ndarray,
                index: np.ndarray | None = None, allowed: np.ndarray | None = None) -> Segments:
    """Retrieve and score segment vectors: (S, D), or (S, V, D) for V views of each segment.

    With several views (the ``tiles`` frame fit) every view is retrieved and scored, and a segment
    keeps its highest-scoring view, captions and all: an incident in one corner is not averaged
    away by the calm rest of the picture.  ``allowed`` (S, E): which of the run's extra entries
    each segment may retrieve (``MemorySearcher.search``).
    """
    v = np.asarray(vectors, dtype=np.float32)
    n = len(v)
    views = 1 if v.ndim == 2 else v.shape[1]
    flat = v.reshape(n * views, v.shape[-1])
    r = searcher.search(flat, None if allowed is None else np.repeat(allowed, views, axis=0))
    w = retrieval_weights(r.sims, logit_scale)
    s = (w * r.anomalous).sum(axis=1)
    best = s.reshape(n, views).argmax(axis=1) + np.arange(n) * views
    return Segments(np.arange(n) if index is None else np.asarray(index), np.asarray(spans, np.float64), s[best],
                    r.ids[best], r.sims[best], w[best], r.anomalous[best], vectors=flat[best])


def frame_scores(frame_times: np.ndarray, spans: np.ndarray, seg_scores: np.ndarray) -> np.ndarray:
    return average_over_covering_segments(np.asarray(frame_times, np.float64), spans, seg_scores)


def smooth(scores: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing over frames (offline: uses frames on both sides of each one; the ends
    repeat the first and last frame, scipy's ``nearest`` mode)."""
    if sigma_frames <= 0 or len(scores) < 2:
        return scores.astype(np.float64, copy=True)
    from scipy.ndimage import gaussian_filter1d  # here: a fifth of a second that commands which never smooth skip

    return gaussian_filter1d(scores.astype(np.float64), sigma=sigma_frames, mode="nearest")
