"""The embedded default memory: built on first use, then cached per encoder.

It is the hand-written seed captions (memory_builder/seed_captions.jsonl) plus captions from the
offline grammar (memory_builder/grammar.py) with its default seed and no domain: 1,000 captions,
half normal, half anomalous.  A bundle depends on the encoder, so there is one cached bundle per
(seed file, grammar, encoder identity) under the per-user cache folder; nothing is downloaded but
the encoder's weights.  It is domain-neutral on purpose: steering to a domain is a deliberate
`flashback memory build --domain ...`.  The size keeps the first run short on a CPU, where the
text tower embeds roughly 100 captions a second (10 s for the 1,000).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ..atomic import CACHE_ENV, cache_dir, exclusive  # noqa: F401  (CACHE_ENV re-exported: callers find the cache here)
from ..encoders.protocols import TextEncoder
from ..errors import BundleError
from .bundle import CaptionTable, MemoryBundle, load_bundle
from .manifest import MANIFEST


def seed_captions_path() -> Path:
    return Path(str(resources.files("memory_builder") / "seed_captions.jsonl"))


DEFAULT_SIZE = 1000


def default_memory_path(encoder: TextEncoder) -> Path:
    grammar = resources.files("memory_builder") / "grammar.py"
    seed = hashlib.sha256(seed_captions_path().read_bytes() + grammar.read_bytes()
                          + str(DEFAULT_SIZE).encode()).hexdigest()[:12]
    enc = hashlib.sha256(f"{encoder.identity.key}|{float(encoder.logit_scale):g}".encode()).hexdigest()[:12]
    return cache_dir() / "memories" / f"default-{seed}-{enc}"


def default_captions() -> CaptionTable:
    """Seed captions first, then grammar captions up to DEFAULT_SIZE, balanced, exact duplicates skipped."""
    from memory_builder.captions_io import read_labelled_captions
    from memory_builder.clean import exact_key
    from memory_builder.grammar import OfflineGenerator

    seed, _ = read_labelled_captions([seed_captions_path()])
    sides = {False: [], True: []}
    seen = set()
    for text, anom, cat, prov in zip(seed.texts, seed.anomalous, seed.categories, seed.provenance):
        sides[bool(anom)].append((text, cat, prov))
        seen.add(exact_key(text))
    for cap in OfflineGenerator(0).generate(4 * DEFAULT_SIZE):
        side = sides[cap.anomalous]
        if len(side) < DEFAULT_SIZE // 2 and exact_key(cap.text) not in seen:
            seen.add(exact_key(cap.text))
            side.append((cap.text, cap.category, cap.provenance))
    rows = sides[False] + sides[True]
    return CaptionTable([t for t, _, _ in rows], [False] * len(sides[False]) + [True] * len(sides[True]),
                        [c for _, c, _ in rows], [p for _, _, p in rows])


def is_cached(encoder: TextEncoder) -> bool:
    """Whether this encoder's default memory is already built (a damaged one is rebuilt on use)."""
    return (default_memory_path(encoder) / MANIFEST).is_file()


def default_memory(encoder: TextEncoder, progress: Callable[[int], None] | None = None) -> MemoryBundle:
    """The cached bundle, or a fresh build; ``progress(k)`` is told of every k captions embedded.

    Two processes starting at once on a fresh machine (two cameras, a service's parts) build it
    once: the second waits for the first's build and reads it, rather than building its own and
    swapping it in while the first reads."""
    from memory_builder import build_memory

    path = default_memory_path(encoder)
    bundle = _cached(path)
    if bundle is not None:
        return bundle
    with exclusive(path.parent / f".{path.name}.lock"):
        bundle = _cached(path)  # built by another process while this one waited
        if bundle is not None:
            return bundle
        table = default_captions()
        n_seed = sum(p.startswith("seed") for p in table.provenance)
        build_memory(table, encoder, path, progress=progress, batch_size=50,  # a bar that moves every few seconds on a CPU
                     provenance={"builder": "default", "seed_captions": n_seed, "grammar_captions": len(table) - n_seed})
        return load_bundle(path)


def _cached(path: Path) -> MemoryBundle | None:
    """The bundle at ``path``; None if there is none, or a damaged one (rebuilt: write_bundle
    replaces it atomically)."""
    if (path / MANIFEST).is_file():
        try:
            return load_bundle(path)
        except BundleError:
            pass
    return None
