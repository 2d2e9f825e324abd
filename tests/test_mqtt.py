"""MQTT against a real Mosquitto broker (Debian's) on loopback, started by the test and killed mid-run:
events queue while it is down and arrive in order once it is back; Home Assistant discovery."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import FLASHBACK, TINY_CLI, flashback_here, free_port

from flashback.errors import UsageError
from flashback.live.sinks import Closed
from flashback.live.sinks.mqtt import MqttSink, parse_broker
from flashback.video.synthetic import make_video

MOSQUITTO = shutil.which("mosquitto") or (Path("/usr/sbin/mosquitto").is_file() and "/usr/sbin/mosquitto") or None
needs_broker = pytest.mark.skipif(MOSQUITTO is None, reason="needs Debian's mosquitto (apt-get install mosquitto); .ci/run installs it")


class Broker:
    """Mosquitto on 127.0.0.1 with a password and persistence, so a subscriber's session (and the
    messages queued for it) outlive a kill -9 and a restart."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.proc = folder, port, None
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(folder / "pw"), "cam", "s3cret"], check=True)
        (folder / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {folder / 'pw'}\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 1\nuser root\n")

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        from streams import listening

        while time.time() < deadline and not listening(self.port):
            time.sleep(0.05)
        assert listening(self.port), "mosquitto did not start"
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self) -> str:
        return f"mqtt://cam:s3cret@127.0.0.1:{self.port}"


class Subscriber:
    """A QoS 1 subscriber with a persistent session, reconnecting on its own; keeps every message."""

    def __init__(self, port: int, topics=("flashback/#", "homeassistant/#")):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=False)
        self.c.username_pw_set("cam", "s3cret")
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.on_connect = lambda c, u, f, r, p: [c.subscribe(t, qos=1) for t in topics]
        self.c.on_message = lambda c, u, m: self._keep(m)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _keep(self, m) -> None:
        with self.lock:
            self.messages.append((m.topic, m.payload, m.retain))

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if predicate(list(self.messages)):
                    return True
            time.sleep(0.05)
        return False

    def events(self) -> list[dict]:
        return [json.loads(p) for t, p, _ in self.messages if t.endswith("/events")]

    def last(self, topic: str) -> bytes | None:
        return next((p for t, p, _ in reversed(self.messages) if t == topic), None)

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_broker_urls_are_checked_before_anything_loads():
    b = parse_broker("mqtt://ha:pw%40x@127.0.0.1")
    assert (b.host, b.port, b.username, b.password, b.tls) == ("127.0.0.1", 1883, "ha", "pw@x", False)
    assert parse_broker("mqtts://localhost").port == 8883 and b.shown == "mqtt://ha@127.0.0.1:1883"
    for url, problem in [("http://127.0.0.1", "expected mqtt://"), ("mqtt://u:secret@127.0.0.1:99999", "port must be a number"),
                         ("mqtt://", "no broker host"), ("mqtt://no-such-broker.invalid", "does not resolve")]:
        with pytest.raises(UsageError, match=problem) as e:
            parse_broker(url)
        assert "secret" not in str(e.value)


@pytest.mark.parametrize("args,message", [
    (["bad#cam={video}", "--mqtt", "mqtt://127.0.0.1"], "feed 'bad#cam': with --mqtt a feed name is one MQTT topic level"),
    (["a+b={video}", "--mqtt", "mqtt://127.0.0.1"], "feed 'a+b': with --mqtt a feed name is one MQTT topic level"),
    (["{video}", "--mqtt", "mqtt://127.0.0.1", "--mqtt-topic", "home/#"], "--mqtt-topic 'home/#': a topic base may not"),
    (["{video}", "--mqtt", "mqtt://a:s3cret@[::1"], "--mqtt mqtt://a:***@[::1: not a URL"),
])
def test_mqtt_topics_and_urls_are_checked_before_anything_loads(tmp_path, args, message):
    video = make_video(tmp_path / "v.mp4", n_frames=10)
    p = flashback_here("watch", *[x.format(video=video) for x in args], "--no-db")
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "s3cret" not in p.stderr


