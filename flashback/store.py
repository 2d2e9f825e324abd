"""The DuckDB results store: one file, one transaction per scored video.

The connection is opened per write and closed straight after, so a reviewer's app (or another
scorer) can get at the file between videos; while another process holds the write lock we wait a
little, then fail with a line that names the file.  The schema is the numbered SQL files in
store_schema/, applied in order and recorded in ``schema_version``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np

from .errors import StoreError
from .pipeline import VideoResult
from .sources import is_url

PER_VIDEO_TABLES = ("scorings", "frame_scores", "segments", "segment_captions", "events")


def migrations() -> list[tuple[int, str]]:
    files = sorted(
        (f for f in resources.files("flashback.store_schema").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    return [(int(f.name.split("_", 1)[0]), f.read_text()) for f in files]


SCHEMA_VERSION = max(v for v, _ in migrations())


@dataclass(frozen=True)
class RunRecord:
    settings: dict
    memory_id: str
    memory_path: str
    encoder_id: str
    flashback_version: str

    @property
    def run_id(self) -> str:
        payload = json.dumps([self.settings, self.memory_id, self.encoder_id], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ResultStore:
    def __init__(self, path: Path, lock_wait_s: float = 10.0):
        self.path = Path(path)
        self.lock_wait_s = lock_wait_s

    @contextlib.contextmanager
    def connect(self, read_only: bool = False):
        con = self._open(read_only)
        try:
            yield con
        finally:
            con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no such results database")
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, expected a DuckDB database file")
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as e:
                msg = str(e)
                if "lock" in msg.lower():
                    if time.monotonic() < deadline:
                        time.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    holder = msg.split("(PID", 1)[1].split(")")[0].strip() if "(PID" in msg else "?"
                    raise StoreError(
                        f"{self.path}: locked by another process (PID {holder}); "
                        "wait for it to finish or pass another --db"
                    ) from None
                raise StoreError(f"{self.path}: cannot open results database ({msg.splitlines()[0]})") from None
            except duckdb.Error as e:
                raise StoreError(f"{self.path}: not a usable DuckDB database ({str(e).splitlines()[0]})") from None

    def initialize(self) -> None:
        """Create or migrate the schema; called once before scoring so a bad --db fails early."""
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"{self.path}: folder {self.path.parent} does not exist")
        with self.connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
            current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {current} is newer than this flashback ({SCHEMA_VERSION})")
            for version, sql in migrations():
                if version <= current:
                    continue
                con.execute("BEGIN TRANSACTION")
                try:
                    con.execute(sql)
                    con.execute("INSERT INTO schema_version VALUES (?, now())", [version])
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise

    def frame_scores(self, run_id: str, video_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(times, smoothed scores) stored for this run and video, or None if it was never scored."""
        if not self.path.exists():
            return None
        with self.connect() as con:
            if not con.execute("SELECT 1 FROM scorings WHERE run_id = ? AND video_id = ?", [run_id, video_id]).fetchone():
                return None
            d = con.execute(
                "SELECT time_s, score FROM frame_scores WHERE run_id = ? AND video_id = ? ORDER BY frame",
                [run_id, video_id],
            ).fetchnumpy()
        return np.asarray(d["time_s"]), np.asarray(d["score"])

    def save(self, run: RunRecord, result: VideoResult) -> None:
        """Replace everything stored for (run, video) with this result, atomically."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                self._write(con, run, result)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    @staticmethod
    def _write(con: duckdb.DuckDBPyConnection, run: RunRecord, r: VideoResult) -> None:
        rid, vid = run.run_id, r.video_id
        # absolute, so the review app finds the file whatever folder it is started from
        path = r.source if is_url(r.source) else str(Path(r.source).resolve())
        con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, now()) ON CONFLICT (run_id) DO NOTHING",
            [rid, json.dumps(run.settings, sort_keys=True), run.memory_id, run.memory_path,
             run.encoder_id, run.flashback_version],
        )
        info = r.info
        con.execute(
            """INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, now())
               ON CONFLICT (video_id) DO UPDATE SET path = excluded.path, fps = excluded.fps,
               duration_s = excluded.duration_s, n_frames = excluded.n_frames, width = excluded.width,
               height = excluded.height, codec = excluded.codec, updated_at = excluded.updated_at""",
            [vid, path, r.fps, r.duration_s, len(r.frame_times),
             info.width if info else None, info.height if info else None, info.codec if info else None],
        )
        for table in PER_VIDEO_TABLES:
            con.execute(f"DELETE FROM {table} WHERE run_id = ? AND video_id = ?", [rid, vid])
        con.execute(
            "INSERT INTO scorings VALUES (?, ?, ?, now(), ?, ?, ?, ?, ?, ?)",
            [rid, vid, path, r.truncated, r.note or None, r.n_samples, len(r.segments.scores),
             len(r.events), float(np.max(r.scores)) if len(r.scores) else None],
        )
        seg = r.segments
        S = len(seg.scores)
        insert_segment_rows(
            con, rid, np.full(S, vid, dtype=object), np.arange(S, dtype=np.int32), seg.spans, seg.scores,
            seg.dominant_categories, seg.ids, seg.sims, seg.weights, seg.anomalous, r.captions,
        )
        n = len(r.frame_times)
        insert_frame_scores(con, rid, np.full(n, vid, dtype=object), np.arange(n, dtype=np.int32),
                            r.frame_times, r.raw_scores, r.scores)
        for e in r.events:
            con.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [rid, vid, e.index, e.start_s, e.end_s, e.start_frame, e.end_frame, e.peak_score,
                 e.peak_frame, e.peak_s, e.category, e.explanation.anomalous_weight,
                 e.explanation.normal_weight, json.dumps([c.to_dict() for c in e.explanation.captions])],
            )



def insert_frame_scores(con, rid: str, vids: np.ndarray, frames: np.ndarray, times, raw, scores) -> None:
    """Bulk rows of ``frame_scores`` (DuckDB scans the dict of columns by its name)."""
    rows = {"run_id": np.full(len(vids), rid, dtype=object), "video_id": vids,  # noqa: F841
            "frame": np.asarray(frames, np.int32), "time_s": np.asarray(times, np.float64),
            "raw_score": np.asarray(raw, np.float64), "score": np.asarray(scores, np.float64)}
    con.execute("INSERT INTO frame_scores SELECT * FROM rows")


def insert_segment_rows(con, rid: str, vids: np.ndarray, segments: np.ndarray, spans: np.ndarray, scores,
                        dominant: list, ids: np.ndarray, sims: np.ndarray, weights: np.ndarray,
                        anomalous: np.ndarray, captions) -> None:
    """Bulk rows of ``segments`` and ``segment_captions`` for segments of one or more videos.

    One writer for scored files and live feeds, so both tables mean the same whatever filled them.
    """
    S = len(vids)
    anom_w = (weights * anomalous).sum(axis=1)
    segs = {"run_id": np.full(S, rid, dtype=object), "video_id": vids, "segment": segments,  # noqa: F841
            "start_s": spans[:, 0], "end_s": spans[:, 1], "score": np.asarray(scores, np.float64),
            "dominant_category": np.array(dominant, dtype=object),
            "anomalous_weight": anom_w, "normal_weight": 1.0 - anom_w}
    con.execute("INSERT INTO segments SELECT * FROM segs")
    seg_i, rank = np.nonzero(ids >= 0)
    cid = ids[seg_i, rank]
    if not len(cid):
        return
    hits = {"run_id": np.full(len(cid), rid, dtype=object), "video_id": vids[seg_i],  # noqa: F841
            "segment": segments[seg_i].astype(np.int32), "rank": rank.astype(np.int32), "caption_id": cid.astype(np.int64),
            "text": np.array([captions.texts[c] for c in cid], dtype=object),
            "label": np.where(anomalous[seg_i, rank], "anomalous", "normal").astype(object),
            "category": np.array([captions.categories[c] for c in cid], dtype=object),
            "similarity": sims[seg_i, rank].astype(np.float64), "weight": weights[seg_i, rank].astype(np.float64)}
    con.execute("INSERT INTO segment_captions SELECT * FROM hits")
