"""``flashback search "a person climbing a fence"``: stored footage ranked by a text, no re-encoding."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..checks import Range
from ..errors import UsageError
from ..review.search import FootageSearch, hits_json, query_encoder
from ..video.cameras import camera_matches
from .common import EXIT_OK, out, print_json
from .options import add_db_arg, add_encoder_args, encoder_choice, since
from .setup import existing_store


def add_parser(sub) -> None:
    s = sub.add_parser("search", help="find stored segments by text (\"a person climbing a fence\"), without re-encoding",
                       description="Rank every stored segment by how well its vector matches the text, through the text "
                                   "tower of the encoder the footage was scored with.")
    s.add_argument("query", metavar="TEXT", help="what to look for, in words")
    add_db_arg(s)
    s.add_argument("--top", type=Range(1, 10_000, integer=True).argtype(), default=10, metavar="N", help="results (10)")
    s.add_argument("--camera", metavar="NAME", help="only this live feed (its NAME) or this folder of files")
    s.add_argument("--since", type=since, metavar="WHEN", help="only footage since: 24h, 7d, 30m, or a date/time")
    s.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    s.add_argument("--text-encoder", metavar="NAME",
                   help="for stores of score-captions: the sentence-transformers model they used (default: the packaged MiniLM)")
    add_encoder_args(s, from_store=True)
    s.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    store = existing_store(a)
    finder = FootageSearch(store, query_encoder(store, encoder_choice(a)))
    if a.camera is not None:
        cameras = finder.cameras()
        if not any(camera_matches(c, a.camera) for c in cameras):  # a typo must not look like "nothing happened"
            raise UsageError(f"--camera {a.camera!r}: no such camera in {store.path} (it has: {', '.join(sorted(cameras)) or 'none'})")
    hits = finder.search(a.query, a.top, a.camera, a.since)
    if a.json:
        print_json(hits_json(hits, a.query))
        return EXIT_OK
    t = Table(title=f"{a.query!r}: {len(hits)} moment(s) among {finder.n:,} segments", title_justify="left")
    for col, just in (("#", "right"), ("similarity", "right"), ("camera", "left"), ("video", "left"), ("span", "right"),
                      ("when", "left"), ("score", "right"), ("top caption", "left")):
        t.add_column(col, justify=just)
    for k, h in enumerate(hits, 1):
        t.add_row(str(k), f"{h.similarity:.3f}", h.camera, Path(h.path).name, f"{h.start_s:.1f}–{h.end_s:.1f} s",
                  h.when.strftime("%Y-%m-%d %H:%M:%S"), "" if h.score is None else f"{h.score:.2f}", h.caption or "")
    out.print(t)
    return EXIT_OK
