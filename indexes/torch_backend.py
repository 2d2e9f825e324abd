"""Exact top-K by one matrix product on the encoder's device: the GPU search for any memory.

On a GPU a 1M x 512 memory in half precision is 1 GB, and 64 queries against all of it are 33
GFLOP: well under a millisecond of an H100's tensor cores, and exact, so an approximate index
(IVF, HNSW) that a CPU needs past 100k captions is not needed there at all.  The vectors are taken
from the FAISS index itself (``reconstruct_n``: exact for Flat, the 8-bit codes decoded for SQ8),
so any bundle works unchanged.  faiss-gpu (the ``[gpu]`` extra) is not required: its wheels lag
CUDA releases, torch is already on the machine.
"""

from __future__ import annotations

import numpy as np

CHUNK = 262_144  # rows per matrix product: bounds the (queries x rows) score block in GPU memory


class TorchExact:
    """Quacks like the FAISS indexes ``faiss_backend.search`` takes: ``ntotal``, ``d``, ``search(q, k)``."""

    def __init__(self, vectors: np.ndarray, device: str, half: bool | None = None):
        import torch

        self.device = torch.device(device)
        self.dtype = torch.float16 if (half if half is not None else self.device.type == "cuda") else torch.float32
        self.ntotal, self.d = vectors.shape
        self._v = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device, self.dtype)

    @classmethod
    def from_faiss(cls, index, device: str, half: bool | None = None) -> "TorchExact":
        vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
        return cls(vectors, device, half)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device, self.dtype)
        best_s, best_i = None, None
        with torch.inference_mode():
            for start in range(0, self.ntotal, CHUNK):
                s = q @ self._v[start : start + CHUNK].T
                top_s, top_i = torch.topk(s.float(), min(k, s.shape[1]), dim=1)
                top_i += start
                if best_s is not None:
                    top_s, top_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i], 1)
                    top_s, pick = torch.topk(top_s, min(k, top_s.shape[1]), dim=1)
                    top_i = torch.gather(top_i, 1, pick)
                best_s, best_i = top_s, top_i
        return best_s.cpu().numpy().astype(np.float32), best_i.cpu().numpy().astype(np.int64)


def on_device(index, device: str):
    """The index to search with on ``device``: itself on a CPU, an exact matrix-product search on a GPU."""
    if not str(device).startswith("cuda"):
        return index
    return TorchExact.from_faiss(index, device)
