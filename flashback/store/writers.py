"""Every write to the results store, one function per table (and the only place any table is written).

Scored files (``db.ResultStore.save``), live feeds (``live/sinks.py``) and the review app
(``ui/data.py``) all call these, inside one of ``ResultStore.transaction()``'s transactions, so a
row means the same whoever wrote it.  Columns are always named.

What "frame" means is said per scoring, in ``scorings.frame_unit``: ``frame`` is a decoded frame
index (files, caption tracks), ``segment`` a segment number (live feeds, whose ``frame_scores``
hold one row per segment at its end time).  Events use the same unit in their frame columns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from ..memory.bundle import CaptionTable
from ..scoring.events import Event
from ..scoring.scoring import Segments
from ..video.media import EventMedia

if TYPE_CHECKING:
    from ..scoring.pipeline import Detector

FRAME_UNITS = ("frame", "segment")
VERDICTS = ("confirmed", "false_alarm", "unsure")


@dataclass(frozen=True)
class RunRecord:
    """One scoring configuration: settings, memory and encoder.  Its id keys every per-video row."""

    settings: dict
    memory_id: str
    memory_path: str
    encoder_id: str
    flashback_version: str
    extras: tuple = ()  # the --alert/--ignore texts searched beside the memory (``UserText.to_dict``)
    region: str | None = None  # what of each frame was seen (``Region.describe``), None: all of it
    camera: str | None = None  # the camera file's table the input matched, None: none
    runtime: str | None = None  # where the encoder ran (``ClipEncoder.runtime``): recorded, not in the id

    @property
    def run_id(self) -> str:
        """Settings, memory, encoder, texts, region and camera table: what changes a result changes
        its id, so results under two of them are kept side by side.  Region and camera enter only
        when set, so the ids of results stored before them (and of runs without them) stay."""
        parts = [self.settings, self.memory_id, self.encoder_id] + ([list(self.extras)] if self.extras else [])
        if self.region is not None or self.camera is not None:
            parts.append({"region": self.region, "camera": self.camera})
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def for_input(self, region: str | None, camera: str | None, scope=frozenset()) -> "RunRecord":
        """The run one input is stored under: its region, its camera table, and only the texts that
        apply to it (unscoped, or scoped to one of its cameras ``scope``)."""
        texts = tuple(t for t in self.extras if t.get("camera") is None or t.get("camera") in scope)
        if (region, camera, texts) == (self.region, self.camera, self.extras):
            return self
        return dataclasses.replace(self, extras=texts, region=region, camera=camera)

    @classmethod
    def of(cls, detector: Detector) -> "RunRecord":
        """The run a detector's results are stored under: its resolved settings, memory, encoder and texts."""
        from .. import __version__

        m = detector.memory
        return cls(detector.settings.to_dict(), m.memory_id, str(m.path), detector.encoder.identity.key, __version__,
                   tuple(detector.extras.to_list()), runtime=getattr(detector.encoder, "runtime", None))

    def to_dict(self) -> dict:
        """The run as exports describe it."""
        return {"run_id": self.run_id, "settings": self.settings, "memory_id": self.memory_id,
                "memory_path": self.memory_path, "encoder": self.encoder_id, "flashback_version": self.flashback_version,
                **({"texts": list(self.extras)} if self.extras else {}),
                **({"region": self.region} if self.region else {}), **({"camera": self.camera} if self.camera else {}),
                **({"encoder_runtime": self.runtime} if self.runtime else {})}


def _insert(con: duckdb.DuckDBPyConnection, table: str, row: dict, conflict: str = "") -> None:
    cols = ", ".join(row)
    con.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(row))}) {conflict}", list(row.values()))


def _insert_columns(con: duckdb.DuckDBPyConnection, table: str, columns: dict) -> None:
    """Bulk rows from a dict of equal-length numpy columns (DuckDB scans it by its name)."""
    frame = columns  # noqa: F841 - read by DuckDB's replacement scan
    cols = ", ".join(columns)
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM frame")


# ------------------------------------------------------------------ runs, videos, scorings


def write_run(con, run: RunRecord) -> None:
    _insert(con, "runs", {"run_id": run.run_id, "settings": json.dumps(run.settings, sort_keys=True),
                          "memory_id": run.memory_id, "memory_path": run.memory_path, "encoder_id": run.encoder_id,
                          "flashback_version": run.flashback_version, "created_at": _now(),
                          "extras": json.dumps(list(run.extras)) if run.extras else None,
                          "region": run.region, "camera": run.camera},
            "ON CONFLICT (run_id) DO NOTHING")


