"""The tail that score and score-captions share: JSON/CSV exports, the summary table, the exit code.

Exports are written whatever happened before them (failed inputs, a store that refused a write,
an interrupt), so everything that was scored reaches the user.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..errors import one_line
from ..scoring.export import write_csv, write_json
from ..scoring.pipeline import VideoResult
from ..store import ResultStore, RunRecord
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, fail, out


def export_and_summarise(a: argparse.Namespace, run: RunRecord, results: list[VideoResult], failures: list[dict],
                         store: ResultStore | None, interrupted: bool, runs: dict[str, RunRecord] | None = None) -> int:
    """``runs``: the run each result is stored under when it is not ``run`` (a region, a camera
    table, camera-scoped texts: ``RunRecord.for_input``)."""
    code = EXIT_INTERRUPTED if interrupted else EXIT_FAILED if failures else EXIT_OK
    runs = runs or {}
    try:
        if a.json:
            write_json(a.json, run.to_dict(), results, failures,
                       {source: r.to_dict() for source, r in runs.items() if r is not run})
        if a.csv:
            write_csv(a.csv, results)
    except OSError as e:
        fail(f"{e.filename or a.json or a.csv}: cannot write the export ({e.strerror or e})")
        code = code or EXIT_FAILED
    print_summary(results, failures, store, run.run_id)
    for r in results:  # what applied to each input, when it was more than the run's settings
        own = runs.get(r.source)
        if own is not None and (own.region or own.camera or own.extras):
            texts = ", ".join(f"{t['kind']} {t['text']!r}" for t in own.extras) or "none"
            out.print(f"  {one_line(r.source)}: region {own.region or 'whole frame'}"
                      + (f" (camera {own.camera})" if own.camera else "") + f"; texts: {texts}; run {own.run_id}")
    return code


def print_summary(results: list[VideoResult], failures: list[dict], store: ResultStore | None, run_id: str) -> None:
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
                one_line(Path(r.source).name), str(e.index), f"{e.start_s:.1f}s", f"{e.end_s:.1f}s",
                f"{e.peak_score:.2f}", e.category or "-",
                f"{top.text} ({top.weight:.2f})" if top else "-",
            )
    if n_events:
        out.print(table)
    stored = f"; stored in {store.path} (run {run_id})" if store is not None and results else ""
    out.print(f"scored {len(results)} video(s), {n_events} event(s), {len(failures)} failed{stored}")
    for r in results:
        if not r.events:
            out.print(f"  {one_line(r.source)}: no events (max score {float(r.scores.max()):.2f})")
