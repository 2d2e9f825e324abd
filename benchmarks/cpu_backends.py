"""Issue 31's figures in one run, as ratios to PyTorch fp32 on this machine: the image tower, the text
tower (against open_clip's own untrimmed ``encode_text`` too, which is what memory builds ran before),
and one 320x240 30-FPS feed end to end on the default and fast presets, per backend and precision.

    python benchmarks/cpu_backends.py [--model ViT-B-32] [--seconds 20] [--runtimes torch:fp32,openvino:fp32,...]

Random weights cost what real ones cost.  Also prints each runtime's lowest cosine to torch fp32 and
the decode-only rate of each preset's grid, so where decoding or Python is the limit shows.  Writes
benchmarks/results/cpu-backends.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rate(fn, n: int, seconds: float = 6.0) -> float:
    """Items per second of ``fn`` (which handles ``n``), repeated for about ``seconds`` after a warm-up."""
    fn()
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        fn()
        done += n
    return done / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the synthetic feed")
    ap.add_argument("--runtimes", default="torch:fp32,torch:bf16,openvino:fp32,openvino:bf16,openvino:int8,onnxruntime:fp32")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu-backends.json")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from flashback.encoders.backends import bf16_pays, cpu_flags, installed
    from flashback.encoders.encoder import ClipEncoder
    from flashback.encoders.encoder_registry import EncoderSpec
    from flashback.eval.bench import synthetic_memory
    from flashback.scoring.pipeline import Detector
    from flashback.settings import PRESETS
    from flashback.video.decode import FrameFit, VideoReader
    from flashback.video.sources import VideoSource
    from flashback.video.synthetic import make_video
    from flashback.video.timegrid import TimeGrid
    from memory_builder.grammar import OfflineGenerator

    spec = EncoderSpec(model=a.model, pretrained="random")
    tmp = Path(tempfile.mkdtemp(prefix="fb-cpu-backends-"))
    video = make_video(tmp / "feed.mp4", n_frames=int(a.seconds * 30), fps=30, size=(320, 240), scene_of=lambda i: i // 90)
    texts = [c.text for c in OfflineGenerator(1).generate(512)]
    pairs = [tuple(x.split(":")) for x in a.runtimes.split(",")]
    ref = ClipEncoder(spec, device="cpu", precision="fp32", backend="torch")
    frames = np.random.default_rng(0).integers(0, 255, (32, ref.image_size, ref.image_size, 3), np.uint8)
    ref_image, ref_text = ref.encode_images(frames), ref.encode_texts(texts)
    memory = synthetic_memory(1000, ref, "Flat", np.random.default_rng(0))
    doc = {"model": a.model, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "amx": "amx_bf16" in cpu_flags(), "bf16_pays": bf16_pays(), "torch_threads": torch.get_num_threads(),
           "video": f"320x240 @ 30 FPS, {a.seconds:g} s", "decode_video_fps": {}, "runtimes": {}}
    for name in ("default", "fast"):
        grid = TimeGrid.from_settings(PRESETS[name])

        def decode():
            with VideoReader(VideoSource(str(video)), FrameFit(PRESETS[name].frame_fit, ref.image_size, ref.pad_rgb)) as r:
                return sum(1 for _ in r.samples(grid))

        t0 = time.perf_counter()
        decode()
        doc["decode_video_fps"][name] = round(a.seconds * 30 / (time.perf_counter() - t0), 1)
    tokens = ref._tokenizer(texts[:128])
    with torch.inference_mode():
        untrimmed = rate(lambda: ref._model.encode_text(tokens, normalize=True), len(tokens))
    doc["text_untrimmed_torch_fp32_captions_per_s"] = round(untrimmed, 1)
    for backend, precision in pairs:
        if not installed(backend):
            continue
        enc = ref if (backend, precision) == ("torch", "fp32") else ClipEncoder(spec, "cpu", precision, backend)
        row = {"image_frames_per_s": round(rate(lambda: enc.encode_images(frames), len(frames)), 1),
               "text_captions_per_s": round(rate(lambda: enc.encode_texts(texts[:128]), 128), 1),
               "lowest_cosine_image": round(float((enc.encode_images(frames) * ref_image).sum(1).min()), 6),
               "lowest_cosine_text": round(float((enc.encode_texts(texts) * ref_text).sum(1).min()), 6),
               **({"int8_said": enc.int8_fidelity} if enc.int8_fidelity else {})}
        for name in ("default", "fast"):
            det = Detector(memory, enc, PRESETS[name], batch_size=32)
            t0 = time.perf_counter()
            det.score(str(video))
            row[f"realtime_{name}"] = round(a.seconds / (time.perf_counter() - t0), 2)
        doc["runtimes"][enc.runtime] = row
        print(enc.runtime, row, flush=True)
    base = doc["runtimes"]["torch/fp32"]
    for row in doc["runtimes"].values():
        row["ratio_image"] = round(row["image_frames_per_s"] / base["image_frames_per_s"], 2)
        row["ratio_text"] = round(row["text_captions_per_s"] / base["text_captions_per_s"], 2)
        row["ratio_text_to_untrimmed"] = round(row["text_captions_per_s"] / untrimmed, 2)
        row["ratio_realtime_default"] = round(row["realtime_default"] / base["realtime_default"], 2)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{a.model}, {doc['video']}, {doc['cpus']} CPUs, AMX: {doc['amx']}; decode only: "
          + ", ".join(f"{k} grid {v:,.0f} video FPS" for k, v in doc["decode_video_fps"].items()))
    print(f"text tower, open_clip untrimmed torch fp32: {untrimmed:.1f} captions/s\n")
    print("| runtime | image frames/s (x torch fp32) | text captions/s (x untrimmed) | default preset x real time | fast preset x real time | lowest cosine image / text |")
    print("|---|---|---|---|---|---|")
    for k, r in doc["runtimes"].items():
        print(f"| {k} | {r['image_frames_per_s']} ({r['ratio_image']}x) | {r['text_captions_per_s']} ({r['ratio_text_to_untrimmed']}x) "
              f"| {r['realtime_default']} | {r['realtime_fast']} | {r['lowest_cosine_image']:.6f} / {r['lowest_cosine_text']:.6f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
