"""What runs on the cluster's workers: decoding tasks and encoder actors.

Both are thin: a task runs the same ``VideoReader`` and ``sample_batches`` as a local run, an actor
the same ``SampleBatch.rows`` and ``Detector.video_result``.  So a video's frame scores on the
cluster are those of a local run, and the tests check that they are identical.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray

from ..encoders.backends import Runtime
from ..encoders.encoder_registry import EncoderSpec
from ..errors import ClusterError, FlashbackError
from ..memory.bundle import load_bundle
from ..memory.manifest import MANIFEST
from ..scoring.pipeline import DetectorSpec, SampleBatch, Scored, SegmentPooler, sample_batches, video_id_for
from ..store import RunRecord
from ..video.decode import FrameFit, Timeline, VideoInfo, VideoReader
from ..video.sources import VideoSource
from ..video.timegrid import TimeGrid


@dataclass(frozen=True)
class DecodeEnd:
    """A decoding task's last item: what it found, and the seconds it spent."""

    timeline: Timeline
    info: VideoInfo
    decode_s: float


def bundle_files(path: Path) -> dict[str, bytes]:
    """A memory bundle's files, to be put in the object store once and sent to every actor."""
    return {f.name: f.read_bytes() for f in Path(path).iterdir() if f.is_file()}


def receive_bundle(files: dict[str, bytes]):
    """The memory as it arrived: written to a private folder and loaded, which checks every file's
    size and SHA-256 against the manifest (a bundle damaged on the way is refused, not used)."""
    if MANIFEST not in files:
        raise ClusterError(f"the memory sent to {socket.gethostname()} has no {MANIFEST}")
    tmp = Path(tempfile.mkdtemp(prefix="flashback-memory-"))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        return load_bundle(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@ray.remote(num_cpus=1, max_retries=0)
def decode_batches(source: VideoSource, fit: FrameFit, grid: TimeGrid, batch_size: int, threads: int):
    """Yields the video's id, then its ``SampleBatch``es, then a ``DecodeEnd``.  No retries here:
    the driver retries the whole video, and counts how often its worker died."""
    t0 = time.perf_counter()
    yield video_id_for(source)
    with VideoReader(source, fit, threads=threads) as reader:
        yield from sample_batches(reader.samples(grid), batch_size)
        yield DecodeEnd(reader.timeline, reader.info, time.perf_counter() - t0)


@ray.remote(max_restarts=0)
class VideoEncoder:
    """Holds the model and the memory once; embeds batches and scores finished videos.

    An actor that dies is replaced by the driver (``ClusterScorer._replace``), and the videos it
    was working on start again.
    """

    def __init__(self, spec: EncoderSpec, device: str, runtime: Runtime, memory: dict[str, bytes], detector: DetectorSpec):
        """``detector``: the driver's detector as it was made (settings, texts, overlays), rebuilt here
        around this actor's own model and copy of the memory."""
        from ..encoders.encoder import ClipEncoder

        self.error = None
        try:
            encoder = ClipEncoder(spec, device=device, precision=runtime.precision, backend=runtime.backend)
            self.detector = detector.build(receive_bundle(memory), encoder)
        except FlashbackError as e:  # told to the driver by identity(): restarting would fail the same way
            self.error = str(e)

    def identity(self) -> dict:
        """What the driver checks against its own run: the run id covers settings, memory and encoder."""
        where = {"host": socket.gethostname(), "pid": os.getpid()}
        if self.error:
            return {**where, "error": self.error}
        return {**where, "run_id": RunRecord.of(self.detector).run_id, "runtime": self.detector.encoder.runtime}

    def encode(self, batch: SampleBatch) -> tuple[float, tuple[np.ndarray, np.ndarray], float]:
        """(video seconds this batch reaches, (sample indices, their rows), seconds spent encoding)."""
        t0 = time.perf_counter()
        rows = batch.rows(self.detector.encoder)
        return self.detector.grid.sample_time(int(batch.idx[-1])), (batch.idx, rows), time.perf_counter() - t0

    def score(self, parts: list, end: DecodeEnd, scope) -> Scored:
        """Pool a video's encoded rows (``parts``: references, fetched one at a time) and score it.
        What comes back is what was scored: the driver makes the result whole with its own copy of
        the caption table (no table travels with each video) and what the video is of."""
        pooler = SegmentPooler(self.detector.grid)
        for ref in parts:
            idx, rows = ray.get(ref)
            pooler.add(idx, rows)
        return self.detector.video_scored(pooler.finish(end.timeline.n_samples), end.timeline, scope)
