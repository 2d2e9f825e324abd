"""When a video's frames were on the camera: the wall-clock time every page, file name and export
shows an event at (schema 8: ``videos.started_at`` and what says so)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone


def clock_start(source: str, info, duration_s: float) -> tuple[datetime | None, str | None]:
    """When a recorded file's first frame was on the camera, local wall time, and what says so: the
    container's creation time, else the file's modification time less its duration (a recorder
    writes until the end), marked as such; (None, None) for a URL or a file that is gone."""
    if info is not None and info.created_at is not None:
        return info.created_at, "container"
    try:
        mtime = os.stat(source).st_mtime
    except (OSError, ValueError):
        return None, None
    return datetime.fromtimestamp(mtime) - timedelta(seconds=duration_s), "file time"


def wall_time(started_at: datetime | None, t_s: float) -> datetime | None:
    """The wall-clock time of ``t_s`` seconds into a video that began at ``started_at`` (None: unknown)."""
    return None if started_at is None else started_at + timedelta(seconds=float(t_s))


def clock_text(started_at: datetime | None, started_from: str | None, t_s: float) -> str:
    """A moment's wall-clock time as every page, file name and export shows it: '2026-12-06
    13:04:05', marked '(file time)' when only the file's modification time says so; '' unknown."""
    if started_at is None:
        return ""
    at = wall_time(started_at, t_s).strftime("%Y-%m-%d %H:%M:%S")
    return at if started_from in (None, "feed clock", "container") else f"{at} ({started_from})"


def creation_time(container) -> datetime | None:
    """The container's ``creation_time`` tag (ISO 8601, UTC by convention) as local wall time."""
    text = (container.metadata or {}).get("creation_time") or ""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.year < 1990:  # 1970 or 1904: an unset tag
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone().replace(tzinfo=None)
