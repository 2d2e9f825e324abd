"""How good a built memory is, measured at build time and written to its manifest: how far apart the
two labels' centroids sit, and how well the (approximate) index agrees with exact search."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure

from flashback.memory.bundle import CaptionTable
from flashback.memory.manifest import Manifest


def centroid_angle(vectors: np.ndarray, anomalous: np.ndarray) -> float:
    """Angle in degrees between the normal and the anomalous centroid (the paper: 8.12 -> 33.29 with templates)."""
    a = vectors[~anomalous].mean(axis=0)
    b = vectors[anomalous].mean(axis=0)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return round(math.degrees(math.acos(max(-1.0, min(1.0, cos)))), 2)


def recall_at_10(indexes: dict, table: CaptionTable, vectors: np.ndarray, alpha: float, n_queries: int = 200) -> float:
    """Top-10 agreement of the built indexes with exact search, alpha applied, on caption-vector queries."""
    from flashback.memory.bundle import MemoryBundle
    from flashback.memory.retrieval import MemorySearcher

    rng = np.random.default_rng(1)
    q = vectors[rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False)]
    q = q + rng.normal(0, 0.05, q.shape).astype(np.float32)  # not the stored points themselves
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    manifest = Manifest(None, {}, {}, alpha, "", 1.0, "")
    got = MemorySearcher(MemoryBundle(Path("."), manifest, table, indexes), alpha, 10).search(q).ids
    sims = q @ vectors.T
    sims[:, table.anomalous] *= alpha
    exact = np.argsort(-sims, axis=1)[:, :10]
    k = min(10, len(vectors))
    return round(float(knn_intersection_measure(np.asarray(got)[:, :k], exact[:, :k])), 4)  # FAISS's own measure
