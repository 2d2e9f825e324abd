"""``flashback serve``: its config, its HTTP API on a real server on loopback, and the whole service
as a process (signals, reload, supervision)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import duckdb
import httpx
import pytest
from conftest import FLASHBACK, TINY_CLI, copy_of, flashback_here, free_port

READ, WRITE = "r" * 20, "w" * 20


def config(folder: Path, text: str) -> dict:
    (folder / "flashback.toml").write_text(text)
    return {"FLASHBACK_CONFIG": str(folder / "flashback.toml")}


# ---------------------------------------------------------------- the config


def test_serve_check_says_every_problem_of_the_config_on_its_own_line(tmp_path):
    env = config(tmp_path, """
[serve.api]
bind = "0.0.0.0"
port = 70000
colour = "red"
[serve.review]
bind = "0.0.0.0"
[[serve.cameras]]
name = "door"
url = "rtsp://admin:${DOOR_PASSWORD}@10.0.0.5/stream"
threshold = 1.5
[[serve.cameras]]
name = "door"
url = "missing.mp4"
""")
    p = flashback_here("serve", "--check", env=env)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and all(line.startswith(f"flashback: error: {tmp_path}/flashback.toml [serve.") for line in lines), p.stderr
    for expected in ("[serve.api] port: 70000: a port is 1 to 65535", "[serve.api] colour: unknown key",
                     "environment variable DOOR_PASSWORD is not set", "threshold: 1.5: between 0 and 1",
                     "'door' names two cameras", "missing.mp4: no such file", "0.0.0.0 is reachable from other machines",
                     "[serve.review] bind: 0.0.0.0: the review app has no login"):
        assert sum(expected in line for line in lines) == 1, (expected, lines)
    assert len(lines) == 8


def test_serve_check_passes_a_good_config_and_keeps_secrets_out_of_what_it_says(tmp_path, filled_store):
    db = copy_of(filled_store, tmp_path)
    video = next(Path(filled_store[0].parent, "gate").glob("*.mp4"))
    env = config(tmp_path, f"""
