"""The interfaces modules meet at, declared once (``typing.Protocol``): what an encoder offers.

Two kinds of encoder reach the scorer: ``ClipEncoder`` (open_clip, both towers) and
``SentenceEncoder`` (sentence-transformers, text only, for caption input).  Code that only embeds
text (memory building, caption scoring) takes a ``TextEncoder``; code that embeds frames takes an
``ImageEncoder``.  Live-feed outputs have their own protocol, ``live.sinks.LiveSink``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from .encoder_registry import EncoderIdentity


@runtime_checkable
class TextEncoder(Protocol):
    identity: EncoderIdentity  # what a memory bundle pins
    logit_scale: float  # the softmax sharpness a memory built with it defaults to

    @property
    def dim(self) -> int: ...

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(N,) strings -> (N, dim) float32 unit vectors."""
        ...


@runtime_checkable
class ImageEncoder(TextEncoder, Protocol):
    image_size: int  # the square input side
    pad_rgb: tuple[int, int, int]  # the normalisation mean as RGB: a neutral fill for padding
    images_encoded: int  # frames encoded so far, for tests and benchmarks

    def encode_images(self, rgb: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, dim) float32 unit vectors."""
        ...


def encode_views(encoder: ImageEncoder, rgb: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) -> (N, D), or (N, V, S, S, 3) for V views per frame -> (N, V, D)."""
    rgb = np.asarray(rgb)
    lead = rgb.shape[:-3]
    return encoder.encode_images(rgb.reshape(-1, *rgb.shape[-3:])).reshape(*lead, -1)
