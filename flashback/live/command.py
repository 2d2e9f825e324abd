"""``flashback watch``: wire feeds, encoder, memory and sinks together; stop cleanly on a signal."""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

from ..errors import FlashbackError
from .feeds import parse_feed
from .watcher import Watcher, WatchConfig


def cmd_watch(a: argparse.Namespace) -> int:
    from .. import __version__
    from ..cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _settings_or_usage_error, _store_encoder_memory, err, fail
    from ..store import RunRecord
    from .sinks import JsonLinesSink, LiveStoreSink, WebhookSink

    settings = _settings_or_usage_error(a, "fast")  # live on a CPU needs the headroom; --preset default for 16 frames
    if settings is None:
        return EXIT_USAGE
    try:
        feeds = [parse_feed(arg, i, a.transport, a.loop) for i, arg in enumerate(a.feeds)]
    except ValueError as e:
        fail(str(e))
        return EXIT_USAGE
    names = [f.name for f in feeds]
    if len(set(names)) != len(names):
        fail(f"feed names must be unique (got {', '.join(names)}); name them NAME=URL_OR_FILE")
        return EXIT_USAGE
    log = lambda m: err.print(f"flashback: {m}", markup=False)  # noqa: E731
    try:
        store, encoder, memory = _store_encoder_memory(a)
    except FlashbackError as e:
        fail(str(e))
        return EXIT_FAILED
    config = WatchConfig(max_latency_s=a.max_latency, batch_size=a.batch_size, read_timeout_s=a.read_timeout,
                         stats_every_s=a.stats_every, duration_s=a.duration,
                         backoff_cap_s=a.reconnect_max)
    try:
        events = JsonLinesSink(a.events)
    except OSError as e:
        fail(f"{a.events}: cannot open for writing ({e.strerror or e})")
        return EXIT_FAILED
    sinks: list = [events]
    store_sink = None
    watcher = None
    try:
        watcher = Watcher(memory, encoder, settings, feeds, sinks, config, log)
        if store is not None:
            run = RunRecord(watcher.settings.to_dict(), memory.memory_id, str(memory.path), encoder.identity.key, __version__)
            store_sink = LiveStoreSink(store, run)
            sinks.append(store_sink)
        webhook = None
        if a.webhook:
            outbox = a.webhook_outbox or Path(str(a.db if store is not None else Path("flashback")) + ".webhook-outbox.jsonl")
            webhook = WebhookSink(a.webhook, outbox, log=log)
            sinks.append(webhook)
    except (ValueError, OSError, json.JSONDecodeError) as e:
        fail(str(e))
        return EXIT_FAILED

    def stop(signum, _frame) -> None:
        log(f"{signal.Signals(signum).name}: closing open events and flushing")
        watcher.stop_event.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    events.write({"type": "watch_started", "feeds": [{"name": f.name, "location": f.location} for f in feeds],
                  "settings": watcher.settings.to_dict(), "causal_delays_s": watcher.delays,
                  "max_latency_s": config.max_latency_s})
    log(f"watching {len(feeds)} feed(s); scores lag {watcher.delays['smoothing_lag_s']:.2f} s (causal smoothing), "
        f"events open after {settings.min_event_s:g} s and close after {settings.merge_gap_s:g} s below threshold")
    failed = False
    try:
        report = watcher.run()
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
        if store_sink is not None and not store_sink.close():
            fail(f"{store.path}: could not write the last results ({store_sink.last_error})")
            failed = True
        if webhook is not None:
            left = webhook.close()
            if left:
                log(f"webhook: {left} undelivered event update(s) kept in {webhook.outbox}; sent first next time")
    for name in report:
        error = watcher.feeds[name].reader.error
        if error:
            fail(error)
            failed = True
    events.write({"type": "watch_stopped"})
    events.close()
    code = EXIT_FAILED if failed else EXIT_OK
    if watcher.stuck_readers:
        # Everything is flushed and closed.  A reader thread still inside an FFmpeg call must not
        # keep the process alive (or deadlock interpreter shutdown), so leave without finalizing.
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
