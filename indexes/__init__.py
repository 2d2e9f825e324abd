"""Index backends for memory bundles (the bundles themselves are built into subfolders here).

FAISS on a CPU, chosen by a FAISS factory string ("Flat", "HNSW32", "IVF4096,Flat", ...) so
users speak FAISS's vocabulary, not ours; on a GPU, exact search by matrix product over the same
vectors (``torch_backend``).
"""

from .faiss_backend import build_index, load_index, save_index, search
from .torch_backend import TorchExact, on_device

__all__ = ["TorchExact", "build_index", "load_index", "on_device", "save_index", "search"]
