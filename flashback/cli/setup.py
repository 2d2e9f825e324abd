"""The set-up every scoring command does the same way: store, encoder, memory.

Each step fails early with a ``FlashbackError`` naming what is wrong (a locked ``--db``, weights
that cannot be loaded, a tampered memory), before any input is read.
"""

from __future__ import annotations

import argparse

from ..encoders.protocols import ImageEncoder, TextEncoder
from ..errors import StoreError
from ..memory.bundle import MemoryBundle, load_bundle
from ..memory.extras import Extras
from ..store import ResultStore
from .common import counter, progress_bars, say
from .options import encoder_spec


def open_store(a: argparse.Namespace) -> ResultStore | None:
    """The results store, checked now so a bad ``--db`` fails before any work; a new file is
    created by the first result, so a run that scores nothing leaves none behind."""
    if a.no_db:
        return None
    store = ResultStore(a.db)
    store.prepare()
    return store


def existing_store(a: argparse.Namespace) -> ResultStore:
    """``--db`` of a command that reads or trims a store: it must be there already (none is made)."""
    if not a.db.exists():
        raise StoreError(f"{a.db}: no such results database")
    return ResultStore(a.db)


def image_encoder(a: argparse.Namespace) -> ImageEncoder:
    from ..encoders.encoder import ClipEncoder

    return ClipEncoder(encoder_spec(a), device=a.device, precision=a.precision, backend=a.backend)


def caption_encoder(a: argparse.Namespace) -> TextEncoder:
    """The text encoder for caption queries: a sentence-transformers model, or 'clip' for the open_clip text tower."""
    if a.text_encoder == "clip":
        return image_encoder(a)
    from ..encoders.text_encoder import SentenceEncoder

    return SentenceEncoder(a.text_encoder)


def overlays_for(a: argparse.Namespace, store: ResultStore | None, encoder) -> Extras:
    """Each camera's overlay next to the store (unless ``--no-overlays``) and every ``--overlay DIR``."""
    from ..review.overlays import load_extras

    return load_extras(None if store is None or a.no_overlays else store.path, a.overlay or [], encoder.identity.key)


def check_overlay_dirs(a: argparse.Namespace) -> None:
    """``--overlay DIR`` that is not there fails now, before any model loads."""
    from ..review.overlays import require_overlay

    for d in a.overlay or []:
        require_overlay(d)


def memory_for(a: argparse.Namespace, encoder: TextEncoder) -> MemoryBundle:
    """``--memory DIR``, or the embedded default memory for this encoder (built once, then cached).

    The one-time build takes minutes on a CPU, so it says what it is doing, where the result goes,
    and shows a bar with an ETA rather than a silent wait.
    """
    if a.memory:
        return load_bundle(a.memory)
    from ..memory.default_memory import DEFAULT_SIZE, default_memory, default_memory_path, is_cached

    if is_cached(encoder):
        return default_memory(encoder)
    say(f"building the default memory for this encoder: {DEFAULT_SIZE:,} captions through its text tower, once; "
        f"cached in {default_memory_path(encoder)}, later runs load it in a second")
    with progress_bars(getattr(a, "quiet", False)) as progress:
        return default_memory(encoder, progress=counter(progress, "default memory", DEFAULT_SIZE, "captions"))

