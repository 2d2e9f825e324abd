"""``--precision int8`` on OpenVINO: the image tower quantized after training (NNCF), opt-in.

On a CPU without AMX, bf16 does not pay (``backends.bf16_pays``) and fp32 OpenVINO runs at PyTorch's
pace; int8 on AVX-512 VNNI ran the ViT-B-32 image tower about 3x faster than fp32 on this project's
machine.  Its vectors sit further from fp32's, below the 0.9999 a default must hold, so nothing picks
it by itself, and every load says the fidelity it was measured at: with random ViT-B-32 weights a
lowest cosine of 0.9997 on held-out frames of the calibration clip, but 0.88 on uniform noise, input
unlike anything it was calibrated on; how real weights fare on real cameras is not measured here.  Calibration uses frames of flashback's own sample clip (a drawn street), fit as the
pipeline fits frames; 64 frames the quantizer did not see measure the fidelity.  The text tower stays
fp32.  Real weights on real footage are not measured here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import cache_dir

log = logging.getLogger(__name__)

CALIBRATION, HELD_OUT = 160, 64
FIDELITY_FILE = "fidelity.json"


def calibration_frames(size: int, pad_rgb) -> np.ndarray:
    """(N, size, size, 3) uint8: the sample clip on the default grid, fit as scoring fits frames."""
    from ..settings import PRESETS
    from ..video.decode import FrameFit, VideoReader
    from ..video.sample import sample_video
    from ..video.sources import VideoSource
    from ..video.timegrid import TimeGrid

    clip = sample_video(cache_dir() / "sample")
    settings = PRESETS["default"]
    with VideoReader(VideoSource(str(clip)), FrameFit(settings.frame_fit, size, pad_rgb)) as reader:
        frames = [rgb for _, rgb in reader.samples(TimeGrid.from_settings(settings))]
    return np.stack(frames)


def quantized(fp32_model: Path, key: str, frames: Callable[[], np.ndarray]) -> tuple[Path, dict]:
    """The int8 image tower under the cache (made now if missing, from ``frames()``: decoded only
    then) and the fidelity it was measured at."""
    from .backends import cached

    def make(path: Path) -> None:
        import nncf
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(fp32_model))
        seen = frames()
        calib, held = seen[::2][:CALIBRATION], seen[1::2][:HELD_OUT]
        q = nncf.quantize(model, nncf.Dataset([calib[i : i + 1] for i in range(len(calib))]),
                          model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib))
        ov.save_model(q, str(path), compress_to_fp16=False)
        before = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(held)[0]
        after = core.compile_model(q, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(held)[0]
        cos = (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
        (path.parent / FIDELITY_FILE).write_text(json.dumps({
            "lowest_cosine_to_fp32": round(float(cos.min()), 6), "mean_cosine_to_fp32": round(float(cos.mean()), 6),
            "held_out_frames": len(held), "calibration_frames": len(calib), "frames_from": "flashback's sample clip"}))

    path = cached(key, "model.xml", make, "quantizing the image tower to int8", "--precision fp32 runs without it")
    fidelity = json.loads((path.parent / FIDELITY_FILE).read_text())
    log.warning("--precision int8: the image tower's vectors sit at a lowest cosine of %.4f to fp32 on %d frames of "
                "the sample clip it was not calibrated on; footage unlike it can sit lower (opt-in: defaults hold "
                "0.9999)", fidelity["lowest_cosine_to_fp32"], fidelity["held_out_frames"])
    return path, fidelity
