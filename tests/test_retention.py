"""Retention: ``flashback prune`` and ``watch --retention-days`` on a real store with real media,
files scored days ago, a live feed that has run for days, verdicts that must survive, and a prune
killed midway."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pytest
from conftest import FLASHBACK, TINY_CLI, copy_of, flashback, flashback_here, tmpfs

from flashback.scoring.scoring import Segments
from flashback.store import ResultStore, writers
from flashback.video.synthetic import make_video

DAY = 86_400.0


def count(db, sql: str, args=()) -> int:
    with duckdb.connect(str(db), read_only=True) as c:
        return c.execute(sql, list(args)).fetchone()[0]


def live_segments(times_s: list[float]) -> Segments:
    n = len(times_s)
    return Segments(np.arange(n), np.array([[t - 1.0, t] for t in times_s]), np.full(n, 0.9), np.zeros((n, 1), int),
                    np.full((n, 1), 0.3), np.ones((n, 1)), np.ones((n, 1), bool), np.full(n, 0.9))


@pytest.fixture
def store(filled_store, seed_memory, tmp_path):
    """The review fixture's three files (gate/g1 and lobby/l1 scored 10 days ago, gate/g2 now), one
    verdict on g1, and a live feed started 3 days ago with rows at 0, 1.5 and 2.5 days."""
    from flashback.scoring.events import Event, Explanation

    db = copy_of(filled_store, tmp_path)
    run = filled_store[1]
    s = ResultStore(db)
    with s.transaction() as con:
        con.execute("UPDATE scorings SET scored_at = now() - INTERVAL 10 DAY WHERE path NOT LIKE '%g2.mp4'")
        g1 = con.execute("SELECT e.video_id, min(e.start_frame) FROM events e JOIN videos v USING (video_id) "
                         "WHERE v.path LIKE '%g1.mp4' GROUP BY ALL").fetchone()
        writers.write_review(con, run.run_id, g1[0], g1[1], g1[1] + 5, "confirmed", "ana", None)
        vid, t = "live-dock-1", [5.0, 1.5 * DAY, 2.5 * DAY]
        writers.write_video(con, vid, "rtsp://dock", None, 0.0, 0)
        writers.replace_scoring(con, run.run_id, vid, "rtsp://dock", "segment", 3, 0, 0, None, note="live feed")
        writers.write_feed(con, vid, "dock", "rtsp://dock", datetime.now() - timedelta(days=3))
        segs = live_segments(t)
        writers.insert_frame_scores(con, run.run_id, np.full(3, vid, dtype=object), segs.index, segs.spans[:, 1],
                                    segs.scores, segs.smoothed)
        writers.insert_segments(con, run.run_id, np.full(3, vid, dtype=object), segs, seed_memory.captions)
        for k, end in enumerate(t):
            ex = Explanation("Fighting", 0.9, 0.1, [])
            writers.write_event(con, run.run_id, vid, Event(k, end - 1.0, end, k, k, 0.9, k, end - 0.5, ex))
        writers.write_review(con, run.run_id, vid, 0, 0, "false_alarm", "ana", None)  # the oldest live event
        writers.write_outage(con, vid, "dock", 100.0, 160.0, "timeout", 2)
        con.execute("UPDATE live_feeds SET active = false")
    return db, g1


def snapshot(db) -> dict:
    with duckdb.connect(str(db), read_only=True) as c:
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("runs", "videos", "scorings", "frame_scores", "segments", "segment_captions", "events",
                          "event_media", "reviews", "live_feeds", "outages")}


def media_files(db) -> set[str]:
    root = db.with_suffix(".media")
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def age_media(db) -> None:
    """Files younger than 10 minutes are never swept (a running watch may be about to record them)."""
    old = time.time() - 3600
    for p in db.with_suffix(".media").rglob("*"):
        if p.is_file():
            os.utime(p, (old, old))


def test_prune_keeps_verdicts_recent_files_and_the_recent_part_of_a_live_feed(store):
    db, (g1, g1_start) = store
    age_media(db)
    before, files = snapshot(db), media_files(db)
    p = flashback_here("prune", "--db", db, "--keep-days", "1", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "would delete" in p.stdout and snapshot(db) == before and media_files(db) == files
    p = flashback_here("prune", "--db", db, "--keep-days", "1")
    assert p.returncode == 0, p.stderr
    with duckdb.connect(str(db), read_only=True) as c:
        left = dict(c.execute("SELECT v.path, count(*) FROM scorings s JOIN videos v USING (video_id) GROUP BY ALL").fetchall())
        assert any(p.endswith("g1.mp4") for p in left) and not any(p.endswith("l1.mp4") for p in left)
        # g1: only its reviewed event, with its verdict, clip and thumbnail
        assert c.execute("SELECT start_frame FROM events WHERE video_id = ?", [g1]).fetchall() == [(g1_start,)]
        assert c.execute("SELECT count(*) FROM frame_scores WHERE video_id = ?", [g1]).fetchone()[0] == 0
        kept = c.execute("SELECT clip_path, thumb_path FROM event_media WHERE video_id = ?", [g1]).fetchall()
        # g2, scored now: untouched
        g2 = c.execute("SELECT video_id FROM videos WHERE path LIKE '%g2.mp4'").fetchone()[0]
        # the live feed: its last 1.5 days (the row at 2.5 days), and its reviewed first event
        live_times = [r[0] for r in c.execute("SELECT time_s FROM frame_scores WHERE video_id = 'live-dock-1'").fetchall()]
        live_events = [r[0] for r in c.execute("SELECT event FROM events WHERE video_id = 'live-dock-1' ORDER BY 1").fetchall()]
        outages = c.execute("SELECT count(*) FROM outages").fetchone()[0]
        feeds = c.execute("SELECT count(*) FROM live_feeds").fetchone()[0]
        reviews = c.execute("SELECT count(*) FROM reviews").fetchone()[0]
    assert len(kept) == 1 and all(x for x in kept[0])
    assert count(db, "SELECT count(*) FROM frame_scores WHERE video_id = ?", [g2]) > 0
    assert live_times == [2.5 * DAY] and live_events == [0, 2] and outages == 0 and feeds == 1 and reviews == 2
    # the files of pruned events are gone, those still named stay
    now = media_files(db)
    with duckdb.connect(str(db), read_only=True) as c:
        named = {r[0] for r in c.execute("SELECT clip_path FROM event_media UNION SELECT thumb_path FROM event_media").fetchall()}
    assert now == named and now < files and set(kept[0]) <= now


def test_keep_reviewed_keeps_the_whole_file_and_drop_reviewed_drops_the_verdicts(store):
    db, (g1, _) = store
    p = flashback_here("prune", "--db", db, "--keep-days", "1", "--keep-reviewed")
    assert p.returncode == 0, p.stderr
    assert count(db, "SELECT count(*) FROM frame_scores WHERE video_id = ?", [g1]) > 0
    assert count(db, "SELECT count(*) FROM events WHERE video_id = ?", [g1]) >= 1
    p = flashback_here("prune", "--db", db, "--keep-days", "1", "--drop-reviewed")
    assert p.returncode == 0, p.stderr
    assert count(db, "SELECT count(*) FROM scorings WHERE video_id = ?", [g1]) == 0
    assert count(db, "SELECT count(*) FROM reviews") == 0
    assert count(db, "SELECT count(*) FROM events WHERE video_id = 'live-dock-1'") == 1


@pytest.mark.parametrize("args, message", [
    (["--keep-days", "-1"], "--keep-days: must be a number in [0, 36500] (got -1)"),
    (["--keep-days", "x"], "--keep-days"),
    (["--keep-days", "1", "--keep-reviewed", "--drop-reviewed"], "not allowed with argument"),
])
def test_bad_values_are_one_line(store, args, message):
    db, _ = store
    p = flashback_here("prune", "--db", db, *args)
    assert p.returncode == 2 and message in p.stderr
    p = flashback_here("prune", "--db", db.with_name("none.duckdb"), "--keep-days", "1")
    assert p.returncode == 1 and "none.duckdb: no such results database" in p.stderr


def test_the_review_app_shows_what_a_prune_kept(store, monkeypatch):
    """Every kept event's page renders: a file's reviewed event whose timeline is gone, a live one."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from ui import state
    from ui.data import ReviewDB

    db, _ = store
    assert flashback_here("prune", "--db", db, "--keep-days", "1").returncode == 0
    monkeypatch.setenv(state.DB_ENV, str(db))
    rows = ReviewDB(db).events()
    assert len(rows) >= 3
    for row in rows:
        at = AppTest.from_file(str(Path(__file__).parents[1] / "ui" / "app.py"), default_timeout=60)
        at.session_state[state.VIEW] = "Event"
        at.session_state[state.EVENT] = row["key"]
        at.run()
        assert not at.exception, (row["path"], at.exception)
        assert at.header and "Why it was flagged" in [s.value for s in at.subheader]


