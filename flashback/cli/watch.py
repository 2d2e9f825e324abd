"""``flashback watch``: wire feeds, encoder, memory and sinks together; stop cleanly on a signal."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import urllib.parse
from pathlib import Path

from ..errors import FlashbackError, UsageError
from ..live.feeds import parse_feeds
from ..live.health import summary_line
from ..live.sinks import JsonLinesSink, LiveStoreSink, Sinks, WebhookSink
from ..live.sinks.media import LiveMediaSink
from ..live.sinks.mqtt import MqttSink, check_topics, parse_broker
from ..live.watcher import WatchConfig, Watcher
from ..video.cameras import load_cameras, user_texts
from .common import EXIT_FAILED, EXIT_OK, fail, say, warn
from .options import (
    add_decode_arg,
    add_encoder_args,
    add_media_arg,
    add_memory_arg,
    add_region_args,
    add_settings_args,
    add_store_args,
    hwaccel_for,
    setting,
    settings_from_args,
)
from .prune import DAYS
from .setup import check_overlay_dirs, image_encoder, memory_for, open_store, overlays_for


def add_parser(sub) -> None:
    w = sub.add_parser("watch", help="score live feeds (RTSP/HTTP/HLS/devices, or files at their real rate) as they arrive",
                       description="Watch live feeds: events as JSON lines the moment they open and close, rows in "
                                   "the results store, optional webhook. Stop with Ctrl-C or SIGTERM: open events are "
                                   "closed and everything is flushed.")
    w.add_argument("feeds", nargs="+", metavar="FEED", help="NAME=URL_OR_FILE, or just URL_OR_FILE (named feed1, feed2, ...)")
    add_watch_flags(w, "its name a feed's NAME")
    w.set_defaults(run=run)


def add_watch_flags(w: argparse.ArgumentParser, per: str) -> None:
    """Every flag of ``watch`` but its feeds (``serve`` takes them too, its cameras from its config)."""
    W = WatchConfig
    add_memory_arg(w)
    add_store_args(w)
    w.add_argument("--events", type=Path, metavar="FILE", help="append event JSON lines to FILE instead of stdout")
    w.add_argument("--review-url", type=_review_url, metavar="URL",
                   help="the review app's address as people reach it (e.g. http://nvr.local:8501): every event message "
                        "(JSON lines, webhook, MQTT) carries a link to its page")
    w.add_argument("--webhook", metavar="URL", help="POST every event opening and closing here as JSON (retried until delivered)")
    w.add_argument("--webhook-outbox", type=Path, metavar="FILE",
                   help="undelivered webhook updates are kept here until delivered, across runs (default: next to --db)")
    m = w.add_argument_group("MQTT (Home Assistant, Node-RED, any broker)")
    m.add_argument("--mqtt", metavar="URL", help="publish events, scores and availability to this broker: "
                                                 "mqtt://[user:pass@]host[:port] (1883) or mqtts:// (TLS, 8883)")
    m.add_argument("--mqtt-topic", default="flashback", metavar="BASE", help="topic prefix (flashback)")
    m.add_argument("--mqtt-outbox", type=Path, metavar="FILE",
                   help="undelivered MQTT messages are kept here, across runs and kills, and sent first by the next "
                        "watch (default: next to --db)")
    m.add_argument("--ha-discovery", action="store_true",
                   help="announce each feed to Home Assistant (MQTT discovery): an anomaly binary sensor, a score sensor, "
                        "a camera with the last event's thumbnail")
    add_media_arg(w)
    w.add_argument("--retention-days", type=DAYS.argtype(), metavar="N",
                   help="while watching, delete what is older than N days from the store, at start and hourly "
                        "(as flashback prune --keep-days N: events with a verdict stay)")
    w.add_argument("--transport", default="tcp", choices=["tcp", "udp"], help="RTSP transport (tcp)")
    w.add_argument("--loop", action="store_true", help="play files again from the start when they end")
    w.add_argument("--max-latency", type=setting(W, "max_latency_s"), default=1.0, metavar="S",
                   help="frames older than this when the encoder gets to them are dropped, counted (1.0)")
    w.add_argument("--read-timeout", type=setting(W, "read_timeout_s"), default=5.0, metavar="S",
                   help="a feed silent this long is reopened (5)")
    w.add_argument("--reconnect-max", type=setting(W, "backoff_cap_s"), default=30.0, metavar="S",
                   help="longest wait between reconnection attempts; waits start at 0.5 s and double, with jitter (30)")
    w.add_argument("--duration", type=setting(W, "duration_s"), metavar="S",
                   help="stop after S seconds (default: until every feed ends or a signal)")
    w.add_argument("--stats-every", type=setting(W, "stats_every_s"), default=10.0, metavar="S",
                   help="per-feed latency/drop report interval (10)")
    add_region_args(w, per)
    add_encoder_args(w)
    add_decode_arg(w)
    add_settings_args(w, preset="fast")


def compose(a: argparse.Namespace, feeds: list, texts: list, extra_sinks=(), encoder=None, memory=None) -> tuple:
    """A watcher over ``feeds`` with the sinks ``a``'s flags ask for (``watch``, and ``serve`` with
    its config's outputs): (watcher, sinks in closing order, the JSON lines sink).  ``encoder`` and
    ``memory``: already loaded (a service restarting its watcher keeps them)."""
    settings = settings_from_args(a, "fast")  # live on a CPU needs the headroom; --preset default for 16 frames
    check_overlay_dirs(a)
    broker = parse_broker(a.mqtt) if a.mqtt else None
    if a.ha_discovery and broker is None:
        raise UsageError("--ha-discovery needs --mqtt URL")
    if broker is not None:
        check_topics(a.mqtt_topic, [f.name for f in feeds])
    store = open_store(a)
    config = WatchConfig(max_latency_s=a.max_latency, batch_size=a.batch_size, read_timeout_s=a.read_timeout,
                         stats_every_s=a.stats_every, duration_s=a.duration, backoff_cap_s=a.reconnect_max,
                         clips=store is not None and not a.no_media)
    encoder = encoder or image_encoder(a)
    memory = memory or memory_for(a, encoder)
    try:
        events = JsonLinesSink(a.events)
    except OSError as e:
        raise FlashbackError(f"{a.events}: cannot open for writing ({e.strerror or e})") from None
    sinks = Sinks([events, *extra_sinks])
    config = dataclasses.replace(config, hwaccel=hwaccel_for(a, encoder), review_url=a.review_url)
    watcher = Watcher(memory, encoder, settings, feeds, sinks, config, say, texts=texts, overlays=overlays_for(a, store, encoder))
    # closed in reverse: the clips first (they hand what is still being written to the others), then the
    # store's last rows, then MQTT and the webhook drain their queues, and the JSON lines end last
    beside = str(a.db if store is not None else Path("flashback"))
    if a.webhook:
        sinks.append(WebhookSink(a.webhook, a.webhook_outbox or Path(beside + ".webhook-outbox.jsonl"), log=say))
    if broker is not None:
        sinks.append(MqttSink(broker, a.mqtt_topic, a.ha_discovery, store.media_dir.resolve() if store is not None else None,
                              log=say, outbox=a.mqtt_outbox or Path(beside + ".mqtt-outbox.jsonl")))
    if store is not None:
        sinks.append(store_sink := LiveStoreSink(store, watcher.run_record, retention_days=a.retention_days, log=say))
        if config.clips:
            sinks.append(LiveMediaSink(store.media_dir, store_sink.run.run_id, sinks, log=say))
    return watcher, sinks, events


def announce(watcher: Watcher, events: JsonLinesSink) -> None:
    """The JSON lines' first line, and what causal scoring delays, said once at start."""
    s = watcher.settings
    events.write({"type": "watch_started", "feeds": [{"name": f.name, "location": f.shown} for f in watcher.specs],
                  "settings": s.to_dict(), "causal_delays_s": watcher.delays, "max_latency_s": watcher.config.max_latency_s})
    say(f"watching {len(watcher.specs)} feed(s); scores lag {watcher.delays['smoothing_lag_s']:.2f} s (causal smoothing), "
        f"events open after {s.min_event_s:g} s and close after {s.merge_gap_s:g} s below threshold")


