"""Each event's clip and thumbnail: written under the store's media folder, recorded in the store,
stream-copied where the source is H.264 and re-encoded where it is not, and exported by
``flashback clips``."""

from __future__ import annotations

import av
import duckdb
import numpy as np
import pytest
from conftest import TINY_CLI, flashback_here
from PIL import Image

from flashback.video.media import key_frames
from flashback.video.synthetic import make_video

EVENTFUL = ["--threshold", "0.3", "--min-event", "0.5"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory, seed_memory):
    d = tmp_path_factory.mktemp("media")
    h264 = make_video(d / "gate.mp4", n_frames=240, size=(160, 96), scene_of=lambda k: k // 40)
    avi = make_video(d / "lobby.avi", n_frames=240, size=(160, 96), codec="mpeg4", scene_of=lambda k: 6 - k // 40)
    db = d / "r.duckdb"
    p = flashback_here("score", h264, avi, "--db", db, "--memory", seed_memory.path, *EVENTFUL, *TINY_CLI)
    assert p.returncode == 0, p.stderr
    return d, db, h264, avi


def media_rows(db):
    with duckdb.connect(str(db), read_only=True) as c:
        cur = c.execute("""SELECT v.path, e.start_s, e.end_s, e.peak_s, m.* FROM events e JOIN videos v USING (video_id)
                           JOIN event_media m USING (run_id, video_id, start_frame) ORDER BY v.path, e.start_s""")
        cols = [x[0] for x in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def test_every_event_gets_a_clip_and_a_thumbnail(scored):
    d, db, h264, avi = scored
    with duckdb.connect(str(db), read_only=True) as c:
        n_events = c.execute("SELECT count(*) FROM events").fetchone()[0]
    rows = media_rows(db)
    assert n_events >= 2 and len(rows) == n_events
    assert {r["path"] for r in rows} == {str(h264), str(avi)}
    media = d / "r.media"
    for r in rows:
        clip, thumb = media / r["clip_path"], media / r["thumb_path"]
        assert clip.is_file() and thumb.is_file() and r["note"] in (None, "")
        assert r["clip_start_s"] <= r["start_s"] and r["clip_end_s"] >= min(r["end_s"] + 1.9, 8.0)
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264"  # plays in any browser, whatever the source was
            times = [f.time for f in c.decode(s)]
        assert times[-1] - times[0] >= r["clip_end_s"] - r["clip_start_s"] - 0.2
        # the thumbnail is the peak frame as displayed
        ref = key_frames(r["path"], [r["peak_s"]])[0][1].astype(int)
        jpg = np.asarray(Image.open(thumb).convert("RGB")).astype(int)
        assert jpg.shape == ref.shape and np.abs(jpg - ref).mean() < 6


def test_h264_is_stream_copied_and_other_codecs_are_re_encoded(scored):
    d, db, h264, avi = scored
    source = {r["path"]: packets(r["path"]) for r in media_rows(db)}
    for r in media_rows(db):
        clip = packets(d / "r.media" / r["clip_path"])
        copied = set(clip) <= set(source[r["path"]])
        assert copied == (r["path"] == str(h264)), r["path"]


def test_no_media_keeps_none(tmp_path, seed_memory):
    video = make_video(tmp_path / "v.mp4", n_frames=120, size=(160, 96), scene_of=lambda k: k // 40)
    p = flashback_here("score", video, "--db", tmp_path / "r.duckdb", "--no-media", "--memory", seed_memory.path,
                  *EVENTFUL, *TINY_CLI)
    assert p.returncode == 0, p.stderr
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM events").fetchone()[0] > 0
        assert c.execute("SELECT count(*) FROM event_media").fetchone()[0] == 0
    assert not (tmp_path / "r.media").exists()


def test_clips_exports_files_and_an_index(scored, tmp_path):
    import csv

    d, db, h264, avi = scored
    rows = media_rows(db)
    out = tmp_path / "handover"
    p = flashback_here("clips", "--db", db, "--out", out, "--since", "1h")
    assert p.returncode == 0, p.stderr
    index = list(csv.DictReader(open(out / "index.csv")))
    assert len(index) == len(rows)
    for r in index:
        assert (out / r["clip"]).read_bytes()[4:8] == b"ftyp" and (out / r["thumbnail"]).read_bytes()[:2] == b"\xff\xd8"
        # named by camera (the folder: no camera file) and the event's clock time, not when the clip was made
        assert r["camera"] == str(h264.parent) and r["clip"].startswith(f"{h264.parent.name}_") and r["status"] == "pending"
        assert r["clock"].endswith("(file time)") and r["clip"].split("_")[1] == r["clock"][:19].replace("-", "").replace(" ", "-").replace(":", "")
    assert f"{len(rows)} clip(s)" in p.stdout
    # nothing made since tomorrow; a verdict filter; bad values are one line
    p = flashback_here("clips", "--db", db, "--out", tmp_path / "none", "--since", "2999-01-01")
    assert p.returncode == 0 and list(csv.DictReader(open(tmp_path / "none" / "index.csv"))) == []
    p = flashback_here("clips", "--db", db, "--out", tmp_path / "c", "--status", "confirmed")
    assert p.returncode == 0 and "0 clip(s)" in p.stdout
    p = flashback_here("clips", "--db", db, "--out", tmp_path / "x", "--since", "last week")
    assert p.returncode == 2 and "'last week': expected 24h, 7d, 30m or a date" in p.stderr
    p = flashback_here("clips", "--db", tmp_path / "nope.duckdb", "--out", tmp_path / "x")
    assert p.returncode == 1 and "nope.duckdb: no such results database" in p.stderr


def test_a_media_folder_that_cannot_be_written_is_named_and_the_scores_are_still_stored(tmp_path, seed_memory):
    video = make_video(tmp_path / "v.mp4", n_frames=120, size=(160, 96), scene_of=lambda k: k // 40)
    (tmp_path / "r.media").write_text("a file where the media folder should be")
    p = flashback_here("score", video, "--db", tmp_path / "r.duckdb", "--memory", seed_memory.path, *EVENTFUL, *TINY_CLI)
    assert p.returncode == 0, p.stderr
    assert f"{video}: no clip for " in p.stderr
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as c:
        n = c.execute("SELECT count(*) FROM events").fetchone()[0]
        notes = c.execute("SELECT clip_path, note FROM event_media").fetchall()
    assert n > 0 and len(notes) == n and all(clip is None and note for clip, note in notes)
