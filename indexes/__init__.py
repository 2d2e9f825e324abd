"""Index backends for memory bundles (the bundles themselves are built into subfolders here).

Only FAISS for now; a backend is chosen by a FAISS factory string ("Flat", "HNSW32",
"IVF4096,Flat", ...) so users speak FAISS's vocabulary, not ours.
"""

from .faiss_backend import build_index, load_index, save_index, search

__all__ = ["build_index", "load_index", "save_index", "search"]
