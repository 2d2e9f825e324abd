"""Decoding in worker processes, so one encoder is fed by as many cores as the machine has.

One process decodes about 3,400 video frames per second on the default grid while a GPU encoder
takes 28,000 frames per second: a folder scored in one process leaves the GPU idle.  Here each
worker process runs the same ``VideoReader`` (or a ``spans.Span`` of a long file) and
``sample_batches`` as a local run and sends the batches back over its own pipe; the encoder,
retrieval and the store stay in the parent.

Workers are started with ``spawn`` (the parent may hold CUDA, which a fork must not inherit) and
ignore Ctrl-C, which the parent handles.  Each worker holds one job at a time and the parent knows
which, so a worker that dies (a crash in a codec, a kill) fails that job only: the parent reports
it and starts another worker.  A worker decodes ahead while its pipe is full (a sender thread
and a bounded queue), so decoding does not wait on the parent's encoding.
"""

from __future__ import annotations

import queue
import signal
import threading
import traceback
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import wait

import numpy as np

from ..errors import FlashbackError
from ..processes import main_module_hidden, spawn_context
from ..scoring.pipeline import SampleBatch, sample_batches, video_id_for
from ..video.decode import FrameFit, VideoReader
from ..video.sources import VideoSource
from ..video.spans import Span, SpanEnd, Unsplittable, span_samples
from ..video.timegrid import TimeGrid

BACKLOG = 8  # messages a worker decodes ahead of its pipe
STOP_S = 5.0  # how long close() waits for a worker before it is killed


@dataclass(frozen=True)
class DecodeJob:
    key: int  # unique per job within a pool
    source: VideoSource
    fit: FrameFit
    grid: TimeGrid
    batch_size: int
    span: Span | None = None  # None: the whole file, sequentially
    hash: bool = True  # send the file's content address first (a split file's first span does)


class Msg(StrEnum):
    """What a worker says about its job, sent as ``(job key, Msg, payload)``; the payload by kind."""

    ID = "id"  # the video id (the file's content address), when the job hashes it
    INFO = "info"  # the VideoInfo, once the file is open
    BATCH = "batch"  # a SampleBatch
    END = "end"  # the Timeline (a whole file) or a SpanEnd (a span)
    UNSPLITTABLE = "unsplittable"  # why a span must be read sequentially instead
    ERROR = "error"  # the one-line reason (a FlashbackError: the input's fault)
    BUG = "bug"  # a traceback: a bug in flashback
    DONE = "done"  # None: the job is over, the worker free
    DIED = "died"  # the exit code: added by the parent for a job whose worker died


def _run(job: DecodeJob, send) -> None:
    if job.hash:
        send(Msg.ID, video_id_for(job.source))
    with VideoReader(job.source, job.fit) as reader:
        send(Msg.INFO, reader.info)
        if job.span is None:
            samples, end = reader.samples(job.grid), None
        else:
            end = SpanEnd()
            samples = span_samples(reader, job.grid, job.span, end)
        last = None
        for batch in sample_batches(samples, job.batch_size):
            if last is not None:
                send(Msg.BATCH, last)
            last = batch
        if end is not None and end.tail is not None and last is not None:
            # the last frame rides in the span's last batch as a row no sample takes: encoded among
            # other frames, as a sequential read encodes it (a batch of one can round differently)
            last = SampleBatch(last.idx, last.take, np.concatenate([last.rgb, end.tail[None]]))
            end.tail = None
        if last is not None:
            send(Msg.BATCH, last)
        send(Msg.END, reader.timeline if end is None else end)


class _ParentGone(BaseException):
    """The parent's end of the pipe is closed: the worker stops (not an Exception, so that no job's
    error handling catches it)."""


def _worker(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    out: queue.Queue = queue.Queue(BACKLOG)
    gone = threading.Event()

    def sender() -> None:
        try:
            while (message := out.get()) is not None:
                conn.send(message)
        except (OSError, ValueError):
            gone.set()  # the parent died (a kill): nobody reads what is decoded

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        while (job := conn.recv()) is not None:
            def send(kind: Msg, payload, key: int = job.key) -> None:
                while not gone.is_set():
                    try:
                        out.put((key, kind, payload), timeout=1.0)
                        return
                    except queue.Full:
                        continue
                raise _ParentGone

            try:
                _run(job, send)
            except Unsplittable as e:
                send(Msg.UNSPLITTABLE, str(e))
            except FlashbackError as e:
                send(Msg.ERROR, str(e))
            except Exception:
                send(Msg.BUG, traceback.format_exc())
            send(Msg.DONE, None)
    except (EOFError, OSError, _ParentGone):
        pass  # the parent is gone: so is this worker
    finally:
        try:
            out.put_nowait(None)
        except queue.Full:
            pass
        thread.join(timeout=STOP_S)


class _Slot:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child,), daemon=True, name="flashback-decode")
        with main_module_hidden():
            self.proc.start()
        child.close()
        self.job: DecodeJob | None = None


class DecodePool:
    """``workers`` decoding processes; ``submit`` jobs, then ``receive`` their messages until ``busy`` is False."""

    def __init__(self, workers: int):
        self._ctx = spawn_context()
        self._slots = [_Slot(self._ctx) for _ in range(workers)]
        self._todo: deque[DecodeJob] = deque()
        self.restarted = 0

    @property
    def workers(self) -> int:
        return len(self._slots)

    def submit(self, job: DecodeJob) -> None:
        self._todo.append(job)

    @property
    def busy(self) -> bool:
        return bool(self._todo) or any(s.job is not None for s in self._slots)

    def receive(self, timeout: float) -> list[tuple[DecodeJob, Msg, object]]:
        """Hand out waiting jobs, then whatever messages arrive within ``timeout`` seconds."""
        for s in self._slots:
            if s.job is None and self._todo:
                s.job = self._todo.popleft()
                s.conn.send(s.job)
        held = [s for s in self._slots if s.job is not None]
        ready = set(wait([s.conn for s in held] + [s.proc.sentinel for s in held], timeout))
        got = []
        for k, s in enumerate(self._slots):
            if s.job is None or not (s.conn in ready or s.proc.sentinel in ready):
                continue
            try:
                while s.job is not None and s.conn.poll():
                    key, kind, payload = s.conn.recv()
                    got.append((s.job, kind, payload))
                    if kind is Msg.DONE:
                        s.job = None
            except (EOFError, OSError):
                pass
            if s.job is not None and not s.proc.is_alive():
                s.proc.join()
                got.append((s.job, Msg.DIED, s.proc.exitcode))
                self._slots[k] = _Slot(self._ctx)
                self.restarted += 1
        return got

    def close(self) -> None:
        """Ask every worker to stop; one that does not within ``STOP_S`` seconds is killed."""
        for s in self._slots:
            try:
                s.conn.send(None)
            except (OSError, ValueError):
                pass
        for s in self._slots:
            s.proc.join(timeout=STOP_S if s.job is None else 0.1)
            if s.proc.is_alive():
                s.proc.kill()
                s.proc.join()
            s.conn.close()
        self._slots, self._todo = [], deque()
