"""``flashback`` command line: one module per command, over a small shared set-up.

    score.py           flashback score          files, folders, URLs
    captions.py        flashback score-captions timestamped captions instead of pixels
    eval.py            flashback eval           AUC/AP against a dataset's ground truth
    watch.py           flashback watch          live feeds
    serve.py           flashback serve          the service: watch, API, review app
    review.py          flashback review         the Streamlit review app
    clips.py           flashback clips          stored event clips and thumbnails, copied out
    prune.py           flashback prune          retention: delete what is older than N days
    search.py          flashback search         stored footage ranked by a text
    overlay.py         flashback overlay ...    what reviewers' verdicts taught each camera
    memory.py          flashback memory ...     info, verify, build, from-captions
    bench.py           flashback bench          speed per stage
    config.py          flashback config show    defaults from the config file and FLASHBACK_*, and where they came from
    options.py         flags shared by several commands, with their ranges
    setup.py           store, encoder, memory and run record, opened the same way by every command
    output.py          exports and the summary table (score, score-captions)
    common.py          consoles, one-line messages, progress bars, exit codes, the error boundaries

Exit codes: 0 every input scored; 1 something failed (each failure named on stderr, everything
else still scored, stored and exported); 2 usage errors (bad flags or settings, before any work);
70 an internal error (a bug: its traceback is shown); 130 interrupted.  Results go to stdout,
progress and problems to stderr.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import FlashbackError, UsageError
from . import bench, captions, clips, config, eval, memory, overlay, prune, review, score, search, serve, watch
from .common import EXIT_BUG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, fail, log_to_stderr, out, report_bug, warn

COMMANDS = (score, watch, serve, captions, eval, search, review, clips, prune, overlay, bench, memory, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashback", description="Zero-shot video anomaly detection by memory retrieval.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    log_to_stderr()
    parser = build_parser()
    try:
        defaults = config.apply(parser)  # the config file and FLASHBACK_* under the flags
    except UsageError as e:
        for line in getattr(e, "problems", [str(e)]):
            fail(line)
        return EXIT_USAGE
    a = parser.parse_args(argv)
    config.settle(a, defaults)
    a.config_defaults, a.config_parser = defaults, parser
    if a.version:
        from .. import __version__

        out.print(__version__)
        return EXIT_OK
    if not hasattr(a, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return a.run(a)
    except UsageError as e:
        for line in getattr(e, "problems", [str(e)]):  # a config file's problems: all of them, one per line
            fail(line)
        return EXIT_USAGE
    except FlashbackError as e:
        fail(str(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        warn("interrupted")
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - not ours to explain: a bug, shown whole
        report_bug(f"in flashback {a.command}")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
