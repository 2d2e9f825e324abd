"""Decode a video with PyAV and deliver the frames that sit on the sampling grid.

Every frame is decoded (its presentation timestamp is needed for the per-frame scores), but only
the frames the grid picks are converted, by libswscale during that conversion, to exactly what the
encoder takes (``FrameFit``), so a 4K stream never becomes a 4K RGB array.  A grid time t takes
the frame on screen at t (the last one with pts <= t), which makes variable frame rate work
without assumptions.  Decode errors after the first frame end the video early and are reported as
truncation: everything before them is still scored.

What the encoder sees (docs/scoring.md, step 3, states every number): the frame as displayed (the
stream's sample aspect ratio and the rotation in its display matrix applied; the stored picture is
converted and scaled by swscale in one call, then turned), with bicubic interpolation, by the frame fit:
``pad`` (default: the longer side to the input size, centred, the rest filled with the encoder's
normalisation mean, so nothing of the picture is lost), ``crop`` (the shorter side to the input
size, centre crop: CLIP's own preprocessing, which loses the sides of a wide frame), ``squash``
(both sides to the input size) or ``tiles`` (the shorter side to the input size, then
ceil(long / short) square tiles spread evenly over the longer side, each one a view of its own).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import av
import numpy as np

from ..errors import InputError, first_line
from .cameras import Region
from .clock import creation_time
from .sources import VideoSource
from .timegrid import TimeGrid

log = logging.getLogger("flashback")

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
    created_at: datetime | None = None  # the container's creation_time tag, local wall time (a camera's own clock)


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

    def close(self, fallback_step: float, grid: TimeGrid) -> float:
        """Sets the duration once every frame is in (the last frame lasts the median frame interval)
        and returns the time up to which ``grid`` samples exist: a video shorter than half a grid
        step (one frame, a still image) still gets its one sample."""
        times = self.frame_times
        step = float(np.median(np.diff(times))) if len(times) > 1 else fallback_step
        self.duration_s = times[-1] + step
        return max(self.duration_s, grid.sample_time(0) + 1e-9)

    def check_declared(self, declared: float | None) -> None:
        """Far less video than the container declares: a truncated file, said in the result's note."""
        if not self.truncated and declared and self.duration_s < 0.9 * declared - 1.0:
            self.truncated = True
            self.note = (f"only {self.duration_s:.2f} s of the declared {declared:.2f} s could be decoded "
                         "(truncated file?); scored up to there")


def ffmpeg_reason(error: Exception) -> str:
    """FFmpeg's reason without the errno and file name the caller already prints (a file or a feed)."""
    return str(getattr(error, "strerror", None) or first_line(error))


MAX_TILES = 8
HWACCELS = ("auto", "cuda", "none")
_NO_HARDWARE: set[str] = set()  # device types that cannot be had in this process (said once)


def open_input(name: str, hwaccel: str | None = None, **kw) -> av.container.InputContainer:
    """``av.open``, decoding on the hardware decoder ``hwaccel`` names when it can be had (FFmpeg
    falls back to software for a stream the hardware cannot take).  A device that cannot be opened
    at all (no driver, no GPU) is said once per process, and everything decodes in software: the
    pixels are the same, since H.264 and HEVC decoding is bit-exact; only where the work runs differs."""
    if hwaccel and hwaccel not in _NO_HARDWARE:
        from av.codec.hwaccel import HWAccel

        try:
            return av.open(name, hwaccel=HWAccel(hwaccel, allow_software_fallback=True), **kw)
        except (av.FFmpegError, OSError) as e:
            container = av.open(name, **kw)  # the input's own problem raises here, and blames no device
            _NO_HARDWARE.add(hwaccel)
            log.warning("hardware decoding on %s is not available here (%s); decoding in software", hwaccel, ffmpeg_reason(e))
            return container
    return av.open(name, **kw)


def hardware_for(hwaccel: str | None, probes: list[str]) -> str | None:
    """``hwaccel`` if its device opens here (tried on the first of ``probes`` that opens at all),
    else None: worker processes are then told to decode in software, rather than each finding it
    out and saying so."""
    for probe in probes[:8]:
        if not hwaccel or hwaccel in _NO_HARDWARE:
            break
        try:
            open_input(probe, hwaccel).close()
            break
        except (av.FFmpegError, OSError):
            continue  # this file's own problem (its job reports it): try the next
    return None if hwaccel in _NO_HARDWARE else hwaccel


