"""Run-time anomalies and exclusions (``--alert``, ``--ignore``, per camera in the camera file):
searched beside the memory, never written into it, explained in the user's words, recorded with
the run.  With random weights, what a text "means" is nothing, so the plumbing is tested exactly: a
segment whose vector is the alert's own must retrieve it first and score higher for it."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
from conftest import TINY_CLI, flashback_here

from flashback.errors import UsageError
from flashback.memory.extras import ALERT_CATEGORY
from flashback.scoring.pipeline import Detector
from flashback.settings import ScoringSettings
from flashback.store import RunRecord
from flashback.video.cameras import UserText, load_cameras, user_texts
from flashback.video.synthetic import make_video

ALERT = UserText("a forklift tipping over", True)
IGNORE = UserText("workers unloading pallets at night", False)


def score_one(det: Detector, vector: np.ndarray, scope=None):
    r = det.score_segment_vectors(vector[None, :], np.array([[0.0, 1.0]]), np.arange(30) / 30, 1.0, scope)
    return r.segments


def test_an_alert_is_retrieved_scored_and_explained_in_the_users_words(seed_memory, tiny_encoder):
    plain = Detector(seed_memory, tiny_encoder, ScoringSettings())
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(), texts=[ALERT, IGNORE])
    n = len(seed_memory.captions)
    assert len(det.captions) == n + 2 and det.captions.texts[n:] == [ALERT.text, IGNORE.text]
    assert len(seed_memory.captions) == n  # the bundle is not touched
    q = det.extras.vectors[0]
    with_alert, without = score_one(det, q), score_one(plain, q)
    assert with_alert.ids[0, 0] == n and with_alert.anomalous[0, 0]
    assert with_alert.scores[0] > without.scores[0]
    ex = with_alert.explain(det.captions)
    assert ex.captions[0].text == ALERT.text and ex.captions[0].category == ALERT_CATEGORY
    assert with_alert.dominant_categories(det.captions) == [ALERT_CATEGORY]
    # an exclusion pulls a segment that looks like it towards normal
    q = det.extras.vectors[1]
    with_ignore, without = score_one(det, q), score_one(plain, q)
    assert with_ignore.ids[0, 0] == n + 1 and not with_ignore.anomalous[0, 0]
    assert with_ignore.scores[0] < without.scores[0]


def test_alpha_scales_an_alert_like_any_anomalous_caption(seed_memory, tiny_encoder):
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(alpha=0.8), texts=[ALERT])
    q = det.extras.vectors[0]
    seg = score_one(det, q)
    k = list(seg.ids[0]).index(len(seed_memory.captions))
    assert seg.sims[0, k] == pytest.approx(0.8 * float(q @ det.extras.vectors[0]), abs=1e-5)


def test_camera_texts_reach_only_their_camera(seed_memory, tiny_encoder, tmp_path):
    f = tmp_path / "cameras.toml"
    f.write_text('[dock]\nalert = ["a forklift tipping over"]\n\n["*/lot/*"]\nignore = ["a parked car"]\n')
    cams = load_cameras(f)
    assert [t.to_dict() for t in cams.texts] == [{"text": "a forklift tipping over", "kind": "alert", "camera": "dock"},
                                                 {"text": "a parked car", "kind": "ignore", "camera": "*/lot/*"}]
    assert cams.camera_of_file("/data/lot/a.mp4") == "*/lot/*" and cams.camera_of_file("/data/x.mp4") is None
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(), texts=list(cams.texts))
    q, alert_id = det.extras.vectors[0], len(seed_memory.captions)
    assert score_one(det, q, scope="dock").ids[0, 0] == alert_id
    for scope in ("gate", "*/lot/*", None):
        assert alert_id not in score_one(det, q, scope=scope).ids[0]


@pytest.mark.parametrize("alerts, ignores, problem", [
    ([""], None, "--alert: the text is empty"),
    (None, ["x" * 400], "longer than 300 characters"),
])
def test_bad_texts_are_refused(alerts, ignores, problem):
    with pytest.raises(UsageError, match=problem):
        user_texts(alerts, ignores)
    assert user_texts(["a  fire\n"], ["a fire"]) == [UserText("a fire", True), UserText("a fire", False)]


def test_the_run_records_its_texts_and_is_reproducible(tmp_path, seed_memory, tiny_encoder):
    video = make_video(tmp_path / "v.mp4", n_frames=60)
    db = tmp_path / "r.duckdb"
    args = ["score", video, "--db", db, "--memory", seed_memory.path, "--json", tmp_path / "out.json", *TINY_CLI]
    p = flashback_here(*args, "--alert", "a forklift tipping over", "--ignore", "workers unloading pallets at night")
    assert p.returncode == 0, p.stderr
    assert flashback_here(*args).returncode == 0  # the same video without texts: another run
    with duckdb.connect(str(db), read_only=True) as c:
        runs = dict(c.execute("SELECT run_id, extras FROM runs").fetchall())
    assert len(runs) == 2 and sorted(v is None for v in runs.values()) == [False, True]
    recorded = json.loads(next(v for v in runs.values() if v))
    assert recorded == [{"text": "a forklift tipping over", "kind": "alert"},
                        {"text": "workers unloading pallets at night", "kind": "ignore"}]
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(), texts=user_texts(["a forklift tipping over"],
                                                                                ["workers unloading pallets at night"]))
    assert RunRecord.of(det).run_id in runs  # the same texts give the same run
    assert json.loads((tmp_path / "out.json").read_text())["run"].get("texts") is None  # the last run had none
    p = flashback_here("score", video, "--no-db", "--alert", " ", *TINY_CLI)
    assert p.returncode == 2 and "--alert: the text is empty" in p.stderr


def test_watch_takes_texts_per_run_and_per_feed(tmp_path, scene_memory, tiny_encoder):
    """Each feed's segments may retrieve the shared texts and their own camera's, never another's."""
    from flashback.live.feeds import FeedSpec
    from flashback.live.watcher import WatchConfig, Watcher
    from flashback.settings import PRESETS

    video = make_video(tmp_path / "v.mp4", n_frames=90)
    texts = [UserText("a window is smashed", True, scope="dock"), UserText("a calm street", False)]
    counts: dict[str, int] = {}

    class Count:
        def __getattr__(self, name):
            return lambda *a: None

        def segments(self, session, segments, captions, fps):
            counts[session.spec.name] = counts.get(session.spec.name, 0) + len(segments)

    w = Watcher(scene_memory, tiny_encoder, PRESETS["fast"], [FeedSpec("dock", str(video)), FeedSpec("lot", str(video))],
                [Count()], WatchConfig(duration_s=4.0), texts=texts)
    rows: list[tuple] = []
    search = w.detector.searcher.search

    def spy(queries, allowed=None):
        rows.extend(map(tuple, allowed))
        return search(queries, allowed)

    w.detector.searcher.search = spy
    w.run()
    assert counts["dock"] > 0 and counts["lot"] > 0
    assert rows.count((True, True)) == counts["dock"] and rows.count((False, True)) == counts["lot"]
    assert RunRecord.of(w.detector).extras == tuple(t.to_dict() for t in texts)
