"""One thread per feed: open, decode, sample on the wall-clock grid, reconnect when the feed drops.

A feed's time axis is the wall clock since the watcher started, not the stream's timestamps: it
stays continuous across reconnects (a restarted camera restarts its timestamps) and it is what
latency is measured against.  Files are paced to their own timestamps, so a file plays like a
camera.  Only grid frames are converted (``decode.FrameFit``, as for files); a full queue drops its
oldest sample, counted, so a feed that falls behind never builds a backlog.  An outage is reported
twice: when the feed is lost (so the watcher closes its open event at once) and when it is back.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from ..errors import InputError, UsageError, masked
from ..video.cameras import Region
from ..video.decode import MAX_SIDE, MIN_SIDE, FrameFit, ffmpeg_reason, open_input
from ..video.sources import is_url
from .packets import PacketRing, StreamInfo

TRANSPORTS = ("tcp", "udp")


@dataclass(frozen=True)
class FeedSpec:
    name: str
    location: str
    transport: str = "tcp"  # RTSP only
    loop: bool = False  # files: start again at the end
    region: Region | None = None  # what of each frame the encoder sees (--roi, --cameras)
    threshold: float | None = None  # this camera's event threshold (serve's cameras); None: the settings'

    @property
    def shown(self) -> str:
        """The location as messages, JSON lines and the store name it: a URL's password masked."""
        return masked(self.location)

    @property
    def is_file(self) -> bool:
        return not is_url(self.location) and not self.location.startswith("/dev/")

    @property
    def is_device(self) -> bool:
        return self.location.startswith("/dev/")

    def open_options(self, read_timeout_s: float) -> dict[str, str]:
        """FFmpeg options: read timeouts so a stalled stream errors instead of hanging."""
        us = str(int(read_timeout_s * 1_000_000))
        if self.location.startswith(("rtsp://", "rtsps://")):
            return {"rtsp_transport": self.transport, "timeout": us}
        if is_url(self.location):
            return {"rw_timeout": us}
        return {}


def parse_feed(arg: str, index: int, transport: str = "tcp", loop: bool = False) -> FeedSpec:
    """``NAME=URL_OR_FILE`` or just the location (named feed1, feed2, ...)."""
    name, sep, loc = arg.partition("=")
    if not sep or is_url(arg) and "://" in name:
        name, loc = f"feed{index + 1}", arg
    name, loc = name.strip(), loc.strip()
    if not name or not loc:
        raise UsageError(f"{arg!r}: expected NAME=URL_OR_FILE or URL_OR_FILE")
    if transport not in TRANSPORTS:
        raise UsageError(f"--transport {transport!r}: choose tcp or udp")
    spec = FeedSpec(name, loc, transport, loop)
    if spec.is_file and not Path(loc).is_file():
        raise UsageError(f"{loc}: no such file (feed {name})")
    return spec


def check_unique_names(specs: list[FeedSpec]) -> None:
    names = [f.name for f in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"feed names must be unique (got {', '.join(names)}); name them NAME=URL_OR_FILE")


def parse_feeds(args: list[str], transport: str = "tcp", loop: bool = False) -> list[FeedSpec]:
    """Every ``FEED`` argument of ``flashback watch``, checked before anything is loaded."""
    specs = [parse_feed(arg, i, transport, loop) for i, arg in enumerate(args)]
    check_unique_names(specs)
    return specs


@dataclass
class Sample:
    feed: str
    index: int  # on the feed's grid: sample i sits at (i + 0.5) * step seconds of feed time
    t_s: float  # feed time of the frame taken
    captured_at: float  # time.monotonic() when it was decoded
    rgb: np.ndarray


@dataclass
class Outage:
    """A feed lost at ``start_s`` (feed time); reported when it starts and again when it ends."""

    feed: str
    start_s: float  # feed time the feed was lost
    end_s: float | None = None  # feed time it came back (None: still down, or ended)
    reason: str = ""
    attempts: int = 0


@dataclass
class FeedStats:
    frames_decoded: int = 0
    samples_taken: int = 0  # grid samples converted and queued (benchmarks/live_feeds.py's drop share)
    samples_dropped: int = 0  # queue full (the watcher was behind) or too old when taken
    reconnects: int = 0
    outages: list[Outage] = field(default_factory=list)


