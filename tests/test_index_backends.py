"""The GPU search (exact top-K by matrix product, ``indexes.torch_backend``) returns what FAISS's
exact search returns; it runs here on the CPU in float32, where the two must agree row for row."""

from __future__ import annotations

import numpy as np
import pytest

import indexes.torch_backend as tb
from indexes import TorchExact, build_index, on_device, search


def _unit(n, d, seed):
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("chunk", [tb.CHUNK, 700])  # 700: several chunks, merged
def test_matrix_product_search_is_faiss_exact_search(monkeypatch, chunk):
    monkeypatch.setattr(tb, "CHUNK", chunk)
    v, q = _unit(5000, 64, 0), _unit(64, 64, 1)
    flat = build_index(v, "Flat")
    s_f, i_f = search(flat, q, 10)
    s_t, i_t = search(TorchExact.from_faiss(flat, "cpu"), q, 10)
    assert np.array_equal(i_t, i_f) and np.allclose(s_t, s_f, atol=1e-5)
    assert s_t.dtype == np.float32 and i_t.dtype == np.int64


def test_an_approximate_index_searched_exactly_finds_at_least_what_it_finds():
    """IVF,SQ8 on a GPU becomes exact search over its decoded 8-bit vectors: recall can only rise."""
    v, q = _unit(20000, 64, 2), _unit(64, 64, 3)
    _, truth = search(build_index(v, "Flat"), q, 10)
    ivf = build_index(v, "IVF64,SQ8")
    ivf.nprobe = 4
    recall = lambda ids: np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)])  # noqa: E731
    assert recall(search(TorchExact.from_faiss(ivf, "cpu"), q, 10)[1]) >= max(0.95, recall(search(ivf, q, 10)[1]))


def test_a_cpu_run_keeps_its_faiss_index_and_an_empty_side_is_searched_as_empty():
    flat = build_index(_unit(10, 8, 4), "Flat")
    assert on_device(flat, "cpu") is flat
    empty = TorchExact.from_faiss(build_index(np.zeros((0, 8), np.float32), "Flat"), "cpu")
    sims, ids = search(empty, _unit(3, 8, 5), 10)
    assert sims.shape == ids.shape == (3, 0)
