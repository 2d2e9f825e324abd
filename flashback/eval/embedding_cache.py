"""Grid frame embeddings on disk, so evaluation re-runs and sweeps never decode or encode twice.

One ``.npz`` (float32 vectors, float64 frame times; loaded with allow_pickle=False) plus one JSON
of facts about the decode, per (encoder identity, frame fit, video content hash, grid step).  With
the ``tiles`` frame fit each grid frame is (tiles, D).  A sweep over
frames per segment re-uses a finer grid: a grid r times coarser takes every r-th cached frame
(within half a fine step of its own sample time).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, atomic_write_text
from ..video.timegrid import TimeGrid


@dataclass
class GridEmbeddings:
    vectors: np.ndarray  # (n_samples, D)
    frame_times: np.ndarray
    duration_s: float
    step_s: float
    meta: dict  # source, width, height, codec, truncated, note

    def coarsened(self, grid: TimeGrid) -> "GridEmbeddings | None":
        """The same video on a grid whose step is a whole multiple of this one, or None."""
        r = grid.step_s / self.step_s
        if abs(r - round(r)) > 1e-6 or round(r) < 1:
            return None
        r = int(round(r))
        if r == 1:
            return self
        n = grid.n_samples(self.duration_s)
        picked = self.vectors[r // 2 :: r][:n]
        if len(picked) < n:  # the coarse grid's last sample lies past the fine grid's last one
            picked = np.concatenate([picked, np.repeat(self.vectors[-1:], n - len(picked), axis=0)])
        return GridEmbeddings(picked, self.frame_times, self.duration_s, grid.step_s, self.meta)


class EmbeddingCache:
    def __init__(self, root: Path, encoder_key: str, frame_fit: str):
        self.root = Path(root) / hashlib.sha256(f"{encoder_key}|{frame_fit}".encode()).hexdigest()[:16]
        self.encoder_key = encoder_key
        self.frame_fit = frame_fit

    def _base(self, video_id: str, step_s: float) -> Path:
        return self.root / f"{video_id}-step{step_s:.6f}"

    def load(self, video_id: str, grid: TimeGrid) -> GridEmbeddings | None:
        """Exact grid if cached; else the finest cached grid that coarsens to it; else None."""
        if not self.root.is_dir():
            return None
        candidates = sorted(self.root.glob(f"{video_id}-step*.json"))
        found = []
        for meta_path in candidates:
            try:
                meta = json.loads(meta_path.read_text())
                with np.load(meta_path.with_suffix(".npz"), allow_pickle=False) as z:
                    emb = GridEmbeddings(z["vectors"], z["frame_times"], meta["duration_s"], meta["step_s"], meta)
            except (OSError, ValueError, KeyError):
                continue  # a damaged entry is a miss, and gets rewritten
            found.append(emb)
        for emb in sorted(found, key=lambda e: -e.step_s):  # the exact or coarsest usable first
            derived = emb.coarsened(grid)
            if derived is not None:
                return derived
        return None

    def save(self, video_id: str, emb: GridEmbeddings) -> None:
        base = self._base(video_id, emb.step_s)

        def arrays(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare path
                np.savez(f, vectors=emb.vectors.astype(np.float32), frame_times=np.asarray(emb.frame_times, np.float64))

        atomic_write(base.with_suffix(".npz"), arrays)
        meta = {**emb.meta, "duration_s": emb.duration_s, "step_s": emb.step_s, "encoder": self.encoder_key,
                "frame_fit": self.frame_fit}
        atomic_write_text(base.with_suffix(".json"), json.dumps(meta))  # written last: its presence means complete
