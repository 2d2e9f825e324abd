"""``flashback eval``: score a dataset's videos and measure them against its ground truth.

Per video the cheapest source of scores wins: the results store (same run and video already
scored), else the embedding cache (decoded and encoded before, any settings), else decode and
encode once, filling both.  A sweep then re-scores from the cached embeddings under each variant,
so it costs retrieval and scoring only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoders.protocols import TextEncoder
from ..errors import UsageError
from ..memory.bundle import MemoryBundle
from ..memory.variants import keeps_vectors, subset, with_template
from ..scoring.pipeline import Detector, VideoResult, video_id_for
from ..settings import ScoringSettings
from ..store import ResultStore, RunRecord
from ..video.decode import VideoReader
from ..video.sources import VideoSource
from .annotations import GroundTruth, VideoTruth, frame_labels, stem
from .embedding_cache import EmbeddingCache, GridEmbeddings
from .metrics import Metrics, ScoredVideo, compute_metrics


@dataclass
class Matched:
    pairs: list[tuple[VideoSource, VideoTruth]]
    unannotated: list[str]  # videos found that the ground truth does not cover (skipped)
    missing: list[str]  # annotated videos not found among the inputs


def match_videos(sources: list[VideoSource], gt: GroundTruth) -> Matched:
    pairs, unannotated, seen = [], [], set()
    for src in sources:
        s = stem(src.location)
        truth = gt.truth_for(s)
        if truth is None:
            unannotated.append(src.location)
            continue
        pairs.append((src, truth))
        seen.add(s)
    missing = sorted(v for v in gt.videos if v not in seen)
    return Matched(pairs, unannotated, missing)


class Evaluation:
    def __init__(self, detector: Detector, cache: EmbeddingCache | None, store: ResultStore | None):
        self.detector = detector
        self.encoder = detector.encoder
        self.cache = cache
        self.store = store
        self.run = RunRecord.of(detector)
        self.reused = {"store": 0, "cache": 0, "encoded": 0}

    def grid_embeddings(self, source: VideoSource, video_id: str) -> GridEmbeddings:
        grid = self.detector.grid
        if self.cache is not None:
            hit = self.cache.load(video_id, grid)
            if hit is not None:
                self.reused["cache"] += 1
                return hit
        sink: list = []
        with VideoReader(source, self.detector.frame_fit()) as reader:
            self.detector.segment_vectors(reader, grid_sink=sink)
            tl, info = reader.timeline, reader.info
        emb = GridEmbeddings(
            np.asarray(sink, np.float32), np.asarray(tl.frame_times), tl.duration_s, grid.step_s,
            {"source": str(source), "width": info.width, "height": info.height, "codec": info.codec,
             "truncated": tl.truncated, "note": tl.note},
        )
        if self.cache is not None:
            self.cache.save(video_id, emb)
        self.reused["encoded"] += 1
        return emb

    def result_from_grid(self, detector: Detector, emb: GridEmbeddings, source: str, video_id: str) -> VideoResult:
        from ..video.decode import VideoInfo

        m = emb.meta
        return VideoResult.of(detector.score_grid(emb.vectors, emb.frame_times, emb.duration_s), detector.captions, source, video_id,
                              info=VideoInfo(source, m.get("width", 0), m.get("height", 0), m.get("codec", ""), None, None),
                              n_samples=len(emb.vectors), truncated=bool(m.get("truncated")), note=m.get("note", ""))

    def score_one(self, source: VideoSource, truth: VideoTruth, keep: Callable | None = None
                  ) -> tuple[ScoredVideo, dict, GridEmbeddings | None]:
        """One video's scores, from the store or scored now.  ``keep(scored, row, emb)`` is called
        before a new result is stored: a Ctrl-C that lands while it is stored (or while the store's
        file closes after the commit) leaves the video counted, as it was scored whole, instead of
        stored but left out of the metrics."""
        video_id = video_id_for(source)
        stored = self.store.frame_scores(self.run.run_id, video_id) if self.store is not None else None
        emb = result = None
        if stored is not None:
            self.reused["store"] += 1
            times, scores = stored
        else:
            emb = self.grid_embeddings(source, video_id)
            result = self.result_from_grid(self.detector, emb, str(source), video_id)
            times, scores = result.frame_times, result.scores
        labels = frame_labels(truth, len(times), times)
        scored = ScoredVideo(truth.video, truth.category, labels, np.asarray(scores, np.float64))
        row = {"video": truth.video, "source": str(source), "video_id": video_id, "category": truth.category,
               "frames": int(len(times)), "anomalous_frames": int(labels.sum()),
               "max_score": float(np.max(scores)) if len(scores) else None}
        if keep is not None:
            keep(scored, row, emb)
        if result is not None and self.store is not None:
            self.store.save(self.run, result)
        return scored, row, emb


@dataclass
class Variant:
    parameter: str
    value: str
    settings: ScoringSettings
    memory: MemoryBundle


def sweep_variants(base: ScoringSettings, memory: MemoryBundle, encoder: TextEncoder,
                   sizes=(10_000, 100_000, 1_000_000)) -> list[Variant]:
    """One factor at a time around the base settings (the base itself first)."""
    r = dataclasses.replace
    out = [Variant("base", "-", base, memory)]
    out += [Variant("top_k", str(k), r(base, top_k=k), memory) for k in (1, 5, 20, 50) if k != base.top_k]
    out += [Variant("alpha", str(a), r(base, alpha=a), memory) for a in (1.0, 0.95, 0.9, 0.8) if a != base.alpha]
    out += [Variant("frames_per_segment", str(f), r(base, frames_per_segment=f), memory)
            for f in (16, 8, 4) if f != base.frames_per_segment and f <= base.frames_per_segment]
    out += [Variant("smoothing_sigma_s", str(s), r(base, smoothing_sigma_s=s), memory)
            for s in (0.0, 0.25, 1.0, 2.0) if s != base.smoothing_sigma_s]
    if keeps_vectors(memory):  # a centred search is built from them (retrieval.MemorySearcher)
        out.append(Variant("centre", "off" if base.centre else "on", r(base, centre=not base.centre), memory))
    other = "none" if memory.manifest.template != "none" else "label"
    out.append(Variant("template", other, base, with_template(memory, other, encoder)))
    out += [Variant("memory_size", str(n), base, subset(memory, n, encoder)) for n in sizes if n < len(memory.captions)]
    return out


def run_sweep(evaluation: Evaluation, pairs: list[tuple[VideoSource, VideoTruth]], grids: dict[str, GridEmbeddings],
              variants: list[Variant], progress: Callable[[str], None] | None = None) -> list[dict]:
    """Score every variant from cached grid embeddings only; returns one table row per variant."""
    rows = []
    for v in variants:
        det = Detector(v.memory, evaluation.encoder, v.settings)
        videos = []
        for source, truth in pairs:
            emb = grids[str(source)].coarsened(det.grid)
            if emb is None:
                raise UsageError(f"--sweep: grid step {det.grid.step_s:g} s cannot be derived from the cached embeddings")
            r = det.score_grid(emb.vectors, emb.frame_times, emb.duration_s)
            videos.append(ScoredVideo(truth.video, truth.category, frame_labels(truth, len(r.scores), r.frame_times), r.scores))
        m: Metrics = compute_metrics(videos)
        d = m.to_dict()
        rows.append({"parameter": v.parameter, "value": v.value, "auc": d["auc"], "ap": d["ap"],
                     "auc_anomalous_videos": d["auc_anomalous_videos"], "memory_size": len(v.memory.captions)})
        if progress:
            progress(f"{v.parameter}={v.value}")
    return rows


def sweep_markdown(rows: list[dict]) -> str:
    f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    lines = ["| parameter | value | AUC | AP | AUC (anomalous videos) | memory |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['parameter']} | {r['value']} | {f(r['auc'])} | {f(r['ap'])} | {f(r['auc_anomalous_videos'])} | {r['memory_size']} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def default_report_dir(dataset: str) -> Path:
    return Path(f"eval-{dataset}")
