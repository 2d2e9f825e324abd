"""Live feeds: causal scoring and events, backoff, and `flashback watch` on real loopback streams
(Debian's ffmpeg serving MPEG-TS over HTTP), with a server killed and restarted mid-stream, a
webhook receiver that is down at first, a real DuckDB file and a SIGTERM to finish."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import FLASHBACK, TINY_CLI, flashback_here, free_port
from streams import FFMPEG, described, listening, serve

from flashback.errors import UsageError
from flashback.live.causal import CausalSmoother, OnlineEvents
from flashback.live.feeds import Backoff, FeedSpec, parse_feed
from flashback.live.sinks import LiveSink
from flashback.live.watcher import WatchConfig, Watcher
from flashback.memory.bundle import CaptionTable
from flashback.scoring.scoring import Segments
from flashback.settings import PRESETS

CAPTIONS = CaptionTable(["calm street", "smashing a window"], [False, True], ["normal", "Vandalism"], ["t", "t"])


def seg(i: int, score: float, step: float = 0.5) -> Segments:
    """One live segment whose raw and smoothed score are both ``score``."""
    return Segments(np.array([i]), np.array([[i * step, i * step + 1.0]]), np.array([score]), np.array([[1, 0]]),
                    np.array([[0.3, 0.2]]), np.array([[score, 1 - score]]), np.array([[True, False]]), np.array([score]))


def test_causal_smoothing_uses_only_the_past():
    sm = CausalSmoother(1.0)
    steps = [sm.push(t, 1.0 if t >= 5 else 0.0) for t in np.arange(0, 10, 0.5)]
    assert all(v == 0.0 for v in steps[:10])  # nothing before the step leaks in: no look-ahead
    assert steps[10] > 0 and all(b >= a for a, b in zip(steps[10:], steps[11:]))  # rises after it, monotonically
    assert steps[-1] > 0.95
    # the value at t is the half-Gaussian mean of what came before
    sm2 = CausalSmoother(2.0)
    xs = [(0.0, 0.2), (1.0, 0.8), (2.0, 0.4)]
    got = [sm2.push(t, x) for t, x in xs][-1]
    w = np.exp(-0.5 * ((2.0 - np.array([0, 1, 2])) / 2.0) ** 2)
    assert got == pytest.approx(float(np.dot(w, [0.2, 0.8, 0.4]) / w.sum()))
    assert CausalSmoother(1.0).lag_s == pytest.approx(0.798, abs=1e-3)


def test_online_events_open_once_close_once_and_ignore_blips():
    ev = OnlineEvents("cam", threshold=0.5, min_event_s=1.0, merge_gap_s=1.0, captions=CAPTIONS, stride_s=0.5)
    scores = [0, 0, 0.9, 0, 0, 0, 0,  # a blip: one segment, never reported
              0.8, 0.9, 0.9, 0.2, 0.9, 0.9, 0, 0, 0, 0, 0]  # one event with a short dip inside
    updates = [u for i, s in enumerate(scores) for u in ev.push(seg(i, s))]
    assert [u.kind for u in updates] == ["opened", "closed"]
    opened, closed = updates
    assert opened.event.index == closed.event.index == 0 and opened.event.start_frame == 7
    assert opened.uid == closed.uid and len(opened.uid) == 32
    assert closed.event.end_frame == 12 and closed.reason == "score fell"  # the dip did not split it
    assert closed.event.peak_score == pytest.approx(0.9) and closed.event.category == "Vandalism"
    # an outage closes an open event exactly once; the next one gets the next number
    for i, s in enumerate([0.9, 0.9, 0.9, 0.9], start=20):
        updates = ev.push(seg(i, s))
    assert [u.kind for u in ev.close("outage")] == ["closed"] and ev.close("outage") == []
    later = [u for i, s in enumerate([0.9] * 4, start=40) for u in ev.push(seg(i, s))]
    assert later[0].event.index == 2 and later[0].uid != opened.uid  # uids are never reused


def test_an_outage_waits_for_the_backlog_from_before_it_then_closes_once():
    """Scoring behind the feed when it is lost: the segments decoded before the loss still arrive
    after the outage is seen.  They belong to the open event (no second incident opened from them),
    and the event is closed for the outage once they are in, or once the feed's segments pass the cut."""
    ev = OnlineEvents("cam", threshold=0.5, min_event_s=1.0, merge_gap_s=1.0, captions=CAPTIONS, stride_s=0.5)
    opened = [u for i in range(4) for u in ev.push(seg(i, 0.9))]  # segments 0-3 (0-2.5 s): reported
    assert [u.kind for u in opened] == ["opened"]
    assert ev.outage(start_s=5.0, next_start_s=2.0) == []  # lost at 5 s; scoring is at 2 s
    backlog = [u for i in range(4, 10) for u in ev.push(seg(i, 0.9))]  # up to 4.5-5.5 s: before the cut
    assert backlog == []
    [closed] = ev.push(seg(10, 0.9))  # 5.0 s: the first segment from after the cut (the feed came back)
    assert closed.kind == "closed" and closed.reason == "outage" and closed.uid == opened[0].uid
    assert closed.event.end_frame == 9  # the backlog is part of it
    assert [u.kind for u in ev.push(seg(11, 0.9))] == ["opened"]  # after the gap: a new incident
    # a feed that stays lost: nothing more is pushed, and the close comes when its segments pass the cut
    assert ev.outage(start_s=6.5, next_start_s=6.0) == []
    assert ev.settle(6.0) == [] and [u.reason for u in ev.settle(6.5)] == ["outage"]
    assert ev.settle(9.0) == [] and ev.close("shutdown") == []  # exactly one close