db = "{db}"
[serve]
retention-days = 30
[serve.api]
bind = "0.0.0.0"
read-tokens = ["${{API_READ}}"]
[[serve.cameras]]
name = "gate"
url = "{video}"
polygon = [[0, 0], [60, 0], [60, 40]]
alert = ["a person climbing the gate"]
threshold = 0.4
""")
    p = flashback_here("serve", "--check", env={**env, "API_READ": READ})
    assert p.returncode == 0, p.stderr
    assert "OK: 1 camera(s) (gate); API on 0.0.0.0:5080 (tokens required)" in p.stderr + p.stdout
    assert READ not in p.stderr + p.stdout


def test_the_shipped_example_config_passes_its_own_check():
    example = Path(__file__).resolve().parents[1] / "deploy" / "flashback.toml"
    secrets = {"FLASHBACK_API_READ_TOKEN": READ, "FLASHBACK_API_WRITE_TOKEN": WRITE, "MQTT_PASSWORD": "m", "CAMERA_PASSWORD": "c"}
    p = flashback_here("serve", "--check", env={"FLASHBACK_CONFIG": str(example), **secrets})
    assert p.returncode == 0 and "OK: 2 camera(s) (driveway, dock)" in p.stderr + p.stdout, p.stderr


# ---------------------------------------------------------------- the API, on a real server


@contextlib.contextmanager
def api_server(db: Path, **kw):
    import uvicorn

    from flashback.service.api import make_app
    from flashback.service.auth import Access

    port = free_port()
    app = make_app(db, Access(kw.pop("read", ()), kw.pop("write", ())), **kw)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def test_events_page_by_cursor_filter_and_explain_themselves(filled_store, tmp_path):
    db = copy_of(filled_store, tmp_path)
    with api_server(db) as url, httpx.Client(base_url=url, timeout=30) as c:
        everything = c.get("/api/events", params={"limit": 500}).json()["events"]
        assert len(everything) >= 3
        pages, cursor = [], None
        while True:  # pages of two, each event exactly once, newest first
            got = c.get("/api/events", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            pages += got["events"]
            cursor = got["next_cursor"]
            if cursor is None:
                break
        assert [e["key"] for e in pages] == [e["key"] for e in everything]
        assert {Path(e["camera"]).name for e in c.get("/api/events", params={"camera": "gate"}).json()["events"]} == {"gate"}
        peak = sorted(e["peak_score"] for e in everything)[-1]
        assert [e["peak_score"] for e in c.get("/api/events", params={"min_peak": peak}).json()["events"]] == [peak]
        one = c.get(f"/api/events/{urllib.parse.quote(everything[0]['key'], safe='')}").json()
        assert one["captions"] and {"text", "anomalous", "weight"} <= set(one["captions"][0]) and one["history"] == []
        assert c.get("/api/events", params={"limit": 100_000}).status_code == 422
        assert c.get("/api/events", params={"cursor": "not-ours"}).status_code == 400


def test_a_clip_is_served_in_ranges_and_nothing_but_recorded_media_is_reachable(filled_store, tmp_path):
    db = copy_of(filled_store, tmp_path)
    with api_server(db) as url, httpx.Client(base_url=url, timeout=30) as c:
        ev = next(e for e in c.get("/api/events").json()["events"] if "clip" in e["links"])
        whole = c.get(ev["links"]["clip"])
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4" and len(whole.content) > 1000
        part = c.get(ev["links"]["clip"], headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == whole.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
        thumb = c.get(ev["links"]["thumbnail"])
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        for hostile in ("../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "x:..:0", "a" * 5000, "\x1b[31m:\u202e:1",
                        "r:v:" + "9" * 30):
            r = c.get(f"/api/events/{urllib.parse.quote(hostile, safe='')}/clip")
            assert r.status_code == 404, (hostile, r.status_code)


def test_tokens_guard_reads_and_verdicts_and_a_verdict_lands_as_the_app_saves_it(filled_store, tmp_path):
    from ui.data import EventKey, ReviewDB

    db = copy_of(filled_store, tmp_path)
    with api_server(db, read=(READ,), write=(WRITE,)) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/api/events").status_code == 401
        assert c.get("/api/events", headers={"Authorization": "Bearer " + "x" * 20}).status_code == 403
        ev = c.get("/api/events", headers={"Authorization": f"Bearer {READ}"}).json()["events"][0]
        path = f"/api/events/{urllib.parse.quote(ev['key'], safe='')}/verdict"
        body = {"verdict": "false_alarm", "reviewer": "dana", "note": "a shadow"}
        assert c.post(path, json=body, headers={"Authorization": f"Bearer {READ}"}).status_code == 403
        assert c.post(path, content=b"{" + b" " * 5000 + b"}", headers={"Authorization": f"Bearer {WRITE}"}).status_code == 413
        assert c.post(path, json={**body, "verdict": "maybe"}, headers={"Authorization": f"Bearer {WRITE}"}).status_code == 400
        r = c.post(path, json=body, headers={"Authorization": f"Bearer {WRITE}"})
        assert r.status_code == 200 and r.json()["saved"], r.text
        history = ReviewDB(db).history(EventKey.decode(ev["key"]))
        assert [(h["reviewer"], h["verdict"], h["note"]) for h in history] == [("dana", "false_alarm", "a shadow")]
        detail = c.get(f"/api/events/{urllib.parse.quote(ev['key'], safe='')}", headers={"Authorization": f"Bearer {WRITE}"}).json()
        assert detail["status"] == "false_alarm" and detail["history"][0]["reviewer"] == "dana"
        metrics = c.get("/metrics", headers={"Authorization": f"Bearer {READ}"}).text
        assert 'flashback_verdicts_total{verdict="false_alarm"} 1.0' in metrics


def test_health_series_feeds_and_the_schema(filled_store, tmp_path):
    db = copy_of(filled_store, tmp_path)
    with api_server(db) as url, httpx.Client(base_url=url, timeout=30) as c:
        h = c.get("/api/health").json()
        assert h["status"] == "ok" and h["store"]["exists"] and h["store"]["writable"] and h["store"]["problem"] is None
        s = c.get("/api/cameras/gate/scores", params={"points": 50}).json()
        assert 10 <= len(s["at"]) == len(s["score"]) <= 50 and all(0 <= x <= 1 for x in s["score"])
        assert c.get("/api/cameras/nowhere/scores").status_code == 404
        assert c.get("/api/feeds").json() == []
        schema = c.get("/openapi.json").json()
        assert {"/api/health", "/api/events", "/api/events/{key}", "/api/events/{key}/clip", "/api/events/{key}/thumbnail",
                "/api/events/{key}/verdict", "/api/search", "/api/cameras/{camera}/scores", "/api/feeds",
                "/api/events-stream", "/metrics"} <= set(schema["paths"])
    with api_server(tmp_path / "none.duckdb") as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/api/events").json() == {"events": [], "next_cursor": None}  # no store yet: nothing, not a 500
        assert c.get("/api/health").json()["store"] | {"problem": None} == {"path": str(tmp_path / "none.duckdb"), "exists": False,
                                                                           "problem": None, "writable": True}


# ---------------------------------------------------------------- the parts


def test_a_part_that_crashes_is_started_again_with_a_growing_wait():
    from flashback.service.supervisor import Supervisor, ThreadPart

    said, runs = [], []

    def flaky(stop: threading.Event) -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RuntimeError("camera went away")
        stop.wait()

    sup = Supervisor(said.append)
    sup.add(ThreadPart("watch", flaky))
    deadline = time.monotonic() + 20
    while len(runs) < 3 and time.monotonic() < deadline:
        sup.check()
        time.sleep(0.05)
    sup.stop()
    assert len(runs) == 3 and 0.9 < runs[1] - runs[0] < 2.0 and 1.9 < runs[2] - runs[1] < 3.5
    assert said[0] == "watch stopped (RuntimeError: camera went away (flaky)); starting it again in 1 s"
    assert said[1].endswith("starting it again in 2 s")


def test_a_watcher_adds_removes_and_changes_feeds_while_the_others_run_on(tmp_path, scene_memory, tiny_encoder):
    from flashback.live.feeds import FeedSpec
    from flashback.live.watcher import WatchConfig, Watcher
    from flashback.settings import PRESETS
    from flashback.video.synthetic import make_video

    video = make_video(tmp_path / "v.mp4", n_frames=30 * 12, fps=30, size=(96, 64))
    a, b = FeedSpec("a", str(video), loop=True), FeedSpec("b", str(video), loop=True)
    w = Watcher(scene_memory, tiny_encoder, PRESETS["fast"], [a], [], WatchConfig(duration_s=9.0), log=print)
    w.keep_running = True
    t = threading.Thread(target=w.run)
    t.start()
    time.sleep(2.5)
    first = w.feeds["a"]
    w.replace_feeds([a, b])  # b added
    time.sleep(2.5)
    assert set(w.feeds) == {"a", "b"} and w.feeds["a"] is first
    w.replace_feeds([FeedSpec("b", str(video), loop=True, threshold=0.99)])  # a removed, b changed
    time.sleep(2.5)
    assert set(w.feeds) == {"b"} and w.feeds["b"].events.threshold == 0.99
    t.join(30)
    assert not t.is_alive()
    # a ran 5 s, through b's start, without losing a segment (its last, partial one aside); its stats kept
    assert first.segments_scored >= 6 and first.segments_lost <= 1  # the fast preset: a segment each 0.5 s
    assert w.ended["a"]["segments_scored"] == first.segments_scored


# ---------------------------------------------------------------- the service, as a process


def wait_for(fn, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            got = fn()
            if got:
                return got
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {timeout_s:g} s")


@pytest.mark.slow  # a process: SIGHUP and SIGTERM are what is tested
def test_serve_runs_the_cameras_rereads_them_on_sighup_and_stops_cleanly_on_sigterm(tmp_path, seed_memory):
    from flashback.video.synthetic import make_video

    video = make_video(tmp_path / "cam.mp4", n_frames=30 * 40, fps=30, size=(96, 64), scene_of=lambda k: (k // 90) % 8)
    port, review_port = free_port(), free_port()

    def write(cameras: list[str]) -> dict:
        cams = "".join(f'[[serve.cameras]]\nname = "{n}"\nurl = "{video}"\n' for n in cameras)
        return config(tmp_path, f"""
