"""``flashback serve``: every camera's watch, retention, the HTTP API and the review app, from one
config file, as one supervised service (``service/``).

The watch is one watcher for all cameras (one encoder, shared batches), run in a thread; the API
is uvicorn in a thread; the review app is its own process (Streamlit's server).  SIGTERM or Ctrl-C
stops all of it (open events closed, outboxes flushed) and exits 0; SIGHUP reads the cameras again:
added, removed or changed cameras start or stop, the others run on without a gap (a change of a
camera's alert or ignore texts restarts the watch, since the texts join the memory searched).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading

from ..errors import FlashbackError, UsageError
from ..service.config import ServiceConfig, read_service
from .common import EXIT_OK, say, warn
from .config import config_path, read_config
from .options import encoder_choice
from .setup import image_encoder, memory_for
from .watch import add_watch_flags, announce, compose

STOP_BOUND_S = 15.0  # the watch's own bound plus the outboxes' drain


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="run the cameras' watch, retention, the HTTP API and the review app as one service",
                       description="Everything from the config file ($FLASHBACK_CONFIG, ./flashback.toml, "
                                   "~/.config/flashback/config.toml): [[serve.cameras]], [serve.api], [serve.review], and "
                                   "any watch flag under [serve]. SIGTERM stops it cleanly; SIGHUP re-reads the cameras.")
    s.add_argument("--check", action="store_true", help="check the config file, one line per problem, and exit")
    add_watch_flags(s, "not for serve: cameras come from [[serve.cameras]]")
    s.set_defaults(run=run)


def load(a: argparse.Namespace) -> ServiceConfig:
    path = config_path()
    if path is None:
        raise UsageError("serve: no config file (set FLASHBACK_CONFIG, or write ./flashback.toml); see docs/service.md")
    doc = read_config(path)  # read again: SIGHUP reloads from here
    if a.cameras or a.roi:
        raise UsageError(f"serve: --cameras and --roi are watch's; the service's cameras and regions are {path} [[serve.cameras]]")
    return read_service(path, doc, a.mqtt_topic if a.mqtt else None)


def run(a: argparse.Namespace) -> int:
    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise FlashbackError(f"the service needs {', '.join(missing)}: pip install 'flashback[serve]'")
    svc = load(a)
    if a.no_db:
        raise UsageError("serve: the service keeps its events in the store: remove no-db")
    api = svc.api
    if a.check:
        tokens = "tokens required" if api.read_tokens or api.write_tokens else "no token: this machine only"
        say(f"{svc.path}: OK: {len(svc.cameras)} camera(s) ({', '.join(c.name for c in svc.cameras) or 'none'}); "
            f"API on {api.bind}:{api.port} ({tokens}); "
            + (f"review app on {svc.review.bind}:{svc.review.port}" if svc.review.enabled else "no review app"))
        return EXIT_OK
    from ..service.api import make_app
    from ..service.auth import Access
    from ..service.metrics import Metrics, MetricsSink
    from ..service.supervisor import ProcessPart, Supervisor, ThreadPart

    encoder = image_encoder(a)
    memory = memory_for(a, encoder)
    metrics = Metrics()
    current: dict = {"svc": svc, "watcher": None}
    metrics.follow(lambda: current["watcher"])
    base_texts = _texts(a)

    def watch(stop: threading.Event) -> None:
        s = current["svc"]
        watcher, sinks, events = compose(a, s.feeds(), base_texts + list(s.camera_table().texts), [MetricsSink(metrics)],
                                         encoder=encoder, memory=memory)
        watcher.keep_running, watcher.stop_event = True, stop  # the part's stop is the watcher's
        current["watcher"] = watcher
        announce(watcher, events)
        try:
            watcher.run()
        finally:
            current["watcher"] = None
            for c in sinks.close():
                if c.problem:
                    warn(c.problem)

    def searcher():
        from ..review.search import query_encoder
        from ..store import ResultStore

        return query_encoder(ResultStore(a.db), encoder_choice(a))

    app = make_app(a.db, Access(api.read_tokens, api.write_tokens), metrics, api.cors_origins, searcher, queues=metrics.queues)
    sup = Supervisor(say, on_restart=lambda name: metrics.restarts.labels(name).inc())
    sup.add(ThreadPart("watch", watch, bound_s=STOP_BOUND_S))
    sup.add(ThreadPart("api", lambda stop: _serve_api(app, api.bind, api.port, stop)))
    if svc.review.enabled:
        sup.add(ProcessPart("review", [sys.executable, "-m", "flashback.cli", "review", "--db", str(a.db),
                                       "--host", svc.review.bind, "--port", str(svc.review.port)], env=dict(os.environ)))
    stopping, reload = threading.Event(), threading.Event()

    def on_stop(signum, _frame) -> None:
        say(f"{signal.Signals(signum).name}: stopping the service (up to {STOP_BOUND_S + 10:g} s)")
        stopping.set()

    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: reload.set())
    say(f"serving {len(svc.cameras)} camera(s); API on http://{api.bind}:{api.port}/api (OpenAPI: /docs)"
        + (f"; review app on http://{svc.review.bind}:{svc.review.port}" if svc.review.enabled else ""))
    try:
        while not stopping.wait(0.2):
            sup.check()
            if reload.is_set():
                reload.clear()
                _reload(a, current, sup)
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
        sup.stop()
    say("service stopped")
    return EXIT_OK


def _texts(a: argparse.Namespace) -> list:
    from ..video.cameras import user_texts

    return user_texts(a.alert, a.ignore)


def _reload(a: argparse.Namespace, current: dict, sup) -> None:
    """SIGHUP: the cameras again.  A config with a problem changes nothing (each problem is said)."""
    try:
        new = load(a)
    except UsageError as e:
        for line in getattr(e, "problems", [str(e)]):
            warn(f"SIGHUP: {line}; still running the cameras read before")
        return
    old, current["svc"] = current["svc"], new
    if old.camera_table().texts != new.camera_table().texts:
        say("SIGHUP: cameras' alert/ignore texts changed: restarting the watch")
        sup.restart("watch")
        return
    watcher = current["watcher"]
    if watcher is not None:
        watcher.replace_feeds(new.feeds())
    gone, added = {c.name for c in old.cameras} - {c.name for c in new.cameras}, {c.name for c in new.cameras} - {c.name for c in old.cameras}
    changed = {c.name for c in new.cameras if c not in old.cameras} - added
    say(f"SIGHUP: cameras re-read: {len(added)} added, {len(gone)} removed, {len(changed)} changed")


def _serve_api(app, host: str, port: int, stop: threading.Event) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           limit_concurrency=64, timeout_keep_alive=5))
    # off the main thread uvicorn leaves signals alone: the service's handlers stay
    done = threading.Event()

    def stopper() -> None:
        while not done.is_set():
            if stop.wait(0.5):
                server.should_exit = True
                return

    threading.Thread(target=stopper, daemon=True).start()
    try:
        server.run()
    finally:
        done.set()
    if not stop.is_set():
        raise UsageError(f"the API could not serve on {host}:{port} (is the port taken?)")
