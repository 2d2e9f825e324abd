"""``flashback bench``: speed per stage and end to end (the work is ``flashback/eval/bench.py``)."""

from __future__ import annotations


def add_parser(sub) -> None:
    from ..eval.bench import add_arguments, run_from_args

    b = sub.add_parser("bench", help="speed per stage and end to end (decode, encoder, search, feeds)")
    add_arguments(b)
    b.set_defaults(run=run_from_args)
