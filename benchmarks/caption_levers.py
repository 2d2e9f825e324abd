"""Issue 17's levers on the caption path, one at a time, on the UCF-Crime dev half, with two folds.

    python benchmarks/caption_levers.py [--work DIR] [--out FILE]

Each row changes one thing from the caption defaults as they were before centring (the 1k default
memory, label template, alpha 0.95, K 10, lambda 30, sigma 3 s; centring is a row; it was the default from then until issue 32 reverted it) and reports frame AUC/AP on all 151 dev videos,
plus the AUC change on each of two folds (videos alternately by name within each class), so a
lever that helps one half and hurts the other shows it.  Segment scoring is re-done here in numpy
with the same rule as the Detector (checked: the base row reproduces `flashback eval --captions`),
so that every text is embedded once (cached in --work by content) and a row costs seconds.
Embedding the dev captions, their prefix-stripped forms and their sentences takes ~25 min on 2 cores
the first time.  Writes benchmarks/results/caption_levers.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from caption_auc import FPS, ROOT, dev_data  # the same data and loading as caption_auc.py
from scipy.ndimage import gaussian_filter1d

from flashback.encoders.text_encoder import SentenceEncoder  # noqa: E402
from flashback.eval.annotations import frame_labels  # noqa: E402
from flashback.eval.metrics import ScoredVideo, compute_metrics  # noqa: E402
from flashback.memory.default_memory import default_captions  # noqa: E402
from flashback.memory.templates import apply_template  # noqa: E402
from flashback.scoring.scoring import frame_scores, smooth  # noqa: E402

# the captioner's boilerplate openings ("The video shows ...", "In the video, ...")
PREFIX = re.compile(r"^(in (this|the) (video|clip|footage|scene),?\s*|the (video|clip|footage|scene|camera) "
                    r"(shows|depicts|captures|features|begins with|starts with|opens with|displays)\s*)", re.I)


def strip(text: str) -> str:
    return PREFIX.sub("", text.strip())


def sentences(text: str) -> list[str]:
    parts = [strip(p) for p in re.split(r"(?<=[.!?])\s+", text) if len(p.split()) >= 3]
    return parts or [strip(text)]


class Embeddings:
    """Unique texts -> MiniLM vectors, cached on disk by content."""

    def __init__(self, work: Path):
        self.work, self.model = work, None

    def __call__(self, texts, tag: str) -> dict[str, np.ndarray]:
        texts = sorted(set(texts))
        f = self.work / f"{tag}{hashlib.sha256(chr(10).join(texts).encode()).hexdigest()[:16]}.npy"
        if not f.exists():
            self.model = self.model or SentenceEncoder()
            self.work.mkdir(parents=True, exist_ok=True)
            np.save(f, self.model.encode_texts(texts, batch_size=128))
        return dict(zip(texts, np.load(f)))


def segment_scores(q: np.ndarray, memory: np.ndarray, anomalous: np.ndarray, alpha=0.95, k=10, lam=30.0) -> np.ndarray:
    """The Detector's rule: top-K by similarity with anomalous ones scaled by alpha, softmax(lambda *
    sim), the anomalous share of the weight."""
    s = q @ memory.T
    s[:, anomalous] *= alpha
    idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
    z = lam * np.take_along_axis(s, idx, 1).astype(np.float64)
    w = np.exp(z - z.max(1, keepdims=True))
    return (w / w.sum(1, keepdims=True) * anomalous[idx]).sum(1)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def runner(gt, counts, tracks, fps: float = FPS) -> Callable:
    """``run(seg, sigma_s, post)``: frame AUC/AP over the dev videos, and the AUC of each of two folds
    (alternate videos by name within each class), for a segment scorer ``seg(track) -> scores``,
    smoothed as the Detector does; ``post(scores)`` may change a video's frame scores after that."""
    by_class: dict[str, list[str]] = {}
    for t in tracks:
        by_class.setdefault(gt.truth_for(t.video).category or "Normal", []).append(t.video)
    fold = {v: i % 2 for names in by_class.values() for i, v in enumerate(sorted(names))}

    def run(seg: Callable, sigma_s: float = 3.0, post: Callable | None = None, keep: bool = False) -> dict:
        videos = []
        for t in tracks:
            n = counts.get(t.video) or max(1, int(round(t.duration_s * fps)))
            ft = np.arange(n) / fps
            s = smooth(frame_scores(ft, np.stack([t.starts_s, t.ends_s], 1), seg(t)), sigma_s * fps)
            truth = gt.truth_for(t.video)
            videos.append(ScoredVideo(t.video, truth.category, frame_labels(truth, n, ft), post(s) if post else s))
        m = compute_metrics(videos).to_dict()
        folds = [compute_metrics([v for v in videos if fold[v.video] == f]).to_dict()["auc"] for f in (0, 1)]
        return {"auc": m["auc"], "ap": m["ap"], "fold_auc": folds, **({"videos": videos} if keep else {})}

    return run


