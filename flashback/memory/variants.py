"""Memories derived from another one, in memory, for ablation sweeps (never written to disk).

A subset keeps the label balance of its parent and reuses its vectors when the index can give
them back (Flat does); a template variant re-encodes the captions with another wrapper.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import BundleError
from .bundle import CaptionTable, MemoryBundle, build_indexes
from .templates import apply_template


def keeps_vectors(memory: MemoryBundle) -> bool:
    """Whether ``stored_vectors`` can give the vectors back, asked of one row per index (not a copy of all)."""
    try:
        for index in memory.indexes.values():
            index.reconstruct_n(0, min(1, index.ntotal))
    except RuntimeError:
        return False
    return True


def stored_vectors(memory: MemoryBundle) -> np.ndarray | None:
    parts = []
    for label in ("normal", "anomalous"):
        index = memory.indexes[label]
        try:
            parts.append(index.reconstruct_n(0, index.ntotal))
        except RuntimeError:  # indexes that do not keep vectors (PQ, some IVF)
            return None
    return np.concatenate(parts)


def _bundle(parent: MemoryBundle, captions: CaptionTable, vectors: np.ndarray, tag: str, **manifest_changes) -> MemoryBundle:
    indexes = build_indexes(captions, vectors, parent.manifest.index_factory)
    manifest = dataclasses.replace(
        parent.manifest, counts={"normal": captions.n_normal, "anomalous": captions.n_anomalous},
        categories=captions.category_counts(), memory_id=f"{parent.memory_id}+{tag}", **manifest_changes,
    )
    return MemoryBundle(parent.path, manifest, captions, indexes)


def subset(parent: MemoryBundle, size: int, encoder=None, seed: int = 0) -> MemoryBundle:
    """``size`` captions drawn without replacement, normal and anomalous in the parent's ratio."""
    caps = parent.captions
    if size >= len(caps):
        return parent
    rng = np.random.default_rng(seed)
    n_anom = max(1, round(size * caps.n_anomalous / len(caps)))
    normal_ids = np.flatnonzero(~caps.anomalous)
    anom_ids = np.flatnonzero(caps.anomalous)
    keep = np.concatenate([np.sort(rng.choice(normal_ids, size - n_anom, replace=False)),
                           np.sort(rng.choice(anom_ids, n_anom, replace=False))])
    table = CaptionTable([caps.texts[i] for i in keep], caps.anomalous[keep],
                         [caps.categories[i] for i in keep], [caps.provenance[i] for i in keep])
    vectors = stored_vectors(parent)
    if vectors is None:
        if encoder is None:
            raise BundleError(f"{parent.path}: its index does not keep its vectors; a subset needs the encoder to re-embed it")
        return with_template(parent, parent.manifest.template, encoder, table, tag=f"subset{size}")
    return _bundle(parent, table, vectors[keep], f"subset{size}")


def with_template(parent: MemoryBundle, template: str, encoder, table: CaptionTable | None = None,
                  tag: str | None = None) -> MemoryBundle:
    table = table or parent.captions
    prompts = [apply_template(template, t, bool(a), c) for t, a, c in zip(table.texts, table.anomalous, table.categories)]
    return _bundle(parent, table, encoder.encode_texts(prompts), tag or f"template-{template}", template=template)
