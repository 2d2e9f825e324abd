"""JSON and CSV exports of scored videos, written atomically (temp file + rename).

JSON holds everything a person or a program needs about each video: per-frame scores, events and
their explanations, and the failures.  CSV is one row per frame, with the event (if any) that
covers it, so a spreadsheet or pandas gets scores and flags in one table.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..video.cameras import camera_name
from ..video.clock import clock_start, clock_text
from ..video.sources import is_url
from .pipeline import VideoResult


def write_text_file(path: Path, write) -> None:
    """``write`` gets an open text file (UTF-8, no newline translation, as csv wants)."""

    def fill(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write(f)

    atomic_write(path, fill)


def video_to_dict(r: VideoResult) -> dict:
    started_at, started_from = _clock(r)
    return {
        "source": r.source,
        "video_id": r.video_id,
        "camera": camera_name(r.source),
        "clock_start": started_at.isoformat(timespec="milliseconds") if started_at else None,
        "clock_from": started_from,  # container | file time: what says when its first frame was
        "fps": round(r.fps, 4),
        "duration_s": round(r.duration_s, 4),
        "n_frames": len(r.frame_times),
        "region": r.region,
        "grid_samples": r.n_samples,  # samples on the time grid (or captions); a frame several land on is encoded once
        "truncated": r.truncated,
        "note": r.note,
        "max_score": float(np.max(r.scores)) if len(r.scores) else None,
        "events": [e.to_dict() | {"start_clock": clock_text(started_at, started_from, e.start_s) or None} for e in r.events],
        "frame_scores": {
            "time_s": np.round(r.frame_times, 4).tolist(),
            "score": np.round(r.scores, 6).tolist(),
            "raw_score": np.round(r.raw_scores, 6).tolist(),
        },
    }


def _clock(r: VideoResult):
    """When its first frame was on the camera (``video.clock``); none for a URL or a caption track."""
    if is_url(r.source) or r.info is None:
        return None, None
    return clock_start(r.source, r.info, r.duration_s)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """A CSV cell a spreadsheet shows as the text it is: a string that starts like a formula
    (``=``, ``+``, ``-``, ``@``, tab, CR; OWASP's list) gets a leading apostrophe, since file names,
    captions, categories and reviewers' notes are anyone's text.  Numbers are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def cells(row):
    """``cell`` on every value of a row (a list, or a dict for ``csv.DictWriter``)."""
    return {k: cell(v) for k, v in row.items()} if isinstance(row, dict) else [cell(v) for v in row]


def write_json(path: Path, run: dict, results: Iterable[VideoResult], failures: list[dict],
               runs: dict[str, dict] | None = None) -> None:
    """``runs``: by source, the run a video was stored under when it is not ``run`` (its region,
    camera table or camera texts made it another one); given as that video's ``run``."""
    runs = runs or {}
    doc = {"run": run, "failures": failures, "videos": [
        video_to_dict(r) | ({"run": runs[r.source], "camera": runs[r.source].get("camera") or camera_name(r.source)}
                            if r.source in runs else {}) for r in results]}
    write_text_file(path, lambda f: json.dump(doc, f, indent=1))


def write_csv(path: Path, results: Iterable[VideoResult]) -> None:
    def write(f):
        w = csv.writer(f)
        w.writerow(["source", "video_id", "frame", "time_s", "score", "raw_score", "event", "event_category", "clock"])
        for r in results:
            started_at, started_from = _clock(r)
            event_of = np.full(len(r.frame_times), -1)
            for e in r.events:
                event_of[e.start_frame : e.end_frame + 1] = e.index
            cats = {e.index: e.category or "" for e in r.events}
            for i, (t, s, raw, ev) in enumerate(zip(r.frame_times, r.scores, r.raw_scores, event_of)):
                w.writerow(cells([r.source, r.video_id, i, f"{t:.4f}", f"{s:.6f}", f"{raw:.6f}",
                                  "" if ev < 0 else int(ev), cats.get(int(ev), ""), clock_text(started_at, started_from, t)]))

    write_text_file(path, write)
