"""``flashback score-captions``: timestamped captions (a captioning model's) scored instead of pixels.

Each caption's text vector is one segment's vector; everything after that is ``score``'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checks import Range
from ..scoring.captions import find_caption_files, read_caption_file
from ..scoring.pipeline import Detector
from ..store import RunRecord
from .common import Guard, nothing_to_do, progress_bars
from .options import add_caption_input_args, add_memory_arg, add_output_args, settings_from_args
from .output import export_and_summarise
from .setup import caption_encoder, memory_for, open_store


def add_parser(sub) -> None:
    sc = sub.add_parser("score-captions", help="score timestamped captions (from a captioning model) instead of pixels",
                        description="Score videos from their captions: each caption is a retrieval query; scores, "
                                    "events, explanations and the store are the same as for 'score'.")
    sc.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                    help="JSON {frame: caption} files, JSONL rows {video, start, end, text[, unit]}, or folders of them")
    add_memory_arg(sc)
    add_caption_input_args(sc)
    sc.add_argument("--window", type=Range(1, 1_000_000, integer=True).argtype(), default=16, metavar="N",
                    help="frames the last caption of a JSON file covers (16)")
    add_output_args(sc)
    sc.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    settings = settings_from_args(a, "captions")
    files, problems = find_caption_files(a.paths)
    guard = Guard()
    guard.arguments(problems)
    if not files:
        return nothing_to_do("caption file")
    store = open_store(a)
    encoder = caption_encoder(a)
    detector = Detector(memory_for(a, encoder), encoder, settings)
    run_ = RunRecord.of(detector)
    results = []

    def one(f: Path) -> None:
        for track in read_caption_file(f, a.fps, a.window):
            result = detector.score_caption_track(track, a.fps)
            results.append(result)
            if store is not None:
                store.save(run_, result)

    with progress_bars(a.quiet) as progress:
        task = progress.add_task("caption files", total=len(files), done=f"0/{len(files)} files")
        interrupted = guard.each(files, one, "caption files",
                                 after=lambda k: progress.update(task, advance=1, done=f"{k + 1}/{len(files)} files"))
    return export_and_summarise(a, run_, results, guard.failures, store, interrupted)
