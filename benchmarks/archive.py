"""Archive speed on one machine: a folder of files, and one long file, scored in one process
(``--workers 0``, the path of a CPU run) and with decoding in worker processes (``--workers N``).

    python benchmarks/archive.py [--model ViT-B-32|tiny] [--device auto] [--files 8] [--seconds 30]
                                 [--long-minutes 10] [--size 640x480] [--workers 1,4] [--preset default]

Files are synthetic H.264 at 30 FPS.  The long file is one clip remuxed end to end (stream copy,
timestamps shifted), so an hour of video costs seconds to make.  Random encoder weights cost what
real ones cost.  Each row also checks that its frame scores equal the one-process run's.  Writes
benchmarks/results/archive-{cpu,gpu}.json and prints a markdown table; on a shared CPU compare
the ratios of one run, absolute figures only from a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISTINCT = 4  # distinct videos made for the folder; the rest are copies (scored as files, not deduplicated here)
TINY = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


def concat_copies(clip: Path, out: Path, copies: int) -> Path:
    """``copies`` of ``clip`` one after another, without re-encoding."""
    import av

    with av.open(str(clip)) as src, av.open(str(out), "w") as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        packets = [p for p in src.demux(s_in) if p.dts is not None]
        span = max(p.pts for p in packets) + packets[-1].duration - min(p.pts for p in packets)
        for k in range(copies):
            for p in packets:
                q = av.Packet(bytes(p))
                q.pts, q.dts, q.duration, q.time_base = p.pts + k * span, p.dts + k * span, p.duration, p.time_base
                q.is_keyframe = p.is_keyframe
                q.stream = s_out
                dst.mux(q)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model with random weights, or 'tiny'")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backend", default="auto", help="torch, openvino, onnxruntime or auto (what score picks)")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30, help="length of each file of the folder")
    ap.add_argument("--long-minutes", type=float, default=10, help="length of the long file (0: none)")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--workers", default=f"1,{max(1, (os.cpu_count() or 2) - 1)}")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flashback-archive-bench-"))
    model = a.model
    if model == "tiny":
        model = "fb-bench-tiny"
        (work / "configs").mkdir()
        (work / "configs" / f"{model}.json").write_text(json.dumps(TINY))
        os.environ["FLASHBACK_MODEL_CONFIGS"] = str(work / "configs")

    import numpy as np

    from flashback.batch.parallel import PoolScorer, Work
    from flashback.encoders.encoder import ClipEncoder
    from flashback.encoders.encoder_registry import EncoderSpec
    from flashback.eval.bench import device_name, synthetic_memory
    from flashback.scoring.pipeline import Detector
    from flashback.scoring.schedule import Callbacks
    from flashback.settings import preset
    from flashback.video.sources import VideoSource
    from flashback.video.synthetic import make_video

    encoder = ClipEncoder(EncoderSpec(model=model, pretrained="random"), device=a.device, backend=a.backend)
    memory = synthetic_memory(1000, encoder, "Flat", np.random.default_rng(0))
    detector = Detector(memory, encoder, preset(a.preset), batch_size=64 if encoder.device.startswith("cuda") else 32)
    w, h = (int(x) for x in a.size.split("x"))
    t0 = time.perf_counter()
    folder = [make_video(work / f"v{i}.mp4", n_frames=int(30 * a.seconds), fps=30, size=(w, h),
                         scene_of=lambda k, i=i: (k // 60 + i) % 7) for i in range(min(a.files, DISTINCT))]
    for i in range(len(folder), a.files):  # copies: decoding costs the same, making them costs nothing
        folder.append(work / f"v{i}.mp4")
        shutil.copyfile(folder[i % DISTINCT], folder[-1])
    sets = {"folder": folder}
    if a.long_minutes > 0:
        clip = make_video(work / "clip.mp4", n_frames=30 * 60, fps=30, size=(w, h), scene_of=lambda k: (k // 90) % 7,
                          options={"g": "250"})
        sets["long file"] = [concat_copies(clip, work / "long.mp4", max(1, round(a.long_minutes)))]
    print(f"made the videos in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    rows = []
    for name, videos in sets.items():
        frames = sum(int(_count(v)) for v in videos)
        t = time.perf_counter()
        base = {str(v): detector.score(str(v)).scores for v in videos}
        wall = time.perf_counter() - t
        rows.append({"input": name, "setup": "one process (--workers 0)", "wall_s": round(wall, 2),
                     "video_fps": round(frames / wall, 1), "same_scores": True})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        for n in (int(x) for x in a.workers.split(",")):
            scorer = PoolScorer(detector, n)
            got: dict = {}
            t = time.perf_counter()
            scorer.run([Work(VideoSource(str(v))) for v in videos], Callbacks(lambda wk, r: got.__setitem__(wk.source.location, r.scores),
                                                                          lambda wk, why: print(why, file=sys.stderr)))
            wall = time.perf_counter() - t
            same = set(got) == set(base) and all(np.array_equal(got[k], base[k]) for k in base)
            rows.append({"input": name, "setup": f"--workers {n}", "wall_s": round(wall, 2), "video_fps": round(frames / wall, 1),
                         "same_scores": same, "spans": scorer.report.split, "encoder_busy_s": round(scorer.report.encode_s, 2)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    tag = "gpu" if encoder.device.startswith("cuda") else "cpu"
    doc = {"model": a.model, "device": encoder.device, "device_name": device_name(encoder.device), "preset": a.preset,
           "precision": encoder.precision, "runtime": encoder.runtime, "machine_cpus": os.cpu_count(),
           "folder": f"{a.files} files of {w}x{h} @ 30 FPS, {a.seconds:g} s each (H.264)",
           "long_file": f"{a.long_minutes:g} min" if a.long_minutes > 0 else None, "rows": rows}
    out = a.out or ROOT / "benchmarks" / "results" / f"archive-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{doc['folder']}; long file {doc['long_file']}; encoder {a.model} ({encoder.runtime}) on {doc['device_name']}, "
          f"{os.cpu_count()} CPUs, {a.preset} preset\n")
    print("| input | setup | wall | video FPS | vs one process | same scores |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        one = next(x for x in rows if x["input"] == r["input"])
        print(f"| {r['input']} | {r['setup']} | {r['wall_s']} s | {r['video_fps']:,} | {r['video_fps'] / one['video_fps']:.2f}× | "
              f"{'yes' if r['same_scores'] else 'NO'} |")
    return 0 if all(r["same_scores"] for r in rows) else 1


def _count(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


if __name__ == "__main__":
    sys.exit(main())
