"""Decode a video with PyAV and deliver the frames that sit on the sampling grid.

Every frame is decoded (its presentation timestamp is needed for the per-frame scores), but only
the frames the grid picks are converted, and they are scaled by libswscale straight to the
encoder's input size during that conversion, so a 4K stream never becomes a 4K RGB array.  A grid
time t takes the frame on screen at t (the last one with pts <= t), which makes variable frame
rate work without assumptions.  Decode errors after the first frame end the video early and are
reported as truncation: everything before them is still scored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np

from .errors import InputError
from .sources import VideoSource
from .timegrid import TimeGrid

MAX_SIDE = 16384  # larger than any real camera; beyond this the header is corrupt or hostile
MIN_SIDE = 2

OPEN_OPTIONS_URL = {"rw_timeout": "15000000"}  # 15 s read timeout (microseconds) for network inputs


@dataclass(frozen=True)
class VideoInfo:
    source: str
    width: int
    height: int
    codec: str
    average_fps: float | None  # what the container declares; None when it declares nothing
    declared_duration_s: float | None


@dataclass
class Timeline:
    """What decoding found, filled in as frames arrive."""

    frame_times: list[float] = field(default_factory=list)  # seconds after the first frame
    duration_s: float = 0.0
    n_samples: int = 0
    truncated: bool = False
    note: str = ""

    @property
    def fps(self) -> float:
        n = len(self.frame_times)
        return n / self.duration_s if self.duration_s > 0 else 0.0


def _describe(error: Exception) -> str:
    """FFmpeg's reason without the errno and file name the caller already prints."""
    if getattr(error, "strerror", None):
        return str(error.strerror)
    text = str(error).strip()
    return text.split("\n")[0] if text else type(error).__name__


def to_encoder_rgb(frame: av.VideoFrame, size: int) -> np.ndarray:
    """Scale the shorter side to the encoder size (bicubic, as CLIP does) and centre-crop."""
    w, h = frame.width, frame.height
    if w <= h:
        nw, nh = size, max(size, round(h * size / w))
    else:
        nw, nh = max(size, round(w * size / h)), size
    rgb = frame.reformat(width=nw, height=nh, format="rgb24", interpolation="BICUBIC").to_ndarray()
    top, left = (nh - size) // 2, (nw - size) // 2
    return rgb[top : top + size, left : left + size]


class VideoReader:
    """Open one source, validate it, and yield (sample_index, RGB uint8 array) pairs."""

    def __init__(self, source: VideoSource, image_size: int, threads: int = 0):
        self.source = source
        self.image_size = image_size
        self.timeline = Timeline()
        name = str(source)
        if not source.is_url:
            path = source.path
            if not path.exists():
                raise InputError(name, "no such file")
            if path.is_dir():
                raise InputError(name, "is a folder, not a video file")
            if path.stat().st_size == 0:
                raise InputError(name, "empty file (0 bytes)")
            if not os.access(path, os.R_OK):
                raise InputError(name, "not readable (permission denied)")
        try:
            self._container = av.open(
                name, mode="r", options=OPEN_OPTIONS_URL if source.is_url else {}, timeout=None
            )
        except av.FFmpegError as e:
            raise InputError(name, f"not a readable video ({_describe(e)})") from None
        except OSError as e:
            raise InputError(name, f"cannot open ({_describe(e)})") from None
        if not self._container.streams.video:
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            self._container.close()
            raise InputError(name, f"no video stream (found: {', '.join(kinds)})")
        stream = self._container.streams.video[0]
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            self._container.close()
            raise InputError(
                name, f"absurd resolution {width}x{height} (accepted: {MIN_SIDE}..{MAX_SIDE} per side)"
            )
        stream.thread_type = "AUTO"  # frame + slice threading inside FFmpeg
        if threads:
            ctx.thread_count = threads
        self._stream = stream
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
        elif self._container.duration:
            declared = self._container.duration / 1_000_000
        rate = stream.average_rate or stream.guessed_rate
        self.info = VideoInfo(
            source=name,
            width=width,
            height=height,
            codec=ctx.name,
            average_fps=float(rate) if rate else None,
            declared_duration_s=declared,
        )

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def samples(self, grid: TimeGrid) -> Iterator[tuple[int, np.ndarray]]:
        tl = self.timeline
        name = str(self.source)
        fallback_step = 1.0 / self.info.average_fps if self.info.average_fps else 1.0 / 30
        pending: av.VideoFrame | None = None
        pending_rgb: np.ndarray | None = None
        t0: float | None = None
        next_i = 0

        def emit_until(limit: float) -> Iterator[tuple[int, np.ndarray]]:
            nonlocal next_i, pending_rgb
            while grid.sample_time(next_i) < limit:
                if pending_rgb is None:
                    pending_rgb = to_encoder_rgb(pending, self.image_size)
                yield next_i, pending_rgb
                next_i += 1

        try:
            for frame in self._container.decode(self._stream):
                t = frame.time
                if t is None:  # no timestamp: assume the declared rate
                    t = (t0 or 0.0) + len(tl.frame_times) * fallback_step
                if t0 is None:
                    t0 = t
                rel = t - t0
                if tl.frame_times and rel <= tl.frame_times[-1]:
                    continue  # duplicate or backwards timestamp: keep time monotonic
                if pending is not None:
                    yield from emit_until(rel)
                pending, pending_rgb = frame, None
                tl.frame_times.append(rel)
        except av.FFmpegError as e:
            if not tl.frame_times:
                raise InputError(name, f"corrupt video, no frame could be decoded ({_describe(e)})") from None
            tl.truncated = True
            tl.note = f"decoding stopped at {tl.frame_times[-1]:.2f} s ({_describe(e)}); scored up to there"
        if pending is None:
            raise InputError(name, "no decodable video frames (zero-frame video)")
        times = tl.frame_times
        step = float(np.median(np.diff(times))) if len(times) > 1 else fallback_step
        tl.duration_s = times[-1] + step
        yield from emit_until(tl.duration_s)
        tl.n_samples = next_i
        declared = self.info.declared_duration_s
        if not tl.truncated and declared and tl.duration_s < 0.9 * declared - 1.0:
            tl.truncated = True
            tl.note = (
                f"only {tl.duration_s:.2f} s of the declared {declared:.2f} s could be decoded "
                "(truncated file?); scored up to there"
            )
