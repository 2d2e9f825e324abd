"""The DuckDB results store: one file, one transaction per scored video (or live flush, or verdict).

The connection is opened per write and closed straight after, so a reviewer's app (or another
scorer) can get at the file between videos; while another process holds the write lock we wait a
little, then fail with a line that names the file.  Any failure inside a transaction (a full
disk, say) rolls it back, so the rows stored before stay as they were, and surfaces as one
``StoreError`` naming the file.  The schema is the numbered SQL files in schema/, applied in
order and recorded in ``schema_version``.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np

from ..errors import StoreError, ctrl_c_stays_ctrl_c, first_line
from ..scoring.pipeline import VideoResult
from ..video.clock import clock_start
from ..video.media import EventMedia, media_dir, sweep
from ..video.sources import is_url
from . import writers
from .writers import RunRecord


def migrations() -> list[tuple[int, str]]:
    files = sorted(
        (f for f in resources.files("flashback.store").joinpath("schema").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    return [(int(f.name.split("_", 1)[0]), f.read_text()) for f in files]


SCHEMA_VERSION = max(v for v, _ in migrations())


class _Rollback(Exception):
    """Raised inside a transaction to undo it on purpose (a dry run)."""


@dataclass(frozen=True)
class PruneReport:
    rows: dict[str, int]  # deleted per table
    files: int  # media files removed
    bytes: int
    dry_run: bool = False


class ResultStore:
    """A results file.  ``prepare()`` checks it can be written without creating it; the schema is
    created (or migrated) by the first write, so a run that scores nothing leaves no empty store."""

    def __init__(self, path: Path, lock_wait_s: float = 10.0):
        self.path = Path(path)
        self.lock_wait_s = lock_wait_s
        self._initialized = False

    @contextlib.contextmanager
    def connect(self, read_only: bool = False):
        """One connection, closed at the end.  Ctrl-C during a query stays a Ctrl-C
        (``ctrl_c_stays_ctrl_c``); a transaction around it has been rolled back by then."""
        con = self._open(read_only)
        try:
            # DuckDB prints a progress bar to stdout for a query over 2 s (a report, search or retention
            # sweep of a large store), into a command's JSON or CSV there, terminal or not; a session
            # setting, so an in-process reader and writer still open with the same configuration
            con.execute("SET enable_progress_bar = false")
            with ctrl_c_stays_ctrl_c():
                yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self):
        """A connection inside one transaction: committed at the end, rolled back on any error.

        A DuckDB or OS failure (disk full, file gone read-only) becomes a StoreError naming the
        file; whatever was committed before is untouched.  The first one creates or migrates the schema.
        """
        if not self._initialized:
            self.initialize()
        with self._transaction() as con:
            yield con

    @contextlib.contextmanager
    def _transaction(self):
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except (duckdb.Error, OSError) as e:
                _rollback_quietly(con)
                raise StoreError(f"{self.path}: write failed, nothing of it was stored ({first_line(e)})") from None
            except BaseException:
                _rollback_quietly(con)
                raise

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
            except (duckdb.IOException, duckdb.ConnectionException) as e:
                msg = str(e)
                # another process holds the write lock, or (same process) a writer's connection is
                # open with another configuration than this reader's: both last one write, so wait
                if "lock" in msg.lower() or "different configuration" in msg:
                    if time.monotonic() < deadline:
                        time.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    if "different configuration" in msg:
                        raise StoreError(f"{self.path}: held open by a writer in this process for over {self.lock_wait_s:g} s") from None
                    holder = msg.split("(PID", 1)[1].split(")")[0].strip() if "(PID" in msg else "?"
                    raise StoreError(
                        f"{self.path}: locked by another process (PID {holder}); "
                        "wait for it to finish or pass another --db"
                    ) from None
                raise StoreError(f"{self.path}: cannot open results database ({first_line(e)})") from None
            except (duckdb.Error, OSError) as e:
                raise StoreError(f"{self.path}: not a usable DuckDB database ({first_line(e)})") from None

    def tables(self) -> set[str]:
        """The tables the file holds (a store written by an older flashback lacks the newer ones)."""
        with self.connect(read_only=True) as con:
            return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}

    def prepare(self) -> None:
        """Fail now, before any model loads, if this store cannot be written: an existing file is
        opened and migrated; a new one is only checked for (its folder exists and is writable) and
        is created by the first write."""
        if self.path.exists():
            self.initialize()
            return
        self._check_folder()
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"{self.path}: cannot create the results database (folder {self.path.parent} is not writable)")

    def _check_folder(self) -> None:
        if not self.path.parent.is_dir():
            raise StoreError(f"{self.path}: folder {self.path.parent} does not exist")

    def initialize(self) -> None:
        """Create or migrate the schema."""
        self._check_folder()
        with self._transaction() as con:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
            current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {current} is newer than this flashback ({SCHEMA_VERSION})")
            for version, sql in migrations():
                if version > current:
                    con.execute(sql)
                    con.execute("INSERT INTO schema_version VALUES (?, now())", [version])
        self._initialized = True

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

    @property
    def media_dir(self) -> Path:
        """Where this store's event clips and thumbnails live (``media_path`` columns are relative to it)."""
        return media_dir(self.path)

    def prune(self, keep_days: float, keep_reviewed: bool = False, drop_reviewed: bool = False,
              dry_run: bool = False) -> PruneReport:
        """Delete what is older than ``keep_days`` in one transaction (``writers.prune_before``),
        then the media files no row names any more.  A kill before the commit leaves every row;
        after it, a file too many, which the next prune removes.  ``dry_run`` counts and rolls back."""
        cutoff = datetime.now() - timedelta(days=keep_days)  # local time, as the store keeps it
        if dry_run and not _writable(self.path):
            return self._dry_run_on_a_copy(cutoff, keep_reviewed, drop_reviewed)
        try:
            with self.transaction() as con:
                rows, referenced = _prune_rows(con, cutoff, keep_reviewed, drop_reviewed)
                if dry_run:
                    raise _Rollback()
        except _Rollback:
            pass
        files, size = sweep(self.media_dir, referenced, delete=not dry_run)
        return PruneReport(rows, files, size, dry_run)

    def _dry_run_on_a_copy(self, cutoff: datetime, keep_reviewed: bool, drop_reviewed: bool) -> PruneReport:
        """A dry run on a store this user cannot write (a read-only file, folder or mount): the same
        deletes, counted on an in-memory copy of it, so the answer is the real prune's."""
        con = duckdb.connect()
        try:
            con.execute("SET enable_progress_bar = false")
            with ctrl_c_stays_ctrl_c():
                con.execute(f"ATTACH '{_sql_literal(self.path)}' AS src (READ_ONLY)")
                con.execute("COPY FROM DATABASE src TO memory")
                con.execute("DETACH src")
                rows, referenced = _prune_rows(con, cutoff, keep_reviewed, drop_reviewed)
        except duckdb.Error as e:
            raise StoreError(f"{self.path}: cannot read it for a dry run ({first_line(e)})") from None
        finally:
            con.close()
        files, size = sweep(self.media_dir, referenced, delete=False)
        return PruneReport(rows, files, size, True)

    def save(self, run: RunRecord, result: VideoResult, media: list[EventMedia] = ()) -> None:
        """Replace everything stored for (run, video) with this result (and its events' media, whose
        files are already written), atomically."""
        with self.transaction() as con:
            write_result(con, run, result)
            for m in media:
                writers.write_event_media(con, run.run_id, result.video_id, m)


