"""Every query and verdict write of the review app and the HTTP API, against the DuckDB results store.

Connections are opened per call and closed at once (read-only for reads), the way the scorer opens
the file per video: a scoring run and the app take turns on the file's lock instead of one of them
holding it, so neither can corrupt what the other writes.  Verdicts are written through the
store's own writer (``flashback.store.writers.write_review``), like every other row.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import FlashbackError, UsageError, masked
from ..scoring.export import cells
from ..store import ResultStore, writers
from ..store.keys import EventKey
from ..video.cameras import camera_matches, camera_name
from ..video.clock import clock_text, wall_time

VERDICTS = {"confirmed": "Confirmed", "false_alarm": "False alarm", "unsure": "Unsure"}
assert tuple(VERDICTS) == writers.VERDICTS
STATUSES = ("pending", *VERDICTS)


@dataclass
class Filters:
    videos: list[str] | None = None  # video paths
    folders: list[str] | None = None  # camera = the folder a video is in
    categories: list[str] | None = None
    score_range: tuple[float, float] = (0.0, 1.0)
    scored_between: tuple[datetime, datetime] | None = None
    statuses: list[str] | None = None
    event: EventKey | None = None  # one event only


_LATEST = """
    SELECT * FROM (
        SELECT r.*, row_number() OVER (PARTITION BY run_id, video_id, start_frame
                                       ORDER BY created_at DESC, review_id DESC) AS rn
        FROM reviews r) WHERE rn = 1
"""

_EVENTS = f"""
    SELECT e.run_id, e.video_id, e.event, e.start_s, e.end_s, e.start_frame, e.end_frame, e.peak_score,
           e.peak_s, coalesce(e.category, '-') AS category, e.anomalous_weight, e.normal_weight, e.captions,
           v.path, s.scored_at, coalesce(l.verdict, 'pending') AS status, l.reviewer, l.note, l.created_at AS reviewed_at,
           m.clip_path, m.clip_start_s, m.clip_end_s, m.thumb_path, m.note AS media_note,
           f.feed, ru.camera AS camera_table, v.started_at, v.started_from
    FROM events e
    JOIN videos v USING (video_id)
    JOIN scorings s USING (run_id, video_id)
    JOIN runs ru ON ru.run_id = e.run_id
    LEFT JOIN live_feeds f ON f.video_id = e.video_id
    LEFT JOIN ({_LATEST}) l ON l.run_id = e.run_id AND l.video_id = e.video_id AND l.start_frame = e.start_frame
    LEFT JOIN event_media m ON m.run_id = e.run_id AND m.video_id = e.video_id AND m.start_frame = e.start_frame
