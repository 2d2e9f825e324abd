"""Clips and thumbnails of live events, from the packets each feed's ring recorded (``live/packets.py``).

When an event closes its recording runs on for ``CONTEXT_S`` after its end; then a worker thread
decodes the packets with a decoder of their own (the reader's is busy) and writes an H.264 MP4 and
a JPEG of the frame nearest the peak under the store's media folder.  The other sinks hear of it
through ``LiveSink.media`` (a row in ``event_media``, a JSON line, an MQTT message).
"""

from __future__ import annotations

import queue
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import av

from ...errors import FlashbackError, one_line
from ...video.media import CONTEXT_S, EventMedia, encode_frames, frame_rgb, media_stem, renamed, save_jpeg
from ..causal import EventUpdate
from ..packets import Held, PacketRing, decode_held
from .base import Closed, FeedSession, LiveSink

WORKER_DRAIN_S = 30.0  # at shutdown, how long the clips still being written are waited for


@dataclass
class _Job:
    session: FeedSession
    event: object  # Event
    packets: list[Held]
    note: str


class LiveMediaSink(LiveSink):
    """Clips and thumbnails of live events, handed to the other sinks' ``media`` once written.

    Sinks are called from the watcher's thread only, so finished media wait in a queue that
    ``tick`` drains; the files themselves are written by a worker thread of this sink.
    """

    def __init__(self, folder: Path, run_id: str, sinks: list[LiveSink], log=lambda m: None):
        self.folder, self.run_id, self.sinks, self.log = Path(folder), run_id, sinks, log
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="clips", daemon=True)
        self._worker.start()
        self._rings: list[PacketRing] = []
        self._busy: _Job | None = None  # the job the worker is writing now

    def start(self, session: FeedSession) -> None:
        if session.packets is not None:
            self._rings.append(session.packets)

    def event(self, session: FeedSession, update: EventUpdate) -> None:
        ring, e = session.packets, update.event
        if ring is None:
            return
        key = (session.video_id, e.index)
        if update.kind == "opened":
            ring.start(key, e.start_s - CONTEXT_S)
        else:
            ring.stop(key, e.end_s + CONTEXT_S, lambda packets, note: self._jobs.put(_Job(session, e, packets, note)))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._busy = job
            try:
                media = self._write(job)
            except Exception:  # noqa: BLE001 - a bug: said with its traceback, and the next clips still get made
                self.log(f"internal error writing a clip of feed {job.session.spec.name} (a bug in flashback; "
                         f"please report it):\n{traceback.format_exc()}")
                media = EventMedia(job.event.start_frame, None, None, None, None, None, "internal error (see the log)")
            self._done.put((job.session, job.event, media))
            self._busy = None

    def _write(self, job: _Job) -> EventMedia:
        e = job.event
        stem = media_stem(job.session.video_id, self.run_id, e.start_frame)
        clip, thumb = f"{stem}.mp4", f"{stem}.jpg"
        peak: list = []  # [distance from the peak, time, frame] of the frame nearest the peak
        times: list[float] = []

        def tap(frames):
            for t, f in frames:
                times.append(t)
                if not peak or abs(t - e.peak_s) < peak[0]:
                    peak[:] = [abs(t - e.peak_s), t, f]
                yield t, f

        try:
            if not job.packets:
                raise FlashbackError("no packets were recorded (the feed was down, or the event opened at once on start)")
            start = job.packets[0].t_s
            with renamed(self.folder / clip) as tmp:
                encode_frames(tap(decode_held(job.packets)), start, tmp)
            save_jpeg(frame_rgb(peak[2]), self.folder / thumb)
        except (FlashbackError, av.FFmpegError, OSError, ValueError) as err:
            self.log(f"feed {job.session.spec.name}: no clip for event {e.index} ({one_line(err)})")
            return EventMedia(e.start_frame, None, None, None, None, None, one_line(err))
        return EventMedia(e.start_frame, clip, round(start, 3), round(times[-1], 3), thumb, round(peak[1], 3),
                          job.note or None)

    def tick(self) -> None:
        while True:
            try:
                session, event, media = self._done.get_nowait()
            except queue.Empty:
                return
            for sink in self.sinks:
                if sink is not self:
                    sink.media(session, event, media)

    def close(self) -> Closed:
        """Finish every closed event's recording, wait (bounded) for its files, hand them on."""
        for ring in self._rings:
            ring.finish_all()
        self._jobs.put(None)
        self._worker.join(timeout=WORKER_DRAIN_S)
        unmade = [self._busy] if self._worker.is_alive() and self._busy is not None else []
        while True:  # what the worker did not reach: recorded as missing, with why, never just dropped
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                unmade.append(job)
        for job in unmade:
            note = f"not written: the watch stopped before its clip was made (waited {WORKER_DRAIN_S:g} s)"
            self.log(f"feed {job.session.spec.name}: no clip for event {job.event.index} ({note})")
            self._done.put((job.session, job.event, EventMedia(job.event.start_frame, None, None, None, None, None, note)))
        self.tick()
        return Closed()

