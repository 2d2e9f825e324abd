"""Key frames around an event's peak, decoded on demand with PyAV (paths come from the store only).

Frames are shown as a viewer sees them (the stream's rotation applied, as scoring does).  A file
that can no longer be decoded is a ``MediaError`` with one line saying so; the page shows it and
carries on.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from flashback.decode import displayed_rgb, quarter_turns
from flashback.errors import FlashbackError, one_line


class MediaError(FlashbackError):
    """A recorded video that cannot be decoded any more (replaced, truncated, corrupted)."""


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
