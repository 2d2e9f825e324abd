"""Speed of the online path, per stage and end to end, on a synthetic 30-FPS feed.

    python benchmarks/fps.py [--seconds 30] [--size 320x240] [--model ViT-B-32] [--device auto]

ViT-B-32 with random weights costs exactly what real weights cost, so no download is needed.
Prints a table and writes benchmarks/results/fps-<device>.json.  Ratios between rows of one run are
meaningful on a noisy shared CPU; absolute FPS is only worth quoting from a dedicated GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic-video helper the tests use

from media import make_video  # noqa: E402

from flashback.bundle import CaptionTable, load_bundle, write_bundle  # noqa: E402
from flashback.decode import VideoReader  # noqa: E402
from flashback.default_memory import default_memory  # noqa: E402
from flashback.encoder import ClipEncoder  # noqa: E402
from flashback.encoder_registry import EncoderSpec  # noqa: E402
from flashback.pipeline import Detector  # noqa: E402
from flashback.retrieval import MemorySearcher  # noqa: E402
from flashback.settings import PRESETS  # noqa: E402
from flashback.sources import VideoSource  # noqa: E402
from flashback.timegrid import TimeGrid  # noqa: E402


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    fps = 30
    n_frames = int(a.seconds * fps)
    tmp = Path(tempfile.mkdtemp(prefix="flashback-bench-"))
    video = make_video(tmp / "feed.mp4", n_frames=n_frames, fps=fps, size=(w, h), scene_of=lambda i: i // 90)

    encoder = ClipEncoder(EncoderSpec(model=a.model, pretrained="random"), device=a.device)
    memory = default_memory(encoder)
    report = {"model": a.model, "device": encoder.device, "device_name": device_name(encoder.device),
              "precision": "fp16" if encoder.half else "fp32", "video": f"{w}x{h} @ {fps} FPS, {a.seconds:g} s",
              "stages": {}, "end_to_end": {}, "search": []}

    # decode only (every frame decoded, grid frames converted), default grid
    for name, settings in PRESETS.items():
        grid = TimeGrid.from_settings(settings)

        def decode():
            with VideoReader(VideoSource(str(video)), encoder.image_size) as r:
                return sum(1 for _ in r.samples(grid))

        t, n = timed(decode, repeat=2)
        report["stages"][f"decode_video_fps[{name}]"] = n_frames / t

    # encoder throughput per batch size
    frames = np.random.default_rng(0).integers(0, 255, (64, encoder.image_size, encoder.image_size, 3), np.uint8)
    encoder.encode_images(frames[:8])  # warm-up
    for bs in (1, 8, 32, 64):
        reps = max(1, 64 // bs)
        t, _ = timed(lambda: [encoder.encode_images(frames[:bs]) for _ in range(reps)], repeat=2)
        report["stages"][f"encoder_frames_per_s[batch={bs}]"] = bs * reps / t

    # search latency vs memory size (exact Flat index, one batch of 64 segment queries)
    rng = np.random.default_rng(1)
    q = rng.standard_normal((64, encoder.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for n in (len(memory.captions), 10_000, 100_000):
        if n == len(memory.captions):
            mem = memory
        else:
            v = rng.standard_normal((n, encoder.dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            half = n // 2
            table = CaptionTable([f"c{i}" for i in range(n)], [False] * half + [True] * (n - half),
                                 ["Normal"] * half + ["X"] * (n - half), ["bench"] * n)
            write_bundle(tmp / f"m{n}", table, v, encoder.identity, 0.95, "label", 100.0)
            mem = load_bundle(tmp / f"m{n}")
        searcher = MemorySearcher(mem, 0.95, 10)
        t, _ = timed(lambda: searcher.search(q), repeat=5)
        report["search"].append({"memory_size": n, "index": "Flat", "ms_per_64_queries": t * 1000})

    # end to end: decode + encode + retrieve + score + events, per preset
    for name, settings in PRESETS.items():
        det = Detector(memory, encoder, settings, batch_size=32)
        before = encoder.images_encoded
        t, result = timed(lambda: det.score(str(video)), repeat=1)
        report["end_to_end"][name] = {
            "video_fps": n_frames / t, "realtime_factor": (n_frames / fps) / t,
            "frames_encoded_per_video_second": (encoder.images_encoded - before) / a.seconds,
            "wall_s": t,
        }

    a.out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if encoder.device.startswith("cuda") else "cpu"
    out = a.out / f"fps-{tag}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['model']} on {report['device_name']} ({report['precision']}), video {report['video']}")
    for k, v in report["stages"].items():
        print(f"  {k:38s} {v:10.1f}")
    for row in report["search"]:
        print(f"  search {row['memory_size']:>7d} captions (Flat)          {row['ms_per_64_queries']:8.2f} ms / 64 queries")
    for k, v in report["end_to_end"].items():
        print(f"  end-to-end [{k:7s}] {v['video_fps']:8.1f} video FPS  ({v['realtime_factor']:.2f}x real time, "
              f"{v['frames_encoded_per_video_second']:.0f} encodes per video second)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