def resolve_hwaccel(choice: str, device: str) -> str | None:
    """``--hwaccel``: auto is NVDEC when the encoder runs on CUDA and this FFmpeg build has it."""
    if choice == "none":
        return None
    if choice == "auto" and not device.startswith("cuda"):
        return None
    from av.codec.hwaccel import hwdevices_available

    return "cuda" if "cuda" in hwdevices_available() else None


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that put a frame upright, from its display matrix (a phone
    held upright records landscape pixels and a 90-degree rotation)."""
    try:
        return int(round((frame.rotation or 0) / 90)) % 4
    except (AttributeError, ValueError, TypeError):
        return 0


def displayed_rgb(frame: av.VideoFrame, width: int, height: int, interpolation: str = "BICUBIC") -> np.ndarray:
    """The frame as a viewer sees it (rotation applied), scaled to width x height displayed pixels."""
    k = quarter_turns(frame)
    cw, ch = (height, width) if k % 2 else (width, height)
    rgb = frame.reformat(width=cw, height=ch, format="rgb24", interpolation=interpolation).to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def upright_size(frame: av.VideoFrame, sar: float = 1.0) -> tuple[int, int]:
    """(width, height) as displayed: the stored width times the sample aspect ratio (an anamorphic
    camera's 480x360 with SAR 4:3 is shown 640x360; rounded half to even, as Python's ``round``),
    then a quarter-turned frame swaps them."""
    w, h = (max(1, round(frame.width * sar)) if sar != 1.0 else frame.width), frame.height
    return (h, w) if quarter_turns(frame) % 2 else (w, h)


def stream_sar(stream) -> float:
    """A video stream's sample aspect ratio (a stored pixel's width over its height), 1.0 when it
    declares none or an absurd one (outside 1/8..8)."""
    for owner in (stream, stream.codec_context):
        try:
            r = owner.sample_aspect_ratio
        except AttributeError:
            continue
        if r and r.numerator > 0 and r.denominator > 0 and 0.125 <= float(r) <= 8:
            return float(r)
    return 1.0


@dataclass(frozen=True)
class FrameFit:
    """How a decoded frame becomes the encoder's square input: one view, or several (tiles)."""

    mode: str  # pad | crop | squash | tiles (settings.FRAME_FITS)
    size: int  # the encoder's input side
    fill: tuple[int, int, int] = (0, 0, 0)  # pad colour: the encoder's normalisation mean rounded to 8 bits (about 0 after it)
    region: Region | None = None  # the part of the frame the encoder sees (cameras.py); None: all of it
    source: str = ""  # for the message when the region does not fit the frame
    hwaccel: str | None = None  # where frames are decoded: None (software) or an FFmpeg device type ("cuda": NVDEC)
    sar: float = 1.0  # the stream's sample aspect ratio (``stream_sar``), set by the reader that opens it

    def for_stream(self, stream) -> "FrameFit":
        """This fit for frames of ``stream`` (its sample aspect ratio)."""
        sar = stream_sar(stream)
        return self if sar == self.sar else dataclasses.replace(self, sar=sar)

    def shown_size(self, width: int, height: int) -> tuple[int, int]:
        """A stored width x height as displayed (before any rotation)."""
        return (max(1, round(width * self.sar)) if self.sar != 1.0 else width), height

    def views(self, width: int, height: int) -> int:
        """Views per frame: 1, or for tiles as many squares as it takes to cover the longer side."""
        if self.region is not None:
            width, height = self.region.box[2:]
        else:
            width, height = self.shown_size(width, height)
        if self.mode != "tiles" or not width or not height:
            return 1
        return max(1, min(MAX_TILES, math.ceil(max(width, height) / min(width, height) - 1e-3)))

    def __call__(self, frame: av.VideoFrame, views: int = 1) -> np.ndarray:
        """(size, size, 3) uint8, or (views, size, size, 3) for tiles."""
        sar = self.sar
        if self.region is not None:  # cut out first, so the region is scaled at full detail
            w, h = upright_size(frame, sar)
            rgb = self.region.cut(displayed_rgb(frame, w, h), self.fill, self.source)
            frame, sar = av.VideoFrame.from_ndarray(rgb, format="rgb24"), 1.0
        size, (w, h) = self.size, upright_size(frame, sar)
        if self.mode == "squash":
            return displayed_rgb(frame, size, size)
        if self.mode == "pad":
            scale = size / max(w, h)
            nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
            out = np.empty((size, size, 3), np.uint8)
            out[:] = self.fill
            top, left = (size - nh) // 2, (size - nw) // 2
            out[top : top + nh, left : left + nw] = displayed_rgb(frame, nw, nh)
            return out
        scale = size / min(w, h)  # crop and tiles: the shorter side fills the input
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        rgb = displayed_rgb(frame, nw, nh)
        if self.mode == "crop":
            top, left = (nh - size) // 2, (nw - size) // 2
            return rgb[top : top + size, left : left + size]
        offsets = np.round(np.linspace(0, max(nw, nh) - size, views)).astype(int)
        tiles = [rgb[:, o : o + size] if nw >= nh else rgb[o : o + size, :] for o in offsets]
        return np.stack(tiles)