encoder = "{TINY_CLI[1]}"
pretrained = "random"
device = "cpu"
memory = "{seed_memory.path}"
db = "{tmp_path / 'r.duckdb'}"
[serve]
stats-every = 1
[serve.api]
port = {port}
[serve.review]
port = {review_port}
{cams}""")

    env = {**os.environ, **write(["door"])}
    p = subprocess.Popen([FLASHBACK, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def feeds() -> dict:
            return {f["feed"]: f for f in api.get("/api/feeds").json() if f["active"]}

        door = wait_for(lambda: feeds().get("door"), "door feed in the store")
        write(["door", "yard"])
        p.send_signal(signal.SIGHUP)
        both = wait_for(lambda: (lambda f: f if {"door", "yard"} <= set(f) else None)(feeds()), "yard after SIGHUP")
        assert both["door"]["video_id"] == door["video_id"]  # door ran on: the same live session
        health = api.get("/api/health").json()
        assert {f["feed"] for f in health["feeds"]} >= {"door", "yard"} and health["store"]["exists"]
        metrics = api.get("/metrics").text
        assert 'flashback_feed_frames_total{feed="door"}' in metrics and 'flashback_feed_up{feed="yard"}' in metrics
        # the review app is a supervised child: killed, it is started again and answers again
        app = f"http://127.0.0.1:{review_port}/_stcore/health"
        wait_for(lambda: httpx.get(app).status_code == 200, "the review app", 60)
        review = next(int(pid) for pid in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
                      if b"review" in Path(f"/proc/{pid}/cmdline").read_bytes())
        os.kill(review, signal.SIGKILL)
        wait_for(lambda: 'flashback_part_restarts_total{part="review"} 1.0' in api.get("/metrics").text, "the review app's restart", 30)
        wait_for(lambda: httpx.get(app).status_code == 200, "the review app, answering again", 60)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=40)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert time.monotonic() - t0 < 25 and "service stopped" in err and "SIGHUP: cameras re-read: 1 added, 0 removed, 0 changed" in err
    assert "review stopped (exit code -9); starting it again in 1 s" in err
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM live_feeds WHERE active").fetchone()[0] == 0  # every feed closed


# ---------------------------------------------------------------- hostile clients, from the schema


WRITER = """if True:
    import dataclasses, pickle, sys, time
    from flashback.store import ResultStore
    with open(sys.argv[2], "rb") as f:
        run, results = pickle.load(f)
    store = ResultStore(sys.argv[1])
    for i in range(100_000):  # stored again and again under a new run: rows that come and grow
        again = dataclasses.replace(run, settings={**run.settings, "threshold": 0.2 + 0.001 * i})
        for r in results:
            store.save(again, r)
        time.sleep(2.0)  # as often as a camera's next video, not flat out: each write locks the file