"""


def describe(r: dict) -> dict:
    """An event row with its camera (``camera_name``: the feed, the camera-file table, the folder)
    and its clock time, the way every page shows them."""
    r["camera"] = camera_name(r["path"], r.get("feed"), r.get("camera_table"))
    r["clock"] = clock_text(r.get("started_at"), r.get("started_from"), r["start_s"])
    r["name"] = r["feed"] or masked(r["path"]).rsplit("/", 1)[-1]
    return r


class ReviewDB:
    def __init__(self, path: Path | str, lock_wait_s: float = 5.0):
        self.path = Path(path)
        self._store = ResultStore(self.path, lock_wait_s=lock_wait_s)

    # ------------------------------------------------------------ state of the file

    def problem(self) -> str | None:
        """Why the app cannot show anything, in one line; None when the store is usable."""
        if not self.path.exists():
            return f"{self.path}: no such results database. Score some videos first: flashback score VIDEO --db {self.path}"
        try:
            tables = self._store.tables()
        except Exception as e:  # StoreError or duckdb errors on a non-database file
            return str(e)
        if "events" not in tables:
            return f"{self.path}: not a flashback results database (no events table)"
        if "event_media" not in tables:  # written by an older flashback: add what it lacks
            self._store.initialize()
        return None

    def version(self) -> tuple:
        """Changes whenever a scoring or a verdict is stored: the app compares it to say 'stale'."""
        with self._store.connect(read_only=True) as con:
            return tuple(con.execute(
                "SELECT (SELECT count(*) FROM scorings), (SELECT max(scored_at) FROM scorings), (SELECT count(*) FROM reviews)"
            ).fetchone())

    # ------------------------------------------------------------ queue

    def events(self, f: Filters | None = None) -> list[dict]:
        f = f or Filters()
        where, args = ["e.peak_score BETWEEN ? AND ?"], [float(f.score_range[0]), float(f.score_range[1])]
        if f.videos:
            where.append(f"v.path IN ({', '.join('?' * len(f.videos))})")
            args += list(f.videos)
        if f.categories:
            where.append(f"coalesce(e.category, '-') IN ({', '.join('?' * len(f.categories))})")
            args += list(f.categories)
        if f.statuses:
            where.append(f"coalesce(l.verdict, 'pending') IN ({', '.join('?' * len(f.statuses))})")
            args += list(f.statuses)
        if f.scored_between:
            where.append("s.scored_at BETWEEN ? AND ?")
            args += list(f.scored_between)
        if f.event:
            where.append("e.run_id = ? AND e.video_id = ? AND e.start_frame = ?")
            args += [f.event.run_id, f.event.video_id, f.event.start_frame]
        with self._store.connect(read_only=True) as con:
            cur = con.execute(f"{_EVENTS} WHERE {' AND '.join(where)} ORDER BY e.peak_score DESC, v.path, e.start_s", args)
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        for r in rows:
            describe(r)
            r["key"] = EventKey(r["run_id"], r["video_id"], r["start_frame"]).encode()
            r["captions"] = json.loads(r["captions"])
        if f.folders:
            rows = [r for r in rows if r["camera"] in f.folders]
        return rows

    def facets(self) -> dict:
        with self._store.connect(read_only=True) as con:
            paths = [r[0] for r in con.execute("SELECT DISTINCT v.path FROM events e JOIN videos v USING (video_id) ORDER BY 1").fetchall()]
            named = con.execute("SELECT DISTINCT v.path, f.feed, ru.camera FROM events e JOIN videos v USING (video_id) "
                                "JOIN runs ru USING (run_id) LEFT JOIN live_feeds f USING (video_id)").fetchall()
            cats = [r[0] for r in con.execute("SELECT DISTINCT coalesce(category, '-') FROM events ORDER BY 1").fetchall()]
            span = con.execute("SELECT min(scored_at), max(scored_at) FROM scorings").fetchone()
        return {"videos": paths, "folders": sorted({camera_name(*n) for n in named}), "categories": cats, "scored": span}

    @staticmethod
    def counts(rows: list[dict]) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for r in rows:
            out[r["status"]] += 1
        return out

    # ------------------------------------------------------------ one event, one video

    def scored_videos(self) -> list[dict]:
        """Every scored (run, video), flagged or not: a quiet video's timeline is worth seeing too."""
        with self._store.connect(read_only=True) as con:
            cur = con.execute(
                "SELECT s.run_id, s.video_id, v.path FROM scorings s JOIN videos v USING (video_id) "
                "ORDER BY v.path, s.scored_at DESC")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def timeline(self, run_id: str, video_id: str) -> dict:
        with self._store.connect(read_only=True) as con:
            d = con.execute("SELECT time_s, score FROM frame_scores WHERE run_id = ? AND video_id = ? ORDER BY frame",
                            [run_id, video_id]).fetchnumpy()
            settings = json.loads(con.execute("SELECT settings FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
            info = con.execute("SELECT path, fps, duration_s FROM videos WHERE video_id = ?", [video_id]).fetchone()
        return {"time_s": np.asarray(d["time_s"]), "score": np.asarray(d["score"]), "threshold": settings["threshold"],
                "path": info[0], "fps": info[1], "duration_s": info[2]}

    @staticmethod
    def video_events(rows: list[dict], run_id: str, video_id: str) -> list[dict]:
        """One video's events, picked from rows already loaded (no second query)."""
        return [r for r in rows if r["run_id"] == run_id and r["video_id"] == video_id]

    def media_path(self, video_id: str) -> Path | None:
        """The only way the app finds a file: the path the store recorded for this video id."""
        with self._store.connect(read_only=True) as con:
            row = con.execute("SELECT path FROM videos WHERE video_id = ?", [video_id]).fetchone()
        if row is None:
            return None
        p = Path(row[0])
        return p if p.is_file() else None

    def stored_media(self, relative: str | None) -> Path | None:
        """A clip or thumbnail the store recorded, under its media folder; None if it is not there
        (pruned, or never made).  A path that would leave the media folder is refused."""
        if not relative:
            return None
        root = self._store.media_dir.resolve()
        p = (root / relative).resolve()
        return p if p.is_relative_to(root) and p.is_file() else None

    # ------------------------------------------------------------ live feeds

    def feeds(self) -> list[dict]:
        """Each live feed's latest watch: state, last update, drops and latency against its budget,
        outages (the Feeds page)."""
        with self._store.connect(read_only=True) as con:
            cur = con.execute("""
                SELECT f.feed, f.video_id, f.active, f.started_at, f.updated_at, f.segments_scored, f.segments_lost,
                       f.samples_dropped, s.n_samples AS samples_encoded, f.latency_p95_s, f.window_drop_share,
                       f.window_latency_p95_s, f.latency_budget_s, f.keeping_up,
                       (SELECT count(*) FROM outages o WHERE o.video_id = f.video_id) AS outages,
                       (SELECT count(*) FROM outages o WHERE o.video_id = f.video_id AND o.end_s IS NULL) AS down
                FROM live_feeds f JOIN scorings s USING (video_id)
                QUALIFY row_number() OVER (PARTITION BY f.feed ORDER BY f.started_at DESC) = 1
                ORDER BY f.feed""")
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        for r in rows:
            total = (r["samples_dropped"] or 0) + (r["samples_encoded"] or 0)
            r["drop_share"] = (r["samples_dropped"] or 0) / total if total else 0.0
            r["state"] = "stopped" if not r["active"] else "down" if r["down"] else "up"
            r["over_budget"] = r["keeping_up"] is False  # the watcher's window verdict (drops and latency)
        return rows

    # ------------------------------------------------------------ search

    def search(self, encoder, text: str, top: int = 20, camera: str | None = None) -> list:
        """Stored segments ranked by a text (``flashback.review.search``); a store that cannot be searched
        with this encoder raises a UsageError saying why."""
        from .search import FootageSearch

        return FootageSearch(self._store, encoder).search(text, top, camera or None)

    def cameras(self) -> list[str]:
        """Live feeds' names and the folders of scored files: what a search can be narrowed to."""
        with self._store.connect(read_only=True) as con:
            named = con.execute("SELECT DISTINCT v.path, f.feed, ru.camera FROM scorings s JOIN videos v USING (video_id) "
                                "JOIN runs ru USING (run_id) LEFT JOIN live_feeds f USING (video_id)").fetchall()
        return sorted({camera_name(*n) for n in named})

    def score_series(self, camera: str, since: datetime | None, before: datetime | None,
                     points: int) -> tuple[list[datetime] | None, list[float]]:
        """A camera's smoothed score on its clock (videos with no clock: when scored), at most
        ``points`` of them (the highest of each stretch, so a short spike still shows); (None, [])
        for a camera the store does not know."""
        with self._store.connect(read_only=True) as con:
            named = con.execute("SELECT s.run_id, s.video_id, v.path, f.feed, ru.camera, coalesce(v.started_at, s.scored_at) "
                                "FROM scorings s JOIN videos v USING (video_id) JOIN runs ru USING (run_id) "
                                "LEFT JOIN live_feeds f USING (video_id)").fetchall()
            mine = [(run, vid, start) for run, vid, path, feed, table, start in named if camera_matches(camera_name(path, feed, table), camera)]
            if not mine:
                return None, []
            at, score = [], []
            for run, vid, start in mine:
                d = con.execute("SELECT time_s, score FROM frame_scores WHERE run_id = ? AND video_id = ? ORDER BY frame",
                                [run, vid]).fetchnumpy()
                at += [wall_time(start, t) for t in d["time_s"]]
                score += [float(x) for x in d["score"]]
        keep = [i for i, t in sorted(enumerate(at), key=lambda p: p[1])
                if (since is None or t >= since) and (before is None or t < before)]
        step = max(1, -(-len(keep) // points))
        chunks = [keep[i:i + step] for i in range(0, len(keep), step)]
        return [at[c[0]] for c in chunks], [max(score[i] for i in c) for c in chunks]

    @staticmethod
    def event_at(rows: list[dict], run_id: str, video_id: str, t_s: float) -> str | None:
        """The key of the event of that run and video covering ``t_s``, if one does."""
        return next((r["key"] for r in rows if r["run_id"] == run_id and r["video_id"] == video_id
                     and r["start_s"] <= t_s <= r["end_s"]), None)

    # ------------------------------------------------------------ verdicts

    def save_verdict(self, key: EventKey, end_frame: int, verdict: str, reviewer: str, note: str = "") -> str:
        """``end_frame``: the event's last frame as the reviewer saw it (a live event's may still grow)."""
        if verdict not in VERDICTS:
            raise UsageError(f"unknown verdict {verdict!r}")
        if not reviewer.strip():
            raise UsageError("a verdict needs the reviewer's name")
        with self._store.transaction() as con:
            writers.write_review(con, key.run_id, key.video_id, key.start_frame, end_frame, verdict,
                                 reviewer.strip(), note.strip() or None)
        try:  # the verdict is stored now: whatever the overlay says, the page must not say "Not saved"
            return self.adapt(key, verdict, reviewer.strip())
        except FlashbackError as e:
            return f"the camera's overlay did not learn it: {e}"

    def adapt(self, key: EventKey, verdict: str, reviewer: str) -> str:
        """The camera's overlay learns the verdict (``flashback.review.overlays``); a line saying what changed."""
        from .overlays import apply_verdict

        path = apply_verdict(self._store, key.run_id, key.video_id, key.start_frame, verdict, reviewer)
        if path is None:
            return "this store keeps no segment vectors for the event, so the camera's overlay did not change"
        held = self.adaptation(key)
        if held is None or "problem" in held:
            return "no exemplar of this event is in its camera's overlay"
        return (f"the camera's overlay now holds {held['exemplars']} {'anomalous' if verdict == 'confirmed' else 'normal'} "
                "exemplar(s) of this event; re-scoring that camera uses them")

    def adaptation(self, key: EventKey) -> dict | None:
        """What the event's camera overlay holds of it: camera, verdict, exemplars; None if nothing;
        ``{"problem": line}`` when that overlay cannot be read."""
        from .overlays import held

        try:
            return held(self._store, key.run_id, key.video_id, key.start_frame)
        except FlashbackError as e:
            return {"problem": str(e)}

    def undo_adaptation(self, key: EventKey) -> int:
        """Take this event's exemplars out of every overlay (the verdict itself stays); how many overlays changed."""
        from .overlays import remove_event

        return len(remove_event(self.path, key.run_id, key.video_id, key.start_frame))

    def history(self, key: EventKey) -> list[dict]:
        with self._store.connect(read_only=True) as con:
            cur = con.execute(
                "SELECT created_at, reviewer, verdict, note FROM reviews WHERE run_id = ? AND video_id = ? "
                "AND start_frame = ? ORDER BY created_at DESC, review_id DESC",
                [key.run_id, key.video_id, key.start_frame],
            )
            return [dict(zip(("when", "reviewer", "verdict", "note"), r)) for r in cur.fetchall()]

    # ------------------------------------------------------------ summary and export

    def false_alarm_summary(self, by: str = "category") -> list[dict]:
        """Per category (or per ``camera``): how often its events were dismissed; the memory's (or the
        camera's) weakest spots first."""
        per: dict[str, dict] = {}
        for r in self.events():
            c = per.setdefault(r[by], {by: r[by], "events": 0, "reviewed": 0, "false_alarms": 0, "confirmed": 0})
            c["events"] += 1
            if r["status"] != "pending":
                c["reviewed"] += 1
            c["false_alarms"] += r["status"] == "false_alarm"
            c["confirmed"] += r["status"] == "confirmed"
        for c in per.values():
            c["false_alarm_rate"] = round(c["false_alarms"] / c["reviewed"], 3) if c["reviewed"] else None
        return sorted(per.values(), key=lambda c: (-(c["false_alarm_rate"] or 0), -c["false_alarms"], c[by]))

    EXPORT_COLUMNS = ("camera", "clock", "path", "video_id", "run_id", "start_s", "end_s", "start_frame", "end_frame", "peak_score",
                      "category", "status", "reviewer", "note", "reviewed_at")

    def reviewed(self, rows: list[dict] | None = None) -> list[dict]:
        rows = self.events() if rows is None else rows
        return [r for r in rows if r["status"] != "pending"]

    def export_csv(self, rows: list[dict] | None = None) -> str:
        """``rows`` (the queue's current filter, pending or not), or every reviewed event."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.EXPORT_COLUMNS)
        w.writeheader()
        for r in self.reviewed() if rows is None else rows:
            w.writerow(cells({k: (r[k].isoformat() if isinstance(r[k], datetime) else r[k]) for k in self.EXPORT_COLUMNS}))
        return buf.getvalue()

    def export_json(self, rows: list[dict] | None = None) -> str:
        chosen = self.reviewed() if rows is None else rows
        return json.dumps([{k: r[k] for k in self.EXPORT_COLUMNS} for r in chosen],
                          default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v), indent=1)
