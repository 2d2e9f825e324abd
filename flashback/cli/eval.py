"""``flashback eval``: score a dataset (videos or their captions) and measure it against its ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..eval.annotations import frame_labels, load_ground_truth, read_frame_counts
from ..eval.evaluate import Evaluation, default_report_dir, match_videos, run_sweep, sweep_markdown, sweep_variants
from ..eval.metrics import ScoredVideo, compute_metrics
from ..eval.report import write_report
from ..scoring.captions import read_caption_inputs
from ..scoring.pipeline import Detector, video_id_for
from ..store import RunRecord
from ..video.sources import expand_inputs
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Guard, fail, out, progress_bars, warn
from .options import (
    add_caption_input_args,
    add_decode_arg,
    add_encoder_args,
    add_memory_arg,
    add_settings_args,
    add_store_args,
    hwaccel_for,
    settings_from_args,
)
from .setup import caption_encoder, image_encoder, memory_for, open_store


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="frame-level AUC/AP of a dataset's videos against its ground truth",
                       description="Score a dataset and measure it in the field's protocol (frame AUC, AP, per class).")
    e.add_argument("--dataset", required=True, choices=["ucf-crime", "xd-violence", "frames"])
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", nargs="+", metavar="DIR", help="video folders or files")
    src.add_argument("--captions", nargs="+", type=Path, metavar="DIR",
                     help="timestamped captions instead of videos (JSON frame->caption files, or JSONL rows)")
    e.add_argument("--frames", type=Path, metavar="FILE", help="with --captions: 'video first last label' frame counts (frames.txt)")
    add_caption_input_args(e, "with --captions: ")
    e.add_argument("--annotations", type=Path, required=True, metavar="FILE", help="temporal annotation file")
    add_memory_arg(e)
    add_store_args(e, "DuckDB store; scores already there are reused")
    e.add_argument("--no-cache", action="store_true", help="do not read or write the frame-embedding cache")
    e.add_argument("--out", type=Path, metavar="DIR", help="report folder (default ./eval-DATASET)")
    e.add_argument("--sweep", action="store_true", help="ablation table over K, alpha, template, frames per segment, sigma, memory size")
    add_encoder_args(e)
    add_settings_args(e)
    add_decode_arg(e)
    e.set_defaults(run=run)


def print_metrics(m: dict) -> None:
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    out.print(f"AUC {fmt(m['auc'])}")
    out.print(f"AP {fmt(m['ap'])}")
    out.print(f"AUC-anomalous-videos {fmt(m['auc_anomalous_videos'])}")


def run(a: argparse.Namespace) -> int:
    settings = settings_from_args(a, "captions" if a.captions else "default")
    gt = load_ground_truth(a.dataset, a.annotations)
    return (_captions if a.captions else _videos)(a, gt, settings)


def _videos(a: argparse.Namespace, gt, settings) -> int:
    from ..eval.embedding_cache import EmbeddingCache
    from ..memory.default_memory import cache_dir

    expansion = expand_inputs(a.videos)
    guard = Guard()
    guard.arguments(expansion.problems)
    matched = match_videos(expansion.sources, gt)
    if matched.unannotated:
        warn(f"{len(matched.unannotated)} video(s) have no annotation and are skipped, e.g. {matched.unannotated[0]}")
    if matched.missing:
        warn(f"{len(matched.missing)} annotated video(s) were not found, e.g. {matched.missing[0]}")
    if not matched.pairs:
        fail(f"{a.annotations}: none of the videos found matches an annotation")
        return EXIT_FAILED
    store = open_store(a)
    encoder = image_encoder(a)
    memory = memory_for(a, encoder)
    detector = Detector(memory, encoder, settings, batch_size=a.batch_size, hwaccel=hwaccel_for(a, encoder))
    cache = None if a.no_cache else EmbeddingCache(cache_dir() / "embeddings", encoder.identity.key, detector.settings.frame_fit)
    ev = Evaluation(detector, cache, store)

    scored, rows, grids = [], [], {}

    def keep(video, row, emb) -> None:
        scored.append(video)
        rows.append(row)
        if emb is not None:
            grids[row["source"]] = emb

    def one(pair) -> None:
        ev.score_one(*pair, keep=keep)

    with progress_bars() as progress:
        n = len(matched.pairs)
        task = progress.add_task("scoring", total=n, done=f"0/{n} videos")
        # Ctrl-C ends the loop, not the command: what was scored is measured and reported below
        interrupted = guard.each(matched.pairs, one, "videos", name=lambda pair: str(pair[0]),
                                 after=lambda k: progress.update(task, advance=1, done=f"{k + 1}/{n} videos"))
    if not scored:
        if interrupted:
            warn("interrupted before any video was scored: no metrics")
            return EXIT_INTERRUPTED
        fail("no video could be scored")
        return EXIT_FAILED
    metrics = compute_metrics(scored)
    m = metrics.to_dict()
    print_metrics(m)
    out.print(f"videos {m['n_videos']} ({m['n_anomalous_videos']} anomalous), frames {m['n_frames']}; "
              f"from store {ev.reused['store']}, from embedding cache {ev.reused['cache']}, encoded {ev.reused['encoded']}")
    report_dir = a.out or default_report_dir(a.dataset)
    written = write_report(report_dir, a.dataset, metrics, scored, _context(a, detector), rows)
    out.print(f"report: {written['markdown']}" + (f", curves: {written['roc']}, {written['pr']}" if "roc" in written else ""))

    if interrupted:
        out.print(f"interrupted: the metrics and report above cover the {len(scored)} of {n} videos scored")
        return EXIT_INTERRUPTED
    if a.sweep:
        def embeddings(source) -> None:  # videos whose scores came from the store need their embeddings
            grids[str(source)] = ev.grid_embeddings(source, video_id_for(source))

        for source, _ in matched.pairs:
            if str(source) not in grids:
                guard.run(str(source), lambda s=source: embeddings(s))
        pairs = [(s, t) for s, t in matched.pairs if str(s) in grids]
        variants = sweep_variants(detector.settings, memory, encoder)
        before = encoder.images_encoded
        table = run_sweep(ev, pairs, grids, variants)
        (report_dir / "sweep.json").write_text(json.dumps(table, indent=1) + "\n")
        (report_dir / "sweep.md").write_text(sweep_markdown(table))
        out.print(sweep_markdown(table))
        out.print(f"sweep: {report_dir / 'sweep.md'} ({len(variants)} variants, "
                  f"{encoder.images_encoded - before} frames encoded for it)")
    return EXIT_FAILED if guard.failures else EXIT_OK


def _context(a: argparse.Namespace, detector: Detector, **more) -> dict:
    m = detector.memory
    return {"memory": f"{m.memory_id} ({m.path})", "encoder": detector.encoder.identity.key,
            "settings": json.dumps(detector.settings.to_dict()), "annotations": str(a.annotations), **more}


def _captions(a: argparse.Namespace, gt, settings) -> int:
    """eval --captions: the same scoring back end, with caption text vectors as segment vectors."""
    tracks = read_caption_inputs(a.captions, a.fps)
    counts = read_frame_counts(a.frames) if a.frames else {}
    store = open_store(a)
    encoder = caption_encoder(a)
    detector = Detector(memory_for(a, encoder), encoder, settings)
    run_ = RunRecord.of(detector)
    guard = Guard()
    scored, rows, skipped = [], [], []
    for track in tracks:
        truth = gt.truth_for(track.video)
        if truth is None:
            skipped.append(track.video)
            continue

        def one(track=track, truth=truth) -> None:
            r = detector.score_caption_track(track, a.fps, counts.get(track.video))
            labels = frame_labels(truth, len(r.frame_times), r.frame_times)
            scored.append(ScoredVideo(track.video, truth.category, labels, r.scores))
            rows.append({"video": track.video, "frames": len(r.frame_times), "captions": len(track.texts),
                         "anomalous_frames": int(labels.sum()), "max_score": float(r.scores.max())})
            if store is not None:
                store.save(run_, r)

        guard.run(track.source, one)
    if skipped:
        warn(f"{len(skipped)} caption file(s) have no annotation and are skipped, e.g. {skipped[0]}")
    if not scored:
        fail(f"{a.annotations}: none of the caption files matches an annotation")
        return EXIT_FAILED
    metrics = compute_metrics(scored)
    print_metrics(metrics.to_dict())
    written = write_report(a.out or default_report_dir(a.dataset), a.dataset, metrics, scored,
                           _context(a, detector, input="captions"), rows)
    out.print(f"videos {len(scored)}; report: {written['markdown']}")
    return EXIT_FAILED if guard.failures else EXIT_OK