def test_backoff_grows_with_jitter_up_to_a_cap():
    b = Backoff(0.5, 4.0, random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    ceilings = [min(4.0, 0.5 * 2 ** k) for k in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings))
    assert len({round(d, 6) for d in delays[4:]}) == 4  # capped, but not in lock-step
    b.reset()
    assert b.next_delay() <= 0.5


def test_feed_arguments(tmp_path):
    f = tmp_path / "a.mp4"
    f.write_bytes(b"x")
    assert parse_feed(f"gate={f}", 0).name == "gate"
    spec = parse_feed("rtsp://10.0.0.5:554/stream1", 1, transport="udp")
    assert spec.name == "feed2" and spec.open_options(5.0) == {"rtsp_transport": "udp", "timeout": "5000000"}
    assert parse_feed("lobby=http://cam/feed.ts", 0).open_options(2.0) == {"rw_timeout": "2000000"}
    with pytest.raises(UsageError, match="no such file"):
        parse_feed(str(tmp_path / "missing.mp4"), 0)


# ---------------------------------------------------------------- real streams on loopback


class Receiver:
    """A webhook receiver on loopback that can be started late."""

    def __init__(self, port: int):
        self.port, self.posts, self.server = port, [], None

    def start(self) -> None:
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((self.headers["Idempotency-Key"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def closed_on_flaky(events_file: Path, n: int, timeout: float = 60.0) -> None:
    """Wait until the JSON lines say the flaky feed's ``n``-th event has closed (a deadline, not a
    fixed sleep: a loaded machine is slower, an idle one need not wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in events_file.read_text().splitlines() if x.strip()]
        if sum(u["type"] == "event_closed" and u.get("feed") == "flaky" for u in lines) >= n:
            return
        time.sleep(0.1)
    pytest.fail(f"the flaky feed's event {n} did not close within {timeout:g} s")


@pytest.mark.slow
@pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (Debian package; .ci/run installs it)")
def test_watch_two_live_feeds_through_an_outage_with_a_late_webhook(tmp_path, scene_memory):
    from flashback.video.synthetic import make_video

    # 12 s: calm, 3 s of scene 5 from 3 s to 6 s, calm again
    video = make_video(tmp_path / "cam.mp4", n_frames=360, fps=30, size=(96, 64), scene_of=lambda i: 5 if 90 <= i < 180 else 0)
    # the camera that comes back streams until the watcher stops: the same incident, then 84 s of calm
    # (the 12 s video used to run out while the test waited for the webhook's retry, and its end was a
    # second, real, outage the assertions below did not expect)
    back = make_video(tmp_path / "back.mp4", n_frames=2700, fps=30, size=(96, 64), scene_of=lambda i: 5 if 90 <= i < 180 else 0)
    pa, pb, ph = free_port(), free_port(), free_port()
    steady = serve(video, pa, loop=True)
    flaky = serve(video, pb)
    receiver = Receiver(ph)
    db, events_file = tmp_path / "live.duckdb", tmp_path / "events.jsonl"
    watch = subprocess.Popen(
        [FLASHBACK, "watch", f"steady=http://127.0.0.1:{pa}/feed",
         f"flaky=http://127.0.0.1:{pb}/feed", "--memory", str(scene_memory.path), "--db", str(db),
         "--events", str(events_file), "--webhook", f"http://127.0.0.1:{ph}/hook", "--read-timeout", "5", "--reconnect-max", "1",  # the kill is an end of file at once; 5 s rides out a loaded machine
         "--sigma", "0.25", "--stats-every", "2", *TINY_CLI],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    restarted = None
    try:
        deadline = time.time() + 60
        while not (events_file.exists() and events_file.read_text()) and time.time() < deadline:
            time.sleep(0.05)  # the watcher has loaded its model and memory: feed time starts now
        closed_on_flaky(events_file, 1)  # its first incident (3-6 s)
        flaky.kill()
        flaky.wait()
        time.sleep(2.0)  # the camera is away for 2 s
        restarted = serve(back, pb)  # the camera comes back, its video from the start
        receiver.start()  # the webhook receiver was down until now
        closed_on_flaky(events_file, 2)  # the second incident, 3-6 s into the restarted stream; the file has not ended
        deadline = time.monotonic() + 45  # the webhook's next retry, after its backoff grew while the receiver was down
        while not receiver.posts and time.monotonic() < deadline:
            time.sleep(0.1)
        watch.send_signal(signal.SIGTERM)
        try:
            out, err = watch.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # show where every thread is stuck (PYTHONFAULTHANDLER)
            watch.send_signal(signal.SIGABRT)
            out, err = watch.communicate(timeout=30)
            pytest.fail(f"watch did not stop within 60 s of SIGTERM:\n{err[-8000:]}")
    finally:
        for p in (steady, flaky, restarted, watch):
            if p is not None and p.poll() is None:
                p.kill()
        receiver.stop()
    assert watch.returncode == 0, err
    assert "flaky: lost" in err and "flaky: back after" in err and "SIGTERM" in err

    lines = [json.loads(x) for x in events_file.read_text().splitlines()]
    assert lines[0]["type"] == "watch_started" and lines[-1]["type"] == "watch_stopped"
    assert lines[0]["causal_delays_s"]["event_close_after_s"] == 1.0
    by_key: dict[str, list[str]] = {}
    for u in lines:
        if u["type"].startswith("event_"):
            by_key.setdefault(u["event_key"], []).append(u["type"])
    # once each, never twice; the clip and thumbnail after the closing
    assert all(v == ["event_opened", "event_closed", "event_media"] for v in by_key.values()), by_key
    updates = [x for x in lines if x["type"] in ("event_opened", "event_closed")]
    flaky_events = [u for u in updates if u["feed"] == "flaky" and u["type"] == "event_closed"]
    steady_events = [u for u in updates if u["feed"] == "steady" and u["type"] == "event_closed"]
    assert len(flaky_events) == 2, err  # one before the outage, one after
    assert len(steady_events) >= 2
    for e in flaky_events + steady_events:
        assert e["dominant_category"] == "Vandalism" and e["end_s"] - e["start_s"] >= 1.0
    # the incidents sit where the video puts them: 3-6 s after each (re)connection
    assert 2.0 <= flaky_events[0]["start_s"] <= 5.0 and 5.0 <= flaky_events[0]["end_s"] <= 8.0
    started = [x for x in lines if x["type"] == "outage_started"]
    ended = [x for x in lines if x["type"] == "outage_ended"]
    assert [o["feed"] for o in started] == [o["feed"] for o in ended] == ["flaky"]
    assert ended[0]["end_s"] > ended[0]["start_s"] == started[0]["start_s"]
    # after the outage the grid starts again at the reconnection: no event starts, and no segment
    # reaches, back across the gap (one used to, and its event overlapped the one closed at the loss)
    assert flaky_events[1]["start_s"] >= ended[0]["end_s"]
    # the flaky feed's open event (if the kill caught one) was closed when the feed was lost, not later
    for e in (u for u in updates if u["type"] == "event_closed" and u.get("reason") == "outage"):
        assert e["end_s"] <= started[0]["start_s"] + 0.5
    stats = {x["feed"]: x for x in lines if x["type"] == "feed_stats" and not x["active"]}
    assert stats["steady"]["reconnects"] == 0 and stats["flaky"]["reconnects"] == 1
    assert stats["steady"]["segments_lost"] == 0  # the other feed never stopped
    assert stats["steady"]["latency_max_s"] is not None and stats["steady"]["latency_p95_s"] < 1.0

    # the webhook was down for the first incident: it still got every update, each once
    keys = [k for k, _ in receiver.posts]
    assert sorted(keys) == sorted(f"{u['event_uid']}/{u['type']}" for u in updates)
    assert len(keys) == len(set(keys))

    with duckdb.connect(str(db), read_only=True) as c:
        stored = c.execute("""SELECT f.feed, count(*) FROM events e JOIN live_feeds f USING (video_id)
                              GROUP BY f.feed ORDER BY f.feed""").fetchall()
        assert dict(stored) == {"flaky": 2, "steady": len(steady_events)}
        clips = c.execute("SELECT clip_path FROM events JOIN event_media USING (run_id, video_id, start_frame)").fetchall()
        assert len(clips) == 2 + len(steady_events) and all((db.with_suffix(".media") / p).is_file() for (p,) in clips)
        assert c.execute("SELECT count(*) FROM outages WHERE feed = 'flaky' AND end_s IS NOT NULL").fetchone()[0] == 1
        assert c.execute("""SELECT count(*) FROM segments s JOIN live_feeds f USING (video_id) JOIN outages o USING (feed)
                             WHERE s.start_s < o.end_s AND o.end_s < s.end_s""").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM live_feeds WHERE active").fetchone()[0] == 0
        seq = c.execute("""SELECT frame FROM frame_scores JOIN live_feeds f USING (video_id)
                           WHERE f.feed = 'steady' ORDER BY frame""").fetchnumpy()["frame"]
        assert len(seq) >= 30 and (np.diff(seq) == 1).all()  # every segment of the steady feed, once
        n_seg, n_hits, n_scored = c.execute("""SELECT (SELECT count(*) FROM segments), (SELECT count(*) FROM segment_captions),
                                                      (SELECT sum(n_segments) FROM scorings)""").fetchone()
        assert n_hits == 10 * n_seg and n_scored == n_seg  # top-10 captions of every stored segment
        n_events = c.execute("SELECT sum(n_events) FROM scorings").fetchone()[0]
        assert n_events == 2 + len(steady_events)

    # the review app lists the live events and opens one (no recording: it says so)
    from streamlit.testing.v1 import AppTest

    from ui.state import DB_ENV

    os.environ[DB_ENV] = str(db)
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "ui" / "app.py"), default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        opens = [b for b in at.button if b.key and b.key.startswith("open-")]
        assert at.metric[0].value == str(2 + len(steady_events)) and len(opens) == 2 + len(steady_events)
        opens[0].click().run()
        assert not at.exception, at.exception
        # a live feed keeps no recording, but the event's clip was stored from the packet ring
        assert len(at.get("video")) == 1 and any(c.value.endswith(" of the feed") for c in at.caption)
        at.radio(key="view").set_value("Video").run()  # a live feed's whole timeline (it has no fixed frame rate)
        assert not at.exception, at.exception
        assert at.get("plotly_chart") and "FPS" in at.caption[0].value
    finally:
        del os.environ[DB_ENV]


class OutageLog(LiveSink):
    """A sink that keeps the outages it is handed: ``started`` (new ones) and ``latest`` (each outage's last report)."""

    def __init__(self):
        self.started, self.latest = [], {}

    def outage(self, session, o, started):
        if started:
            self.started.append(o)
        self.latest[(o.feed, o.start_s)] = o


class SlowEncoder:
    """The real tiny encoder behind a fixed delay per call: a machine too slow for its feeds."""

    def __init__(self, encoder, delay_s: float):
        self._e, self.delay_s = encoder, delay_s

    def __getattr__(self, name):
        return getattr(self._e, name)

    def encode_images(self, rgb):
        time.sleep(self.delay_s)
        return self._e.encode_images(rgb)


def test_a_slow_encoder_drops_frames_instead_of_falling_behind(tmp_path, scene_memory, tiny_encoder):
    from flashback.live.sinks import JsonLinesSink
    from flashback.settings import ScoringSettings
    from flashback.video.synthetic import make_video

    video = make_video(tmp_path / "v.mp4", n_frames=150, fps=30, size=(96, 64))  # 5 s, played at real rate
    settings = ScoringSettings(frames_per_segment=16)  # 16 grid frames a second
    said: list[str] = []
    w = Watcher(scene_memory, SlowEncoder(tiny_encoder, 0.4), settings, [FeedSpec("cam", str(video))],
                [JsonLinesSink(tmp_path / "e.jsonl")], WatchConfig(max_latency_s=0.3, batch_size=4, stats_every_s=1.0),
                log=said.append)
    t = time.monotonic()
    stats = w.run()["cam"]
    # said where the operator looks: at start (the encoder timed against the feed's need) and while it runs
    assert said[0].startswith("warning: encoder measured at") and "expect dropped samples" in said[0], said
    assert any(x.startswith("feed cam: overloaded: ") and "of its samples dropped" in x and "--preset fast" in x
               for x in said), said
    assert sum(x.startswith("feed cam: overloaded") for x in said) == 1  # rate-limited: once a minute at most
    assert time.monotonic() - t < 5.0 + 3.0  # it kept up with the feed's clock: no backlog at the end
    assert stats["samples_dropped"] > 0.3 * stats["samples_encoded"]  # it shed load...
    assert stats["segments_scored"] >= 6  # ...yet scored the feed throughout
    assert stats["latency_max_s"] < 0.3 + 2 * 0.4 + 0.5  # age budget + encode time + one round


def test_feed_health_windows_warn_rate_limited_and_say_recovery():
    from collections import deque

    from flashback.live.health import FeedHealth, summary_line

    h = FeedHealth("gate", budget_s=1.0)
    lat = deque([0.2] * 10)
    ok = h.window({"samples_encoded": 100, "samples_dropped": 5, "segments_scored": 10}, lat)
    assert ok == {"window_drop_share": 0.0476, "window_latency_p95_s": 0.2, "latency_budget_s": 1.0, "keeping_up": True}
    assert h.say(ok, 0.0) is None
    lat.extend([3.0] * 10)
    bad = h.window({"samples_encoded": 130, "samples_dropped": 75, "segments_scored": 20}, lat)
    assert bad["window_drop_share"] == 0.7 and bad["window_latency_p95_s"] == 3.0 and not bad["keeping_up"]
    assert h.say(bad, 100.0).startswith("feed gate: overloaded: 70% of its samples dropped, p95 latency 3.0 s")
    assert h.say(bad, 130.0) is None and h.say(bad, 161.0) is not None  # a minute apart at most
    assert h.say(ok, 170.0) == "feed gate: keeping up again" and h.say(ok, 171.0) is None
    line = summary_line({"feed": "gate", "samples_dropped": 75, "samples_encoded": 130, "segments_scored": 20,
                         "segments_lost": 12, "latency_p95_s": 3.0})
    assert line.startswith("feed gate: 20 segment(s) scored, 12 lost (38%), 37% of samples dropped, p95 latency 3.00 s")
    assert "did not keep up" in line


def test_a_stalled_feed_is_an_outage_and_the_other_feed_goes_on(tmp_path, scene_memory, tiny_encoder):
    """A server that accepts the connection and then says nothing: the read timeout must fire."""
    from flashback.video.synthetic import make_video

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(silent.accept()) for _ in range(8)], daemon=True).start()
    video = make_video(tmp_path / "v.mp4", n_frames=120, fps=30, size=(96, 64))
    feeds = [FeedSpec("mute", f"http://127.0.0.1:{silent.getsockname()[1]}/feed"), FeedSpec("cam", str(video))]
    outages = OutageLog()
    w = Watcher(scene_memory, tiny_encoder, PRESETS["fast"], feeds, [outages],
                WatchConfig(read_timeout_s=1.0, backoff_base_s=0.2, backoff_cap_s=0.5, duration_s=4.5))
    stats = w.run()
    silent.close()
    assert stats["cam"]["segments_scored"] >= 6 and stats["cam"]["segments_lost"] == 0
    assert stats["mute"]["segments_scored"] == 0
    [o] = outages.latest.values()
    assert len(outages.started) == 1 and o.feed == "mute" and o.end_s is None and o.attempts >= 2


QUEUE_AND_DIE = """
import sys, time
from datetime import datetime, timezone
from flashback.scoring.events import Event
from flashback.live.causal import EventUpdate
from flashback.live.feeds import Backoff, parse_feed
from flashback.live.sinks import FeedSession, WebhookSink
from flashback.scoring.scoring import Explanation

url, outbox = sys.argv[1], sys.argv[2]
session = FeedSession(parse_feed("http://127.0.0.1/x", 0), "live-x", datetime.now(timezone.utc))
sink = WebhookSink(url, outbox, timeout_s=1.0, backoff=Backoff(0.05, 0.2))
for i in range(2):
    event = Event(i, 1.0, 2.0, 2, 4, 0.9, 3, 1.5, Explanation(None, 0.9, 0.1, []))
    for kind in ("opened", "closed"):
        sink.event(session, EventUpdate(kind, "feed1", event, f"uid{i}-{sys.argv[3]}"))
print("queued", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_webhook_updates_survive_kill_9_and_are_sent_first_by_the_next_watch(tmp_path):
    """The receiver is down; the watcher is killed with SIGKILL after queueing four updates.  They
    are on disk, the next watch keeps the outbox until it has delivered them, in order, each with a
    key that a second watch's events (same feed, same numbers) never repeat."""
    from flashback.live.sinks import Closed, WebhookSink

    port = free_port()
    url, outbox = f"http://127.0.0.1:{port}/hook", tmp_path / "outbox.jsonl"
    for run in ("a", "b"):  # two watches, each killed with its updates undelivered
        p = subprocess.Popen([sys.executable, "-c", QUEUE_AND_DIE, url, str(outbox), run], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "queued"
        p.kill()
        p.wait()
    docs = [json.loads(x) for x in outbox.read_text().splitlines()]
    assert len(docs) == 8 and [d["event_uid"] for d in docs[:2]] == ["uid0-a", "uid0-a"]

    logs = []
    sink = WebhookSink(url, outbox, timeout_s=1.0, backoff=Backoff(0.05, 0.2), log=logs.append)
    time.sleep(0.5)  # the receiver is still down: the outbox must still be there, whole
    assert len(outbox.read_text().splitlines()) == 8 and any("8 update(s) left by an earlier watch" in m for m in logs)
    receiver = Receiver(port)
    receiver.start()
    try:
        assert sink.close(drain_s=10.0) == Closed()  # every update delivered, nothing kept
    finally:
        receiver.stop()
    assert not outbox.exists()  # removed once everything was delivered
    keys = [k for k, _ in receiver.posts]
    assert keys == [f"uid{i}-{r}/event_{k}" for r in "ab" for i in range(2) for k in ("opened", "closed")]
    assert len(set(keys)) == 8  # the second watch's event 0 of feed1 is not the first watch's


def test_a_corrupt_outbox_is_set_aside_not_fatal(tmp_path):
    from flashback.live.sinks import Closed, WebhookSink

    outbox = tmp_path / "outbox.jsonl"
    outbox.write_text('{"type": "event_opened"}\n{broken\n')
    logs = []
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", outbox, log=logs.append)
    assert sink.close(drain_s=0.1) == Closed()  # nothing to deliver
    aside = list(tmp_path.glob("outbox.jsonl.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"type": "event_opened"}\n{broken\n'
    assert any("not readable" in m and str(aside[0]) in m for m in logs)


RTSP_SERVER = shutil.which("rtsp-server-perl")


@pytest.mark.slow
@pytest.mark.skipif(FFMPEG is None or RTSP_SERVER is None,
                    reason="needs ffmpeg and rtsp-server-perl (Debian packages; .ci/run installs them)")
def test_watch_an_rtsp_feed(tmp_path, scene_memory, tiny_encoder):
    """A real RTSP session on loopback: ffmpeg publishes to Debian's rtsp-server-perl, the watcher
    plays it over UDP.  (That server has no TCP-interleaved mode: it answers 400, which the test
    also checks is reported as an outage, not a crash.)"""
    from flashback.video.synthetic import make_video

    # a key frame every half second: a UDP client joins mid-stream, and under load it loses packets; until
    # the next key frame it decodes grey (once it saw no incident frame at all in 10 s, with x264's 250)
    video = make_video(tmp_path / "cam.mp4", n_frames=360, fps=30, size=(96, 64), scene_of=lambda i: 5 if 90 <= i < 180 else 0,
                       options={"g": "15"})
    client_port, source_port = free_port(), free_port()
    server = subprocess.Popen([RTSP_SERVER, "-c", str(client_port), "-s", str(source_port), "-l", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    publisher = None
    try:
        deadline = time.time() + 10
        while not listening(source_port) and time.time() < deadline:
            time.sleep(0.05)
        publisher = subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video),
                                      "-c", "copy", "-f", "rtsp", "-rtsp_transport", "udp", f"rtsp://127.0.0.1:{source_port}/cam"],
                                     stdin=subprocess.DEVNULL)
        url = f"rtsp://127.0.0.1:{client_port}/cam"
        deadline = time.monotonic() + 15
        while not described(url, client_port) and time.monotonic() < deadline:
            time.sleep(0.1)  # until the publisher has announced the stream
        db, events = tmp_path / "r.duckdb", tmp_path / "e.jsonl"
        p = subprocess.run(
            [FLASHBACK, "watch", f"udp={url}", "--transport", "udp",
             "--memory", str(scene_memory.path), "--db", str(db), "--events", str(events), "--duration", "10",
             "--sigma", "0.25", *TINY_CLI],
            capture_output=True, text=True, env=os.environ.copy(), timeout=120)
        # the same stream asked for over TCP: this server refuses, and that is an outage with its reason
        outages = OutageLog()
        w = Watcher(scene_memory, tiny_encoder, PRESETS["fast"],
                    [FeedSpec("tcp", url, transport="tcp")], [outages], WatchConfig(duration_s=2.0, backoff_base_s=0.2))
        assert w.run()["tcp"]["segments_scored"] == 0
        [o] = outages.latest.values()
        assert len(outages.started) == 1 and "400" in o.reason and o.end_s is None
    finally:
        for proc in (publisher, server):
            if proc is not None:
                proc.kill()
    assert p.returncode == 0, p.stderr
    stats = {x["feed"]: x for x in map(json.loads, events.read_text().splitlines())
             if x["type"] == "feed_stats" and not x["active"]}
    assert stats["udp"]["segments_scored"] >= 15 and stats["udp"]["segments_lost"] == 0 and stats["udp"]["outages"] == 0
    with duckdb.connect(str(db), read_only=True) as c:
        peak = c.execute("""SELECT max(raw_score) FROM frame_scores JOIN live_feeds f USING (video_id)
                            WHERE f.feed = 'udp'""").fetchone()[0]
    assert peak > 0.5  # any 10 s of the 12-s loop holds part of its 3-s incident


@pytest.mark.parametrize("args,message", [
    (["missing.mp4"], "missing.mp4: no such file (feed feed1)"),
    (["a={video}", "a={video}"], "feed names must be unique"),
    (["=x"], "expected NAME=URL_OR_FILE"),
])
def test_watch_usage_errors_are_one_line(tmp_path, args, message):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    p = flashback_here("watch", *[a.format(video=video) for a in args], "--no-db", cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_the_store_shows_a_feed_while_it_runs(tmp_path, scene_memory, tiny_encoder):
    """Segment scores reach DuckDB every couple of seconds, not only when an event happens, so the
    review app's timeline follows a live feed; a reader can open the file between flushes."""
    from flashback.live.sinks import LiveStoreSink
    from flashback.store import ResultStore, RunRecord
    from flashback.video.synthetic import make_video

    video = make_video(tmp_path / "v.mp4", n_frames=240, fps=30, size=(96, 64))  # calm: no event at all
    store = ResultStore(tmp_path / "r.duckdb")
    store.initialize()
    w = Watcher(scene_memory, tiny_encoder, PRESETS["fast"], [FeedSpec("cam", str(video))], [],
                WatchConfig(duration_s=10.0))
    sink = LiveStoreSink(store, RunRecord(w.settings.to_dict(), scene_memory.memory_id, "", tiny_encoder.identity.key, "t"),
                         flush_every_s=1.0)
    w.sinks.append(sink)
    seen, finished = [], threading.Event()

    def poll():  # until the scores show up, while the feed still runs (it is 8 s long)
        deadline = time.monotonic() + 30
        while not finished.is_set() and time.monotonic() < deadline:
            with store.connect(read_only=True) as c:
                n = c.execute("SELECT count(*) FROM frame_scores").fetchone()[0]
            if n >= 4:
                seen.append(n)
                return
            time.sleep(0.2)

    t = threading.Thread(target=poll)
    t.start()
    w.run()
    finished.set()
    t.join()
    sink.close()
    assert seen and seen[0] >= 4  # scores were there while the feed was still running
    with store.connect(read_only=True) as c:
        assert c.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM frame_scores").fetchone()[0] > seen[0]


def test_a_verdict_on_an_open_live_event_survives_its_closing(tmp_path):
    """Reviewers may judge an event while it is still open: closing it moves its end, not its key."""
    from datetime import datetime, timezone

    from flashback.live.causal import EventUpdate
    from flashback.live.sinks import Closed, FeedSession, LiveStoreSink
    from flashback.scoring.events import Event
    from flashback.scoring.scoring import Explanation
    from flashback.store import ResultStore, RunRecord
    from ui.data import EventKey, ReviewDB

    store = ResultStore(tmp_path / "r.duckdb")
    store.initialize()
    sink = LiveStoreSink(store, RunRecord({"x": 1}, "mem", "/mem", "enc", "t"))
    session = FeedSession(parse_feed("gate=http://127.0.0.1/x", 0), "live-gate:1-abc", datetime.now(timezone.utc))
    sink.start(session)

    def update(kind: str, end_frame: int) -> EventUpdate:
        e = Event(0, 1.0, 1.0 + 0.5 * end_frame, 2, end_frame, 0.9, 3, 1.5, Explanation("Fighting", 0.9, 0.1, []))
        return EventUpdate(kind, "gate", e, "uid-1")

    sink.event(session, update("opened", 4))
    db = ReviewDB(store.path)
    [row] = db.events()
    db.save_verdict(EventKey.decode(row["key"]), row["end_frame"], "confirmed", "ana")
    sink.event(session, update("closed", 11))
    assert sink.close() == Closed()  # nothing left unwritten
    [row] = db.events()
    assert row["end_frame"] == 11 and row["status"] == "confirmed" and row["reviewer"] == "ana"
    assert EventKey.decode(row["key"]).video_id == "live-gate:1-abc"


class Recorder(LiveSink):
    """Keeps every event update and outage report with the time it was handed over."""

    def __init__(self):
        self.log = []

    def event(self, session, u):
        self.log.append((time.monotonic(), "event", u))

    def outage(self, session, o, started):
        self.log.append((time.monotonic(), "outage", (o, started)))


@pytest.mark.slow
@pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (Debian package; .ci/run installs it)")
def test_an_outage_closes_the_open_event_when_it_is_detected(tmp_path, scene_memory, tiny_encoder):
    """The feed dies mid-incident and stays down: its event is closed (reason outage) as soon as
    the loss is seen, not when the watch stops."""
    from flashback.video.synthetic import make_video

    video = make_video(tmp_path / "cam.mp4", n_frames=600, fps=30, size=(96, 64), scene_of=lambda i: 5)  # anomalous throughout
    port = free_port()
    server = serve(video, port)
    rec = Recorder()
    settings = dataclasses.replace(PRESETS["fast"], smoothing_sigma_s=0.25)
    w = Watcher(scene_memory, tiny_encoder, settings, [FeedSpec("cam", f"http://127.0.0.1:{port}/feed")], [rec],
                WatchConfig(read_timeout_s=1.0, backoff_base_s=5.0, backoff_cap_s=5.0, duration_s=12.0))
    killed = []

    def kill_later():
        deadline = time.monotonic() + 20
        while not any(kind == "event" and x.kind == "opened" for _, kind, x in rec.log) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        server.kill()
        killed.append(time.monotonic())

    threading.Thread(target=kill_later, daemon=True).start()
    try:
        w.run()
    finally:
        server.kill()
    stopped = time.monotonic()
    assert killed, "the event never opened"
    closes = [(t, u) for t, kind, u in rec.log if kind == "event" and u.kind == "closed"]
    # the tiny random model's scores sit near the threshold: on a loaded CI machine the event once
    # closed and reopened before the kill (two closes); what is tested is the one open at the outage.
    # Once, scoring was behind at the kill and the backlog from before it reopened the incident after
    # its outage close (closed again as 'feed ended'): the close now waits for that backlog.
    after = [(t, u) for t, u in closes if t >= killed[0]]
    assert len(after) == 1, f"closes (s after the kill, reason): {[(round(t - killed[0], 2), u.reason) for t, u in closes]}"
    [(t_close, closed)] = after
    assert closed.reason == "outage"
    assert t_close - killed[0] < 3.0 and stopped - t_close > 3.0  # at detection, long before the watch stopped
    started = [x[0] for _, kind, x in rec.log if kind == "outage" and x[1]]
    assert len(started) == 1 and started[0].end_s is None


def test_watch_help_names_the_preset_it_runs():
    p = flashback_here("watch", "--help")
    assert "(defaults: the 'fast' preset)" in p.stdout and "'default' preset" not in p.stdout


def test_watch_config_checks_its_numbers():
    with pytest.raises(UsageError, match="watch: --max-latency must be a number in"):
        WatchConfig(max_latency_s=0)
    with pytest.raises(UsageError, match="--duration must be a number > 0"):
        WatchConfig(duration_s=-1)


def test_the_sinks_close_in_reverse_order_and_a_failing_one_stops_none_of_the_others():
    """One owner closes every sink: the last added first (the clips sink hands its last files to the
    others), the first added (the JSON lines) last; a close that raises is raised after the rest."""
    from flashback.live.sinks import Closed, Sinks

    order = []

    class Named(LiveSink):
        def __init__(self, name, broken=False):
            self.name, self.broken = name, broken

        def close(self):
            order.append(self.name)
            if self.broken:
                raise RuntimeError(f"{self.name} is broken")
            return Closed(note=self.name)

    assert Sinks([Named("json"), Named("store"), Named("clips")]).close() == [Closed(note=n) for n in ("clips", "store", "json")]
    order.clear()
    with pytest.raises(RuntimeError, match="store is broken"):
        Sinks([Named("json"), Named("store", broken=True), Named("clips")]).close()
    assert order == ["clips", "store", "json"]


def test_a_store_that_fails_is_said_bounded_and_caught_up(tmp_path, monkeypatch):
    """A watch whose store refused writes used to be silent and to buffer without bound."""
    from datetime import datetime, timezone

    from flashback.live.causal import EventUpdate
    from flashback.live.sinks import FeedSession, LiveStoreSink
    from flashback.live.sinks import store as store_sink
    from flashback.scoring.events import Event
    from flashback.scoring.scoring import Explanation, Segments
    from flashback.store import ResultStore, RunRecord

    monkeypatch.setattr(store_sink, "MAX_PENDING", 12)
    monkeypatch.setattr(store_sink, "SAY_EVERY_S", 0.0)
    store = ResultStore(tmp_path / "r.duckdb", lock_wait_s=0.1)
    store.initialize()
    said: list[str] = []
    sink = LiveStoreSink(store, RunRecord({"x": 1}, "mem", "/mem", "enc", "t"), flush_every_s=0.0, log=said.append)
    session = FeedSession(parse_feed("gate=http://127.0.0.1/x", 0), "live-gate-1", datetime.now(timezone.utc))
    sink.start(session)
    aside = tmp_path / "aside.duckdb"
    store.path.rename(aside)
    store.path.mkdir()  # the store's path is now a folder: every write fails with a StoreError

    def segment(k: int) -> Segments:
        return Segments(np.array([k]), np.array([[k, k + 1.0]]), np.array([0.9]), np.zeros((1, 1), int), np.array([[0.3]]),
                        np.ones((1, 1)), np.ones((1, 1), bool), np.array([0.9]), np.ones((1, 4), np.float32) / 2)

    from flashback.memory.bundle import CaptionTable

    captions = CaptionTable(["two men fight"], [True], ["Fighting"], ["test"])
    for k in range(20):
        sink.segments(session, segment(k), captions, 2.0)
        sink.tick()
    e = Event(0, 1.0, 3.0, 1, 3, 0.9, 2, 2.0, Explanation("Fighting", 0.9, 0.1, []))
    sink.event(session, EventUpdate("opened", "gate", e, "uid-1"))
    assert len(sink._pending) <= 12 and sink.dropped["segments"] == 9
    assert said[0].startswith(f"{store.path}: cannot write live results") and "is a folder" in said[0]
    assert any("still cannot write" in s and "9 segment batch(es) dropped" in s for s in said)
    store.path.rmdir()
    aside.rename(store.path)
    sink.tick()
    assert said[-1].startswith(f"{store.path}: writing again after") and "9 segment batch(es) dropped meanwhile" in said[-1]
    with duckdb.connect(str(store.path), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM events").fetchone()[0] == 1  # events are never dropped
        assert [r[0] for r in c.execute("SELECT segment FROM segments ORDER BY 1").fetchall()] == list(range(9, 20))


def test_event_messages_link_to_their_page_in_the_review_app(tmp_path):
    """With --review-url, every event update (JSON lines, webhook, MQTT) carries the link the app opens."""
    import urllib.parse
    from datetime import datetime, timezone

    from flashback.live.causal import EventUpdate
    from flashback.live.sinks import FeedSession, JsonLinesSink
    from flashback.live.sinks.base import event_doc
    from flashback.scoring.events import Event
    from flashback.scoring.scoring import Explanation
    from ui.data import EventKey

    e = Event(0, 1.0, 3.0, 2, 6, 0.9, 4, 2.0, Explanation("Fighting", 0.9, 0.1, []))
    session = FeedSession(parse_feed("gate=http://127.0.0.1/x", 0), "live-gate-1", datetime.now(timezone.utc),
                          run_id="abc123", review_url="http://nvr.local:8501/")
    doc = event_doc(session, EventUpdate("opened", "gate", e, "uid-1"))
    link = urllib.parse.urlsplit(doc["link"])
    assert (link.netloc, link.path) == ("nvr.local:8501", "/")
    query = urllib.parse.parse_qs(link.query)
    assert query["view"] == ["Event"] and EventKey.decode(query["event"][0]) == EventKey("abc123", "live-gate-1", 2)
    sink = JsonLinesSink(tmp_path / "e.jsonl")
    sink.event(session, EventUpdate("opened", "gate", e, "uid-1"))
    sink.close()
    assert json.loads((tmp_path / "e.jsonl").read_text().splitlines()[0])["link"] == doc["link"]
    plain = FeedSession(session.spec, "live-gate-1", session.started_at)  # no --review-url: no link
    assert "link" not in event_doc(plain, EventUpdate("opened", "gate", e, "uid-1"))
    p = flashback_here("watch", "cam=x.mp4", "--review-url", "nvr.local")
    assert p.returncode == 2 and "expected the app's address" in p.stderr
