"""How many live 30-FPS feeds one `flashback watch` process sustains, with frame-to-score latency
at most 1 s and (almost) nothing dropped.

    python benchmarks/live_feeds.py [--model ViT-B-32] [--preset fast] [--size 640x480] [--seconds 20]
                                    [--feeds 1,2,3,4,6,8] [--device auto] [--precision auto] [--backend auto]

Each feed is a synthetic H.264 file played at its real rate by the watcher's own feed reader (a
thread that decodes every frame, as it would a camera's stream), so decoding costs what it costs
live.  For each feed count the watcher runs for ``--seconds`` and reports latency percentiles and
the share of grid frames dropped; a count is *sustained* when p95 latency <= 1 s, nothing is
dropped beyond 1 % and no segment is lost.  Random encoder weights cost what real ones cost.
Writes benchmarks/results/live-feeds-{cpu,gpu}.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from flashback.encoders.encoder import ClipEncoder  # noqa: E402
from flashback.encoders.encoder_registry import EncoderSpec  # noqa: E402
from flashback.eval.bench import device_name, synthetic_memory  # noqa: E402
from flashback.live.feeds import FeedSpec  # noqa: E402
from flashback.live.watcher import WatchConfig, Watcher  # noqa: E402
from flashback.settings import preset  # noqa: E402
from flashback.video.synthetic import make_video  # noqa: E402


def run_feeds(n: int, video: Path, encoder, memory, settings, seconds: float, batch: int) -> dict:
    feeds = [FeedSpec(f"cam{i}", str(video), loop=True) for i in range(n)]
    w = Watcher(memory, encoder, settings, feeds, sinks=[], config=WatchConfig(duration_s=seconds, batch_size=batch))
    before = encoder.images_encoded
    t = time.perf_counter()
    report = w.run()
    wall = time.perf_counter() - t
    lat = np.concatenate([np.array(fs.latencies) for fs in w.feeds.values()]) if w.feeds else np.zeros(0)
    taken = sum(fs.reader.stats.samples_taken for fs in w.feeds.values())
    dropped = sum(s["samples_dropped"] for s in report.values())
    lost = sum(s["segments_lost"] for s in report.values())
    row = {"feeds": n, "seconds": round(wall, 1),
           "video_fps_decoded": round(sum(s["frames_decoded"] for s in report.values()) / wall, 1),
           "frames_encoded_per_s": round((encoder.images_encoded - before) / wall, 1),
           "latency_p50_s": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
           "latency_p95_s": round(float(np.percentile(lat, 95)), 3) if len(lat) else None,
           "latency_max_s": round(float(lat.max()), 3) if len(lat) else None,
           "dropped_share": round(dropped / max(1, taken), 4), "segments_lost": lost}
    row["sustained"] = bool(row["latency_p95_s"] is not None and row["latency_p95_s"] <= 1.0
                            and row["dropped_share"] <= 0.01 and lost == 0)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--feeds", default="1,2,3,4,6,8")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--backend", default="auto", help="torch, openvino, onnxruntime or auto (what score picks)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--memory-size", type=int, default=10_000)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.split("x"))
    encoder = ClipEncoder(EncoderSpec(model=a.model, pretrained="random"), device=a.device, precision=a.precision, backend=a.backend)
    memory = synthetic_memory(a.memory_size, encoder, "Flat", np.random.default_rng(0))
    settings = preset(a.preset)
    tag = "gpu" if encoder.device.startswith("cuda") else "cpu"
    out = a.out or ROOT / "benchmarks" / "results" / f"live-feeds-{tag}.json"
    rows = []
    with tempfile.TemporaryDirectory() as d:
        video = make_video(Path(d) / "cam.mp4", n_frames=300, fps=30, size=(w, h))
        for n in (int(x) for x in a.feeds.split(",")):
            row = run_feeds(n, video, encoder, memory, settings, a.seconds, a.batch_size)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if not row["sustained"] and n > 1 and rows[-2:-1] and not rows[-2]["sustained"]:
                break  # two failures in a row: more feeds will not do better
    doc = {"model": a.model, "preset": a.preset, "precision": encoder.precision, "runtime": encoder.runtime, "device": encoder.device,
           "device_name": device_name(encoder.device), "video": f"{w}x{h} @ 30 FPS (H.264, played at real rate)",
           "memory_captions": a.memory_size, "batch_size": a.batch_size, "rows": rows,
           "feeds_sustained": max((r["feeds"] for r in rows if r["sustained"]), default=0)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{a.model} ({encoder.runtime}) on {doc['device_name']}, preset {a.preset}, {doc['video']}\n")
    print("| feeds | decoded video FPS | frames encoded/s | latency p50 | p95 | max | dropped | segments lost | sustained |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['feeds']} | {r['video_fps_decoded']} | {r['frames_encoded_per_s']} | {r['latency_p50_s']} s | "
              f"{r['latency_p95_s']} s | {r['latency_max_s']} s | {100 * r['dropped_share']:.1f} % | {r['segments_lost']} | "
              f"{'yes' if r['sustained'] else 'no'} |")
    print(f"\nfeeds sustained: {doc['feeds_sustained']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
