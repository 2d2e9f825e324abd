"""Key frames and a playable clip around an event, decoded on demand with PyAV (paths come from
the store only).

Frames are shown as a viewer sees them (the stream's rotation applied, as scoring does).  The clip
is the event's span (plus context) re-encoded as H.264 in MP4, which every browser plays, whatever
the source was (an AVI with MPEG-4 Part 2 video plays nowhere), and only that span reaches the
browser, not the whole file.  A file that can no longer be decoded is a ``MediaError`` with one
line saying so; the page shows it and carries on.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from flashback.decode import displayed_rgb, upright_size
from flashback.errors import FlashbackError, one_line


class MediaError(FlashbackError):
    """A recorded video that cannot be decoded any more (replaced, truncated, corrupted)."""


CONTEXT_S = 2.0  # seconds of video before and after the event
MAX_CLIP_S = 60.0  # a longer event is shown as the minute around its peak


@dataclass(frozen=True)
class Clip:
    data: bytes  # an MP4 (H.264, yuv420p, moov first): plays in any browser
    start_s: float  # where the clip starts and ends, in seconds of the video
    end_s: float
    note: str = ""  # set when the clip is not the whole event


def clip_span(start_s: float, end_s: float, peak_s: float, duration_s: float | None) -> tuple[float, float, str]:
    """The event plus context, at most MAX_CLIP_S long (then centred on the peak), inside the video."""
    a, b = max(0.0, start_s - CONTEXT_S), end_s + CONTEXT_S
    if duration_s:
        b = min(b, duration_s)
    if b - a <= MAX_CLIP_S:
        return a, b, ""
    a = max(0.0, min(peak_s - MAX_CLIP_S / 2, b - MAX_CLIP_S))
    return a, a + MAX_CLIP_S, f"the event lasts {end_s - start_s:.0f} s; this is the minute around its peak"


def event_clip(path: Path, start_s: float, end_s: float, peak_s: float, duration_s: float | None = None,
               width: int = 640) -> Clip:
    a, b, note = clip_span(start_s, end_s, peak_s, duration_s)
    with _source(path) as (src, stream, origin):
        fd, tmp = tempfile.mkstemp(suffix=".mp4")
        os.close(fd)
        try:
            _encode_clip(src, stream, origin, a, b, width, tmp)
            return Clip(Path(tmp).read_bytes(), a, b, note)
        finally:
            os.unlink(tmp)


def _encode_clip(src, stream, origin: float | None, a: float, b: float, width: int, target: str) -> None:
    with av.open(target, "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        out = None
        if origin is not None:
            _seek(src, stream, origin, a)
            for frame in src.decode(stream):
                if frame.time is None:
                    continue
                t = frame.time - origin
                if t < a - 1e-6:
                    continue
                if t > b:
                    break
                if out is None:
                    w, h = upright_size(frame)
                    out = dst.add_stream("libx264", options={"preset": "veryfast", "crf": "26"})
                    out.width = min(width, w) // 2 * 2
                    out.height = max(2, round(h * out.width / w) // 2 * 2)
                    out.pix_fmt = "yuv420p"
                    out.codec_context.time_base = Fraction(1, 1000)
                vf = av.VideoFrame.from_ndarray(displayed_rgb(frame, out.width, out.height, "BILINEAR"), format="rgb24")
                vf.pts, vf.time_base = round((t - a) * 1000), Fraction(1, 1000)
                for packet in out.encode(vf):
                    dst.mux(packet)
        if out is None:
            raise ValueError(f"no frame between {a:.1f} s and {b:.1f} s")
        for packet in out.encode():
            dst.mux(packet)


def key_frames(path: Path, times_s: list[float], width: int = 320) -> list[tuple[float, np.ndarray]]:
    """The frame on screen at each time (seconds after the first frame), scaled to ``width``."""
    out: list[tuple[float, np.ndarray]] = []
    with _source(path) as (c, stream, origin):
        if origin is None:
            return out
        for t in sorted(times_s):
            target = origin + max(0.0, t)
            _seek(c, stream, origin, t)
            chosen = None
            for frame in c.decode(stream):
                if frame.time is None or frame.time <= target + 1e-6:
                    chosen = frame
                    continue
                if chosen is None:
                    chosen = frame
                break
            if chosen is not None:
                w, h = upright_size(chosen)
                out.append((t, displayed_rgb(chosen, width, max(2, round(h * width / w)), "BILINEAR")))
    return out


@contextlib.contextmanager
def _source(path: Path):
    """(container, its first video stream, the time origin) for reading ``path``; the origin is the
    first frame's time, as in scoring (None: no frame).  Any decoding failure inside the block
    becomes one MediaError naming the file."""
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            origin = next((frame.time or 0.0 for frame in c.decode(stream)), None)
            yield c, stream, origin
    except (av.FFmpegError, OSError, IndexError, ValueError) as e:
        raise MediaError(f"{path}: the recorded video cannot be decoded any more ({one_line(e)})") from None


def _seek(c, stream, origin: float, t: float) -> None:
    """To the key frame at or before ``t`` seconds after the first frame."""
    c.seek(int((origin + max(0.0, t)) / stream.time_base), stream=stream, backward=True, any_frame=False)
