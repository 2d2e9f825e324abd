"""What a frame costs: parameters, multiply-accumulates, and (on NVIDIA GPUs) energy.

zxVAD-style reports give parameters and GMACs; nobody reports energy per hour of video, which is
what a fleet's power bill follows.  MACs are counted by torch's own ``FlopCounterMode`` on one
frame, with autograd on: in inference mode ``nn.MultiheadAttention`` takes a fused fast path whose
matrix products the counter cannot see (the attention-score products it still misses are about 1 %
of a ViT-B-32's 4.4 GMACs).  Energy is NVML's cumulative counter (``nvidia-ml-py``), read before
and after the run; None where there is no NVML or the GPU does not report it.
"""

from __future__ import annotations


def model_cost(encoder) -> dict:
    """Parameters (millions) of the image tower and the whole model, and GMACs per encoded frame."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = encoder._model
    x = torch.zeros(1, 3, encoder.image_size, encoder.image_size, device=encoder.device, dtype=encoder._dtype)
    with FlopCounterMode(display=False) as counter:
        model.encode_image(x)
    return {"params_image_tower_m": round(sum(p.numel() for p in model.visual.parameters()) / 1e6, 2),
            "params_total_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "macs_per_frame": counter.get_total_flops() // 2, "gmacs_per_frame": float(f"{counter.get_total_flops() / 2e9:.4g}")}


class EnergyMeter:
    """Joules the GPU drew between ``__enter__`` and ``__exit__`` (``joules``), or None."""

    def __init__(self, device: str):
        self.joules: float | None = None
        self._handle = None
        if not str(device).startswith("cuda"):
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = int(str(device).partition(":")[2] or 0)
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)  # older GPUs do not count: raises
        except Exception:  # noqa: BLE001 - no NVML, no driver support: energy is simply not reported
            self._handle = None

    def _millijoules(self) -> int:
        import pynvml

        return pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def __enter__(self) -> "EnergyMeter":
        if self._handle is not None:
            import torch

            torch.cuda.synchronize()
            self._start = self._millijoules()
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            import torch

            torch.cuda.synchronize()
            self.joules = (self._millijoules() - self._start) / 1000


def efficiency(cost: dict, frames_per_video_s: float, joules: float | None, video_s: float) -> dict:
    """Per video-second and per video-hour, from one run that scored ``video_s`` seconds of video."""
    out = {**cost, "frames_encoded_per_video_s": round(frames_per_video_s, 2),
           "gmacs_per_video_s": round(cost["gmacs_per_frame"] * frames_per_video_s, 1)}
    out["joules_per_video_hour"] = None if joules is None or video_s <= 0 else round(joules / video_s * 3600, 1)
    return out
