"""Where live results go, each a ``LiveSink``: JSON lines (``jsonlines``), the DuckDB store
(``store``), a webhook (``webhook``), MQTT and Home Assistant (``mqtt``), and each event's clip and
thumbnail (``media``); ``base`` has what they share: the protocol, ``Closed`` and the owner, ``Sinks``.

Sinks are called from the watcher's one loop thread only (the webhook, MQTT and the clips work in
threads of their own).  None of them may lose what it was handed: the store keeps rows buffered
while the file is locked or a write fails and writes them at the next flush; the webhook and MQTT
keep every undelivered update until it is delivered (the webhook in an outbox file on disk, so
neither a receiver that is down nor a kill -9 loses one, and the next watch sends what is left
first).  Every sink closes the same way (``LiveSink.close`` answers a ``Closed``), and the owner
closes them in order.
"""

from .base import Closed, FeedSession, LiveSink, Sinks
from .jsonlines import JsonLinesSink, media_doc
from .store import LiveStoreSink
from .webhook import WebhookSink

__all__ = ["Closed", "FeedSession", "JsonLinesSink", "LiveSink", "LiveStoreSink", "Sinks", "WebhookSink", "media_doc"]
