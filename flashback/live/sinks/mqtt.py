"""MQTT for ``flashback watch --mqtt``: events, scores, availability and Home Assistant discovery.

Topics under ``--mqtt-topic`` (``flashback``)::

    flashback/status                  online / offline (retained; the broker sends offline, our
                                      last will, if this process dies without saying goodbye)
    flashback/<feed>/availability     online / offline (retained): the feed is up, or lost
    flashback/<feed>/anomaly          ON while an event is open, OFF otherwise (retained)
    flashback/<feed>/score            the latest causally smoothed score, at most once a second (retained)
    flashback/<feed>/events           each event's opening, closing and media (JSON, QoS 1)
    flashback/<feed>/snapshot         the last event's thumbnail, JPEG bytes (retained)
    flashback/summary                 every feed's counters, every --stats-every seconds (retained)

With ``--ha-discovery`` each feed also announces itself to Home Assistant: a binary sensor
"anomaly", a sensor "score" and a camera "last event" under ``homeassistant/``.

Nothing is lost while the broker is down or the connection drops: messages wait in a queue
(bounded; what overflows is counted and logged) and a sender thread publishes them in order, each
QoS 1 message only leaving the queue once the broker acknowledged it, so delivery is at least once
(an event message carries its ``event_uid`` for receivers that drop repeats).  For a retained
topic only its newest value waits: a stale score is never sent after a fresh one.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ...errors import UsageError, masked
from ...net import unreachable
from ...scoring.events import Event
from ...scoring.scoring import Segments
from ...video.media import EventMedia
from ..causal import EventUpdate
from ..feeds import Outage
from .base import Closed, FeedSession, LiveSink, event_doc
from .jsonlines import media_doc
from .outbox import read_outbox, write_outbox

MAX_QUEUE = 10_000
ACK_WAIT_S = 5.0
CONNECT_WAIT_S = 5.0


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @property
    def shown(self) -> str:
        """The URL without its password, for messages."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker(url: str) -> Broker:
    """``mqtt://[user:pass@]host[:port]`` (1883) or ``mqtts://`` (TLS, 8883); a hostname that does
    not resolve is refused here, since no reconnect can fix a typo."""
    shown = masked(url)
    try:
        u = urllib.parse.urlsplit(url)
    except ValueError as e:
        raise UsageError(f"--mqtt {shown}: not a URL ({e}); expected mqtt://[user:pass@]host[:port]") from None
    if u.scheme not in ("mqtt", "mqtts"):
        raise UsageError(f"--mqtt {shown}: expected mqtt://[user:pass@]host[:port] or mqtts://...")
    try:
        port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    except ValueError:
        raise UsageError(f"--mqtt {shown}: the port must be a number from 1 to 65535") from None
    if not u.hostname:
        raise UsageError(f"--mqtt {shown}: no broker host")
    try:
        socket.getaddrinfo(u.hostname, port)
    except OSError as e:
        raise UsageError(f"--mqtt {shown}: broker host {u.hostname!r} does not resolve ({e.strerror or e})") from None
    return Broker(u.hostname, port, urllib.parse.unquote(u.username) if u.username else None,
                  urllib.parse.unquote(u.password) if u.password else None, u.scheme == "mqtts")


def check_topics(base: str, feeds: list[str]) -> None:
    """A topic base and feed names that make valid MQTT topics, checked before anything loads:
    ``#`` and ``+`` are wildcards a message's topic may not hold (the broker, or paho before it,
    refuses the message), and a feed name is one topic level, so no ``/`` either."""
    if not base.strip("/") or any(c in base for c in "#+\0"):
        raise UsageError(f"--mqtt-topic {base!r}: a topic base may not be empty or hold '#', '+' or NUL (MQTT wildcards)")
    for name in feeds:
        if any(c in name for c in "#+/\0"):
            raise UsageError(f"feed {name!r}: with --mqtt a feed name is one MQTT topic level: no '#', '+', '/' or NUL; "
                             "rename it (NAME=URL)")


PERSIST_EVERY_S = 1.0


