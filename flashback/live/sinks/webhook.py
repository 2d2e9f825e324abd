"""The webhook: every event update POSTed in order, at least once, from an outbox on disk."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

from ..causal import EventUpdate
from ..feeds import Backoff
from .base import Closed, FeedSession, LiveSink, event_doc
from .outbox import read_outbox, write_outbox


class WebhookSink(LiveSink):
    """POST each event update as JSON; retry with backoff until delivered, in order, at least once.

    Each POST carries an ``Idempotency-Key`` header, ``<event uid>/<event_opened|event_closed>``: the
    uid is random per event, so a receiver that drops repeats never drops a new incident.
    Undelivered updates live in the outbox file (rewritten atomically whenever the queue changes,
    removed once it is empty); a watch that starts sends an earlier watch's outbox first.
    """

    def __init__(self, url: str, outbox: Path, timeout_s: float = 5.0, backoff: Backoff | None = None,
                 log=lambda m: None):
        self.url, self.outbox, self.timeout_s, self.log = url, Path(outbox), timeout_s, log
        self.backoff = backoff or Backoff(0.5, 30.0)
        self._pending: deque[dict] = deque(self._read_outbox())
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def _read_outbox(self) -> list[dict]:
        """What an earlier watch could not deliver (``outbox.read_outbox``)."""
        docs = read_outbox(self.outbox, "webhook", self.log)
        if docs:
            self.log(f"webhook: {len(docs)} update(s) left by an earlier watch in {self.outbox}; sending them first")
        return docs

    def _persist(self) -> None:
        """The outbox mirrors the queue (called under the lock)."""
        write_outbox(self.outbox, self._pending)

    def depth(self) -> tuple[str, int]:
        return "webhook", len(self._pending)

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        with self._lock:
            self._pending.append(event_doc(session, update))
            self._persist()
            self._lock.notify()

    @staticmethod
    def idempotency_key(doc: dict) -> str:
        return f"{doc.get('event_uid') or doc.get('event_key')}/{doc.get('type')}"

    def _post(self, doc: dict) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(doc).encode(), method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": self.idempotency_key(doc)})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
            if not 200 <= r.status < 300:
                raise urllib.error.HTTPError(self.url, r.status, "not 2xx", r.headers, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stop.is_set():
                    self._lock.wait(0.1)
                if not self._pending:
                    return
                head = self._pending[0]
            try:
                self._post(head)
            except (urllib.error.URLError, OSError, ValueError) as e:
                self.failures += 1
                if self.failures == 1 or self.failures % 10 == 0:
                    self.log(f"webhook {self.url}: {getattr(e, 'reason', e)}; retrying")
                if self._stop.wait(self.backoff.next_delay()):
                    return
                continue
            with self._lock:
                self._pending.popleft()
                self._persist()
            self.backoff.reset()

    def close(self, drain_s: float = 5.0) -> Closed:
        """Give the queue ``drain_s`` to empty; what is left stays in the outbox, sent first next time."""
        deadline = time.monotonic() + drain_s
        if self._pending:
            self.log(f"webhook: delivering {len(self._pending)} update(s) before exit (up to {drain_s:g} s)")
        while time.monotonic() < deadline and self._pending and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1)
        with self._lock:
            self._persist()
            left = len(self._pending)
        return Closed(note=f"webhook: {left} undelivered event update(s) kept in {self.outbox}; sent first next time"
                      if left else None)
