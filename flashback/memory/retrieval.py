"""Top-K retrieval from a memory bundle, with scaled anomaly penalization (alpha) applied.

The exact top-K over {normal sims} U {alpha * anomalous sims} is taken from the top-K of each
side, since one positive factor does not reorder a side.  See flashback/memory/bundle.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexes import on_device, search

from ..errors import BundleError
from ..video.timegrid import unit
from .bundle import MemoryBundle, build_indexes
from .extras import Extras
from .variants import stored_vectors


@dataclass(frozen=True)
class Retrieved:
    """Per query: K similarities (alpha already applied to anomalous ones), ids and flags."""

    sims: np.ndarray  # (Q, K) float32, descending per row
    ids: np.ndarray  # (Q, K) int64 caption ids; -1 where an approximate index returned fewer
    anomalous: np.ndarray  # (Q, K) bool


EXEMPLAR_GATE = 0.9  # cosine to a verdict exemplar from which it counts (both paths; see _gate)
EXEMPLAR_BONUS = 0.05  # how far above the best caption a perfect match enters: exp(100 * 0.05), ~150x its weight


class MemorySearcher:
    """Top-K over the memory's captions and, when given, the run's extra entries (``extras.py``),
    which get ids after the memory's; anomalous ones are scaled by alpha like anomalous captions."""

    def __init__(self, memory: MemoryBundle, alpha: float, top_k: int, extras: Extras | None = None,
                 exemplar_gate: float | None = None, device: str = "cpu", centre: bool = False):
        """``device``: where the encoder runs; on a GPU the memory is searched there (``indexes.on_device``).

        ``centre``: compare in the memory's centred space: queries, captions and extra entries less
        the mean of the memory's vectors, unit length again, searched exactly.  A memory's captions
        share a large common component (the default one's mean vector has norm 0.55, and two of its
        captions have cosine 0.31 on average, 0.00 once centred), which the softmax otherwise
        spends its sharpness on; centred, what tells normal from anomalous decides.  Measured on
        the caption path only: +1.1 AUC on UCF-Crime dev captions, inside the noise, so opt-in
        (benchmarks/README.md, ``caption_defaults.py``)."""
        self.memory = memory
        indexes, self._mean = memory.indexes, None
        if centre:
            vectors = stored_vectors(memory)
            if vectors is None:
                raise BundleError(f"{memory.path}: its index does not keep its vectors, so it cannot be searched "
                                  "centred; pass --centre off")
            self._mean = vectors.mean(0, dtype=np.float64).astype(np.float32)
            indexes = build_indexes(memory.captions, unit(vectors - self._mean), "Flat")
        self._indexes = {label: on_device(indexes[label], device) for label in ("normal", "anomalous")}
        self.alpha = float(alpha)
        self.extras = extras if extras is not None and len(extras) else None
        self._extra_vectors = None if self.extras is None else self._centred(self.extras.vectors)
        self.exemplar_gate = exemplar_gate
        self.top_k = min(int(top_k), len(memory.captions))
        self._offset = memory.captions.n_normal

    def _centred(self, v: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(v, dtype=np.float32)
        return v if self._mean is None else unit(v - self._mean)

    def search(self, queries: np.ndarray, allowed: np.ndarray | None = None) -> Retrieved:
        """``allowed`` (Q, E): which extra entries each query may retrieve (None: all of them)."""
        q = self._centred(queries)
        k = self.top_k
        s_n, i_n = search(self._indexes["normal"], q, k)
        s_a, i_a = search(self._indexes["anomalous"], q, k)
        s_a = s_a * np.float32(self.alpha)
        i_a = np.where(i_a >= 0, i_a + self._offset, -1)
        parts = [(s_n, i_n, np.zeros_like(i_n, bool)), (s_a, i_a, np.ones_like(i_a, bool))]
        if self.extras is not None:
            e = self.extras
            s_e = q @ self._extra_vectors.T
            if self.exemplar_gate is not None and e.exemplar.any():
                s_e = self._gate(s_e, e.exemplar, np.maximum(s_n[:, :1], s_a[:, :1]))
            s_e = s_e * np.where(e.anomalous, np.float32(self.alpha), np.float32(1.0))
            i_e = np.broadcast_to(np.arange(len(e), dtype=np.int64) + len(self.memory.captions), s_e.shape)
            if allowed is not None:
                s_e, i_e = np.where(allowed, s_e, -np.inf).astype(np.float32), np.where(allowed, i_e, -1)
            parts.append((s_e, i_e, np.broadcast_to(e.anomalous, s_e.shape)))
        sims = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        flags = np.concatenate([p[2] for p in parts], axis=1)
        # stable sort on -sim: ties keep normal before anomalous, the conservative choice
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
        return Retrieved(take(sims), take(ids), take(flags))

    def _gate(self, sims: np.ndarray, exemplar: np.ndarray, best: np.ndarray) -> np.ndarray:
        """A verdict exemplar counts only for a near-duplicate of what was judged (cosine >= the gate),
        and then enters just above the query's best caption, more so the closer it is.  On the video
        path exemplars are image vectors, and two frames of one camera are far more alike (cosine 0.8
        and up) than any frame and caption (0.2 to 0.35): compared raw, one exemplar would outweigh
        every caption for everything that camera sees.  On the caption path (text against text) the
        scales match, but raw exemplars still spread: on the UCF-Crime dev half, a dozen false alarms
        from one half's normal videos cost the other videos 2 to 8 AUC points raw, and under 0.4 gated
        (benchmarks/overlay_verdicts.py), while the reviewed videos' own false alarms go either way."""
        g = self.exemplar_gate
        lifted = best + EXEMPLAR_BONUS * (sims - g) / (1.0 - g)
        return np.where(exemplar, np.where(sims >= g, lifted, -np.inf), sims).astype(np.float32)
