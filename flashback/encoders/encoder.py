"""The open_clip model: image tower for video frames, text tower for memory captions.

Both outputs are L2-normalised float32 numpy arrays, whatever precision the model runs in (half
on CUDA), because everything downstream (FAISS, scoring, the store) works in float32.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
import warnings
from collections import deque
from collections.abc import Sequence

import numpy as np

from ..errors import EncoderError, first_line
from ..net import unreachable
from ..processes import main_module_hidden, spawn_context
from .backends import Precisions, resolve_backend, resolve_precisions
from .encoder_registry import (
    EncoderIdentity,
    EncoderSpec,
    available_models,
    hf_towers,
    import_open_clip,
    register_extra_model_configs,
    weights_cached,
    weights_label,
)
from .towers import image_tower, text_tower, trim_tokens

log = logging.getLogger(__name__)


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot serve a download now (HF_HUB_OFFLINE, or one TCP connect to
    HF_ENDPOINT failing), or None: a box without network is told in seconds, not after retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    why = unreachable(host, port, timeout_s)
    return f"{host}:{port}: {why}" if why else None


def _quiet_hub() -> None:
    """huggingface_hub logs every retry of an unreachable download; our one error line says it all."""
    try:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    except ImportError:
        pass


def _not_open_clip(record: logging.LogRecord) -> bool:
    """A filter on the root logger while a model loads: open_clip logs through the root logger
    itself (``logging.info``/``warning`` at module level), so dropping the root's own records that
    come from its files silences it alone; other threads' loggers, and ours, still speak."""
    return not record.pathname.startswith(os.path.dirname(import_open_clip().__file__))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EncoderError("--device cuda: no CUDA device is available on this machine")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise EncoderError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    return device


_SEEDED = threading.Lock()  # model creation, so a random-weight model's seed alone decides its weights

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")


def resolve_precision(precision: str, device: str) -> str:
    """auto: fp16 on CUDA, fp32 on CPU (CPU half precision is slow or unsupported; bf16 is offered)."""
    if precision not in PRECISIONS:
        raise EncoderError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    if precision == "fp16" and not device.startswith("cuda"):
        raise EncoderError("--precision fp16 needs a CUDA device; on CPU use fp32 or bf16")
    if precision == "int8":
        raise EncoderError("--precision int8 runs on OpenVINO only: add --backend openvino (on a CPU)")
    return precision


