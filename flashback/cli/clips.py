"""``flashback clips``: copy the stored clips and thumbnails of flagged events into a folder, with
names a person can sort and an index, for a hand-over, a report or another tool."""

from __future__ import annotations

import argparse
import csv
import re
import shutil
from datetime import datetime
from pathlib import Path

from ..errors import StoreError, UsageError
from ..scoring.export import cells, write_text_file
from ..video.cameras import camera_name
from ..video.clock import clock_text, wall_time
from .common import EXIT_OK, out, progress_bars, warn
from .options import add_db_arg, since
from .setup import existing_store

VERDICT_CHOICES = ("pending", "confirmed", "false_alarm", "unsure")
INDEX = "index.csv"


def add_parser(sub) -> None:
    c = sub.add_parser("clips", help="export the stored clips and thumbnails of flagged events to a folder",
                       description="Copy each flagged event's stored clip (MP4) and thumbnail (JPEG) into --out, named "
                                   "camera_time_category, with an index.csv of what each file shows. Every event is "
                                   "listed there; one without a clip has an empty clip column and the reason.")
    add_db_arg(c)
    c.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to copy them into (created if missing)")
    c.add_argument("--since", type=since, metavar="WHEN",
                   help="only events whose media were made (without media: that were scored) since: 24h, 7d, 30m, or a date/time (2026-11-20, 2026-11-20T08:00)")
    c.add_argument("--status", choices=VERDICT_CHOICES, action="append",
                   help="only events with this verdict (repeatable; default: all)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(run=run)


_QUERY = """
    SELECT m.clip_path, m.thumb_path, coalesce(m.created_at, s.scored_at) AS made, e.start_s, e.end_s, e.peak_score,
           coalesce(e.category, '-'), coalesce(l.verdict, 'pending'), e.video_id, e.event,
           CASE WHEN m.video_id IS NULL THEN 'no media was recorded for it (scored with --no-media, or before clips were kept)'
                ELSE m.note END, v.path, f.feed, ru.camera, v.started_at, v.started_from
    FROM events e
    JOIN scorings s USING (run_id, video_id)
    JOIN videos v USING (video_id)
    JOIN runs ru ON ru.run_id = e.run_id
    LEFT JOIN event_media m USING (run_id, video_id, start_frame)
    LEFT JOIN live_feeds f USING (video_id)
    LEFT JOIN (SELECT run_id, video_id, start_frame, arg_max(verdict, review_id) AS verdict FROM reviews
               GROUP BY ALL) l USING (run_id, video_id, start_frame)
    WHERE coalesce(m.created_at, s.scored_at) >= ? ORDER BY made, e.start_s
"""


def _safe(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")[:limit] or "x"


def run(a: argparse.Namespace) -> int:
    store = existing_store(a)
    if a.out.exists() and not a.out.is_dir():
        raise UsageError(f"--out {a.out}: exists and is not a folder")
    if "event_media" not in store.tables():
        raise StoreError(f"{a.db}: written by an older flashback, it holds no clips (score again to make them)")
    with store.connect(read_only=True) as con:
        rows = con.execute(_QUERY, [a.since or datetime.min]).fetchall()
    if a.status:
        rows = [r for r in rows if r[7] in a.status]
    a.out.mkdir(parents=True, exist_ok=True)
    media = store.media_dir
    index, missing = [], 0
    with progress_bars(a.quiet) as progress:
        task = progress.add_task("copying clips", total=len(rows), done=f"0/{len(rows)} events")
        for k, (clip, thumb, made, start_s, end_s, peak, category, status, video_id, event, why, path, feed, table,
                started_at, started_from) in enumerate(rows):
            camera = camera_name(path, feed, table)
            at = wall_time(started_at, start_s) or made  # the event's time, not the clip's
            stem = f"{_safe(Path(camera).name if '/' in camera else camera)}_{at:%Y%m%d-%H%M%S}_{_safe(category, 24)}_e{event}"
            copied = {}
            for kind, rel, ext in (("clip", clip, ".mp4"), ("thumbnail", thumb, ".jpg")):
                src = media / rel if rel else None
                if src is not None and src.is_file():
                    shutil.copyfile(src, a.out / f"{stem}{ext}")
                    copied[kind] = f"{stem}{ext}"
            if "clip" not in copied:
                missing += 1
                why = why if clip is None else "its clip file is gone (pruned, or removed by hand)"
            index.append({"clip": copied.get("clip", ""), "no_clip_because": "" if "clip" in copied else why or "unknown",
                          "clock": clock_text(started_at, started_from, start_s), "thumbnail": copied.get("thumbnail", ""), "camera": camera,
                          "video_id": video_id, "event": event, "start_s": round(start_s, 3), "end_s": round(end_s, 3),
                          "peak_score": round(peak, 4), "category": category, "status": status,
                          "made_at": made.isoformat(timespec="seconds")})
            progress.update(task, advance=1, done=f"{k + 1}/{len(rows)} events")
    def write_index(f) -> None:
        w = csv.DictWriter(f, fieldnames=list(index[0]) if index else ["clip"])
        w.writeheader()
        w.writerows(cells(row) for row in index)

    write_text_file(a.out / INDEX, write_index)
    if missing:
        warn(f"{missing} event(s) have no clip; listed in {INDEX} without one, with the reason (no_clip_because)")
    out.print(f"{len(index) - missing} clip(s) and their thumbnails copied to {a.out} (index: {a.out / INDEX})")
    return EXIT_OK
