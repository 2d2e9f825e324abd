"""Each event's clip and thumbnail: cut from a recorded file, written under the store's media folder.

A clip is the event's span plus ``CONTEXT_S`` either side (at most ``MAX_CLIP_S``, then the minute
around the peak).  An H.264 source is stream-copied into MP4 from the key frame at or before the
clip's start (no re-encoding, so it costs a read, and the clip may start up to one GOP early);
anything else (MPEG-4 Part 2 in an AVI plays in no browser) is re-encoded as H.264.  The thumbnail
is the peak frame as displayed, as a JPEG.  Files are written to a temporary name and renamed, so a
kill never leaves half a clip under its real name; the store rows come after the files, and
``flashback prune`` removes files no row names.  A file that cannot be decoded is a ``MediaError``
with one line saying so.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import FlashbackError, one_line
from .decode import displayed_rgb, upright_size

log = logging.getLogger(__name__)

CONTEXT_S = 2.0  # seconds of video before and after the event
MAX_CLIP_S = 60.0  # a longer event is shown as the minute around its peak
COPYABLE = ("h264",)  # codecs stream-copied into MP4: what every browser plays
CLIP_WIDTH = 640
THUMB_WIDTH = 320


class MediaError(FlashbackError):
    """A recorded video that cannot be decoded any more (replaced, truncated, corrupted)."""


@dataclass(frozen=True)
class Clip:
    data: bytes  # an MP4 (H.264, moov first): plays in any browser
    start_s: float  # where the clip starts and ends, in seconds of the video
    end_s: float
    note: str = ""  # set when the clip is not the whole event


@dataclass(frozen=True)
class EventMedia:
    """What ``event_media`` holds for one event: paths relative to the media folder."""

    start_frame: int  # the event's first frame, as verdicts key it
    clip: str | None
    clip_start_s: float | None
    clip_end_s: float | None
    thumb: str | None
    thumb_s: float | None
    note: str | None = None


def media_dir(store_path: Path) -> Path:
    """The media folder next to a results store: ``results.duckdb`` -> ``results.media``."""
    return Path(store_path).with_suffix(".media")


def media_stem(video_id: str, run_id: str, start_frame: int) -> str:
    """Where one event's files go, relative to the media folder (safe whatever a feed is named)."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', video_id)[:96]}/{run_id}-{start_frame}"


def clip_span(start_s: float, end_s: float, peak_s: float, duration_s: float | None) -> tuple[float, float, str]:
    """The event plus context, at most MAX_CLIP_S long (then centred on the peak), inside the video."""
    a, b = max(0.0, start_s - CONTEXT_S), end_s + CONTEXT_S
    if duration_s:
        b = min(b, duration_s)
    if b - a <= MAX_CLIP_S:
        return a, b, ""
    a = max(0.0, min(peak_s - MAX_CLIP_S / 2, b - MAX_CLIP_S))
    return a, a + MAX_CLIP_S, f"the event lasts {end_s - start_s:.0f} s; this is the minute around its peak"


def event_clip(path: Path, start_s: float, end_s: float, peak_s: float, duration_s: float | None = None) -> Clip:
    """A clip as bytes, cut now (for a store that kept none)."""
    fd, tmp = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        a, b, note = write_clip(Path(path), start_s, end_s, peak_s, duration_s, Path(tmp))
        return Clip(Path(tmp).read_bytes(), a, b, note)
    finally:
        os.unlink(tmp)


def write_clip(path: Path, start_s: float, end_s: float, peak_s: float, duration_s: float | None,
               target: Path) -> tuple[float, float, str]:
    """Cut the event's clip of ``path`` into ``target`` (MP4); returns its real span and a note."""
    a, b, note = clip_span(start_s, end_s, peak_s, duration_s)
    with renamed(target) as tmp, _source(path) as (src, stream, origin):
        if origin is None:
            raise ValueError("no frame")
        if stream.codec_context.name in COPYABLE:
            a = _copy_packets(src, stream, origin, a, b, tmp)
        else:
            _seek(src, stream, origin, a)
            frames = ((f.time - origin, f) for f in src.decode(stream) if f.time is not None)
            encode_frames(_between(frames, a, b), a, tmp)
    return a, b, note


def _between(frames: Iterable[tuple[float, av.VideoFrame]], a: float, b: float) -> Iterator[tuple[float, av.VideoFrame]]:
    for t, frame in frames:
        if t > b:
            return
        if t >= a - 1e-6:
            yield t, frame


def _copy_packets(src, stream, origin: float, a: float, b: float, target: Path) -> float:
    """Stream copy from the key frame at or before ``a`` to ``b``; returns where the clip starts."""
    _seek(src, stream, origin, a)
    tb = stream.time_base
    start = shift = None
    with _mp4(target) as dst:
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None or packet.size == 0:
                continue
            if shift is None:
                if not packet.is_keyframe:
                    continue
                shift, start = packet.dts, float(packet.pts * tb) - origin
            if float(packet.dts * tb) - origin > b:
                break
            packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
            packet.stream = out
            dst.mux(packet)
    if start is None:
        raise ValueError(f"no key frame after {a:.1f} s")
    return max(0.0, start)


