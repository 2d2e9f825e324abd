"""``flashback prune``: keep a results store (and its media folder) from growing for ever."""

from __future__ import annotations

import argparse

from rich.table import Table

from ..checks import Range
from ..store import PruneReport, ResultStore
from .common import EXIT_OK, out
from .options import add_db_arg
from .setup import existing_store

DAYS = Range(0, 36_500)


def add_parser(sub) -> None:
    p = sub.add_parser("prune", help="delete results older than N days (frame scores, segments, events, clips); verdicts are kept",
                       description="Delete what is older than --keep-days from a results store in one transaction: frame "
                                   "scores, segments and their captions, outages, and events nobody reviewed, with their "
                                   "clips and thumbnails. A file's rows are as old as its scoring, a live feed's as old as "
                                   "their moment on the feed. Events with a verdict stay, with it and their media.")
    add_db_arg(p)
    p.add_argument("--keep-days", type=DAYS.argtype(), required=True, metavar="N", help="keep the last N days (0 = delete all that is not kept below)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--keep-reviewed", action="store_true",
                   help="a file with a reviewed event keeps everything (its whole timeline and segments), not only that event")
    g.add_argument("--drop-reviewed", action="store_true", help="reviewed events go too, with their verdicts")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    store = existing_store(a)
    report = store.prune(a.keep_days, a.keep_reviewed, a.drop_reviewed, a.dry_run)
    out.print(summary(report, store, a.keep_days))
    return EXIT_OK


def summary(r: PruneReport, store: ResultStore, days: float) -> Table:
    verb = "would delete" if r.dry_run else "deleted"
    t = Table(title=f"{store.path}: {verb} what is older than {days:g} day(s)", title_justify="left")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for table, n in sorted(r.rows.items()):
        if n:
            t.add_row(table, f"{n:,}")
    t.add_row(f"media files ({store.media_dir.name}/)", f"{r.files:,} ({r.bytes / 1e6:.1f} MB)")
    return t
