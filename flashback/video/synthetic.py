"""Real video files made with PyAV, for the tests and the benchmarks: codecs, sizes, frame rates, VFR,
and broken ones (truncated, zero-frame, audio-only)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_image(i: int, width: int, height: int, scene: int = 0) -> np.ndarray:
    """A moving square on a background whose colour depends on the scene."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = ((37 * scene) % 256, (90 + 53 * scene) % 256, (160 + 71 * scene) % 256)
    s = max(4, min(width, height) // 4)
    x = (i * 3) % max(1, width - s)
    y = (i * 2) % max(1, height - s)
    img[y : y + s, x : x + s] = (255 - 30 * scene % 256, 255, 0)
    return img


def make_video(
    path: Path,
    n_frames: int = 60,
    fps: int = 30,
    size: tuple[int, int] = (96, 64),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    times: list[float] | None = None,
    scene_of=lambda i: 0,
    draw=None,
    options: dict | None = None,
    container: str | None = None,
    key_frames: set[int] = frozenset(),
) -> Path:
    """Encode frames; ``times`` (seconds) gives variable frame rate timestamps.  ``draw(i)`` gives
    frame i (default: ``frame_image`` in scene ``scene_of(i)``), ``options`` the encoder's, and
    ``container`` the format where the file name does not say it; ``key_frames`` are frames forced
    to be key frames (besides the encoder's own)."""
    path = Path(path)
    draw = draw or (lambda i: frame_image(i, *size, scene=scene_of(i)))
    with av.open(str(path), mode="w", format=container) as c:
        stream = c.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(draw(i), format="rgb24")
            if i in key_frames:
                frame.pict_type = av.video.frame.PictureType.I
            if times is not None:
                frame.pts = int(round(times[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), mode="w") as c:
        stream = c.add_stream("mp2", rate=44100)
        stream.layout = "mono"
        n = 1152
        samples = int(seconds * 44100)
        for start in range(0, samples, n):
            t = np.arange(start, start + n) / 44100
            data = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
            frame.sample_rate = 44100
            frame.pts = start
            for p in stream.encode(frame):
                c.mux(p)
        for p in stream.encode():
            c.mux(p)
    return path


def make_zero_frame(path: Path) -> Path:
    """An AVI whose header declares a 64x48 video stream, with no frame in it (MP4/MKV drop it)."""
    assert str(path).endswith(".avi")
    c = av.open(str(path), mode="w")
    s = c.add_stream("mpeg4", rate=25)
    s.width, s.height = 64, 48
    s.pix_fmt = "yuv420p"
    c.start_encoding()
    c.close()
    return path


def truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return dst