def _doc(m: "_Message") -> dict:
    """A queued message as an outbox line (a payload that is not UTF-8, a snapshot, as base64)."""
    try:
        body = {"payload": m.payload.decode("utf-8")}
    except UnicodeDecodeError:
        body = {"payload_b64": base64.b64encode(m.payload).decode()}
    return {"topic": m.topic, "retain": m.retain, "qos": m.qos, **body}


@dataclass
class _Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int = 1
    stale: bool = False  # superseded by a newer value of the same retained topic


class MqttSink(LiveSink):
    def __init__(self, broker: Broker, base: str = "flashback", ha_discovery: bool = False, media_dir: Path | None = None,
                 max_queue: int = MAX_QUEUE, log=lambda m: None, client_id: str | None = None, outbox: Path | None = None):
        """``outbox``: where undelivered messages wait on disk (``outbox.py``), sent first by the next
        watch: an event the moment it is queued, retained values (scores, states) at most
        ``PERSIST_EVERY_S`` later; only the newest value of a retained topic is kept."""
        import paho.mqtt.client as mqtt

        self.broker, self.base, self.ha, self.media_dir, self.log = broker, base.strip("/"), ha_discovery, media_dir, log
        self.max_queue = max_queue
        self.dropped = 0
        self.published = 0
        self._queue: deque[_Message] = deque()
        self._latest: dict[str, _Message] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._last_score: dict[str, float] = {}  # feed -> when its score was last sent
        self._feeds: list[str] = []
        self._summary: dict[str, dict] = {}
        self._connected_once = threading.Event()
        self._mqtt = mqtt
        self.outbox, self._dirty, self._persisted_at = outbox, False, 0.0
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"flashback-{uuid.uuid4().hex[:8]}")
        if broker.username:
            c.username_pw_set(broker.username, broker.password)
        if broker.tls:
            c.tls_set()
        c.will_set(self.topic("status"), "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self._down_since: float | None = None
        down = unreachable(broker.host, broker.port, CONNECT_WAIT_S)  # a reason for the log
        c.connect_async(broker.host, broker.port, keepalive=30)
        c.loop_start()
        if down or not self._connected_once.wait(CONNECT_WAIT_S):
            self._down_since = time.monotonic()  # so that the first connection is said too
            log(f"mqtt {broker.shown}: cannot connect ({down or 'no answer to the MQTT handshake'}); messages are "
                f"queued (up to {max_queue:,}) and sent in order once it can")
        self._restore()
        self.send("status", "online", retain=True)
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def topic(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    # ------------------------------------------------------------ connection

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self.log(f"mqtt {self.broker.shown}: connection refused ({reason}); retrying")
            return
        if self._down_since is not None:
            again = "connected again" if self._connected_once.is_set() else "connected"
            self.log(f"mqtt {self.broker.shown}: {again} after {time.monotonic() - self._down_since:.1f} s; "
                     f"sending {len(self._queue)} queued message(s)")
        self._down_since = None
        self._connected_once.set()
        client.publish(self.topic("status"), "online", qos=1, retain=True)  # the will may have said offline
        with self._cond:
            self._cond.notify()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self._down_since is None and not self._stop.is_set():
            self._down_since = time.monotonic()
            self.log(f"mqtt {self.broker.shown}: connection lost ({reason}); queueing and reconnecting")

    # ------------------------------------------------------------ the queue

    def send(self, topic: str, payload, retain: bool = False, qos: int = 1) -> None:
        """Queue one message for ``base/topic``."""
        self._enqueue(self.topic(topic), payload, retain, qos)

    def _enqueue(self, topic: str, payload, retain: bool, qos: int = 1, persist: bool = True) -> None:
        """Queue one message; for a retained topic, only its newest value stays queued."""
        data = payload if isinstance(payload, bytes) else (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        m = _Message(topic, data, retain, qos)
        with self._cond:
            if retain:
                old = self._latest.get(m.topic)
                if old is not None:
                    old.stale = True
                self._latest[m.topic] = m
            self._queue.append(m)
            if len(self._queue) > self.max_queue:  # superseded values go first, then the oldest messages
                self._queue = deque(x for x in self._queue if not x.stale)
            while len(self._queue) > self.max_queue:
                gone = self._queue.popleft()
                gone.stale = True
                if self._latest.get(gone.topic) is gone:
                    del self._latest[gone.topic]
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    self.log(f"mqtt {self.broker.shown}: queue full ({self.max_queue:,}); {self.dropped:,} message(s) dropped so far")
            self._dirty = True
            if persist:
                self._persist(now=not retain)  # an event is on disk before this returns
            self._cond.notify()

    # ------------------------------------------------------------ the outbox

    def _restore(self) -> None:
        """What an earlier watch left undelivered, queued first, in its order."""
        if self.outbox is None:
            return
        docs = read_outbox(self.outbox, "mqtt", self.log)
        for d in docs:
            payload = base64.b64decode(d["payload_b64"]) if "payload_b64" in d else str(d.get("payload", "")).encode()
            self._enqueue(str(d.get("topic")), payload, bool(d.get("retain")), int(d.get("qos", 1)), persist=False)
        if docs:
            self.log(f"mqtt: {len(docs)} message(s) left by an earlier watch in {self.outbox}; sending them first")

    def _persist(self, now: bool = False) -> None:
        """The outbox mirrors what is still to deliver (called under ``_cond``): at once when ``now``,
        else at most every ``PERSIST_EVERY_S``."""
        if self.outbox is None or not self._dirty:
            return
        if not now and time.monotonic() - self._persisted_at < PERSIST_EVERY_S:
            return
        self._dirty, self._persisted_at = False, time.monotonic()
        try:
            write_outbox(self.outbox, (_doc(m) for m in self._queue if not m.stale))
        except OSError as e:
            self.log(f"mqtt outbox {self.outbox}: cannot write ({e.strerror or e}); queued messages are in memory only")

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop.is_set() and not (self._queue and self.client.is_connected()):
                    self._cond.wait(0.1)
                if not (self._queue and self.client.is_connected()):
                    return
                head = self._queue[0]
            if head.stale or self._deliver(head):
                with self._cond:
                    if self._queue and self._queue[0] is head:
                        self._queue.popleft()
                        if self._latest.get(head.topic) is head:
                            del self._latest[head.topic]
                        self._dirty = True
                        self._persist(now=not self._queue)
            elif self._stop.wait(0.2):
                return

    def _deliver(self, m: _Message) -> bool:
        """True once the broker has the message (or it can never be sent: then it is logged and
        dropped, so that one bad message never stops the sender, which serves every feed)."""
        try:
            info = self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
        except (ValueError, TypeError) as e:
            self.dropped += 1
            self.log(f"mqtt {self.broker.shown}: message to {m.topic!r} dropped ({e})")
            return True
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(ACK_WAIT_S)
        except (RuntimeError, ValueError):
            return False
        if info.is_published():
            self.published += 1
            return True
        return False

    # ------------------------------------------------------------ what the watcher reports

    def start(self, session: FeedSession) -> None:
        name = session.spec.name
        self._feeds.append(name)
        if self.ha:
            for kind, key, config in self._discovery(name):
                self._enqueue(f"homeassistant/{kind}/{self._object_id(name)}/{key}/config", config, retain=True)
        self.send(f"{name}/availability", "online", retain=True)
        self.send(f"{name}/anomaly", "OFF", retain=True)

    def segments(self, session: FeedSession, segments: Segments, captions, frames_per_s) -> None:
        name, now = session.spec.name, time.monotonic()
        if now - self._last_score.get(name, -1e9) >= 1.0 and len(segments):
            self._last_score[name] = now
            self.send(f"{name}/score", f"{float(segments.smoothed[-1]):.4f}", retain=True)

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        name = session.spec.name
        self.send(f"{name}/events", {**event_doc(session, update), "thumbnail": None}, qos=1)
        self.send(f"{name}/anomaly", "ON" if update.kind == "opened" else "OFF", retain=True)

    def media(self, session: FeedSession, event: Event, media: EventMedia) -> None:
        name = session.spec.name
        self.send(f"{name}/events", media_doc(session, event, media, self.media_dir))
        if media.thumb and self.media_dir is not None:
            try:
                self.send(f"{name}/snapshot", (self.media_dir / media.thumb).read_bytes(), retain=True)
            except OSError as e:
                self.log(f"mqtt: no snapshot for {name} event {event.index} ({e.strerror or e})")

    def outage(self, session: FeedSession, outage: Outage, started: bool) -> None:
        if started or outage.end_s is not None:
            self.send(f"{session.spec.name}/availability", "offline" if started else "online", retain=True)

    def depth(self) -> tuple[str, int]:
        return "mqtt", len(self._queue)

    def feed_stats(self, session: FeedSession, stats: dict, active: bool) -> None:
        if "keeping_up" in stats:  # the last window's health, for a dashboard or an automation
            self.send(f"{session.spec.name}/health", {k: stats[k] for k in ("window_drop_share", "window_latency_p95_s",
                                                                             "keeping_up")}, retain=True)
        self._summary[session.spec.name] = {**stats, "active": active}
        self.send("summary", {"feeds": self._summary, "queued": len(self._queue), "dropped": self.dropped}, retain=True)

    def close(self, drain_s: float = 5.0) -> Closed:
        """Say every feed and this watcher are offline, give the queue ``drain_s`` to empty, then
        disconnect; what is left undelivered is a problem of the watch's."""
        for name in self._feeds:
            self.send(f"{name}/availability", "offline", retain=True)
        self.send("status", "offline", retain=True)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and any(not m.stale for m in list(self._queue)):
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=ACK_WAIT_S + 1)
        with self._cond:
            left = sum(not m.stale for m in self._queue)
            self._dirty = True
            self._persist(now=True)
        self.client.disconnect()
        self.client.loop_stop()
        if not left:
            return Closed()
        if self.outbox is not None:
            return Closed(note=f"mqtt {self.broker.shown}: {left} undelivered message(s) kept in {self.outbox}; sent first next time")
        return Closed(problem=f"mqtt {self.broker.shown}: {left} message(s) could not be delivered before exit")

    # ------------------------------------------------------------ Home Assistant

    @staticmethod
    def _object_id(feed: str) -> str:
        return "flashback_" + "".join(c if c.isalnum() else "_" for c in feed.lower())

    def _discovery(self, feed: str) -> list[tuple[str, str, dict]]:
        oid = self._object_id(feed)
        device = {"identifiers": [oid], "name": f"Flashback {feed}", "manufacturer": "Flashback", "model": "zero-shot anomaly detector"}
        availability = {"availability": [{"topic": self.topic("status")}, {"topic": self.topic(feed, "availability")}],
                        "availability_mode": "all"}
        return [
            ("binary_sensor", "anomaly", {"name": "Anomaly", "unique_id": f"{oid}_anomaly", "state_topic": self.topic(feed, "anomaly"),
                                          "payload_on": "ON", "payload_off": "OFF", "device_class": "problem",
                                          "json_attributes_topic": self.topic(feed, "events"), "device": device, **availability}),
            ("sensor", "score", {"name": "Anomaly score", "unique_id": f"{oid}_score", "state_topic": self.topic(feed, "score"),
                                 "state_class": "measurement", "suggested_display_precision": 2, "device": device, **availability}),
            ("camera", "snapshot", {"name": "Last event", "unique_id": f"{oid}_snapshot", "topic": self.topic(feed, "snapshot"),
                                    "device": device, **availability}),
            ("sensor", "dropped", {"name": "Dropped samples", "unique_id": f"{oid}_dropped", "state_topic": self.topic(feed, "health"),
                                   "value_template": "{{ (value_json.window_drop_share * 100) | round(1) }}",
                                   "unit_of_measurement": "%", "state_class": "measurement", "entity_category": "diagnostic",
                                   "device": device, **availability}),
            ("sensor", "latency", {"name": "Latency p95", "unique_id": f"{oid}_latency", "state_topic": self.topic(feed, "health"),
                                   "value_template": "{{ value_json.window_latency_p95_s }}", "unit_of_measurement": "s",
                                   "device_class": "duration", "state_class": "measurement", "entity_category": "diagnostic",
                                   "device": device, **availability}),
        ]
