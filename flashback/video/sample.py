"""The sample clip behind ``flashback score --sample``: a first run needs no video of one's own.

It is drawn here, frame by frame, and encoded with PyAV (no file is shipped or downloaded, and the
project may redistribute it freely): a street at dusk, people walking past, and from 9 s a parked
car that catches fire, with smoke rising.  It exercises every stage (decode, encoder, memory,
events, store, review app); a drawing is not camera footage, so judge accuracy on real video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .synthetic import make_video

WIDTH, HEIGHT, FPS, SECONDS, FIRE_FROM_S = 640, 360, 15, 16, 9.0
NAME = "flashback-sample-v1.mp4"  # bump the version when the drawing changes


def sample_video(folder: Path) -> Path:
    """The sample clip in ``folder``, made once (about a second) and reused."""
    path = Path(folder) / NAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, _encode)
    return path


def _encode(target: str) -> None:
    make_video(target, n_frames=FPS * SECONDS, fps=FPS, size=(WIDTH, HEIGHT), draw=draw,
               options={"crf": "26", "preset": "medium"}, container="mp4")


def _scenery() -> np.ndarray:
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    img = (np.array([40, 50, 90]) * (1 - y) + np.array([150, 110, 90]) * y) * np.ones((1, WIDTH, 1))  # dusk sky
    img[150:, :] = (70, 70, 75)  # buildings
    for k, x in enumerate(range(0, WIDTH, 90)):
        img[90 + 13 * (k % 3) : 250, x + 5 : x + 80] = (95 + 9 * (k % 4), 85, 80)
        for wy in range(110 + 13 * (k % 3), 230, 25):  # lit windows
            img[wy : wy + 10, x + 15 : x + 30] = (230, 200, 120)
            img[wy : wy + 10, x + 50 : x + 65] = (230, 200, 120)
    img[250:, :] = (60, 60, 62)  # road
    img[298:302, ::40] = (200, 200, 190)
    img[290:330, 380:500] = (40, 70, 140)  # the parked car
    img[275:292, 400:480] = (30, 50, 100)
    return img


_SCENERY = _scenery()


def draw(i: int) -> np.ndarray:
    """Frame ``i``: deterministic, so the clip is the same on every machine."""
    t = i / FPS
    img = _SCENERY.copy()
    for k, (speed, y, start) in enumerate(((38, 255, -40), (-30, 262, 700), (25, 258, 120))):  # people walking
        x = int((start + speed * t) % (WIDTH + 80)) - 40
        lo, hi = max(0, x), min(WIDTH, x + 14)
        if lo < hi:
            img[y : y + 36, lo:hi] = (25 + 20 * k, 25, 35)
            img[y - 10 : y, max(0, lo + 2) : max(0, hi - 2)] = (190, 150, 120)
    if t >= FIRE_FROM_S:
        rng = np.random.default_rng(i)
        grown = min(1.0, (t - FIRE_FROM_S) / 3)
        cols = np.arange(360, 520)
        # flame tongues: a ragged crest, highest over the car's middle, flickering per frame
        crest = 300 - grown * (40 + 50 * np.sin(np.pi * (cols - 360) / 160) + rng.uniform(-15, 15, cols.size))
        rows = np.arange(130, 330)[:, None]
        flame = rows >= crest[None, :]
        heat = np.clip((rows - crest[None, :]) / 60, 0, 1)[..., None]  # yellow core low, red tips high
        colour = heat * np.array([255, 220, 80]) + (1 - heat) * np.array([230, 70, 20])
        colour = colour * rng.uniform(0.8, 1.0, (rows.size, cols.size, 1))
        smoke = (rows < crest[None, :]) & (rows >= crest[None, :] - 170 * grown)
        region = img[130:330, 360:520]
        region[smoke] = 0.35 * region[smoke] + 0.65 * rng.uniform(70, 110, (int(smoke.sum()), 1))
        region[flame] = colour[flame]
    return np.clip(img, 0, 255).astype(np.uint8)
