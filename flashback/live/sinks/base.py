"""What every live output is (``LiveSink``), what closing one says (``Closed``) and the one owner
that closes them in order (``Sinks``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ...memory.bundle import CaptionTable
from ...scoring.events import Event
from ...scoring.scoring import Segments
from ...store.keys import EventKey
from ...video.media import EventMedia
from ..causal import EventUpdate
from ..feeds import FeedSpec, Outage

if TYPE_CHECKING:
    from ..packets import PacketRing


@dataclass
class FeedSession:
    """One feed for the length of one watch: the unit stored as a 'video'."""

    spec: FeedSpec
    video_id: str
    started_at: datetime  # UTC wall time of feed time 0
    packets: PacketRing | None = None  # its recent packets, for event clips (None: no clips kept)
    run_id: str | None = None  # the run the store keeps it under (an event's link needs it)
    review_url: str | None = None  # the review app's public address (watch --review-url), None: no links

    def link(self, start_frame: int) -> str | None:
        """The review app's page of this feed's event that starts at ``start_frame``, if configured."""
        if not (self.review_url and self.run_id):
            return None
        return EventKey(self.run_id, self.video_id, start_frame).link(self.review_url)


def event_doc(session: FeedSession, update: EventUpdate) -> dict:
    """An event update as every output says it (JSON lines, webhook, MQTT): its fields, the feed's
    video id, and its review link when the app's address is configured."""
    link = session.link(update.event.start_frame)
    return {**update.to_dict(), "video_id": session.video_id, **({"link": link} if link else {})}


@dataclass(frozen=True)
class Closed:
    """What a sink says as it closes: ``problem``, what it could not finish (the watch then exits 1);
    ``note``, what the operator should know (kept for the next run, say)."""

    problem: str | None = None
    note: str | None = None


class LiveSink(Protocol):
    """What the watcher hands its outputs, in order, from its one thread.  Each method does
    nothing unless a sink overrides it (subclass this to write a new output)."""

    def start(self, session: FeedSession) -> None:
        """A feed starts (before any of its segments)."""

    def segments(self, session: FeedSession, segments: Segments, captions: CaptionTable,
                 frames_per_s: float | None) -> None:
        """Newly scored segments of one feed, with their causally smoothed scores."""

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        """An event opened or closed."""

    def outage(self, session: FeedSession, outage: Outage, started: bool) -> None:
        """A feed was lost (``started``), is back (``end_s`` set), or is still down at the end."""

    def feed_stats(self, session: FeedSession, stats: dict, active: bool) -> None:
        """Per-feed counters and latency, every ``--stats-every`` seconds and at the end."""

    def media(self, session: FeedSession, event: Event, media: EventMedia) -> None:
        """An event's clip and thumbnail are written (some time after it closed), or could not be."""

    def tick(self) -> None:
        """Called every watcher round, for time-based work."""

    def depth(self) -> tuple[str, int] | None:
        """What this sink holds undelivered, (its queue's name, how many), for the service's health
        and metrics; None where nothing queues."""
        return None

    def close(self) -> "Closed":
        """The watch is over: finish, flush, let go.  What could not be finished is said in the
        answer, never raised: one sink's trouble must not keep the others from closing."""
        return Closed()


class Sinks(list):
    """The watch's sinks, in the order the watcher hands them each update; the one owner of their
    life-cycle.  ``close`` closes every one, in reverse order: a sink added later may still hand
    things to the earlier ones as it closes (the clips sink hands each finished clip to every other
    sink), so the first one added (the JSON lines) is the last to close."""

    def close(self) -> list[Closed]:
        """Every sink's ``Closed``, in closing order.  A sink whose close raises (a bug) does not
        keep the others from closing; the first such error is raised once they all have."""
        closed, error = [], None
        for sink in reversed(self):
            try:
                closed.append(sink.close())
            except Exception as e:  # noqa: BLE001 - re-raised below, after the other sinks are closed
                error = error or e
        if error is not None:
            raise error
        return closed