class VideoReader:
    """Open one source, validate it, and yield (sample_index, encoder input) pairs."""

    def __init__(self, source: VideoSource, fit: FrameFit, threads: int = 0):
        self.source = source
        self.fit = fit
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
            self._container = open_input(source.location, fit.hwaccel, mode="r", options=OPEN_OPTIONS_URL if source.is_url else {},
                                         timeout=None)
        except av.FFmpegError as e:
            raise InputError(name, f"not a readable video ({ffmpeg_reason(e)})") from None
        except OSError as e:
            raise InputError(name, f"cannot open ({ffmpeg_reason(e)})") from None
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
        self.fit = fit = fit.for_stream(stream)
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
            created_at=creation_time(self._container),
        )
        self.views = fit.views(width, height)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def samples(self, grid: TimeGrid) -> Iterator[tuple[int, np.ndarray]]:
        tl = self.timeline
        name = str(self.source)
        fallback_step = self.fallback_step
        clock = SampleClock(grid, self.encoder_input)
        t0: float | None = None
        try:
            for frame in self.frames():
                t = frame.time
                if t is None:  # no timestamp: assume the declared rate
                    t = (t0 or 0.0) + len(tl.frame_times) * fallback_step
                if t0 is None:
                    t0 = t
                rel = t - t0
                if tl.frame_times and rel <= tl.frame_times[-1]:
                    continue  # duplicate or backwards timestamp: keep time monotonic
                if clock.frame is not None:
                    yield from clock.until(rel)
                clock.now(frame)
                tl.frame_times.append(rel)
        except av.FFmpegError as e:
            if not tl.frame_times:
                raise InputError(name, f"corrupt video, no frame could be decoded ({ffmpeg_reason(e)})") from None
            tl.truncated = True
            tl.note = f"decoding stopped at {tl.frame_times[-1]:.2f} s ({ffmpeg_reason(e)}); scored up to there"
        if clock.frame is None:
            raise InputError(name, "no decodable video frames (zero-frame video)")
        yield from clock.until(tl.close(fallback_step, grid))
        tl.n_samples = clock.next
        tl.check_declared(self.info.declared_duration_s)

    def frames(self) -> Iterator[av.VideoFrame]:
        """The stream's frames, decoded from where the reader stands (its start, or a ``seek``)."""
        return self._container.decode(self._stream)

    def seek(self, seconds: float) -> None:
        """To the key frame at or before ``seconds`` of the stream's own time (an FFmpegError if it cannot)."""
        self._container.seek(int(seconds / self._stream.time_base), stream=self._stream, backward=True, any_frame=False)

    def encoder_input(self, frame: av.VideoFrame) -> np.ndarray:
        """What the encoder is shown of ``frame`` (``FrameFit``)."""
        return self.fit(frame, self.views)

    @property
    def fallback_step(self) -> float:
        return fallback_step(self.info)


class SampleClock:
    """The one sampling rule, for a whole file and a time span of one alike: grid sample ``i`` shows
    the frame on screen at its time (the last frame at or before it), so samples are let out as the
    next frame's time passes them; each frame is made encoder input once, however many samples
    land on it.  ``first``/``stop``: the span's samples [first, stop); ``next``: the next to emit."""

    def __init__(self, grid: TimeGrid, encoder_input, first: int = 0, stop: int | None = None):
        self.grid, self.encoder_input, self.next, self.stop = grid, encoder_input, first, stop
        self.frame: av.VideoFrame | None = None
        self._input: np.ndarray | None = None

    def until(self, limit: float) -> Iterator[tuple[int, np.ndarray]]:
        """The samples before ``limit`` seconds, each showing the current frame."""
        while (self.stop is None or self.next < self.stop) and self.grid.sample_time(self.next) < limit:
            if self._input is None:
                self._input = self.encoder_input(self.frame)
            yield self.next, self._input
            self.next += 1

    def now(self, frame: av.VideoFrame) -> None:
        """``frame`` is on screen from here on (once the samples before its time are out: ``until``)."""
        self.frame, self._input = frame, None


def fallback_step(info: VideoInfo) -> float:
    """A frame's duration when timestamps say nothing: from the declared rate, else 30 FPS."""
    return 1.0 / info.average_fps if info.average_fps else 1.0 / 30
