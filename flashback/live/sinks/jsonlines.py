"""JSON lines: one object per line on stdout or a file, flushed as written."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from ...scoring.events import Event
from ...video.media import EventMedia
from ..causal import EventUpdate
from ..feeds import Outage
from .base import Closed, FeedSession, LiveSink, event_doc


class JsonLinesSink(LiveSink):
    """One JSON object per line, flushed as written, so `tail -f` or a pipe sees events at once."""

    def __init__(self, target: Path | None):
        self._own = target is not None
        self._f: TextIO = open(target, "a", encoding="utf-8") if target is not None else sys.stdout

    def write(self, doc: dict) -> None:
        self._f.write(json.dumps(doc) + "\n")
        self._f.flush()

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        e = update.event
        self.write({**event_doc(session, update), "wall_time": _wall(session, e.end_s if update.kind == "closed" else e.start_s)})

    def outage(self, session: FeedSession, outage: Outage, started: bool) -> None:
        if started or outage.end_s is not None:
            self.write({"type": "outage_started" if started else "outage_ended", "feed": outage.feed,
                        "video_id": session.video_id, "start_s": round(outage.start_s, 3),
                        "end_s": None if outage.end_s is None else round(outage.end_s, 3),
                        "reason": outage.reason, "attempts": outage.attempts,
                        "wall_time": _wall(session, outage.start_s if started else outage.end_s)})

    def feed_stats(self, session: FeedSession, stats: dict, active: bool) -> None:
        self.write({"type": "feed_stats", "video_id": session.video_id, "active": active, **stats})

    def media(self, session: FeedSession, event: Event, media: EventMedia) -> None:
        self.write(media_doc(session, event, media))

    def close(self) -> Closed:
        """The stream's last line says the watch stopped."""
        self.write({"type": "watch_stopped"})
        if self._own:
            self._f.close()
        return Closed()


def media_doc(session: FeedSession, event: Event, m: EventMedia, folder: Path | None = None) -> dict:
    """An event's media as the JSON outputs say it: paths relative to the media folder, or under
    ``folder`` when given."""
    where = (lambda rel: rel and str(folder / rel)) if folder is not None else (lambda rel: rel)
    return {"type": "event_media", "feed": session.spec.name, "event": event.index,
            "event_key": f"{session.spec.name}/{event.index}", "video_id": session.video_id,
            "clip": where(m.clip), "clip_start_s": m.clip_start_s, "clip_end_s": m.clip_end_s,
            "thumbnail": where(m.thumb), "thumbnail_s": m.thumb_s, **({"note": m.note} if m.note else {})}


def _wall(session: FeedSession, t_s: float) -> str:
    return datetime.fromtimestamp(session.started_at.timestamp() + t_s, timezone.utc).isoformat(timespec="milliseconds")
