"""A short ring of each feed's packets, so that a live event's clip can start before the event
opened (``sinks/media.py`` turns the recorded packets into a clip and a thumbnail).

An event is reported open ``min_event_s`` plus the smoothing lag after it began, so the ring keeps
at least that plus ``CONTEXT_S`` and the latency budget, from a key frame (a decoder can only start
at one).  It holds compressed packets, a few MB per feed, never frames.  When an event opens its
recording takes the ring's packets from the key frame at or before the event's start less the
context and then every new packet; when it closes the recording runs on for the context after its
end, then a worker thread decodes the packets with a decoder of their own (the reader's is busy)
and writes an H.264 MP4 and a JPEG of the peak frame.  A reconnect starts a new stream whose
packets cannot follow the old ones through one decoder, so a recording ends at an outage.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av

MAX_RECORDING_S = 120.0  # a longer event's clip is its first two minutes
MAX_RING_BYTES = 64 << 20  # per feed, whatever the bitrate


@dataclass(frozen=True)
class StreamInfo:
    """What a fresh decoder needs for one opening of a feed (a reconnect is a new ``epoch``)."""

    codec: str
    extradata: bytes | None
    time_base: Fraction
    epoch: int


@dataclass(frozen=True)
class Held:
    t_s: float  # feed time the packet arrived
    data: bytes
    pts: int | None
    dts: int | None
    key: bool
    info: StreamInfo


@dataclass
class Recording:
    packets: list[Held]
    until_s: float | None = None  # set when the event closes
    on_done: Callable[[list[Held], str], None] | None = None
    note: str = ""
    ended: bool = False  # the feed reconnected while the event was open: no more packets belong to it


class PacketRing:
    """A feed's recent packets (pushed by its reader thread) and its open recordings."""

    def __init__(self, keep_s: float, max_bytes: int = MAX_RING_BYTES):
        self.keep_s, self.max_bytes = keep_s, max_bytes
        self._ring: deque[Held] = deque()
        self._keys: deque[Held] = deque()  # the key frames in the ring, oldest first
        self._bytes = 0
        self._recordings: dict[object, Recording] = {}
        self._lock = threading.Lock()

    def push(self, t_s: float, packet: av.Packet, info: StreamInfo) -> None:
        if packet.size == 0:
            return
        h = Held(t_s, bytes(packet), packet.pts, packet.dts, bool(packet.is_keyframe), info)
        done = []
        with self._lock:
            self._ring.append(h)
            if h.key:
                self._keys.append(h)
            self._bytes += len(h.data)
            self._trim(t_s - self.keep_s)
            for key, rec in list(self._recordings.items()):
                if rec.until_s is not None and t_s > rec.until_s:
                    done.append(self._recordings.pop(key))
                elif rec.ended:
                    continue
                elif rec.packets and rec.packets[0].info.epoch != info.epoch:
                    rec.note = "the feed dropped during the clip"  # the feed reconnected: the old stream ends here
                    if rec.on_done is not None:
                        done.append(self._recordings.pop(key))
                    else:  # still open: kept (ended) until the event closes, so it still gets its clip
                        rec.ended = True
                elif not rec.packets and not h.key:
                    continue  # a decoder can only start at a key frame
                elif t_s - (rec.packets[0].t_s if rec.packets else t_s) <= MAX_RECORDING_S:
                    rec.packets.append(h)
                else:
                    rec.note = f"the clip is the event's first {MAX_RECORDING_S:g} s"
        for rec in done:
            self._finish(rec)

    def _trim(self, horizon: float) -> None:
        """Drop what is older than ``horizon`` but keep the key frame at or before it (a decoder
        starts there), and nothing that comes before the first key frame; then the byte bound."""
        ring, keys = self._ring, self._keys
        while len(keys) >= 2 and keys[1].t_s <= horizon:
            keys.popleft()
        while ring and (ring[0] is not keys[0] if keys else ring[0].t_s < horizon):
            self._bytes -= len(ring.popleft().data)
        while self._bytes > self.max_bytes and len(ring) > 1:
            gone = ring.popleft()
            self._bytes -= len(gone.data)
            if keys and keys[0] is gone:
                keys.popleft()

    def start(self, key: object, from_s: float) -> None:
        """Record from the key frame at or before ``from_s`` (or the oldest one held)."""
        with self._lock:
            packets = list(self._ring)
            starts = [i for i, h in enumerate(packets) if h.key and h.t_s <= from_s] or \
                     [i for i, h in enumerate(packets) if h.key][:1]
            taken = packets[starts[-1]:] if starts else []
            epoch = taken[-1].info.epoch if taken else None
            self._recordings[key] = Recording([h for h in taken if h.info.epoch == epoch])

    def stop(self, key: object, until_s: float, on_done: Callable[[list[Held], str], None]) -> None:
        """The event closed: keep recording until ``until_s``, then hand the packets to ``on_done``."""
        with self._lock:
            rec = self._recordings.get(key)
            if rec is not None:
                rec.until_s, rec.on_done = until_s, on_done
                if not rec.ended:
                    return
                del self._recordings[key]
        if rec is None:  # never started here (the event opened before this ring held anything)
            on_done([], "no packets were recorded for it")
        else:
            self._finish(rec)

    def finish_all(self) -> None:
        """At shutdown: every closed event's recording ends with what it has."""
        with self._lock:
            done = [self._recordings.pop(k) for k, r in list(self._recordings.items()) if r.on_done is not None]
        for rec in done:
            self._finish(rec)

    @staticmethod
    def _finish(rec: Recording) -> None:
        if rec.on_done is not None:
            rec.on_done(rec.packets, rec.note)


def decode_held(packets: list[Held]) -> Iterator[tuple[float, av.VideoFrame]]:
    """(feed time, frame) for recorded packets, with a decoder of their own.  A frame's feed time is
    its key frame's arrival plus its timestamp's distance from that key frame."""
    if not packets:
        return
    info = packets[0].info
    ctx = av.CodecContext.create(info.codec, "r")
    if info.extradata:
        ctx.extradata = info.extradata
    t0, pts0 = packets[0].t_s, packets[0].pts
    for h in [*packets, None]:
        if h is None:
            frames = ctx.decode(None)
        else:
            p = av.Packet(h.data)
            p.pts, p.dts, p.time_base = h.pts, h.dts, info.time_base
            frames = ctx.decode(p)
        for f in frames:
            if f.pts is None or pts0 is None:
                continue
            yield t0 + float((f.pts - pts0) * info.time_base), f
