"""Embed labelled captions with the text tower and write a bundle.

Templates wrap the captions before encoding; the stored captions stay unwrapped, since the
explanation shown to people is the caption, not the prompt.
"""

from __future__ import annotations

from pathlib import Path

from flashback.encoders.protocols import TextEncoder
from flashback.memory.bundle import BundleSpec, CaptionTable, write_bundle
from flashback.memory.manifest import Manifest
from flashback.memory.templates import DEFAULT_ALPHA, DEFAULT_TEMPLATE, apply_template

from .captions_io import ReadReport, read_labelled_captions


def build_memory(
    captions: CaptionTable,
    encoder: TextEncoder,
    out: Path,
    alpha: float = DEFAULT_ALPHA,
    template: str = DEFAULT_TEMPLATE,
    index_factory: str = "Flat",
    provenance: dict | None = None,
    progress=None,
    batch_size: int = 256,
) -> Manifest:
    prompts = [
        apply_template(template, text, bool(a), cat)
        for text, a, cat in zip(captions.texts, captions.anomalous, captions.categories)
    ]
    vectors = encoder.encode_texts(prompts, batch_size=batch_size, progress=progress)
    spec = BundleSpec(encoder.identity, alpha, template, encoder.logit_scale, index_factory, provenance or {})
    return write_bundle(out, captions, vectors, spec)


def build_from_captions(
    paths: list[Path], encoder: TextEncoder, out: Path, progress=None, **kwargs
) -> tuple[Manifest, ReadReport]:
    captions, report = read_labelled_captions(paths)
    provenance = {
        "builder": "from-captions",
        "sources": [str(p) for p in paths],
        "rows_read": report.rows,
        "duplicates_dropped": report.duplicates,
    }
    manifest = build_memory(captions, encoder, out, provenance=provenance, progress=progress, **kwargs)
    return manifest, report
