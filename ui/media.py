"""Key frames and a playable clip around an event, decoded on demand with PyAV (paths come from
the store only).

Frames are shown as a viewer sees them (the stream's rotation applied, as scoring does).  The clip
is the event's span (plus context) re-encoded as H.264 in MP4, which every browser plays, whatever
the source was (an AVI with MPEG-4 Part 2 video plays nowhere), and only that span reaches the
browser, not the whole file.  A file that can no longer be decoded is a ``MediaError`` with one
line saying so; the page shows it and carries on.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from flashback.decode import displayed_rgb, quarter_turns
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
    try:
        return Clip(_encode_clip(path, a, b, width), a, b, note)
    except (av.FFmpegError, OSError, IndexError, ValueError) as e:
        raise MediaError(f"{path}: the recorded video cannot be decoded any more ({one_line(e)})") from None


def _encode_clip(path: Path, a: float, b: float, width: int) -> bytes:
    fd, tmp = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        with av.open(str(path)) as src, av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"}) as dst:
            stream = src.streams.video[0]
            stream.thread_type = "AUTO"
            out = None
            for t, frame in _frames_from(src, stream, a):
                if t < a - 1e-6:
                    continue
                if t > b:
                    break
                if out is None:
                    w, h = (frame.height, frame.width) if quarter_turns(frame) % 2 else (frame.width, frame.height)
                    out_w = min(width, w) // 2 * 2
                    out_h = max(2, round(h * out_w / w) // 2 * 2)
                    out = dst.add_stream("libx264", options={"preset": "veryfast", "crf": "26"})
                    out.width, out.height, out.pix_fmt = out_w, out_h, "yuv420p"
                    out.codec_context.time_base = Fraction(1, 1000)
                rgb = displayed_rgb(frame, out.width, out.height, "BILINEAR")
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                vf.pts, vf.time_base = round((t - a) * 1000), Fraction(1, 1000)
                for packet in out.encode(vf):
                    dst.mux(packet)
            if out is None:
                raise ValueError(f"no frame between {a:.1f} s and {b:.1f} s")
            for packet in out.encode():
                dst.mux(packet)
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def _frames_from(src, stream, a: float):
    """(seconds after the first frame, frame) from the key frame at or before ``a``; the time
    origin is the file's first frame, as in scoring, so it is read before seeking."""
    origin = None
    for frame in src.decode(stream):
        origin = frame.time or 0.0
        break
    if origin is None:
        return
    src.seek(int((origin + a) / stream.time_base), stream=stream, backward=True, any_frame=False)
    for frame in src.decode(stream):
        if frame.time is not None:
            yield frame.time - origin, frame


def key_frames(path: Path, times_s: list[float], width: int = 320) -> list[tuple[float, np.ndarray]]:
    """The frame on screen at each time (seconds after the first frame), scaled to ``width``."""
    try:
        return _key_frames(path, times_s, width)
    except (av.FFmpegError, OSError, IndexError, ValueError) as e:
        raise MediaError(f"{path}: the recorded video cannot be decoded any more ({one_line(e)})") from None


def _key_frames(path: Path, times_s: list[float], width: int) -> list[tuple[float, np.ndarray]]:
    out: list[tuple[float, np.ndarray]] = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        first = None
        for frame in c.decode(stream):  # the first frame's timestamp is our time origin
            first = frame.time or 0.0
            break
        if first is None:
            return out
        for t in sorted(times_s):
            target = first + max(0.0, t)
            c.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in c.decode(stream):
                if frame.time is None or frame.time <= target + 1e-6:
                    chosen = frame
                    continue
                if chosen is None:
                    chosen = frame
                break
            if chosen is not None:
                w, h = (chosen.height, chosen.width) if quarter_turns(chosen) % 2 else (chosen.width, chosen.height)
                out.append((t, displayed_rgb(chosen, width, max(2, round(h * width / w)), "BILINEAR")))
    return out
