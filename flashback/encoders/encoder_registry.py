"""Which encoder, and which weights: names and identities, kept apart from the model code.

An encoder identity is what a memory bundle pins: the open_clip architecture, the weights (a
pretrained tag, ``sha256:<hex>`` of a local checkpoint, or ``random:<seed>`` for untrained
weights used in tests and speed benchmarks) and the embedding dimension.  Scoring with a bundle
built under another identity is refused, because the two embedding spaces do not match.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import EncoderError, UsageError

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
RANDOM_TAG = "random"  # --pretrained random: seeded random init, never for real scoring
MODEL_CONFIG_ENV = "FLASHBACK_MODEL_CONFIGS"  # extra open_clip model-config JSON files or folders


@dataclass(frozen=True)
class EncoderSpec:
    """What the user asked for; resolved into an EncoderIdentity once the weights are known."""

    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    checkpoint: Path | None = None
    seed: int = 0  # only used with RANDOM_TAG

    def __post_init__(self) -> None:
        if self.checkpoint is not None and self.pretrained not in (None, DEFAULT_PRETRAINED):
            raise UsageError("give either --pretrained or --checkpoint, not both")

    @property
    def is_random(self) -> bool:
        return self.checkpoint is None and self.pretrained == RANDOM_TAG

    def check_checkpoint(self) -> None:
        """A named checkpoint must be a file: refused with this line before anything is loaded (by
        the encoder, and by ``flashback review``'s check, which loads nothing)."""
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise EncoderError(f"{self.checkpoint}: checkpoint file not found")


@dataclass(frozen=True)
class EncoderIdentity:
    family: str  # "open_clip" (sentence-transformers text encoders come with the caption path)
    model: str
    weights: str
    dim: int

    @property
    def key(self) -> str:
        return f"{self.family}:{self.model}@{self.weights}/{self.dim}"

    def to_dict(self) -> dict:
        return {"family": self.family, "model": self.model, "weights": self.weights, "dim": self.dim}

    @classmethod
    def from_key(cls, key: str) -> "EncoderIdentity":
        """The identity a ``key`` names (as the store's ``runs.encoder_id`` keeps it)."""
        family, rest = key.split(":", 1)
        model, rest = rest.rsplit("@", 1)
        weights, dim = rest.rsplit("/", 1)
        return cls(family, model, weights, int(dim))

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderIdentity":
        return cls(family=d["family"], model=d["model"], weights=d["weights"], dim=int(d["dim"]))


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_label(spec: EncoderSpec) -> str:
    if spec.checkpoint is not None:
        return "sha256:" + file_sha256(spec.checkpoint)
    if spec.is_random:
        return f"{RANDOM_TAG}:{spec.seed}"
    return spec.pretrained or "none"


def weights_cached(spec: EncoderSpec) -> bool | None:
    """Whether a pretrained tag's weights are already in the local Hugging Face cache.

    None when it cannot be told (a tag served from a plain URL, or no huggingface_hub): the caller
    then just loads, and a download may happen.
    """
    if spec.checkpoint is not None or spec.is_random or not spec.pretrained:
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cfg = import_open_clip().get_pretrained_cfg(spec.model, spec.pretrained)
    hub = (cfg or {}).get("hf_hub")
    if not hub:
        return None
    repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def register_extra_model_configs() -> list[str]:
    """Register open_clip model configs named in FLASHBACK_MODEL_CONFIGS (os.pathsep-separated).

    This is open_clip's own ``add_model_config``: how a user brings a custom architecture, and
    how the test suite brings its tiny one without shipping it as a model.  Called where a model is
    looked up (``available_models``, a tokenizer worker), not at start: importing open_clip costs
    several CPU-seconds that commands without an image encoder (review, memory info, prune) need not pay.
    """
    added = list(filter(None, os.environ.get(MODEL_CONFIG_ENV, "").split(os.pathsep)))
    if added:
        open_clip = import_open_clip()
        for item in added:
            open_clip.add_model_config(item)
    return added


def available_models() -> list[str]:
    register_extra_model_configs()
    return import_open_clip().list_models()


class RefusedTo(importlib.abc.MetaPathFinder):
    """On ``sys.meta_path``: refuses package ``name`` to imports made by the modules under
    ``package_dir``, and to no one else (another thread that imports it meanwhile, a sentence model
    loading beside, is not disturbed).  Only what is not imported yet is asked of a finder."""

    def __init__(self, name: str, package_dir: str):
        self.name, self.package_dir = name, package_dir

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] != self.name:
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back  # up from the import machinery to the module that imports
        if frame is not None and frame.f_code.co_filename.startswith(self.package_dir):
            raise ImportError(f"{self.name} is refused to the modules of {self.package_dir} while they load")
        return None


def import_open_clip():
    """open_clip, imported without transformers.

    open_clip imports transformers when it is itself imported, for the few architectures whose text
    tower is a Hugging Face model.  Where transformers is installed (the dedup extra installs it)
    that cost every process that loads an encoder 1.1 CPU-s (5.3 -> 4.3 to import torch and
    open_clip here), the CLI's commands, the Ray actors and the tokenizer workers alike; so open_clip's
    modules are refused it while they load (open_clip's own fallback for a missing transformers
    takes over).  ``hf_towers`` hands it to open_clip for a model that needs it."""
    if "open_clip" in sys.modules:
        import open_clip

        return open_clip
    spec = importlib.util.find_spec("open_clip")
    finder = RefusedTo("transformers", os.path.dirname(spec.origin) + os.sep) if spec and spec.origin else None
    if finder:
        sys.meta_path.insert(0, finder)
    try:
        import open_clip
    finally:
        if finder:
            sys.meta_path.remove(finder)
    return open_clip


def hf_towers(model: str) -> None:
    """Before ``model`` is created: where its text tower is a Hugging Face model (its config names an
    ``hf_model_name``; a model open_clip does not know is treated alike), open_clip's modules that
    import transformers are run again, now with it (nothing to do where they have it already, or
    where it is not installed: open_clip then says to install it)."""
    open_clip = import_open_clip()
    config = open_clip.get_model_config(model)
    if config is not None and "hf_model_name" not in config.get("text_cfg", {}):
        return
    if open_clip.hf_model.transformers is None and importlib.util.find_spec("transformers") is not None:
        importlib.reload(open_clip.hf_model)  # in place: the classes open_clip holds see the new names