def write_video(con, video_id: str, path: str, fps: float | None, duration_s: float, n_frames: int,
                width: int | None = None, height: int | None = None, codec: str | None = None,
                started_at: datetime | None = None, started_from: str | None = None) -> None:
    """Insert or refresh a video; content-addressed, so the same bytes at two paths are one row.
    ``started_at``: its first frame's local wall time, ``started_from`` what says so (schema 8)."""
    _insert(con, "videos", {"video_id": video_id, "path": path, "fps": fps, "duration_s": duration_s,
                            "n_frames": n_frames, "width": width, "height": height, "codec": codec, "updated_at": _now(),
                            "started_at": started_at, "started_from": started_from},
            """ON CONFLICT (video_id) DO UPDATE SET path = excluded.path, fps = excluded.fps,
               duration_s = excluded.duration_s, n_frames = excluded.n_frames, width = excluded.width,
               height = excluded.height, codec = excluded.codec, updated_at = excluded.updated_at,
               started_at = excluded.started_at, started_from = excluded.started_from""")


PER_VIDEO_TABLES = ("scorings", "frame_scores", "segments", "segment_captions", "segment_vectors", "events", "event_media")


def replace_scoring(con, run_id: str, video_id: str, path: str, frame_unit: str, n_samples: int, n_segments: int,
                    n_events: int, max_score: float | None, truncated: bool = False, note: str | None = None,
                    region: str | None = None, runtime: str | None = None) -> None:
    """Start a (run, video) afresh: every per-video row goes, then its scoring row is written.
    Reviews are never deleted: they re-attach to the same events (``write_review``)."""
    assert frame_unit in FRAME_UNITS
    for table in PER_VIDEO_TABLES:
        con.execute(f"DELETE FROM {table} WHERE run_id = ? AND video_id = ?", [run_id, video_id])
    _insert(con, "scorings", {"run_id": run_id, "video_id": video_id, "path": path, "scored_at": _now(),
                              "truncated": truncated, "note": note, "n_samples": n_samples, "n_segments": n_segments,
                              "n_events": n_events, "max_score": max_score, "frame_unit": frame_unit, "region": region,
                              "encoder_runtime": runtime})


def add_live_progress(con, run_id: str, video_id: str, segments: Segments, frames_per_s: float | None) -> None:
    """A live feed's scoring and video rows follow its newly stored segments."""
    con.execute("""UPDATE scorings SET n_segments = n_segments + ?, max_score = greatest(coalesce(max_score, 0), ?),
                   scored_at = now() WHERE run_id = ? AND video_id = ?""",
                [len(segments), float(np.max(segments.smoothed)), run_id, video_id])
    con.execute("UPDATE videos SET duration_s = ?, n_frames = ?, fps = coalesce(?, fps), updated_at = now() WHERE video_id = ?",
                [float(segments.spans[:, 1].max()), int(segments.index.max()) + 1, frames_per_s, video_id])


def set_live_counts(con, run_id: str, video_id: str, samples_encoded: int) -> None:
    con.execute("UPDATE scorings SET n_samples = ? WHERE run_id = ? AND video_id = ?", [samples_encoded, run_id, video_id])


# ------------------------------------------------------------------ scores, segments, events


def insert_frame_scores(con, run_id: str, video_ids: np.ndarray, frames, times, raw, scores) -> None:
    n = len(video_ids)
    _insert_columns(con, "frame_scores", {
        "run_id": np.full(n, run_id, dtype=object), "video_id": np.asarray(video_ids, dtype=object),
        "frame": np.asarray(frames, np.int32), "time_s": np.asarray(times, np.float64),
        "raw_score": np.asarray(raw, np.float64), "score": np.asarray(scores, np.float64)})


def insert_segments(con, run_id: str, video_ids: np.ndarray, segments: Segments, captions: CaptionTable) -> None:
    """Rows of ``segments`` and ``segment_captions`` for segments of one or more videos or feeds."""
    vids = np.asarray(video_ids, dtype=object)
    n = len(segments)
    anom_w = segments.anomalous_weight
    index = np.asarray(segments.index, np.int32)
    _insert_columns(con, "segments", {
        "run_id": np.full(n, run_id, dtype=object), "video_id": vids, "segment": index,
        "start_s": segments.spans[:, 0].astype(np.float64), "end_s": segments.spans[:, 1].astype(np.float64),
        "score": np.asarray(segments.scores, np.float64),
        "dominant_category": np.array(segments.dominant_categories(captions), dtype=object),
        "anomalous_weight": anom_w, "normal_weight": 1.0 - anom_w})
    seg_i, rank = np.nonzero(segments.ids >= 0)
    cid = segments.ids[seg_i, rank]
    if not len(cid):
        return
    _insert_columns(con, "segment_captions", {
        "run_id": np.full(len(cid), run_id, dtype=object), "video_id": vids[seg_i], "segment": index[seg_i],
        "rank": rank.astype(np.int32), "caption_id": cid.astype(np.int64),
        "text": np.array([captions.texts[c] for c in cid], dtype=object),
        "label": np.where(segments.anomalous[seg_i, rank], "anomalous", "normal").astype(object),
        "category": np.array([captions.categories[c] for c in cid], dtype=object),
        "similarity": segments.sims[seg_i, rank].astype(np.float64),
        "weight": segments.weights[seg_i, rank].astype(np.float64)})