def write_result(con: duckdb.DuckDBPyConnection, run: RunRecord, r: VideoResult) -> None:
    """One scored file (or caption track): its run, video, scoring, scores, segments and events."""
    rid, vid = run.run_id, r.video_id
    # absolute, so the review app finds the file whatever folder it is started from
    path = r.source if is_url(r.source) else str(Path(r.source).resolve())
    writers.write_run(con, run)
    info = r.info
    started_at, started_from = clock_start(path, info, r.duration_s) if not is_url(r.source) else (None, None)
    writers.write_video(con, vid, path, r.fps, r.duration_s, len(r.frame_times),
                        info.width if info else None, info.height if info else None, info.codec if info else None,
                        started_at, started_from)
    writers.replace_scoring(con, rid, vid, path, "frame", r.n_samples, len(r.segments), len(r.events),
                            float(np.max(r.scores)) if len(r.scores) else None, r.truncated, r.note or None, r.region,
                            run.runtime)
    writers.insert_segments(con, rid, np.full(len(r.segments), vid, dtype=object), r.segments, r.captions)
    writers.insert_segment_vectors(con, rid, np.full(len(r.segments), vid, dtype=object), r.segments)
    n = len(r.frame_times)
    writers.insert_frame_scores(con, rid, np.full(n, vid, dtype=object), np.arange(n), r.frame_times, r.raw_scores, r.scores)
    for e in r.events:
        writers.write_event(con, rid, vid, e)


def _prune_rows(con, cutoff: datetime, keep_reviewed: bool, drop_reviewed: bool) -> tuple[dict[str, int], set[str]]:
    """The retention's deletes (``writers.prune_before``) and the media files the rows left still name."""
    rows = writers.prune_before(con, cutoff, keep_reviewed, drop_reviewed)
    referenced = {r[0] for r in con.execute(
        "SELECT clip_path FROM event_media WHERE clip_path IS NOT NULL UNION "
        "SELECT thumb_path FROM event_media WHERE thumb_path IS NOT NULL").fetchall()}
    return rows, referenced


def _writable(path: Path) -> bool:
    """Whether DuckDB can open this store for writing: the file and its folder (for the WAL)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _sql_literal(path: Path) -> str:
    return str(path).replace("'", "''")


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    """After a failed COMMIT DuckDB may have ended the transaction itself ("cannot rollback - no
    transaction is active"): that must not hide the error that matters."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass
