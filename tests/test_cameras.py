"""Camera regions (``--roi``, ``--cameras``): what happens outside them cannot move the score.

The videos are lossless H.264 (qp 0), so the pixels inside a region are bit for bit the same in a
video with an incident outside it and one without; only what the encoder is shown can differ.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import TINY_CLI, flashback_here

from flashback.errors import InputError, UsageError
from flashback.scoring.pipeline import Detector
from flashback.settings import ScoringSettings
from flashback.video.cameras import Region, load_cameras, parse_roi
from flashback.video.synthetic import make_video

W, H = 128, 64


def scene(i: int, incident: bool) -> np.ndarray:
    """A square moving in the left half; with ``incident``, the bottom-right corner flashes from 1 s."""
    img = np.full((H, W, 3), 90, np.uint8)
    x = 4 + (i * 2) % 40
    img[20:36, x : x + 16] = (250, 220, 30)
    if incident and i >= 30:
        img[40:64, 100:128] = (255, 0, 0) if i % 4 < 2 else (255, 255, 255)
    return img


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("roi")
    quiet = make_video(d / "quiet.mp4", n_frames=90, size=(W, H), draw=lambda i: scene(i, False), options={"qp": "0"})
    incident = make_video(d / "incident.mp4", n_frames=90, size=(W, H), draw=lambda i: scene(i, True), options={"qp": "0"})
    return quiet, incident


@pytest.fixture(scope="module")
def detector(seed_memory, tiny_encoder):
    return Detector(seed_memory, tiny_encoder, ScoringSettings())


REGIONS = {
    "rectangle": parse_roi("0,0,64,64"),
    # the whole frame is its bounding box: only the mask keeps the corner out
    "polygon": Region((0, 0, W, H), ((0, 0), (127, 0), (0, 63)), "triangle"),
}


def test_without_a_region_the_incident_moves_the_score(pair, detector):
    quiet, incident = (detector.score(str(v)) for v in pair)
    assert not np.array_equal(quiet.segments.scores, incident.segments.scores)


@pytest.mark.parametrize("kind", REGIONS)
def test_an_incident_outside_the_region_does_not_move_the_score(pair, detector, kind):
    region = REGIONS[kind]
    quiet, incident = (detector.score(str(v), region=region) for v in pair)
    np.testing.assert_array_equal(quiet.segments.scores, incident.segments.scores)
    np.testing.assert_array_equal(quiet.scores, incident.scores)
    assert incident.region == region.describe()
    # and the region is not everything: the moving square inside it is seen
    whole = detector.score(str(pair[0]))
    assert not np.array_equal(whole.segments.scores, quiet.segments.scores)


def test_the_camera_file_picks_regions_by_glob_and_feed_name(tmp_path):
    f = tmp_path / "cameras.toml"
    f.write_text('[dock]\nroi = [0, 8, 64, 32]\n\n["*/lot/*.mp4"]\npolygon = [[0, 0], [50, 0], [0, 40]]\n')
    cams = load_cameras(f, "1,2,30,20")
    assert cams.for_feed("dock").box == (0, 8, 64, 32)
    assert cams.for_feed("gate").describe() == "roi 1,2,30,20"
    lot = cams.for_file("/data/lot/a.mp4")
    assert lot.box == (0, 0, 51, 41) and lot.describe() == "polygon 0,0 50,0 0,40"
    assert cams.for_file("/data/gate/a.mp4").box == (1, 2, 30, 20)


@pytest.mark.parametrize("text, problem", [
    ("[a]\nroi = [0, 0, 10]\n", "roi must be [x, y, width, height]"),
    ("[a]\nroi = [0, 0, 1, 10]\n", "width and height >= 2"),
    ("[a]\npolygon = [[0, 0], [1, 1]]\n", "at least 3 [x, y] points"),
    ("[a]\npolygon = [[0, 0], [nan, 5], [5, 5]]\n", "not strings, tables, nan or inf"),
    ("[a]\npolygon = [[0, 0], [inf, 5], [5, 5]]\n", "not strings, tables, nan or inf"),
    ("[a]\npolygon = [{x = 0, y = 0}, {x = 5, y = 0}, {x = 0, y = 5}]\n", "not strings, tables, nan or inf"),
    ("[a]\npolygon = [[\"0\", \"0\"], [\"5\", \"0\"], [\"0\", \"5\"]]\n", "not strings, tables, nan or inf"),
    ("[a]\nzone = 3\n", "unknown key 'zone'"),
    ("[a]\nroi = [0, 0, 8, 8]\npolygon = [[0, 0], [5, 0], [0, 5]]\n", "give one of"),
    ("[a\n", "not valid TOML"),
])
def test_a_bad_camera_file_is_one_line_naming_it(tmp_path, text, problem):
    f = tmp_path / "cams.toml"
    f.write_text(text)
    with pytest.raises(UsageError, match=re.escape(problem)) as e:
        load_cameras(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_a_region_outside_the_frame_fails_that_video_only(pair, detector, tmp_path):
    with pytest.raises(InputError, match=r"--roi 100,0,64,64: region 100,0 64x64 is outside the 128x64 frame"):
        detector.score(str(pair[0]), region=parse_roi("100,0,64,64"))
    p = flashback_here("score", *pair, "--roi", "100,0,64,64", "--no-db", *TINY_CLI)
    assert p.returncode == 1
    assert p.stderr.count("outside the 128x64 frame") == 2
    p = flashback_here("score", pair[0], "--roi", "0,0,wide", "--no-db", *TINY_CLI)
    assert p.returncode == 2 and "--roi 0,0,wide: expected x,y,width,height" in p.stderr


def test_the_store_records_the_region(pair, tmp_path):
    import duckdb

    db = tmp_path / "r.duckdb"
    p = flashback_here("score", pair[1], "--roi", "0,0,64,64", "--db", db, *TINY_CLI)
    assert p.returncode == 0, p.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT region FROM scorings").fetchall() == [("roi 0,0,64,64",)]


def test_watch_takes_each_feed_region_from_the_camera_file(pair, tmp_path):
    """A feed whose region does not fit its frames stops with one line; the other feed goes on."""
    import duckdb

    cams = tmp_path / "cameras.toml"
    cams.write_text("[left]\npolygon = [[0, 0], [127, 0], [0, 63]]\n\n[wrong]\nroi = [0, 0, 640, 480]\n\n[gone]\nroi = [0, 0, 8, 8]\n")
    db = tmp_path / "w.duckdb"
    p = flashback_here("watch", f"left={pair[1]}", f"wrong={pair[0]}", "--cameras", cams, "--db", db,
                  "--events", tmp_path / "ev.jsonl", "--duration", "8", *TINY_CLI)
    assert p.returncode == 1
    assert f"{cams} [wrong]: region 0,0 640x480 is outside the 128x64 frame" in p.stderr
    # said when it happened (a log line and an outage, as a lost feed is), not only in the summary at exit
    assert "feed wrong: stopped: " in p.stderr
    assert f"{cams} [gone]: no feed has this name" in p.stderr
    lines = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert [x["feed"] for x in lines if x["type"] == "outage_started"] == ["wrong"]
    with duckdb.connect(str(db), read_only=True) as con:
        rows = dict(con.execute("SELECT f.feed, s.region FROM scorings s JOIN live_feeds f USING (video_id)").fetchall())
        scored = con.execute("SELECT count(*) FROM frame_scores JOIN live_feeds f USING (video_id) "
                             "WHERE f.feed = 'left'").fetchone()[0]
    assert rows == {"left": "polygon 0,0 127,0 0,63", "wrong": "roi 0,0,640,480"}
    assert scored >= 3


def test_results_with_and_without_a_region_are_kept_side_by_side(pair, tmp_path):
    """Re-scoring with --roi used to replace the earlier whole-frame result without a word (the region
    was not part of the run id); a camera table that matches nothing was ignored silently."""
    import duckdb

    db, js = tmp_path / "r.duckdb", tmp_path / "r.json"
    whole = flashback_here("score", pair[1], "--db", db, *TINY_CLI)
    cut = flashback_here("score", pair[1], "--roi", "0,0,64,64", "--db", db, "--json", js, *TINY_CLI)
    assert whole.returncode == cut.returncode == 0, whole.stderr + cut.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT s.run_id, s.region, r.region FROM scorings s JOIN runs r USING (run_id) ORDER BY 2").fetchall()
    assert len(rows) == 2 and rows[0][1:] == ("roi 0,0,64,64", "roi 0,0,64,64") and rows[1][1:] == (None, None)
    assert rows[0][0] != rows[1][0]
    assert f"region roi 0,0,64,64; texts: none; run {rows[0][0]}" in cut.stdout
    assert json.loads(js.read_text())["videos"][0]["run"]["run_id"] == rows[0][0]

    cams = tmp_path / "cameras.toml"
    cams.write_text('["*/nowhere/*.mp4"]\nroi = [0, 0, 32, 32]\n')
    p = flashback_here("score", pair[1], "--cameras", cams, "--no-db", *TINY_CLI)
    assert p.returncode == 0 and f"{cams} [*/nowhere/*.mp4]: matches none of the inputs" in p.stderr


def test_a_run_without_region_camera_or_texts_keeps_its_id():
    from flashback.store import RunRecord

    run = RunRecord({"x": 1}, "mem", "/mem", "enc", "t", ({"text": "a fire", "kind": "alert", "camera": "dock"},))
    assert run.for_input(None, None, frozenset({"dock"})) is run
    assert run.for_input(None, None).extras == () and run.for_input(None, None).run_id != run.run_id  # dock's text is not its
    assert run.for_input("roi 0,0,8,8", "dock", frozenset({"dock"})).run_id != run.run_id
    assert RunRecord({"x": 1}, "mem", "/mem", "enc", "t").run_id == "de19d42ac1f6b5ad"  # as stores before version 7 hold it
