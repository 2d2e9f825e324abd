"""Archive scoring on a Ray cluster: throughput against the number of decoding workers, and where
the time goes (decode, encode, score, store).

    python benchmarks/cluster.py [--model tiny|ViT-B-32] [--videos 8] [--seconds 20] [--size 640x360]
                                 [--workers 1,2] [--head-cpus 1] [--device auto] [--precision auto] [--backend auto]

For each entry of ``--workers`` a fresh local cluster is started (``flashback.cluster.local``): a
head with ``--head-cpus`` CPUs, where the one encoder actor lives, and that many worker nodes of one
CPU each, which decode.  ``--workers 0 --head-cpus 16`` is one machine (a lent GPU box: decoding
on its cores, the GPU actor beside them).  The same videos are also scored without Ray, one after
another in this process, as the baseline.  Results go to a real DuckDB store, so storing costs what
it costs.  Writes benchmarks/results/cluster-{cpu,gpu}.json and prints a markdown table.

``tiny`` is the test suite's 32-pixel open_clip model, so that decoding rather than a CPU encoder
dominates and the scaling of the decoding workers shows; ViT-B-32 with random weights costs what
real weights cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--head-cpus", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--backend", default="auto", help="torch, openvino, onnxruntime or auto (what score picks)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flashback-cluster-bench-"))
    model = a.model
    if model == "tiny":
        model = "fb-bench-tiny"
        (work / "configs").mkdir()
        (work / "configs" / f"{model}.json").write_text(json.dumps(TINY))
        os.environ["FLASHBACK_MODEL_CONFIGS"] = str(work / "configs")  # read here and, passed on, by the workers

    import numpy as np

    from flashback.cluster.connect import connect, disconnect
    from flashback.cluster.local import LocalCluster
    from flashback.cluster.scorer import ClusterScorer
    from flashback.encoders.backends import Runtime
    from flashback.encoders.encoder import ClipEncoder
    from flashback.encoders.encoder_registry import EncoderSpec
    from flashback.eval.bench import device_name
    from flashback.memory.bundle import BundleSpec, CaptionTable, load_bundle, write_bundle
    from flashback.scoring.pipeline import Detector, Work
    from flashback.scoring.schedule import Callbacks
    from flashback.store import ResultStore, RunRecord
    from flashback.video.sources import VideoSource
    from flashback.video.synthetic import make_video

    spec = EncoderSpec(model=model, pretrained="random")
    encoder = ClipEncoder(spec, device=a.device, precision=a.precision, backend=a.backend)
    vectors = np.random.default_rng(0).standard_normal((1000, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = CaptionTable([f"caption {i}" for i in range(1000)], [i >= 500 for i in range(1000)],
                         ["Normal" if i < 500 else "X" for i in range(1000)], ["bench"] * 1000)
    write_bundle(work / "memory", table, vectors, BundleSpec(encoder.identity, 0.95, "label", 100.0))
    memory = load_bundle(work / "memory")  # on disk: the cluster's actors are sent its files
    detector = Detector(memory, encoder)
    run = RunRecord.of(detector)
    w, h = (int(x) for x in a.size.split("x"))
    videos = [make_video(work / f"v{i}.mp4", n_frames=int(30 * a.seconds), fps=30, size=(w, h),
                         scene_of=lambda k, i=i: (k // 60 + i) % 7) for i in range(a.videos)]
    frames = a.videos * int(30 * a.seconds)

    t0 = time.perf_counter()
    store = ResultStore(work / "local.duckdb")
    for v in videos:
        store.save(run, detector.score(str(v)))
    local_s = time.perf_counter() - t0
    rows = [{"setup": "no Ray (this process)", "decoders": 1, "wall_s": round(local_s, 2),
             "video_fps": round(frames / local_s, 1)}]
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    for n in (int(x) for x in a.workers.split(",")):
        with LocalCluster(head_cpus=a.head_cpus, workers=[1] * n) as cluster:
            c = connect(cluster.address)
            try:
                scorer = ClusterScorer(c, detector, spec, Runtime(a.precision, a.backend), actors=1)
                store = ResultStore(work / f"ray-{n}.duckdb")

                scorer.run([Work(VideoSource(str(v))) for v in videos],  # the scorer times the store writes
                           Callbacks(lambda job, result: store.save(run, result), lambda job, why: print(why)))
                report = scorer.report
            finally:
                disconnect()
        t = report.timings
        rows.append({"setup": f"Ray: head {a.head_cpus} CPU + {n} worker node(s) of 1 CPU", "decoders": scorer.decode_slots,
                     "wall_s": round(report.wall_s, 2), "video_fps": round(report.frames / report.wall_s, 1),
                     "decode_worker_s": round(t.decode_s, 2), "encode_actor_s": round(t.encode_s, 2),
                     "score_s": round(t.score_s, 2), "store_s": round(t.store_s, 2), "failed": report.failed})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    tag = "gpu" if encoder.device.startswith("cuda") else "cpu"
    doc = {"model": a.model, "device": encoder.device, "device_name": device_name(encoder.device),
           "precision": encoder.precision, "runtime": encoder.runtime, "videos": a.videos, "video": f"{w}x{h} @ 30 FPS, {a.seconds:g} s each (H.264)",
           "frames": frames, "machine_cpus": os.cpu_count(), "rows": rows}
    out = a.out or ROOT / "benchmarks" / "results" / f"cluster-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{a.videos} videos of {doc['video']}, encoder {a.model} ({encoder.runtime}) on {doc['device_name']}, "
          f"{os.cpu_count()} CPUs on the machine\n")
    print("| setup | decoders | wall | video FPS | decode (worker-s) | encode (actor-s) | score (s) | store (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setup']} | {r['decoders']} | {r['wall_s']} s | {r['video_fps']:,} | {r.get('decode_worker_s', '-')} | "
              f"{r.get('encode_actor_s', '-')} | {r.get('score_s', '-')} | {r.get('store_s', '-')} |")
    base = rows[1]["video_fps"] if len(rows) > 1 else None
    for r in rows[2:]:
        print(f"\n{r['setup']}: {r['video_fps'] / base:.2f}× the first cluster row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