def _review_url(text: str) -> str:
    u = urllib.parse.urlsplit(text)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected the app's address, e.g. http://nvr.local:8501")
    return text


def run(a: argparse.Namespace) -> int:
    cameras = load_cameras(a.cameras, a.roi)
    feeds = [dataclasses.replace(f, region=cameras.for_feed(f.name)) for f in parse_feeds(a.feeds, a.transport, a.loop)]
    for name in sorted(set(cameras.names) - {f.name for f in feeds}):
        warn(f"{a.cameras} [{name}]: no feed has this name; its region and texts were not used")
    watcher, sinks, events = compose(a, feeds, user_texts(a.alert, a.ignore) + list(cameras.texts))

    def stop(signum, _frame) -> None:
        say(f"{signal.Signals(signum).name}: closing open events and flushing (up to {watcher.shutdown_bound_s:g} s)")
        watcher.stop_event.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    announce(watcher, events)
    try:
        report = watcher.run()
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
        closed = sinks.close()
    for stats in report.values():  # coverage at a glance: a feed that could not keep up says so here
        say(summary_line(stats))
    problems = [c.problem for c in closed if c.problem]
    for c in closed:
        if c.problem:
            fail(c.problem)
        elif c.note:
            say(c.note)
    for fs in watcher.feeds.values():
        error = fs.reader.error
        if error:
            fail(error)
            problems.append(error)
    failed = bool(problems)
    code = EXIT_FAILED if failed else EXIT_OK
    if watcher.stuck_readers:
        # Everything is flushed and closed.  A reader thread still inside an FFmpeg call must not
        # keep the process alive (or deadlock interpreter shutdown), so leave without finalizing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
