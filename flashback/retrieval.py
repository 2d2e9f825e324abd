"""Top-K retrieval from a memory bundle, with scaled anomaly penalization (alpha) applied.

The exact top-K over {normal sims} U {alpha * anomalous sims} is taken from the top-K of each
side, since one positive factor does not reorder a side.  See flashback/bundle.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexes import search

from .bundle import MemoryBundle


@dataclass(frozen=True)
class Retrieved:
    """Per query: K similarities (alpha already applied to anomalous ones), ids and flags."""

    sims: np.ndarray  # (Q, K) float32, descending per row
    ids: np.ndarray  # (Q, K) int64 caption ids; -1 where an approximate index returned fewer
    anomalous: np.ndarray  # (Q, K) bool


class MemorySearcher:
    def __init__(self, memory: MemoryBundle, alpha: float, top_k: int):
        self.memory = memory
        self.alpha = float(alpha)
        self.top_k = min(int(top_k), len(memory.captions))
        self._offset = memory.captions.n_normal

    def search(self, queries: np.ndarray) -> Retrieved:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = self.top_k
        s_n, i_n = search(self.memory.indexes["normal"], q, k)
        s_a, i_a = search(self.memory.indexes["anomalous"], q, k)
        s_a = s_a * np.float32(self.alpha)
        i_a = np.where(i_a >= 0, i_a + self._offset, -1)
        sims = np.concatenate([s_n, s_a], axis=1)
        ids = np.concatenate([i_n, i_a], axis=1)
        flags = np.concatenate([np.zeros_like(i_n, bool), np.ones_like(i_a, bool)], axis=1)
        # stable sort on -sim: ties keep normal before anomalous, the conservative choice
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
        return Retrieved(take(sims), take(ids), take(flags))