def encode_frames(frames: Iterable[tuple[float, av.VideoFrame]], origin_s: float, target: Path,
                  width: int = CLIP_WIDTH) -> int:
    """Re-encode (time, frame) pairs as H.264 MP4, times counted from ``origin_s``; returns frames written."""
    n = 0
    with _mp4(target) as dst:
        out = None
        for t, frame in frames:
            if out is None:
                w, h = upright_size(frame)
                out = dst.add_stream("libx264", options={"preset": "veryfast", "crf": "26"})
                out.width = min(width, w) // 2 * 2
                out.height = max(2, round(h * out.width / w) // 2 * 2)
                out.pix_fmt = "yuv420p"
                out.codec_context.time_base = Fraction(1, 1000)
                last = -1
            pts = max(round((t - origin_s) * 1000), last + 1)
            vf = av.VideoFrame.from_ndarray(displayed_rgb(frame, out.width, out.height, "BILINEAR"), format="rgb24")
            vf.pts, vf.time_base, last = pts, Fraction(1, 1000), pts
            for packet in out.encode(vf):
                dst.mux(packet)
            n += 1
        if out is None:
            raise ValueError("no frame in the clip's span")
        for packet in out.encode():
            dst.mux(packet)
    return n


def key_frames(path: Path, times_s: list[float], width: int = THUMB_WIDTH) -> list[tuple[float, np.ndarray]]:
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
                out.append((t, frame_rgb(chosen, width)))
    return out


def frame_rgb(frame: av.VideoFrame, width: int = THUMB_WIDTH) -> np.ndarray:
    """A frame as displayed, scaled to ``width`` (aspect kept)."""
    w, h = upright_size(frame)
    return displayed_rgb(frame, width, max(2, round(h * width / w)), "BILINEAR")


def save_jpeg(rgb: np.ndarray, target: Path) -> None:
    from PIL import Image

    with renamed(target) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=85)


def write_thumbnail(path: Path, t_s: float, target: Path) -> None:
    """The frame on screen at ``t_s`` seconds of ``path``, as a JPEG at ``target``."""
    frames = key_frames(path, [t_s])
    if not frames:
        raise MediaError(f"{path}: no frame at {t_s:.1f} s for a thumbnail")
    save_jpeg(frames[0][1], target)


def file_event_media(path: Path, video_id: str, run_id: str, events, duration_s: float | None,
                     folder: Path) -> list[EventMedia]:
    """Clip and thumbnail of each event of a scored file; an event whose media fail gets a note."""
    out = []
    for e in events:
        stem = media_stem(video_id, run_id, e.start_frame)
        clip, thumb = f"{stem}.mp4", f"{stem}.jpg"
        try:
            a, b, note = write_clip(path, e.start_s, e.end_s, e.peak_s, duration_s, folder / clip)
            write_thumbnail(path, e.peak_s, folder / thumb)
        except (MediaError, OSError) as err:
            out.append(EventMedia(e.start_frame, None, None, None, None, None, one_line(err)))
            continue
        out.append(EventMedia(e.start_frame, clip, a, b, thumb, e.peak_s, note or None))
    return out


SWEEP_MIN_AGE_S = 600.0  # a newer file may be a clip whose row a running watch is about to write


def sweep(folder: Path, referenced: set[str], delete: bool = True) -> tuple[int, int]:
    """Remove the files under the media folder that no row names (pruned, or left by a kill),
    and folders left empty; returns (files, bytes).  Files younger than ``SWEEP_MIN_AGE_S`` stay.

    It runs beside a watch writing clips and other prunes, so the folder changes under it: a file
    or folder that vanished meanwhile is skipped, a link is removed as a link (never followed,
    dangling or not), and a file it cannot remove is logged and left.  A sweep never raises for
    what it finds: it must not end a prune or a watch."""
    folder = Path(folder)
    files = size = 0
    now = time.time()
    for root, dirs, names in os.walk(folder, topdown=False):  # children before their folders; errors skip a folder
        base = Path(root)
        for name in names + [d for d in dirs if (base / d).is_symlink()]:
            p = base / name
            try:
                st = p.lstat()
            except OSError:
                continue  # gone meanwhile
            if p.relative_to(folder).as_posix() in referenced or now - st.st_mtime < SWEEP_MIN_AGE_S:
                continue
            if delete:
                try:
                    p.unlink()
                except FileNotFoundError:
                    continue
                except OSError as e:
                    log.warning("%s: cannot remove this unreferenced media file (%s); left in place", p, e.strerror or e)
                    continue
            files, size = files + 1, size + st.st_size
        if delete and base != folder:
            with contextlib.suppress(OSError):  # only an empty folder goes; one a watch just wrote into stays
                base.rmdir()
    return files, size


@contextlib.contextmanager
def _mp4(target: Path):
    """An MP4 being written, its index first (so a browser plays it before it has all of it); a
    target that cannot be created is a MediaError about the target, not about the source."""
    try:
        dst = av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"})
    except (av.FFmpegError, OSError) as e:
        raise MediaError(f"{one_line(target)}: cannot write the clip ({one_line(e)})") from None
    try:
        with dst:  # its close writes the index: a full disk can show there too
            yield dst
    except (av.FFmpegError, OSError) as e:
        if getattr(e, "errno", None) in _NO_ROOM:  # the media folder's problem, not the recording's
            raise MediaError(f"{one_line(target)}: cannot write the clip ({os.strerror(e.errno)})") from None
        raise


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


@contextlib.contextmanager
def renamed(target: Path):
    """A temporary path next to ``target``, renamed onto it only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


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
    except (av.FFmpegError, OSError) as e:
        if getattr(e, "errno", None) in _NO_ROOM:  # writing the clip or thumbnail, not reading the source
            raise MediaError(f"{one_line(path)}: its clip cannot be written ({os.strerror(e.errno)})") from None
        raise MediaError(f"{one_line(path)}: the recorded video cannot be decoded any more ({one_line(e)})") from None
    except (IndexError, ValueError) as e:
        raise MediaError(f"{one_line(path)}: the recorded video cannot be decoded any more ({one_line(e)})") from None


def _seek(c, stream, origin: float, t: float) -> None:
    """To the key frame at or before ``t`` seconds after the first frame."""
    c.seek(int((origin + max(0.0, t)) / stream.time_base), stream=stream, backward=True, any_frame=False)