"""


@pytest.fixture
def fuzzed(filled_store, tiny_encoder, tmp_path_factory):
    """The API with tokens over a store that another process keeps writing to meanwhile, with the
    store's one writer, as ``flashback score`` does (the fuzzing test's own: its writer must not
    outlive it into the next, fast-lane test).  The writer stores the fixture's scored videos again
    and again: a ``flashback score`` process per write spent most of the test importing torch."""
    import pickle

    import schemathesis

    folder = tmp_path_factory.mktemp("fuzzed")
    db = copy_of(filled_store, folder)
    _, run, results = filled_store
    (folder / "results.pickle").write_bytes(pickle.dumps((run, results)))
    with duckdb.connect(str(db), read_only=True) as con:
        before = con.execute("SELECT count(*) FROM scorings").fetchone()[0]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(folder / "results.pickle")])
    try:
        with api_server(db, read=(READ,), write=(WRITE,), searcher=lambda: tiny_encoder) as url:
            schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
            yield schema.exclude(path="/api/events-stream"), url  # an endless stream: tested on its own below
    finally:
        writer.terminate()
        writer.wait(30)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scorings").fetchone()[0] >= before + 3 * 4  # it wrote throughout


@pytest.mark.slow  # a server, a scoring process beside it and a few hundred generated requests
def test_no_request_the_schema_allows_or_nearly_allows_gets_a_5xx_or_an_answer_off_its_schema(fuzzed):
    """Every operation of the OpenAPI schema, with generated parameters and bodies (valid ones and,
    schemathesis' negative mode, invalid ones), each sent with a write token, a read token, a wrong
    token and none."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    schema, url = fuzzed
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case) -> None:
                nonlocal calls
                for token in (WRITE, READ, "bogus-token-0123456789", None):
                    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"} if token else {},
                                           checks=[not_a_server_error, response_schema_conformance])
                    calls += 1

            try:
                run()
            except Unsatisfiable:  # no parameter to get wrong (health, feeds, metrics)
                assert mode == GenerationMode.NEGATIVE
    assert calls > 200, calls


def test_the_event_stream_says_when_an_event_gets_a_verdict(filled_store, tmp_path):
    db = copy_of(filled_store, tmp_path)
    with api_server(db, poll_s=0.2) as url, httpx.Client(base_url=url, timeout=30) as c:
        key = c.get("/api/events").json()["events"][0]["key"]
        got: list[str] = []

        def listen() -> None:
            with httpx.stream("GET", f"{url}/api/events-stream", timeout=30) as r:
                for line in r.iter_lines():
                    got.append(line)
                    if line.startswith("data:"):
                        return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        wait_for(lambda: got, "the stream's first line", 20)
        c.post(f"/api/events/{urllib.parse.quote(key, safe='')}/verdict", json={"verdict": "confirmed", "reviewer": "ana"})
        t.join(20)
    event = json.loads(next(line for line in got if line.startswith("data:"))[5:])
    assert got[0] == ": connected" and event["key"] == key and event["status"] == "confirmed"


# ---------------------------------------------------------------- Prometheus


@pytest.mark.slow  # a Prometheus server (Debian's), scraping every second
def test_prometheus_scrapes_a_watching_service_with_its_token(tmp_path, scene_memory, tiny_encoder, filled_store):
    import shutil

    from flashback.live.feeds import FeedSpec
    from flashback.live.watcher import WatchConfig, Watcher
    from flashback.service.metrics import Metrics, MetricsSink
    from flashback.settings import PRESETS
    from flashback.video.synthetic import make_video

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("needs Debian's prometheus (.ci/run installs it)")
    video = make_video(tmp_path / "v.mp4", n_frames=30 * 30, fps=30, size=(96, 64), scene_of=lambda k: (k // 60) % 8)
    metrics = Metrics()
    w = Watcher(scene_memory, tiny_encoder, PRESETS["fast"], [FeedSpec("cam", str(video))], [MetricsSink(metrics)],
                WatchConfig(duration_s=25.0, stats_every_s=1.0))
    metrics.follow(lambda: w)
    watching = threading.Thread(target=w.run, daemon=True)
    watching.start()
    prom_port = free_port()
    with api_server(copy_of(filled_store, tmp_path), read=(READ,), metrics=metrics) as url:
        (tmp_path / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: flashback
    authorization: {{credentials: {READ}}}
    static_configs: [{{targets: ["{url.removeprefix('http://')}"]}}]
""")
        prom = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def query(q: str) -> list:
                r = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": q}, timeout=5)
                if r.status_code == 503:  # Prometheus is still starting (opening its TSDB): no answer yet
                    return []
                return r.json()["data"]["result"]

            seen = wait_for(lambda: [s for s in query('flashback_feed_segments_scored_total{feed="cam"}') if float(s["value"][1]) >= 10],
                            "ten scored segments in Prometheus", 60)
            assert seen[0]["metric"]["job"] == "flashback"
            assert query('up{job="flashback"}')[0]["value"][1] == "1"  # the token was accepted
            p95 = wait_for(lambda: query('histogram_quantile(0.95, sum by (le) (flashback_feed_latency_seconds_bucket{feed="cam"}))'),
                           "a latency quantile", 30)
            assert 0 < float(p95[0]["value"][1]) <= 10
            assert float(query("flashback_encoder_batch_size")[0]["value"][1]) >= 1
        finally:
            w.stop_event.set()
            prom.terminate()
            prom.wait(20)
    watching.join(30)