def dev_setup(work: Path):
    """The dev half's ground truth and tracks, their runner, the embedding cache in ``work``, and
    every distinct dev caption with its vector."""
    gt, counts, tracks = dev_data()
    emb = Embeddings(work)
    texts = sorted({x for t in tracks for x in t.texts})
    return gt, tracks, runner(gt, counts, tracks), emb, texts, emb(texts, "q-")


def report(rows: list[tuple[str, str, dict]], out_path: Path) -> None:
    """Write the rows (the first is the base the changes are taken from) as JSON; print a markdown table."""
    b = rows[0][2]
    out = [{"group": g, "lever": n, **r, "delta_auc": round(r["auc"] - b["auc"], 2),
            "delta_fold_auc": [round(x - y, 2) for x, y in zip(r["fold_auc"], b["fold_auc"])]} for g, n, r in rows]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1) + "\n")
    print("| group | lever | dev AUC | dev AP | Δ AUC | Δ AUC fold A / B |")
    print("|---|---|---|---|---|---|")
    for r in out:
        fa, fb = r["delta_fold_auc"]
        print(f"| {r['group']} | {r['lever']} | {r['auc']:.2f} | {r['ap']:.2f} | {r['delta_auc']:+.2f} | {fa:+.2f} / {fb:+.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "caption_auc_work")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "caption_levers.json")
    a = ap.parse_args()
    gt, tracks, run, emb, texts, whole = dev_setup(a.work)
    stripped = emb([strip(x) for x in texts], "qs-")
    split = {x: sentences(x) for x in texts}
    sent = emb([s for x in texts for s in split[x]], "sen-")
    table = default_captions()
    anomalous = np.asarray(table.anomalous)

    def memory(template: tuple[str, str] | str) -> np.ndarray:
        if isinstance(template, str):
            prompts = [apply_template(template, t, an, c) for t, an, c in zip(table.texts, table.anomalous, table.categories)]
        else:
            prompts = [template[int(an)].format(text=t, category=c.lower()) for t, an, c in zip(table.texts, table.anomalous, table.categories)]
        v = emb(prompts, "m-")
        return np.stack([v[p] for p in prompts])

    base_memory = memory("label")
    Q = {t.video: np.stack([whole[x] for x in t.texts]) for t in tracks}

    base = lambda t: segment_scores(Q[t.video], base_memory, anomalous)  # noqa: E731
    rows: list[tuple[str, str, dict]] = [("base", "caption defaults before centring", run(base))]

    def add(group: str, name: str, result: dict) -> None:
        rows.append((group, name, result))
        print(f"{group}: {name}: {result}", file=sys.stderr, flush=True)

    add("query form", "strip the captioner's opening ('The video shows')",
        run(lambda t: segment_scores(np.stack([stripped[strip(x)] for x in t.texts]), base_memory, anomalous)))
    add("query form", "sentences, score each, max",
        run(lambda t: np.array([segment_scores(np.stack([sent[s] for s in split[x]]), base_memory, anomalous).max() for x in t.texts])))
    add("query form", "sentences, score each, mean",
        run(lambda t: np.array([segment_scores(np.stack([sent[s] for s in split[x]]), base_memory, anomalous).mean() for x in t.texts])))
    add("query form", "sentences, mean vector (stripped)",
        run(lambda t: segment_scores(unit(np.stack([np.mean([sent[s] for s in split[x]], 0) for x in t.texts])), base_memory, anomalous)))
    styles = {"none": ("{text}", "{text}"),
              "captioner style ('The video shows ...')": ("The video shows {text}.", "The video shows {text}."),
              "captioner style + label": ("The video shows a normal scene: {text}.", "The video shows an anomalous scene, {category}: {text}.")}
    for name, template in styles.items():
        mem = memory(template)
        add("memory form", f"template: {name}", run(lambda t, mem=mem: segment_scores(Q[t.video], mem, anomalous)))
        m_mu = mem.mean(0)
        add("memory form", f"template: {name}, centred",
            run(lambda t, mem=mem, m_mu=m_mu: segment_scores(unit(Q[t.video] - m_mu), unit(mem - m_mu), anomalous)))
    normal_side = base_memory[~anomalous]
    add("normal coverage", "share + distance to the 5th normal neighbour",
        run(lambda t: segment_scores(Q[t.video], base_memory, anomalous) + 1 - np.sort(Q[t.video] @ normal_side.T, 1)[:, -5]))
    # the memory's own geometry, no parameter fitted: every caption shares a "scene description"
    # component; centring both sides on the memory's mean leaves what tells normal from anomalous
    mu = base_memory.mean(0)
    centred = unit(base_memory - mu)
    add("memory geometry", "centre query and memory on the memory's mean (the default since)",
        run(lambda t: segment_scores(unit(Q[t.video] - mu), centred, anomalous)))
    add("memory geometry", "centred, K 40, σ 4 s",
        run(lambda t: segment_scores(unit(Q[t.video] - mu), centred, anomalous, k=40), sigma_s=4.0))
    direction = unit(base_memory[anomalous].mean(0) - base_memory[~anomalous].mean(0))
    add("memory geometry", "projection on the anomalous-minus-normal centroid direction, sigmoid(10 x)",
        run(lambda t: 1 / (1 + np.exp(-10 * (Q[t.video] @ direction)))))
    for g in (1, 2, 4):
        add("memory geometry", f"share + {g} x that projection",
            run(lambda t, g=g: segment_scores(Q[t.video], base_memory, anomalous) + g * (Q[t.video] @ direction)))
    add("memory geometry", "centred share + 2 x that projection",
        run(lambda t: segment_scores(unit(Q[t.video] - mu), centred, anomalous) + 2 * (Q[t.video] @ direction)))

    def novelty(q: np.ndarray, window: int = 32) -> np.ndarray:
        """1 - the best cosine with the camera's previous ``window`` captions (causal)."""
        s = q @ q.T
        return np.array([0.0] + [1 - s[i, max(0, i - window):i].max() for i in range(1, len(q))])

    add("time", "share + novelty against the last 32 captions (causal)",
        run(lambda t: segment_scores(Q[t.video], base_memory, anomalous) + novelty(Q[t.video])))

    def minus_past(q: np.ndarray, beta: float = 0.5) -> np.ndarray:
        """Each caption minus beta x the mean of the camera's captions before it (causal)."""
        past = np.vstack([np.zeros((1, q.shape[1])), (np.cumsum(q, 0) / np.arange(1, len(q) + 1)[:, None])[:-1]])
        return unit(q - beta * past)

    for beta in (0.25, 0.5):
        add("time", f"query minus {beta:g} x the mean of the camera's earlier captions (causal)",
            run(lambda t, beta=beta: segment_scores(minus_past(Q[t.video], beta), base_memory, anomalous)))
    for n in (1, 2):
        add("time", f"query vector = mean of captions ±{n}",
            run(lambda t, n=n: segment_scores(unit(np.stack([Q[t.video][max(0, i - n): i + n + 1].mean(0) for i in range(len(t.texts))])),
                                               base_memory, anomalous)))
    for sigma in (2.0, 4.0, 6.0):
        add("time", f"σ {sigma:g} s", run(base, sigma_s=sigma))
    for big, w in ((20, 0.5), (40, 0.5)):
        add("time", f"multi-scale: ½ σ 3 s + ½ σ {big} s",
            run(base, post=lambda s, big=big, w=w: (1 - w) * s + w * gaussian_filter1d(s, big * FPS / 3, mode="nearest")))
    add("time", "video prior: ½ frame + ½ the video's mean (offline only)", run(base, post=lambda s: 0.5 * s + 0.5 * s.mean()))
    for k in (20, 40):
        add("retrieval", f"K {k}", run(lambda t, k=k: segment_scores(Q[t.video], base_memory, anomalous, k=k)))
    add("combination", "strip + sentence mean vector + K 40 + ½ σ 40 s",
        run(lambda t: segment_scores(unit(np.stack([np.mean([sent[s] for s in split[x]], 0) for x in t.texts])), base_memory, anomalous, k=40),
            post=lambda s: 0.5 * s + 0.5 * gaussian_filter1d(s, 40 * FPS / 3, mode="nearest")))

    report(rows, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