def insert_segment_vectors(con, run_id: str, video_ids: np.ndarray, segments: Segments) -> None:
    """Each segment's vector (float16 bytes), for text search; nothing when the segments carry none."""
    if segments.vectors is None or not len(segments):
        return
    n = len(segments)
    _insert_columns(con, "segment_vectors", {
        "run_id": np.full(n, run_id, dtype=object), "video_id": np.asarray(video_ids, dtype=object),
        "segment": np.asarray(segments.index, np.int32), "start_s": segments.spans[:, 0].astype(np.float64),
        "end_s": segments.spans[:, 1].astype(np.float64),
        "vector": np.array([v.tobytes() for v in segments.vectors.astype(np.float16)], dtype=object)})


def write_event(con, run_id: str, video_id: str, e: Event) -> None:
    """Insert an event, replacing an earlier row of the same event (a live event that closes)."""
    con.execute("DELETE FROM events WHERE run_id = ? AND video_id = ? AND event = ?", [run_id, video_id, e.index])
    ex = e.explanation
    _insert(con, "events", {
        "run_id": run_id, "video_id": video_id, "event": e.index, "start_s": e.start_s, "end_s": e.end_s,
        "start_frame": e.start_frame, "end_frame": e.end_frame, "peak_score": e.peak_score, "peak_frame": e.peak_frame,
        "peak_s": e.peak_s, "category": ex.dominant_category, "anomalous_weight": ex.anomalous_weight,
        "normal_weight": ex.normal_weight, "captions": json.dumps([c.to_dict() for c in ex.captions])})
    con.execute("""UPDATE scorings SET n_events = (SELECT count(*) FROM events WHERE run_id = ? AND video_id = ?)
                   WHERE run_id = ? AND video_id = ?""", [run_id, video_id, run_id, video_id])


def write_event_media(con, run_id: str, video_id: str, m: EventMedia) -> None:
    """An event's clip and thumbnail (files already in place under the media folder); replaces an
    earlier row of the same event."""
    con.execute("DELETE FROM event_media WHERE run_id = ? AND video_id = ? AND start_frame = ?",
                [run_id, video_id, m.start_frame])
    _insert(con, "event_media", {"run_id": run_id, "video_id": video_id, "start_frame": m.start_frame,
                                 "clip_path": m.clip, "clip_start_s": m.clip_start_s, "clip_end_s": m.clip_end_s,
                                 "thumb_path": m.thumb, "thumb_s": m.thumb_s, "note": m.note, "created_at": _now()})


# ------------------------------------------------------------------ live feeds


def write_feed(con, video_id: str, feed: str, location: str, started_at) -> None:
    _insert(con, "live_feeds", {"video_id": video_id, "feed": feed, "location": location, "started_at": started_at,
                                "updated_at": _now(), "active": True, "segments_scored": 0, "segments_lost": 0,
                                "frames_decoded": 0, "samples_dropped": 0, "reconnects": 0},
            "ON CONFLICT (video_id) DO NOTHING")


def update_feed_stats(con, video_id: str, stats: dict, active: bool) -> None:
    keys = ("segments_scored", "segments_lost", "frames_decoded", "samples_dropped", "reconnects",
            "latency_p50_s", "latency_p95_s", "latency_max_s")
    con.execute(f"UPDATE live_feeds SET updated_at = now(), active = ?, {', '.join(f'{k} = ?' for k in keys)} "
                "WHERE video_id = ?", [active, *(stats[k] for k in keys), video_id])
    if "keeping_up" in stats:  # the last window's health (live/health.py), schema 9
        health = ("window_drop_share", "window_latency_p95_s", "latency_budget_s", "keeping_up")
        con.execute(f"UPDATE live_feeds SET {', '.join(f'{k} = ?' for k in health)} WHERE video_id = ?",
                    [*(stats.get(k) for k in health), video_id])


def write_outage(con, video_id: str, feed: str, start_s: float, end_s: float | None, reason: str, attempts: int) -> None:
    """An outage is written when it starts (no end) and written again, by its start, when it ends."""
    con.execute("DELETE FROM outages WHERE video_id = ? AND feed = ? AND start_s = ?", [video_id, feed, start_s])
    _insert(con, "outages", {"video_id": video_id, "feed": feed, "start_s": start_s, "end_s": end_s,
                             "reason": reason, "attempts": attempts})


# ------------------------------------------------------------------ retention


