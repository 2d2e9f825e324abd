"""Verdicts adapt the memory without training: a false alarm's segment vectors become normal
exemplars in its camera's overlay (a bundle of its own), re-scoring that camera lowers the event,
other cameras are untouched, and undo puts everything back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CLI, copy_of, flashback_here

from flashback.memory.bundle import load_bundle
from flashback.review.overlays import list_overlays, load_extras
from flashback.scoring.pipeline import Detector
from flashback.settings import ScoringSettings
from flashback.video.cameras import camera_of
from ui.data import EventKey, ReviewDB


@pytest.fixture
def db(filled_store, tmp_path):
    return copy_of(filled_store, tmp_path)


def rescore(db, seed_memory, tiny_encoder, result):
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.3, min_event_s=0.5),
                   overlays=load_extras(db, encoder_key=tiny_encoder.identity.key))
    return det.score(result.source, scope={camera_of(result.source, live=False)})


def peak_near(result, t: float) -> float:
    return float(result.scores[np.searchsorted(result.frame_times, t)])


def test_a_false_alarm_lowers_its_event_on_its_camera_only(db, filled_store, seed_memory, tiny_encoder):
    gate, _, lobby = filled_store[2]
    review = ReviewDB(db)
    ev = next(r for r in review.events() if r["video_id"] == gate.video_id)
    key = EventKey.decode(ev["key"])
    said = review.save_verdict(key, ev["end_frame"], "false_alarm", "ana")
    assert "normal exemplar(s)" in said
    [o] = list_overlays(db)
    assert o.camera == str(Path(gate.source).parent) and o.encoder == tiny_encoder.identity.key
    assert {e["label"] for e in o.entries} == {"normal"} and {e["reviewer"] for e in o.entries} == {"ana"}
    assert 1 <= len(o.entries) <= 16 and o.vectors.shape == (len(o.entries), tiny_encoder.identity.dim)
    bundle = load_bundle(o.path)  # a bundle of its own: manifest, checksums, the encoder pinned
    assert bundle.manifest.provenance == {"kind": "overlay", "camera": o.camera}
    assert not (Path(seed_memory.path) / "overlays").exists()  # the base memory is untouched

    mid = (ev["start_s"] + ev["end_s"]) / 2
    after = rescore(db, seed_memory, tiny_encoder, gate)
    assert peak_near(after, mid) < peak_near(gate, mid) - 0.05
    np.testing.assert_array_equal(rescore(db, seed_memory, tiny_encoder, lobby).scores, lobby.scores)  # another camera

    # undo: the overlay is gone and the scores are what they were; the verdict itself stays
    assert review.undo_adaptation(key) == 1 and list_overlays(db) == []
    np.testing.assert_array_equal(rescore(db, seed_memory, tiny_encoder, gate).scores, gate.scores)
    assert review.history(key)[0]["verdict"] == "false_alarm"


def test_confirmed_adds_anomalous_exemplars_and_a_changed_verdict_replaces_them(db, filled_store):
    gate = filled_store[2][0]
    review = ReviewDB(db)
    ev = next(r for r in review.events() if r["video_id"] == gate.video_id)
    key = EventKey.decode(ev["key"])
    review.save_verdict(key, ev["end_frame"], "confirmed", "bo")
    [o] = list_overlays(db)
    assert {(e["label"], e["category"]) for e in o.entries} == {("anomalous", ev["category"])}
    n = len(o.entries)
    review.save_verdict(key, ev["end_frame"], "false_alarm", "bo")
    [o] = list_overlays(db)
    assert len(o.entries) == n and {e["label"] for e in o.entries} == {"normal"}  # replaced, not added
    review.save_verdict(key, ev["end_frame"], "unsure", "bo")
    assert list_overlays(db) == []  # unsure: the event teaches nothing


def test_overlay_commands_and_scoring_with_them(db, filled_store, seed_memory):
    gate = filled_store[2][0]
    review = ReviewDB(db)
    ev = next(r for r in review.events() if r["video_id"] == gate.video_id)
    review.save_verdict(EventKey.decode(ev["key"]), ev["end_frame"], "false_alarm", "ana")
    camera = str(Path(gate.source).parent)
    p = flashback_here("overlay", "list", "--db", db)
    assert p.returncode == 0 and camera in p.stdout and "fb-test-tiny" in p.stdout
    p = flashback_here("overlay", "show", "gate", "--db", db)
    assert p.returncode == 0 and "false_alarm" in p.stdout and "ana" in p.stdout
    assert f"{gate.video_id}:{ev['start_frame']}" in p.stdout.replace("│\n│", "").replace(" ", "")  # whole: remove takes it
    # re-scoring the camera from the command line uses its overlay by itself
    common = ["--memory", seed_memory.path, "--threshold", "0.3", "--min-event", "0.5", "--db", db, *TINY_CLI]
    assert flashback_here("score", gate.source, *common).returncode == 0
    lowered = [r for r in ReviewDB(db).events() if r["video_id"] == gate.video_id and r["start_frame"] == ev["start_frame"]]
    assert not lowered or lowered[0]["peak_score"] < ev["peak_score"]
    p = flashback_here("score", gate.source, "--overlay", db.parent / "nowhere", *common)
    assert p.returncode == 2 and "--overlay" in p.stderr and "not an overlay folder" in p.stderr
    p = flashback_here("overlay", "remove", "gate", "--db", db, "--event", f"{gate.video_id}:{ev['start_frame']}")
    assert p.returncode == 0 and list_overlays(db) == []
    p = flashback_here("overlay", "show", "gate", "--db", db)
    assert p.returncode == 2 and "no overlay for camera 'gate'" in p.stderr


def test_the_review_app_learns_from_a_verdict_and_undoes_it(db, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui import state

    monkeypatch.setenv(state.DB_ENV, str(db))
    at = AppTest.from_file(str(Path(__file__).parents[1] / "ui" / "app.py"), default_timeout=60)
    at.run()
    at.button(key="open-0").click().run()
    at.toggle(key=state.AUTO_NEXT).set_value(False).run()  # stay on this event to see what it taught
    at.text_input(key=state.REVIEWER).input("ana").run()
    at.button(key="verdict-false_alarm").click().run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("Learned: ") for c in at.caption)
    assert len(list_overlays(db)) == 1
    at.button(key="undo-adapt").click().run()
    assert not at.exception, at.exception
    assert list_overlays(db) == [] and not any(c.value.startswith("Learned: ") for c in at.caption)


@pytest.mark.parametrize("damage", ["checksum", "provenance", "camera"])
def test_a_damaged_overlay_costs_only_its_own_camera(db, filled_store, seed_memory, damage, monkeypatch):
    """One unreadable overlay used to stop every scoring of the store, show a traceback on the Event
    page, and answer a verdict click with "Not saved" although the row was written."""
    import json

    from streamlit.testing.v1 import AppTest

    from flashback.memory.bundle import BundleSpec, CaptionTable, write_bundle
    from ui import state

    gate, _, lobby = filled_store[2]
    review = ReviewDB(db)
    events = {r["video_id"]: r for r in review.events()}
    for video in (gate, lobby):
        ev = events[video.video_id]
        review.save_verdict(EventKey.decode(ev["key"]), ev["end_frame"], "false_alarm", "ana")
    bad = next(o for o in list_overlays(db) if o.camera.endswith("gate"))
    if damage == "checksum":
        (bad.path / "normal.faiss").write_bytes(b"\0" * 64)
    else:  # a well-formed bundle whose rows or camera were edited (and re-signed)
        b = load_bundle(bad.path)
        rows = list(b.captions.provenance)
        if damage == "provenance":
            rows[0] = json.dumps({"verdict": "false_alarm"})
        camera = bad.camera if damage == "provenance" else str(Path(lobby.source).parent)
        write_bundle(bad.path, CaptionTable(b.captions.texts, b.captions.anomalous, b.captions.categories, rows), bad.vectors,
                     BundleSpec(b.manifest.encoder, alpha=1.0, template="none", logit_scale=100.0,
                                provenance={"kind": "overlay", "camera": camera}), require_both=False)
    assert [o.camera for o in list_overlays(db)] == [str(Path(lobby.source).parent)]
    common = ["--memory", seed_memory.path, "--threshold", "0.3", "--min-event", "0.5", "--db", db, *TINY_CLI]
    p = flashback_here("score", lobby.source, gate.source, *common)
    assert p.returncode == 0, p.stderr
    named = [line for line in p.stderr.splitlines() if line.startswith("flashback: warning:") and str(bad.path) in line]
    assert len(named) == 1 and "left out" in named[0] and "Traceback" not in p.stderr
    p = flashback_here("overlay", "list", "--db", db)
    assert p.returncode == 1 and "lobby" in p.stdout and str(bad.path) in p.stderr and "Traceback" not in p.stderr

    ev = next(r for r in ReviewDB(db).events() if r["video_id"] == gate.video_id)
    key = EventKey.decode(ev["key"])
    said = review.save_verdict(key, ev["end_frame"], "confirmed", "bo")
    assert said.startswith("the camera's overlay did not learn it") and str(bad.path) in said
    assert [h["verdict"] for h in review.history(key)] == ["confirmed", "false_alarm"]  # saved once, not twice

    monkeypatch.setenv(state.DB_ENV, str(db))
    at = AppTest.from_file(str(Path(__file__).parents[1] / "ui" / "app.py"), default_timeout=60)
    at.run()
    keys = [r["key"] for r in ReviewDB(db).events()]
    at.button(key=f"open-{keys.index(ev['key'])}").click().run()
    at.text_input(key=state.REVIEWER).input("cy").run()
    at.button(key="verdict-unsure").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Saved: Unsure by cy"] and not at.error
    assert any(str(bad.path) in w.value.replace("\\", "") for w in at.warning)
