"""Errors a user can act on: one family, so a command catches ``FlashbackError`` and nothing else.

Every message is one line that names the input (a file, a URL, a bundle, a database, a flag) and
what is wrong with it, so the CLI can print it as-is and a log line is enough to fix the problem.
Anything a command sees that is *not* a ``FlashbackError`` is a bug: it is shown with its
traceback and a request to report it (``flashback/cli/common.py``).

    FlashbackError
    ├── UsageError            bad flags, settings or arguments: exit status 2, before any work
    ├── InputError            a video input that cannot be scored
    ├── DataFileError         a file of ours to parse: annotations, caption files, labelled captions
    ├── BundleError           a memory bundle: missing, tampered, malformed
    │   └── EncoderMismatchError
    ├── StoreError            the DuckDB results store: locked, not a database, a write failed
    ├── EncoderError          a model that cannot be loaded
    ├── BuildError            a memory build that cannot go on (missing extra, engine failure)
    └── ClusterError          a Ray cluster that cannot be reached or cannot run the job
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

_URL_AUTHORITY = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s]*)")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:password|passwd|pwd|pass|token|secret|api_?key|auth)=)[^&;#\s]*")
_TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _mask_authority(m: re.Match) -> str:
    userinfo, at, host = m.group(2).rpartition("@")  # the last '@' ends it, as urllib and FFmpeg read it
    if not at or ":" not in userinfo or userinfo.startswith("["):  # "[user:pass@]host": a usage text
        return m.group(0)
    return f"{m.group(1)}{userinfo.split(':', 1)[0]}:***@{host}"


def masked(text: object) -> str:
    """Text with every URL's password written as ``***`` (``rtsp://admin:***@cam/``, and
    ``?password=***`` in a query): a camera's URL carries its password, and what we print, log,
    store or show is read by people who should not learn it.  The real URL is only ever opened."""
    s = str(text)
    if "://" not in s and "=" not in s:
        return s
    return _SECRET_PARAM.sub(r"\1***", _URL_AUTHORITY.sub(_mask_authority, s))


def printable(text: object) -> str:
    """Data as it may reach a terminal: passwords masked and control characters (ESC, which
    recolours a terminal or sets its title; bidi overrides, which reorder what is shown) written as
    escapes. Newlines and tabs stay, for text that is several lines on purpose."""
    s = masked(text)
    return _TERMINAL_CONTROL.sub(lambda m: repr(m.group(0))[1:-1], s)


def one_line(text: object) -> str:
    """A name as it may appear inside a one-line message: control characters (a newline in a file
    name, say) are written as escapes and passwords masked, so one error is always exactly one
    line and never shows a secret."""
    s = masked(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def first_line(error: BaseException) -> str:
    """What an exception says, as the reason in a one-line message: its first line (FFmpeg, Ray,
    DuckDB and open_clip all run to several), or its class name when it says nothing."""
    text = str(error).strip()
    return one_line(text.splitlines()[0]) if text else type(error).__name__


@contextlib.contextmanager
def ctrl_c_stays_ctrl_c() -> Iterator[None]:
    """Around DuckDB work: a Ctrl-C stays a Ctrl-C.  DuckDB takes a SIGINT that lands mid-query,
    interrupts the query and raises ``RuntimeError('Query interrupted')`` instead of
    KeyboardInterrupt, which a caller would report as a bug, a bad bundle or a failed video and go
    on (seen in CI: a scorer reported the video at hand and exited 1 instead of 130)."""
    try:
        yield
    except RuntimeError as e:
        if str(e).strip() == "Query interrupted":
            raise KeyboardInterrupt from None
        raise


class FlashbackError(Exception):
    """Base class: the message is already the one line a user should see."""

    def __init__(self, message: str = ""):
        super().__init__(one_line(message))


class UsageError(FlashbackError):
    """A flag, setting or argument out of its range: the command stops before doing any work."""


class InputError(FlashbackError):
    """A video input that cannot be scored (missing, not a video, no frames, ...)."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem

    def __reduce__(self):  # rebuilt from its two parts when it crosses processes (a cluster's workers)
        return type(self), (self.source, self.problem)


class DataFileError(FlashbackError):
    """A file the user gave us to parse (annotations, timestamped or labelled captions): the
    message names the file and, where there is one, the line."""


class BundleError(FlashbackError):
    """A memory bundle that is missing, unreadable, tampered with or malformed."""


class EncoderMismatchError(BundleError):
    """A bundle built with another encoder than the one scoring would use."""


class StoreError(FlashbackError):
    """The DuckDB results store cannot be opened or written (locked, not a database, disk full, ...)."""


class EncoderError(FlashbackError):
    """An encoder that cannot be loaded (unknown model, weights not reachable, bad checkpoint)."""


class BuildError(FlashbackError):
    """A memory build that cannot go on: a missing optional package, an LLM engine that fails."""


class ClusterError(FlashbackError):
    """A Ray cluster (``--ray``) that cannot be reached, lacks Ray or resources, or whose workers
    disagree with the driver about the memory, settings or encoder."""