def prune_before(con, cutoff: datetime, keep_reviewed: bool = False, drop_reviewed: bool = False) -> dict[str, int]:
    """Delete what is older than ``cutoff`` (local time), inside the caller's transaction; returns
    rows deleted per table.

    A file's rows are as old as its scoring; a live feed's rows each as old as their moment on the
    feed (its start plus their time).  Old frame scores, segments, their captions, outages and
    unreviewed events go, with their media rows; an event with a verdict stays, with its verdict
    and media, unless ``drop_reviewed``; with ``keep_reviewed`` a file with such an event keeps
    everything.  A scoring left with nothing goes, then a video no scoring names (a live feed only
    once it has stopped).  The media files are the caller's (``media.sweep``, after the commit).
    """
    n: dict[str, int] = {}

    def delete(table: str, where: str, args=()) -> None:
        n[table] = n.get(table, 0) + con.execute(f"DELETE FROM {table} t WHERE {where}", list(args)).fetchone()[0]

    same = "o.run_id = t.run_id AND o.video_id = t.video_id"
    reviewed = "EXISTS (SELECT 1 FROM reviews r WHERE r.run_id = t.run_id AND r.video_id = t.video_id AND r.start_frame = t.start_frame)"
    unreviewed = "AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.run_id = s.run_id AND r.video_id = s.video_id)"
    con.execute("CREATE OR REPLACE TEMP TABLE prune_old AS SELECT run_id, video_id FROM scorings s "
                f"WHERE frame_unit = 'frame' AND scored_at < ? {unreviewed if keep_reviewed else ''}", [cutoff])
    con.execute("""CREATE OR REPLACE TEMP TABLE prune_live AS SELECT video_id, f.active,
                   date_diff('millisecond', f.started_at, ?::TIMESTAMP) / 1000.0 AS limit_s FROM live_feeds f""", [cutoff])
    old = f"EXISTS (SELECT 1 FROM prune_old o WHERE {same})"
    live = "EXISTS (SELECT 1 FROM prune_live l WHERE l.video_id = t.video_id AND {} < l.limit_s)"
    for table, column in (("frame_scores", "time_s"), ("segments", "end_s"), ("segment_vectors", "end_s"), ("events", "end_s")):
        keep = "" if table != "events" or drop_reviewed else f" AND NOT {reviewed}"
        delete(table, f"({old} OR {live.format('t.' + column)}){keep}")
    delete("segment_captions", "NOT EXISTS (SELECT 1 FROM segments g WHERE g.run_id = t.run_id AND g.video_id = t.video_id "
                               "AND g.segment = t.segment)")
    delete("outages", live.format("coalesce(t.end_s, t.start_s)"))
    delete("event_media", "NOT EXISTS (SELECT 1 FROM events e WHERE e.run_id = t.run_id AND e.video_id = t.video_id "
                          "AND e.start_frame = t.start_frame)")
    pruned = f"({old} OR EXISTS (SELECT 1 FROM prune_live l WHERE l.video_id = t.video_id AND l.limit_s > 0))"
    if drop_reviewed:  # the verdicts of events pruned just now (not those a re-scoring left behind elsewhere)
        delete("reviews", "NOT EXISTS (SELECT 1 FROM events e WHERE e.run_id = t.run_id AND e.video_id = t.video_id "
                          f"AND e.start_frame = t.start_frame) AND {pruned}")
    empty = "NOT EXISTS (SELECT 1 FROM {} x WHERE x.run_id = t.run_id AND x.video_id = t.video_id)"
    stopped = "NOT EXISTS (SELECT 1 FROM prune_live l WHERE l.video_id = t.video_id AND l.active)"
    delete("scorings", " AND ".join([pruned, empty.format("events"), empty.format("frame_scores"), stopped]))
    delete("live_feeds", "NOT t.active AND NOT EXISTS (SELECT 1 FROM scorings s WHERE s.video_id = t.video_id)")
    delete("videos", "NOT EXISTS (SELECT 1 FROM scorings s WHERE s.video_id = t.video_id)")
    con.execute("DROP TABLE prune_old")
    con.execute("DROP TABLE prune_live")
    return n


# ------------------------------------------------------------------ reviews


def write_review(con, run_id: str, video_id: str, start_frame: int, end_frame: int, verdict: str,
                 reviewer: str, note: str | None) -> None:
    """A verdict is a new row (history is kept).  It belongs to the event of this run and video that
    starts at ``start_frame``: a live event keeps its start when it closes, and re-scoring a file with
    the same settings reproduces its events, so the verdict stays attached either way."""
    assert verdict in VERDICTS
    _insert(con, "reviews", {"run_id": run_id, "video_id": video_id, "start_frame": start_frame,
                             "end_frame": end_frame, "verdict": verdict, "note": note, "reviewer": reviewer,
                             "created_at": _now()})


def _now() -> datetime:
    return datetime.now()  # local wall time, as DuckDB's now() gives a TIMESTAMP column
