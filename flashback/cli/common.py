"""What every command shares: the consoles, one-line messages, progress bars, exit codes, and the
two places where errors are caught.

- ``main`` (cli/__init__.py) catches ``FlashbackError`` for a whole command: one line, exit 1
  (``UsageError``: exit 2).  Anything else is a bug: ``report_bug`` prints its traceback and asks
  for a report (exit 70).
- ``Guard`` does the same around one input of a many-input command (a video, a caption file): the
  input is named as failed and the run goes on with the others.

Data never passes through rich markup or emoji codes: the consoles and progress columns have both
turned off, so a caption or a file name with brackets or ``:smile:`` in it is printed as it is.
Every string they print (table cells included) goes through ``errors.printable``: a shared bundle's
caption or a file name cannot send ESC sequences to the terminal, and a camera URL's password is
never shown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import traceback

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import FlashbackError, one_line, printable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 70, 130


class SafeConsole(Console):
    """A rich Console for data: no markup, no emoji codes, no highlighting, and every string it
    renders (``print``'s arguments and a table's cells alike reach ``render_str``) made printable."""

    def __init__(self, **kw) -> None:
        super().__init__(highlight=False, soft_wrap=True, markup=False, emoji=False, **kw)

    def render_str(self, text: str, **kw):
        return super().render_str(printable(text), **kw)


out = SafeConsole()
err = SafeConsole(stderr=True)


def print_json(text: str) -> None:
    """A JSON document on stdout as it is: no console wrapping, markup or emoji can touch it
    (``json.dumps`` already writes control characters as ``\\u`` escapes)."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def fail(message: str) -> None:
    err.print(f"flashback: error: {one_line(message)}")


def warn(message: str) -> None:
    err.print(f"flashback: warning: {one_line(message)}")


def say(message: str) -> None:
    """Progress notes for people (stderr), e.g. what a long step waits for."""
    err.print(f"flashback: {one_line(message)}")


def nothing_to_do(what: str) -> int:
    """Every argument was refused: stop before any model loads or any store is created."""
    fail(f"no {what} to score: nothing was loaded and nothing was stored")
    return EXIT_FAILED


def usage(parser) -> int:
    """A command given without its sub-command: its help, on stderr, and the usage exit status."""
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def report_bug(where: str) -> None:
    """An exception that is not a FlashbackError: a bug in flashback, shown in full."""
    traceback.print_exc(file=sys.stderr)
    err.print(f"flashback: internal error {where}: this is a bug in flashback, not a problem with your input; "
              "please report it with the traceback above")


def progress_bars(quiet: bool = False) -> Progress:
    """Bars on a terminal; on anything else (a log file, a pipe, a service manager) a plain line per
    task every ``log_every_s()`` seconds instead, so a long step is never silent."""
    columns = (_SafeText("{task.description}", markup=False), BarColumn(), _SafeText("{task.fields[done]}", markup=False),
               TimeElapsedColumn(), TimeRemainingColumn())
    if not quiet and not err.is_terminal:
        return LogLines(*columns, console=err, transient=False, disable=True)
    p = Progress(*columns, console=err, transient=False)
    p.disable = quiet
    return p


class _SafeText(TextColumn):
    """A progress column whose text (a file name, a URL) is made printable like the consoles'."""

    def render(self, task):
        text = super().render(task)
        text.plain = printable(text.plain)
        return text


def counter(progress: Progress, what: str, total: int, unit: str):
    """A task of ``total`` items and the ``advance(k)`` that moves it, for work that reports
    "k more done" (an encoder's batches)."""
    task = progress.add_task(what, total=total, done=f"0/{total:,} {unit}")

    def advance(k: int) -> None:
        done = int(progress.tasks[task].completed) + k
        progress.update(task, advance=k, done=f"{done:,}/{total:,} {unit}")

    return advance


class LogLines(Progress):
    """Progress without bars: ``flashback: TASK: DONE (N s left)`` at most every ``log_every_s()``
    seconds per task, and once when the task finishes."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._said: dict = {}

    def update(self, task_id, **kw) -> None:
        super().update(task_id, **kw)
        task = self._tasks[task_id]
        now = self.get_time()
        last = self._said.setdefault(task_id, task.start_time or now)
        if last != float("inf") and (task.finished or now - last >= log_every_s()):
            self._said[task_id] = float("inf") if task.finished else now  # a finished task is said once
            left = f" ({task.time_remaining:.0f} s left)" if task.time_remaining is not None and not task.finished else ""
            say(f"{task.description.strip()}: {task.fields.get('done') or f'{task.completed:g}'}{left}")

    def advance(self, task_id, advance: float = 1) -> None:
        self.update(task_id, advance=advance)


def log_every_s() -> float:
    """Seconds between progress lines off a terminal (FLASHBACK_LOG_EVERY_S, default 30)."""
    try:
        return max(0.0, float(os.environ.get("FLASHBACK_LOG_EVERY_S", "30")))
    except ValueError:
        return 30.0


class Guard:
    """Runs one input of a many-input command so that its failure ends that input only.

    ``failures`` collects one ``{"source", "error"}`` per failed input, as exports record them.
    """

    def __init__(self) -> None:
        self.failures: list[dict] = []

    def problem(self, source: str, message: str) -> None:
        fail(message)
        self.failures.append({"source": one_line(source), "error": one_line(message)})

    def arguments(self, problems: list[str]) -> None:
        """Arguments that named nothing to work on ("PATH: why" lines): each one a failed input."""
        for p in problems:
            self.problem(p.split(": ", 1)[0], p)

    def run(self, source: str, fn) -> bool:
        """``fn()``; False (and the input named as failed) if it raised. KeyboardInterrupt passes."""
        try:
            fn()
            return True
        except FlashbackError as e:
            self.problem(source, str(e))
        except Exception as e:  # noqa: BLE001 - the isolation boundary: a bug on one input must not end the run
            self.bug(source, e)
        return False

    def bug(self, source: str, error: BaseException) -> None:
        """A bug while working on one input (called where it was caught): its traceback, and the input failed."""
        report_bug(f"while working on {one_line(source)}")
        self.failures.append({"source": one_line(source), "error": f"internal error: {type(error).__name__}: {one_line(error)}"})

    def each(self, items, work, what: str, after=lambda k: None, name=str) -> bool:
        """``work(item)`` for every item, each under ``run`` (failures named ``name(item)``);
        ``after(k)`` once item k is done. Returns True if Ctrl-C stopped it (what was finished
        stays finished)."""
        for k, item in enumerate(items):
            try:
                self.run(name(item), lambda item=item: work(item))
            except KeyboardInterrupt:
                warn(f"interrupted: {what} finished so far are stored and exported; the current one is not")
                return True
            finally:
                after(k)
        return False


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM (a service manager's stop, ``kill``) ends the block as Ctrl-C does: what was finished
    is stored, exported and summarised, exit 130.  Installed after Ray connects, since ``ray.init``
    puts in its own handler (which aborted with a crash dump, no summary and no JSON)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_to_stderr() -> None:
    """Our own warnings as 'flashback: warning: ...' lines; libraries keep their own settings."""
    logger = logging.getLogger("flashback")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine("flashback: warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record))
