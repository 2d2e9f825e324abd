"""The embedded default memory: built on first use from the shipped seed captions, then cached.

A bundle depends on the encoder, so there is one cached bundle per (seed file, encoder
identity) under the per-user cache folder; nothing is downloaded but the encoder's weights.
The seed set is domain-neutral on purpose: a memory steered to a domain is a deliberate choice.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

from .bundle import MANIFEST, MemoryBundle, load_bundle
from .encoder import ClipEncoder
from .errors import BundleError

CACHE_ENV = "FLASHBACK_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flashback"


def seed_captions_path() -> Path:
    return Path(str(resources.files("memory_builder") / "seed_captions.jsonl"))


def default_memory_path(encoder: ClipEncoder) -> Path:
    seed = hashlib.sha256(seed_captions_path().read_bytes()).hexdigest()[:12]
    enc = hashlib.sha256(encoder.identity.key.encode()).hexdigest()[:12]
    return cache_dir() / "memories" / f"default-{seed}-{enc}"


def default_memory(encoder: ClipEncoder, progress=None) -> MemoryBundle:
    from memory_builder import build_from_captions

    path = default_memory_path(encoder)
    if (path / MANIFEST).is_file():
        try:
            return load_bundle(path)
        except BundleError:
            pass  # damaged cache: rebuild it below (write_bundle replaces it atomically)
    build_from_captions([seed_captions_path()], encoder, path, progress=progress)
    return load_bundle(path)
