"""``flashback review``: the Streamlit review app (``ui/``) over a results store."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from ..checks import Range
from ..errors import FlashbackError
from .common import EXIT_OK, out, warn
from .options import DEFAULT_DB


def add_parser(sub) -> None:
    r = sub.add_parser("review", help="open the Streamlit review app for flagged events (needs the [ui] extra)")
    r.add_argument("--db", type=Path, default=Path(DEFAULT_DB), metavar="FILE", help=f"results store to review (default ./{DEFAULT_DB})")
    r.add_argument("--port", type=Range(1, 65535, integer=True).argtype(), default=8501, help="port (8501)")
    r.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    r.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise FlashbackError("the review app needs Streamlit: pip install 'flashback[ui]'")
    import ui
    from ui.state import DB_ENV

    if not a.db.exists():
        warn(f"{a.db}: no such results database yet; the app will say so until one is written")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"serving on {a.host}: anyone who can reach this address can review and record verdicts")
    app = Path(ui.__file__).with_name("app.py")
    env = {**os.environ, DB_ENV: str(a.db.resolve())}
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", a.host, "--server.port", str(a.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    out.print(f"reviewing {a.db} at http://{a.host}:{a.port}  (Ctrl-C to stop)")
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return EXIT_OK
