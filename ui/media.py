"""Key frames around an event's peak, decoded on demand with PyAV (paths come from the store only)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def key_frames(path: Path, times_s: list[float], width: int = 320) -> list[tuple[float, np.ndarray]]:
    """The frame on screen at each time (seconds after the first frame), scaled to ``width``."""
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
                h = max(2, round(chosen.height * width / chosen.width))
                out.append((t, chosen.reformat(width=width, height=h, format="rgb24").to_ndarray()))
    return out
