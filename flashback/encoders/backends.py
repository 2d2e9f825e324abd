"""Where the towers run: PyTorch, or on a CPU OpenVINO or ONNX Runtime, from a model exported once.

Many boxes next to cameras have no NVIDIA GPU (Frigate's users run its detector on OpenVINO for that
reason).  On a CPU with AMX, OpenVINO runs the image tower in bf16 several times faster than PyTorch
in fp32 (5.9x in issue 31's trial), with vectors within a cosine of 1e-4 of PyTorch's (``bench``
prints the lowest it sees; the suite holds the default to it); without AMX it runs fp32 at about
PyTorch's pace, and the opt-in int8 (``int8.py``) is the faster way there.  The towers (``towers.py``) are exported on
first use into the cache, keyed by everything that shapes the graph (identity, a fingerprint of the
weights, the libraries' versions), written to a temporary folder and renamed into place, so
concurrent first runs and interrupted ones never leave half a model, and a box without network
reuses it.  CUDA keeps PyTorch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import cache_dir
from ..errors import EncoderError, first_line

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
CPU_BACKENDS = ("openvino", "onnxruntime")  # auto's order: the fastest first
log = logging.getLogger(__name__)
EXTRA = {"openvino": "pip install 'flashback[cpu]'", "onnxruntime": "pip install 'flashback[onnx]'"}


def installed(backend: str) -> bool:
    return backend == "torch" or importlib.util.find_spec(backend) is not None


def resolve_backend(backend: str, device: str) -> str:
    """auto: PyTorch on CUDA; on a CPU the first of OpenVINO, ONNX Runtime installed, else PyTorch."""
    if backend not in BACKENDS:
        raise EncoderError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    cuda = device.startswith("cuda")
    if backend == "auto":
        return "torch" if cuda else next((b for b in CPU_BACKENDS if installed(b)), "torch")
    if backend != "torch" and cuda:
        raise EncoderError(f"--backend {backend} runs on the CPU; with --device {device} use torch (or auto)")
    if not installed(backend):
        raise EncoderError(f"--backend {backend}: {backend} is not installed ({EXTRA[backend]})")
    return backend


@dataclass(frozen=True)
class Runtime:
    """How an encoder runs, as the user asked (``--precision``, ``--backend``): what travels to the
    cluster's actors beside the ``EncoderSpec``, each resolving it on its own device."""

    precision: str = "auto"
    backend: str = "auto"


def cpu_has_bf16() -> bool:
    """Whether OpenVINO can run bf16 here at all (AVX-512 BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags known, so nothing is assumed
        return set()
    return next((set(line.partition(":")[2].split()) for line in text.splitlines() if line.startswith("flags")), set())


def bf16_pays() -> bool:
    """Whether auto runs the image tower in bf16: on a CPU with AMX only.  There OpenVINO's bf16
    ViT-B-32 image tower ran 5.9x PyTorch fp32 (issue 31's trial); on AVX-512 BF16 without AMX it ran
    at 0.7x OpenVINO's own fp32 (this project's machine, a later session), so fp32 is kept there."""
    return "amx_bf16" in cpu_flags()


@dataclass(frozen=True)
class Precisions:
    """What runs inside each tower.  OpenVINO's auto: the image tower in bf16 where the CPU has AMX
    (frames are the volume; ``bf16_pays``), the text tower in fp32 (its bf16 vectors sat at a cosine of 0.99991 to
    fp32, at the edge of the stated 0.9999; memory builds are offline, and fp32 is fast enough)."""

    image: str
    text: str

    @property
    def label(self) -> str:
        return self.image if self.image == self.text else f"{self.image} image, {self.text} text"


def resolve_precisions(backend: str, precision: str) -> Precisions:
    """``precision`` as ``--precision`` gives it (auto, fp32, fp16, bf16, int8) for a CPU backend."""
    if precision == "fp16":
        raise EncoderError("--precision fp16 needs a CUDA device; on CPU use fp32 or bf16")
    if backend == "onnxruntime":
        if precision in ("bf16", "int8"):
            raise EncoderError(f"--precision {precision}: ONNX Runtime runs fp32 on a CPU here; "
                               f"use --backend openvino for {precision}")
        return Precisions("fp32", "fp32")
    if precision == "int8":
        if not installed("nncf"):
            raise EncoderError("--precision int8 needs NNCF to quantize the image tower once (pip install 'flashback[int8]')")
        return Precisions("int8", "fp32")
    if precision == "auto":
        return Precisions("bf16" if bf16_pays() and cpu_has_bf16() else "fp32", "fp32")
    if precision == "bf16" and not cpu_has_bf16():
        raise EncoderError("--precision bf16: this CPU has no bf16 support (OpenVINO reports none); use fp32")
    return Precisions(precision, precision)


def weights_fingerprint(module) -> str:
    """A cheap hash of a module's weights (each tensor's shape and first and last values): the
    export's key changes with the weights even where the identity's label would not."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        flat = t.detach().reshape(-1)
        ends = torch.cat([flat[:16], flat[-16:]]).float().cpu().numpy()
        h.update(f"{name}{tuple(t.shape)}".encode() + ends.tobytes())
    return h.hexdigest()[:20]


