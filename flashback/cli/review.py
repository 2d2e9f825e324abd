"""``flashback review``: the Streamlit review app (``ui/``) over a results store."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..checks import Range
from ..errors import FlashbackError
from .common import EXIT_OK, out, say, warn
from .options import add_db_arg, add_encoder_args, encoder_choice


def add_parser(sub) -> None:
    r = sub.add_parser("review", help="open the Streamlit review app for flagged events (needs the [ui] extra)")
    add_db_arg(r, "results store to review")
    r.add_argument("--port", type=Range(1, 65535, integer=True).argtype(), default=8501, help="port (8501)")
    r.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    r.add_argument("--text-encoder", metavar="NAME",
                   help="the Search page of a score-captions store: its sentence-transformers model (default: the packaged MiniLM)")
    add_encoder_args(r, from_store=True)  # the Search page embeds queries with the encoder the footage was scored with
    r.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise FlashbackError("the review app needs Streamlit: pip install 'flashback[ui]'")
    import ui
    from ui.state import DB_ENV, ENCODER_ENV

    if not a.db.exists():
        warn(f"{a.db}: no such results database yet; the app will say so until one is written")
    else:
        check_search_encoder(a)
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"serving on {a.host}: anyone who can reach this address can review and record verdicts")
    app = Path(ui.__file__).with_name("app.py")
    env = {**os.environ, DB_ENV: str(a.db.resolve()), ENCODER_ENV: json.dumps(encoder_choice(a))}
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", a.host, "--server.port", str(a.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "viewer"]  # an operator's app: no Deploy button, no developer menu
    out.print(f"reviewing {a.db} at http://{a.host}:{a.port}  (Ctrl-C to stop)")
    return serve(cmd, env)


def check_search_encoder(a: argparse.Namespace) -> None:
    """The Search page's encoder (the one the store was scored with, unless named) checked now, so
    a missing checkpoint or download is said at start, not on the first search: loaded once where
    only loading can tell, else (random weights, a checkpoint file) resolved without its imports."""
    from ..review.search import query_encoder, query_encoder_without_loading, recorded_encoder
    from ..store import ResultStore

    store = ResultStore(a.db)
    try:
        if recorded_encoder(store) is None and a.encoder is None and getattr(a, "text_encoder", None) is None:
            return  # nothing to search with an image encoder's text tower
        spec = encoder_choice(a)
        key = query_encoder_without_loading(store, spec) or query_encoder(store, spec).identity.key
        say(f"search: queries are embedded with {key}")
    except FlashbackError as e:
        warn(f"the Search page will not work: {e}")


STOP_WAIT_S = 10.0  # Streamlit stops in well under a second; past this it is killed


def serve(cmd: list[str], env: dict) -> int:
    """Run the Streamlit server as our child and make it end with us.

    It gets a session of its own, so a terminal's Ctrl-C reaches only this process, and every
    SIGINT, SIGTERM or SIGHUP sent to us is passed on to it; we then wait for it to exit (killing it
    after ``STOP_WAIT_S``), so stopping ``flashback review`` never leaves a server holding the port.
    """
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            preexec_fn=_end_with_parent if sys.platform.startswith("linux") else None)
    stop_by: float | None = None  # set by the first signal

    def forward(signum, _frame) -> None:
        nonlocal stop_by
        stop_by = stop_by or time.monotonic() + STOP_WAIT_S
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.2)  # short, so a signal's deadline is noticed
                break
            except subprocess.TimeoutExpired:
                if stop_by is not None and time.monotonic() > stop_by:
                    proc.kill()  # asked to stop and did not: the port must not stay taken
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # we are leaving for some other reason (a bug): take the child with us
            proc.kill()
            proc.wait()
    return EXIT_OK if stop_by is not None else code


def _end_with_parent() -> None:
    """In the child, before Streamlit starts: the kernel sends it SIGTERM if we die, even by SIGKILL,
    which no handler of ours can see (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # no prctl: a SIGKILLed parent leaves the server, as any Popen would