class Backoff:
    """Exponential backoff, capped, each wait drawn from the upper half of its window: many feeds
    that drop together do not retry in step, and none retries sooner than half the schedule."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None):
        self.base_s, self.cap_s = base_s, cap_s
        self.rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** self.attempt)
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class FeedReader:
    """Decode one feed in a thread and keep its newest grid samples in a bounded queue."""

    def __init__(
        self, spec: FeedSpec, fit: FrameFit, step_s: float, t0: float, queue_len: int = 32,
        read_timeout_s: float = 5.0, backoff: Backoff | None = None, on_outage: Callable[[Outage], None] | None = None,
        log: Callable[[str], None] = lambda m: None, packets: PacketRing | None = None,
    ):
        self.spec, self.fit, self.step_s, self.t0 = spec, fit, step_s, t0
        self.packets = packets  # every packet also goes here, for event clips
        self._epoch = 0  # openings of the feed: a reconnect is a new stream
        self.views: int | None = None  # views per frame (tiles), fixed by the first stream opened
        self.read_timeout_s = read_timeout_s
        self.backoff = backoff or Backoff()
        self.on_outage = on_outage or (lambda o: None)
        self.log = log
        self.queue: deque[Sample] = deque()
        self.queue_len = queue_len
        self.lock = threading.Lock()
        self.stats = FeedStats()
        self.finished = threading.Event()  # no more samples will come (file ended, or stopped)
        self.error: str | None = None  # why a feed gave up for good
        self._stop = threading.Event()
        self._next_index = 0
        self._thread = threading.Thread(target=self._run, name=f"feed-{spec.name}", daemon=True)

    def start(self) -> FeedReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; False if it is still inside FFmpeg after ``timeout``."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def now_s(self) -> float:
        return time.monotonic() - self.t0

    def take(self, max_age_s: float) -> list[Sample]:
        """Everything queued; samples older than ``max_age_s`` are dropped (counted), not returned."""
        now = time.monotonic()
        with self.lock:  # the reader thread counts its own drops under the same lock
            items = list(self.queue)
            self.queue.clear()
            fresh = [s for s in items if now - s.captured_at <= max_age_s]
            self.stats.samples_dropped += len(items) - len(fresh)
        return fresh

    @property
    def next_index(self) -> int:
        """Every sample below this index was either queued or dropped: segments up to it can close."""
        return self._next_index

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        outage: Outage | None = None
        try:
            while not self._stop.is_set():
                try:
                    container = open_input(self.spec.location, self.fit.hwaccel, mode="r",
                                           format="v4l2" if self.spec.is_device else None,
                                        options=self.spec.open_options(self.read_timeout_s),
                                        timeout=(self.read_timeout_s, self.read_timeout_s))
                except (av.FFmpegError, OSError) as e:
                    outage = self._lost(outage, f"cannot open ({ffmpeg_reason(e)})")
                    if self.spec.is_file:
                        self.error = f"{self.spec.shown}: {outage.reason} (feed {self.spec.name})"
                        return
                    self._sleep_backoff(outage)
                    continue
                if outage is not None:
                    outage.end_s = self.now_s()
                    self.stats.reconnects += 1
                    self.log(f"feed {self.spec.name}: back after {outage.end_s - outage.start_s:.1f} s "
                             f"({outage.attempts} attempt(s))")
                    self.on_outage(dataclasses.replace(outage))
                    outage = None
                self.backoff.reset()
                try:
                    reason = self._decode(container)
                except InputError as e:  # the camera's region does not fit its frames: reconnecting cannot help
                    self.error = str(e)
                    self.log(f"feed {self.spec.name}: stopped: {e}")  # now, not only in the summary at exit
                    self.stats.outages.append(Outage(self.spec.name, self.now_s(), reason=e.problem, attempts=1))
                    self.on_outage(dataclasses.replace(self.stats.outages[-1]))
                    return
                finally:
                    container.close()
                if self._stop.is_set():
                    return
                if self.spec.is_file and reason == "end of file":
                    if self.spec.loop:
                        continue
                    return
                outage = self._lost(outage, reason)
                self._sleep_backoff(outage)
        finally:
            if outage is not None and outage.attempts > 1:
                self.on_outage(dataclasses.replace(outage))  # still down at the end: its final attempt count
            self.finished.set()

    def _lost(self, outage: Outage | None, reason: str) -> Outage:
        outage = outage or Outage(self.spec.name, self.now_s(), reason=reason)
        outage.attempts += 1
        if outage.attempts == 1:  # reported now, while it lasts: the watcher closes the feed's open event
            self.stats.outages.append(outage)
            self.log(f"feed {self.spec.name}: lost at {outage.start_s:.1f} s ({reason}); reconnecting")
            self.on_outage(dataclasses.replace(outage))
        return outage

    def _sleep_backoff(self, outage: Outage) -> None:
        self._stop.wait(self.backoff.next_delay())

    def _decode(self, container) -> str:
        """Decode until the stream ends or fails; returns why it stopped."""
        if not container.streams.video:
            return "no video stream"
        stream = container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if w and h and not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
            return f"absurd resolution {w}x{h}"
        self.fit = self.fit.for_stream(stream)  # its sample aspect ratio (an anamorphic camera)
        if self.views is None and w and h:
            self.views = self.fit.views(w, h)
        stream.thread_type = "AUTO"
        pace_origin: float | None = None  # files: wall time of pts 0
        self._epoch += 1
        ctx = stream.codec_context
        info = StreamInfo(ctx.name, ctx.extradata, stream.time_base, self._epoch)
        try:
            for packet in container.demux(stream):
                if self.packets is not None:
                    self.packets.push(self.now_s(), packet, info)
                for frame in packet.decode():
                    if self._stop.is_set():
                        return "stopped"
                    if self.spec.is_file and frame.time is not None:
                        if pace_origin is None:
                            pace_origin = time.monotonic() - frame.time
                        delay = pace_origin + frame.time - time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            return "stopped"
                    self.stats.frames_decoded += 1
                    self._offer(frame)
        except av.FFmpegError as e:
            return ffmpeg_reason(e)
        except OSError as e:
            return ffmpeg_reason(e)
        return "end of file" if self.spec.is_file else "stream ended"

    def _offer(self, frame) -> None:
        """Take this frame for every grid time it is the newest frame at (usually zero or one)."""
        t = self.now_s()
        index = int(t / self.step_s - 0.5) if t >= 0.5 * self.step_s else -1
        if index < self._next_index:
            return
        if self.views is None:
            self.views = self.fit.views(frame.width, frame.height)
        rgb = self.fit(frame, self.views)
        captured = time.monotonic()
        with self.lock:
            # grid times skipped since the last frame (a slow or stalled feed) are not back-filled
            self._next_index = index + 1
            self.queue.append(Sample(self.spec.name, index, t, captured, rgb))
            self.stats.samples_taken += 1
            while len(self.queue) > self.queue_len:
                self.queue.popleft()
                self.stats.samples_dropped += 1