class ClipEncoder:
    """Load once, encode many batches (an ``ImageEncoder``).  ``images_encoded`` counts frames.

    ``backend`` (``backends.BACKENDS``): where the towers run.  Other than torch, the PyTorch model is
    still loaded (the identity, the export and its key come from it), in fp32, and ``precision`` says
    what runs inside the exported towers; ``runtime`` names both for run records and benchmarks."""

    def __init__(self, spec: EncoderSpec = EncoderSpec(), device: str = "auto", precision: str = "auto",
                 backend: str = "auto"):
        import torch

        open_clip = import_open_clip()
        self.spec = spec
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        precisions = None
        if self.backend == "torch":
            self.precision = resolve_precision(precision, self.device)
        else:
            if precision != "int8":
                resolve_precision(precision, "cpu")  # the same one-line refusals as the torch path
            precisions = resolve_precisions(self.backend, precision)
            self.precision = precisions.image
        models = available_models()
        if spec.model not in models:
            raise EncoderError(
                f"unknown open_clip model {spec.model!r} (see open_clip.list_models(); e.g. ViT-B-32, ViT-L-14)"
            )
        spec.check_checkpoint()
        hf_towers(spec.model)
        if spec.is_random:
            log.warning("encoder %s has RANDOM weights: scores are meaningless (tests/benchmarks only)", spec.model)
        if weights_cached(spec) is False:
            offline = hub_unreachable()
            if offline:  # else open_clip would spend most of a minute on download retries
                raise EncoderError(
                    f"pretrained weights {spec.model}/{spec.pretrained} are not in the local cache and the hub cannot "
                    f"be reached ({offline}); pass --checkpoint FILE (or checkpoint = \"FILE\" in flashback.toml)")
            log.warning(
                "downloading pretrained weights %s/%s on first use (several hundred MB; "
                "pass --checkpoint FILE to use a local file instead)", spec.model, spec.pretrained,
            )
        pretrained = str(spec.checkpoint) if spec.checkpoint else (None if spec.is_random else spec.pretrained)
        try:
            with warnings.catch_warnings(), _SEEDED:
                if spec.is_random:  # under the lock: two threads drawing from torch's one generator at once
                    torch.manual_seed(spec.seed)  # would give neither the weights ``random:<seed>`` names
                warnings.simplefilter("ignore")
                logging.getLogger().addFilter(_not_open_clip)  # its "initialized randomly" and the like
                _quiet_hub()
                model, _, _ = open_clip.create_model_and_transforms(
                    spec.model, pretrained=pretrained, device=self.device,
                    precision=self.precision if self.backend == "torch" else "fp32",  # exports start from fp32
                )
        except Exception as e:  # open_clip raises RuntimeError/ValueError/OSError/HF errors alike
            where = f"checkpoint {spec.checkpoint}" if spec.checkpoint else f"pretrained weights {spec.model}/{spec.pretrained}"
            raise EncoderError(
                f"{where}: cannot load ({first_line(e)}); "
                "no network? download once elsewhere and pass --checkpoint FILE"
            ) from None
        finally:
            logging.getLogger().removeFilter(_not_open_clip)
        model.eval()
        self._model = model
        self._tokenizer = open_clip.get_tokenizer(spec.model)
        cfg = model.visual.preprocess_cfg
        size = cfg["size"]
        self.image_size = int(size if isinstance(size, int) else size[0])
        loaded = self.precision if self.backend == "torch" else "fp32"
        self._dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[loaded]
        self._image_tower = image_tower(model, cfg["mean"], cfg["std"], self._dtype)
        self._text_tower = text_tower(model)
        self.pad_rgb = tuple(int(round(255 * m)) for m in cfg["mean"])
        self.logit_scale = float(model.logit_scale.exp().item())
        with torch.inference_mode():
            dim = model.encode_text(self._tokenizer(["x"]).to(self.device)).shape[-1]
        self.identity = EncoderIdentity("open_clip", spec.model, weights_label(spec), int(dim))
        self.runtime = f"{self.backend}/{self.precision}"
        self.int8_fidelity: dict | None = None  # --precision int8: how close its image vectors stay to fp32's
        if precisions is not None:
            self._compile(precisions)
            self.runtime = f"{self.backend}/{precisions.label}"
        self.images_encoded = 0
        self.tokenize_workers = max(0, len(os.sched_getaffinity(0)) - 1) if self.device.startswith("cuda") else 0
        self._staging = threading.local()  # page-locked buffers for frames on their way to a GPU

    @property
    def dim(self) -> int:
        return self.identity.dim

    def _compile(self, precisions: Precisions) -> None:
        """Both towers exported (once, into the cache) and compiled for this CPU."""
        import torch

        from .backends import CompiledTower, export_key, exported, weights_fingerprint

        weights = weights_fingerprint(self._model)
        frames = torch.zeros((3, self.image_size, self.image_size, 3), dtype=torch.uint8)
        tokens = torch.from_numpy(trim_tokens(self._tokenizer(["a photo of a street at night", "x", "a car"]).numpy(), self._model))
        runs = {}
        for tower, module, example, axes, precision in (
                ("image", self._image_tower, frames, ("batch",), precisions.image),
                ("text", self._text_tower, tokens, ("batch", "tokens"), precisions.text)):
            key = export_key(self.identity.key, tower, self.backend, weights)
            path = exported(module, example, axes, self.backend, key)
            if precision == "int8":  # opt-in: quantized from the fp32 export, its fidelity said (int8.py)
                from .int8 import calibration_frames, quantized

                path, self.int8_fidelity = quantized(path, key.replace("image-", "image-int8-", 1),
                                                     lambda: calibration_frames(self.image_size, self.pad_rgb))
                precision = "fp32"  # what the quantized graph's other operations run in
            runs[tower] = CompiledTower(path, self.backend, precision)
        self._image_run, self._text_run = runs["image"], runs["text"]

    def encode_images(self, rgb: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8, already resized and cropped to ``image_size`` -> (N, D) unit vectors."""
        import torch

        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if self.backend == "torch":
            with torch.inference_mode():
                feats = self._image_tower(self._to_device(rgb)).float().cpu().numpy()
        else:
            feats = _unit(self._image_run(rgb))
        self.images_encoded += len(rgb)
        return feats

    def _to_device(self, rgb: np.ndarray):
        """uint8 frames onto the device.  On CUDA through a reused page-locked buffer, so the copy is
        a DMA that does not stall on pageable memory (and is issued asynchronously; the result's
        ``.cpu()`` waits for it).  uint8 is a quarter of float32 on the bus: normalising happens there."""
        import torch

        x = torch.from_numpy(rgb)
        if not self.device.startswith("cuda"):
            return x
        pinned = getattr(self._staging, "buffer", None)  # one per thread: live feeds share an encoder
        if pinned is None or pinned.shape[1:] != x.shape[1:] or len(pinned) < len(x):
            pinned = self._staging.buffer = torch.empty((max(len(x), 256), *x.shape[1:]), dtype=torch.uint8).pin_memory()
        staged = pinned[: len(x)]
        staged.copy_(x)
        return staged.to(self.device, non_blocking=True)

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None, progress=None) -> np.ndarray:
        """(N, D) unit vectors.  Batches of 1,024 on a GPU (256 on a CPU), of captions of about one
        length (sorted by characters, the order restored at the end), each cut after its longest
        caption (``towers.trim_tokens``).  open_clip's tokenizer is pure Python, about 18k captions/s
        on one core, while a GPU's text tower takes 28k/s: from ``PARALLEL_TOKENS`` captions on, on a
        GPU, tokenizing runs in worker processes, ahead of the GPU."""
        import torch

        size = batch_size or (1024 if self.device.startswith("cuda") else 256)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = [[texts[i] for i in order[j : j + size]] for j in range(0, len(order), size)]
        parallel = self.tokenize_workers if len(texts) >= PARALLEL_TOKENS else 0
        out = []
        with torch.inference_mode():
            for tokens in tokenized(chunks, self.spec.model, parallel, self._tokenizer):
                tokens = trim_tokens(tokens, self._model)
                if self.backend == "torch":
                    x = torch.from_numpy(tokens).to(self.device, non_blocking=True)
                    out.append(self._text_tower(x).float().cpu().numpy())
                else:
                    out.append(_unit(self._text_run(tokens)))
                if progress is not None:
                    progress(len(tokens))
        if not out:
            return np.zeros((0, self.dim), np.float32)
        vectors = np.empty((len(texts), self.dim), np.float32)
        vectors[order] = np.concatenate(out)
        return vectors


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 in float32: a bf16 graph's own normalisation is only near it."""
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


PARALLEL_TOKENS = 20_000  # below this, starting tokenizer processes costs more than it saves
AHEAD = 4  # chunks each tokenizer process works ahead of the encoder

_worker_tokenizer = None


def _start_tokenizer(model: str) -> None:
    global _worker_tokenizer
    register_extra_model_configs()
    _worker_tokenizer = import_open_clip().get_tokenizer(model)


def _tokenize(texts: list[str]) -> np.ndarray:
    return _worker_tokenizer(texts).numpy()


def tokenized(chunks: list[list[str]], model: str, workers: int, tokenizer):
    """Token arrays of ``chunks``, in order: here, or (``workers`` > 0) from processes a few chunks ahead."""
    if workers < 1 or len(chunks) < 2:
        for chunk in chunks:
            yield tokenizer(chunk).numpy()
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=spawn_context(), initializer=_start_tokenizer, initargs=(model,)) as pool:
        with main_module_hidden():  # the processes start with the first submissions
            window = deque(pool.submit(_tokenize, c) for c in chunks[: workers * AHEAD])
        for chunk in chunks[workers * AHEAD :]:
            yield window.popleft().result()
            window.append(pool.submit(_tokenize, chunk))
        while window:
            yield window.popleft().result()