def export_key(identity_key: str, tower: str, backend: str, fingerprint: str) -> str:
    """The export's folder name: what made the graph (identity, weights, tower, the libraries)."""
    from importlib.metadata import version

    import open_clip
    import torch

    parts = [identity_key, tower, backend, fingerprint, torch.__version__, open_clip.__version__, version(backend)]
    return f"{tower}-{backend}-" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


MODEL_FILE = {"openvino": "model.xml", "onnxruntime": "model.onnx"}


def exported(module, example, dynamic: tuple[str, ...], backend: str, key: str) -> Path:
    """The exported model file of ``module`` (a tower) under the cache, made now if it is not there.
    ``dynamic``: a name per input axis that varies (batch, sequence), others fixed by ``example``."""
    export = _export_openvino if backend == "openvino" else _export_onnx
    return cached(key, MODEL_FILE[backend], lambda path: export(module, example, dynamic, path),
                  f"exporting the {key.split('-')[0]} tower to {backend}", "--backend torch runs without an export")


def cached(key: str, filename: str, make, doing: str, instead: str) -> Path:
    """``exports/KEY/FILENAME`` in the cache; when missing, ``make(path)`` writes it (and any files
    beside it) into a temporary folder that is then renamed into place: atomic, so a killed or
    concurrent first run never leaves half a model, and the first of two concurrent ones wins.  In
    one process exports take turns (torch's tracer is not thread-safe: two at once failed one)."""
    folder = cache_dir() / "exports" / key
    target = folder / filename
    if target.is_file():
        return target
    with _EXPORTING:
        if target.is_file():  # another thread made it while this one waited
            return target
        return _make(folder, target, make, doing, instead)


_EXPORTING = threading.Lock()


def _make(folder: Path, target: Path, make, doing: str, instead: str) -> Path:
    key, filename = folder.name, target.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.warning("%s, once for these weights (seconds to a minute); cached in %s", doing, folder.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracers' notes on the graph's Python-side checks
            make(tmp / filename)
        try:
            os.rename(tmp, folder)  # atomic; refused when another process put its export there first
        except OSError:
            if not target.is_file():
                raise
    except EncoderError:
        raise
    except Exception as e:  # noqa: BLE001 - converters raise anything; one line names the step and the cause
        raise EncoderError(f"{doing} failed: {first_line(e)}; {instead}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _export_openvino(module, example, dynamic, path: Path) -> None:
    import openvino as ov
    import torch

    shape = ov.PartialShape([-1 if i < len(dynamic) else n for i, n in enumerate(example.shape)])
    with torch.no_grad():
        model = ov.convert_model(module, example_input=example, input=[shape])
    ov.save_model(model, str(path), compress_to_fp16=False)  # its default halves the weights: not ours


def _export_onnx(module, example, dynamic, path: Path) -> None:
    """torch's dynamo exporter: the TorchScript one fixes the text length in the attention's reshapes."""
    import torch

    axes = {i: torch.export.Dim.DYNAMIC for i in range(len(dynamic))}
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=["x"], output_names=["v"],
                          dynamic_shapes=(axes,), dynamo=True, external_data=False, verbose=False)


class CompiledTower:
    """An exported tower, compiled for this CPU: (N, ...) array in, (N, D) float32 unit vectors out.
    Callable from several threads at once (live feeds share an encoder): OpenVINO gets an infer
    request per thread, ONNX Runtime's ``run`` is thread-safe."""

    def __init__(self, path: Path, backend: str, precision: str):
        self.backend = backend
        try:
            if backend == "openvino":
                import openvino as ov

                hint = {"bf16": "bf16", "fp32": "f32"}[precision]
                self._compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint})
                self._requests = threading.local()
            else:
                import onnxruntime as ort

                self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: say which, and how to get a fresh one
            raise EncoderError(f"{path}: cannot load this {backend} export ({first_line(e)}); "
                               f"delete {path.parent} and it is made again") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.backend == "onnxruntime":
            return self._session.run(None, {"x": x})[0]
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        request.infer([x])
        return request.get_output_tensor(0).data.copy()
