"""How an event is named across the store, the review app and its links: run, video, first frame.

A verdict is keyed by it (``reviews``), the review app's URL carries it (``?view=Event&event=KEY``),
and a live event's webhook and MQTT messages link to it when the app's address is configured
(``watch --review-url``), so an operator goes from a phone notification straight to the event.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True)
class EventKey:
    """An event as verdicts know it: run, video and first frame.  A live event keeps its first frame
    when it closes, and re-scoring a file with the same settings reproduces its events."""

    run_id: str
    video_id: str
    start_frame: int

    def encode(self) -> str:
        return f"{self.run_id}:{self.video_id}:{self.start_frame}"

    @classmethod
    def decode(cls, text: str) -> "EventKey":
        run_id, rest = text.split(":", 1)  # a run id is hex; a video id may hold colons (a feed's name)
        video_id, a = rest.rsplit(":", 1)
        return cls(run_id, video_id, int(a))

    def link(self, base_url: str) -> str:
        """The review app's page of this event, under the app's public address ``base_url``."""
        return f"{base_url.rstrip('/')}/?view=Event&event={urllib.parse.quote(self.encode(), safe='')}"
