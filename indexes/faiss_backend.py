"""Thin helpers over FAISS: build from a factory string, save/load in FAISS's own file format.

Vectors are unit-norm, so inner product is cosine similarity.  Indexes that need training (IVF,
PQ) are trained on the vectors they will hold; one that cannot be trained on so few vectors gets
a clear error naming the factory string and the count.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


def build_index(vectors: np.ndarray, factory: str = "Flat") -> faiss.Index:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValueError(f"index {factory!r}: not a FAISS factory string this build understands ({e})") from None
    if not index.is_trained:
        try:
            index.train(vectors)
        except RuntimeError as e:
            raise ValueError(f"index {factory!r}: cannot train on {n} vectors ({str(e).splitlines()[0]})") from None
    if n:
        index.add(vectors)
    return index


def save_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(faiss.index_gpu_to_cpu(index) if _on_gpu(index) else index, str(path))


def load_index(path: Path, gpu: bool = False) -> faiss.Index:
    index = faiss.read_index(str(path))
    if gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products; rows an approximate index cannot fill come back as (-inf, -1)."""
    k = min(k, index.ntotal)
    if k == 0:
        q = len(queries)
        return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
    sims, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    sims[ids < 0] = -np.inf
    return sims, ids


def _on_gpu(index: faiss.Index) -> bool:
    return hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex)