@pytest.mark.slow
def test_a_prune_killed_midway_leaves_the_store_whole(tmp_path):
    """Killed at several moments: every time, either nothing was deleted or all of it was."""
    db = tmp_path / "big.duckdb"
    s = ResultStore(db)
    with s.transaction() as con:
        con.execute("""INSERT INTO scorings (run_id, video_id, path, scored_at, truncated, n_samples, n_segments,
                       n_events, frame_unit) SELECT 'r', 'v' || i, '/x/v' || i, now() - INTERVAL 30 DAY, false, 0, 0, 0,
                       'frame' FROM range(400) t(i)""")
        con.execute("""INSERT INTO frame_scores SELECT 'r', 'v' || (i % 400), i // 400, i / 30.0, 0.5, 0.5
                       FROM range(4000000) t(i)""")
    full = count(db, "SELECT count(*) FROM frame_scores")
    outcomes = set()
    for delay in (2.0, 3.5, 5.0, 6.5):  # start-up takes ~2 s here, the delete ~6 s: kills land inside it
        p = subprocess.Popen([FLASHBACK, "prune", "--db", str(db), "--keep-days", "1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        n, scorings = count(db, "SELECT count(*) FROM frame_scores"), count(db, "SELECT count(*) FROM scorings")
        assert (n, scorings) in ((full, 400), (0, 0)), (delay, n, scorings)
        outcomes.add(n)
        if n == 0:
            break
    assert full in outcomes or 0 in outcomes
    assert flashback("prune", "--db", db, "--keep-days", "1").returncode == 0
    assert count(db, "SELECT count(*) FROM frame_scores") == 0


def test_watch_applies_its_retention_as_it_runs(store, tmp_path):
    db, (g1, _) = store
    video = make_video(tmp_path / "cam.mp4", n_frames=60)
    p = flashback_here("watch", f"cam={video}", "--db", db, "--retention-days", "1", "--events", tmp_path / "ev.jsonl",
                  *TINY_CLI)
    assert p.returncode == 0, p.stderr
    assert "retention: deleted" in p.stderr
    assert count(db, "SELECT count(*) FROM frame_scores WHERE video_id = ?", [g1]) == 0
    assert count(db, "SELECT count(*) FROM live_feeds WHERE feed = 'cam'") == 1


def test_a_sweep_removes_links_as_links_and_a_watch_with_one_starts(store, tmp_path):
    """A dangling link in the media folder used to end a watch with retention at its start (exit 70),
    and a file that vanished during a sweep ended a prune the same way: the sweep lstat()s, skips
    what is gone and removes a link without following it."""
    db, _ = store
    media = db.with_suffix(".media")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.mp4").write_bytes(b"not ours")
    old = time.time() - 3600
    for name, target in (("dangling.mp4", tmp_path / "gone.mp4"), ("link.mp4", precious / "keep.mp4"), ("folder", precious)):
        (media / name).symlink_to(target)
        os.utime(media / name, (old, old), follow_symlinks=False)
    age_media(db)
    video = make_video(tmp_path / "cam.mp4", n_frames=60)
    w = flashback_here("watch", f"cam={video}", "--db", db, "--retention-days", "1", "--events", tmp_path / "ev.jsonl",
                       *TINY_CLI)
    assert w.returncode == 0, w.stderr
    assert not any((media / n).is_symlink() for n in ("dangling.mp4", "link.mp4", "folder"))
    assert (precious / "keep.mp4").read_bytes() == b"not ours"
    (media / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    os.utime(media / "dangling.mp4", (old, old), follow_symlinks=False)
    p = flashback_here("prune", "--db", db, "--keep-days", "1")
    assert p.returncode == 0, p.stderr
    assert not (media / "dangling.mp4").is_symlink()


@pytest.mark.slow  # mounts a read-only tmpfs (needs root; skipped otherwise)
def test_a_dry_run_on_a_read_only_store_counts_what_a_prune_would_delete(store, tmp_path):
    import shutil

    db, _ = store
    (tmp_path / "w").mkdir()
    expected = flashback_here("prune", "--db", copy_of((db, None), tmp_path / "w"), "--keep-days", "1", "--dry-run")
    with tmpfs(tmp_path / "ro", "64m") as mnt:
        shutil.copy(db, mnt / "r.duckdb")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        before = (mnt / "r.duckdb").read_bytes()
        p = flashback_here("prune", "--db", mnt / "r.duckdb", "--keep-days", "1", "--dry-run")
        assert p.returncode == 0, p.stderr
        assert (mnt / "r.duckdb").read_bytes() == before
    assert expected.returncode == 0
    rows = [line for line in p.stdout.splitlines() if "│" in line]
    assert rows == [line for line in expected.stdout.splitlines() if "│" in line] and len(rows) > 3