@pytest.mark.slow
@needs_broker
def test_a_message_the_broker_cannot_take_is_dropped_and_the_sender_goes_on(tmp_path):
    """A wildcard in a topic made paho raise inside the sender thread, and MQTT went silent for every feed."""
    port = free_port()
    broker = Broker(tmp_path / "b", port).start()
    log: list[str] = []
    sink = MqttSink(parse_broker(broker.url), "t", log=log.append, client_id="wild")
    sub = Subscriber(port, ("t/#",))
    try:  # subscribed once the sink's retained status arrives: a message sent before would not reach it
        assert sub.wait_for(lambda ms: any(t == "t/status" for t, _, _ in ms), 30)
        sink.send("bad#feed/score", "1")
        sink.send("cam/events", {"n": 1})
        assert sub.wait_for(lambda ms: any(t == "t/cam/events" for t, _, _ in ms), 30), log
        assert sink.dropped == 1 and any("'t/bad#feed/score' dropped" in m for m in log), log
        assert sink.close() == Closed()
    finally:
        sub.stop()
        broker.kill()


@pytest.mark.slow
@needs_broker
def test_a_broker_down_at_start_gets_the_queue_in_order_and_an_overflow_is_counted(tmp_path):
    port = free_port()
    broker = Broker(tmp_path / "b", port)
    log: list[str] = []
    sink = MqttSink(parse_broker(broker.url), "t", max_queue=7, log=log.append, client_id="bounded")
    try:
        assert any(f"mqtt mqtt://cam@127.0.0.1:{port}: cannot connect (Connection refused); messages are queued" in m
                   for m in log), log
        for i in range(6):
            sink.send("cam/events", {"n": i})
        for i in range(20):
            sink.send("cam/score", f"{i}", retain=True)  # retained: only the newest value waits
        assert sink.dropped == 1 and any("1 message(s) dropped" in m for m in log)  # "status online" went first
        broker.start()
        sub = Subscriber(port, ("t/#",))
        assert sub.wait_for(lambda ms: any(t == "t/cam/score" for t, _, _ in ms), 30)
        assert any(f"mqtt mqtt://cam@127.0.0.1:{port}: connected after" in m for m in log), log  # the broker's arrival is said
        got = [json.loads(p)["n"] for t, p, _ in sub.messages if t == "t/cam/events"]
        assert got == list(range(6)) and sub.last("t/cam/score") == b"19"
        assert [p for t, p, _ in sub.messages if t == "t/cam/score"] == [b"19"]
        assert sink.close() == Closed()  # every message delivered
        sub.stop()
    finally:
        broker.kill()


@pytest.mark.slow
@needs_broker
def test_watch_publishes_through_a_broker_killed_mid_run(tmp_path, scene_memory):
    port = free_port()
    broker = Broker(tmp_path / "broker", port).start()
    sub = Subscriber(port)
    # two incidents: 3-6 s and 11-14 s of an 18 s file played at its real rate
    video = make_video(tmp_path / "yard.mp4", n_frames=540, fps=30, size=(96, 64),
                       scene_of=lambda i: 5 if 90 <= i < 180 or 330 <= i < 420 else 0)
    events_file, db = tmp_path / "events.jsonl", tmp_path / "live.duckdb"
    watch = subprocess.Popen([FLASHBACK, "watch", f"yard={video}", "--memory", str(scene_memory.path), *TINY_CLI,
                              "--sigma", "0.25", "--mqtt", broker.url, "--ha-discovery", "--db", str(db),
                              "--events", str(events_file), "--stats-every", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sub.wait_for(lambda ms: any(t == "flashback/yard/events" for t, _, _ in ms), 40), "no event opened"
        broker.kill()  # the first event's closing and media are published while the broker is down
        time.sleep(4.0)
        broker.start()
        out, err = watch.communicate(timeout=90)
    finally:
        if watch.poll() is None:
            watch.kill()
        broker_alive = broker.proc.poll() is None
    try:
        assert watch.returncode == 0, err
        assert broker_alive
        assert "connection lost" in err and "connected again" in err, err
        assert sub.wait_for(lambda ms: any(t == "flashback/status" and p == b"offline" for t, p, _ in ms), 15)
        lines = [json.loads(x) for x in events_file.read_text().splitlines()]
        expected = [(x["event_key"], x["type"]) for x in lines if x["type"] in ("event_opened", "event_closed", "event_media")]
        assert len({k for k, _ in expected}) == 2, expected  # both incidents
        got = [(m["event_key"], m["type"]) for m in sub.events()]
        assert list(dict.fromkeys(got)) == expected  # every update, in order (a repeat is allowed: at least once)
        media = [m for m in sub.events() if m["type"] == "event_media"]
        assert all(Path(m["thumbnail"]).is_file() and Path(m["clip"]).is_file() for m in media)
        assert sub.last("flashback/yard/snapshot")[:2] == b"\xff\xd8"  # the last event's JPEG
        opened = next(m for m in sub.events() if m["type"] == "event_opened")
        assert {"feed", "event", "start_s", "peak_score", "dominant_category", "captions", "thumbnail"} <= set(opened)
        states = [p for t, p, _ in sub.messages if t == "flashback/yard/anomaly"]
        assert b"ON" in states and states[-1] == b"OFF"
        assert sub.last("flashback/yard/availability") == b"offline" and sub.last("flashback/status") == b"offline"
        summary = json.loads(sub.last("flashback/summary"))
        assert summary["feeds"]["yard"]["segments_scored"] > 10 and summary["dropped"] == 0
        assert float(sub.last("flashback/yard/score")) >= 0
        configs = {t: json.loads(p) for t, p, r in sub.messages if t.startswith("homeassistant/")}
        sensor = configs["homeassistant/binary_sensor/flashback_yard/anomaly/config"]
        assert sensor["state_topic"] == "flashback/yard/anomaly" and sensor["payload_on"] == "ON"
        assert {a["topic"] for a in sensor["availability"]} == {"flashback/status", "flashback/yard/availability"}
        assert configs["homeassistant/sensor/flashback_yard/score/config"]["state_topic"] == "flashback/yard/score"
        assert configs["homeassistant/camera/flashback_yard/snapshot/config"]["topic"] == "flashback/yard/snapshot"
        # each feed's coverage, for a dashboard: its last window's drop share and p95 latency
        health = json.loads(sub.last("flashback/yard/health"))
        assert set(health) == {"window_drop_share", "window_latency_p95_s", "keeping_up"}
        assert configs["homeassistant/sensor/flashback_yard/dropped/config"]["state_topic"] == "flashback/yard/health"
        assert configs["homeassistant/sensor/flashback_yard/latency/config"]["unit_of_measurement"] == "s"
        assert "feed yard: " in err and "segment(s) scored" in err  # the exit summary's line
    finally:
        sub.stop()
        broker.kill()


def test_bad_mqtt_values_are_one_line(tmp_path):
    video = make_video(tmp_path / "v.mp4", n_frames=30)
    for args, message in [(["--mqtt", "ftp://x"], "--mqtt ftp://x: expected mqtt://"),
                          (["--ha-discovery"], "--ha-discovery needs --mqtt URL")]:
        p = flashback_here("watch", video, "--no-db", *args)
        assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.slow
@needs_broker
def test_undelivered_messages_wait_in_an_outbox_and_go_first_next_time(tmp_path):
    """What was queued at exit used to be lost ('12 message(s) could not be delivered'): now it waits on
    disk, an event the moment it is queued (a kill loses nothing), a retained topic only its newest
    value, and the next sink sends it first, in order."""
    port = free_port()
    outbox = tmp_path / "mqtt-outbox.jsonl"
    log: list[str] = []
    first = MqttSink(parse_broker(f"mqtt://cam:s3cret@127.0.0.1:{port}"), "t", log=log.append, client_id="a", outbox=outbox)
    first.send("cam/events", {"n": 0})
    # on disk before send() returned: a kill -9 now loses nothing
    assert '{"n": 0}' in [json.loads(x)["payload"] for x in outbox.read_text().splitlines()]
    for i in range(5):
        first.send("cam/score", f"{i}", retain=True)
    first.send("cam/snapshot", b"\xff\xd8 a jpeg", retain=True)
    first.send("cam/events", {"n": 1})
    closed = first.close(drain_s=0.2)
    assert closed.problem is None and f"kept in {outbox}" in closed.note
    kept = [json.loads(x) for x in outbox.read_text().splitlines()]
    assert [d["topic"] for d in kept if d["topic"].startswith("t/cam/")] == ["t/cam/events", "t/cam/score", "t/cam/snapshot",
                                                                              "t/cam/events"]
    assert next(d for d in kept if d["topic"] == "t/cam/score")["payload"] == "4"  # only the newest retained value

    broker = Broker(tmp_path / "b", port).start()
    sub = Subscriber(port, ("t/#",))
    try:
        time.sleep(0.5)
        second = MqttSink(parse_broker(broker.url), "t", log=log.append, client_id="b", outbox=outbox)
        second.send("cam/events", {"n": 2})
        assert sub.wait_for(lambda ms: sum(t == "t/cam/events" for t, _, _ in ms) >= 3, 30), log
        assert [json.loads(p)["n"] for t, p, _ in sub.messages if t == "t/cam/events"] == [0, 1, 2]
        assert sub.last("t/cam/snapshot") == b"\xff\xd8 a jpeg" and sub.last("t/cam/score") == b"4"
        assert second.close() == Closed() and not outbox.exists()
        assert any("left by an earlier watch" in m for m in log)
    finally:
        sub.stop()
        broker.kill()
