"""``flashback bench``: speed per stage and end to end.  Its flags live here; the measuring is
``flashback/eval/bench.py`` (``benchmarks/fps.py`` runs this same command)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from pathlib import Path

from ..checks import Range
from ..encoders.backends import BACKENDS
from ..encoders.encoder_registry import DEFAULT_MODEL
from .common import say


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="speed per stage and end to end (decode, encoder, search, feeds)")
    add_arguments(b)
    b.set_defaults(run=run)


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    if not (w.isdigit() and h.isdigit() and 16 <= int(w) <= 8192 and 16 <= int(h) <= 8192):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, each 16..8192 (got {text!r})")
    return int(w), int(h)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"expected comma-separated memory sizes >= 2 (got {text!r})")
    return sizes


def _backends(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    wrong = [n for n in names if n not in BACKENDS]
    if wrong or not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated backends of {', '.join(BACKENDS)} (got {text!r})")
    return names


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--quick", action="store_true",
                    help="a first look in about a minute on a small CPU: one precision, two batch sizes, the fast preset, "
                         "4 s of video, 10,000 captions, 2 feeds (any flag below still wins)")
    ap.add_argument("--seconds", type=Range(1, 3600).argtype(), help="length of the synthetic 30-FPS feed (20; --quick 4)")
    ap.add_argument("--size", type=_size, default=(320, 240), help="feed resolution (320x240)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"open_clip architecture, random weights ({DEFAULT_MODEL})")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backend", default="auto", choices=BACKENDS,
                    help="where the end-to-end figures run (auto: what score picks); the towers are timed on every one")
    ap.add_argument("--backends", type=_backends, default=BACKENDS, metavar="LIST",
                    help="the CPU backends timed beside torch (default: every one installed), e.g. openvino")
    ap.add_argument("--feeds", type=Range(1, 256, integer=True).argtype(), help="concurrent feeds for the many-feeds figure (4; --quick 2)")
    ap.add_argument("--search-sizes", type=_sizes, help="memory sizes for search latency (10000,100000; --quick 10000)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where JSON and markdown go")


@contextlib.contextmanager
def quiet_libraries():
    """Library chatter (Python warnings, torch's and FAISS's loggers) kept out of the report: a
    benchmark's output is its figures.  Our own lines (stages, the random-weights warning) stay."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(n) for n in ("faiss", "faiss.loader", "torch", "open_clip", "root")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def run(a: argparse.Namespace) -> int:
    from ..eval.bench import markdown
    from ..eval.bench import run as measure

    quick = a.quick
    seconds = a.seconds or (4 if quick else 20)
    feeds = a.feeds or (2 if quick else 4)
    sizes = a.search_sizes or ([10_000] if quick else [10_000, 100_000])
    with quiet_libraries():
        report = measure(seconds, a.size, a.model, a.device, feeds, sizes, a.out, log=say, quick=quick,
                         backend=a.backend, backends=a.backends)
    print(markdown(report))
    print(f"wrote {a.out}/bench-{'gpu' if report['device'].startswith('cuda') else 'cpu'}.json and .md")
    return 0
