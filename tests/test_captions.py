"""The caption path: parsing, alignment, one shared scoring back end, encoder pinning, and a small
end-to-end run on real UCF-Crime dev captions with the real MiniLM model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import flashback_here

from flashback.scoring.captions import CaptionInputError, read_frame_json, read_jsonl

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucf_crime_text_dev"


@pytest.fixture(scope="module")
def minilm():
    from flashback.encoders.text_encoder import SentenceEncoder

    return SentenceEncoder()


def test_frame_json_windows_align_to_frames(tmp_path):
    f = tmp_path / "Arrest001_x264.json"
    f.write_text(json.dumps({"32": "c", "0": "a", "16": "b"}))
    t = read_frame_json(f, fps=32.0)
    assert t.video == "Arrest001_x264" and t.texts == ["a", "b", "c"]
    np.testing.assert_allclose(t.starts_s, [0, 0.5, 1.0])
    np.testing.assert_allclose(t.ends_s, [0.5, 1.0, 1.5])  # the last window runs 16 frames


@pytest.mark.parametrize("content,match", [
    ("{", r"x\.json:1: not valid JSON"), ('{"a": "x"}', r"key 'a' is not a frame index"),
    ('{"0": ""}', "caption at frame 0 is empty"), ("[]", "expected a non-empty object"),
])
def test_bad_frame_json(tmp_path, content, match):
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(CaptionInputError, match=match):
        read_frame_json(tmp_path / "x.json", 30)


def test_jsonl_rows_and_their_errors(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"video": "cam1.mp4", "start": 0, "end": 2, "text": "a man walks"}\n'
                 '{"video": "cam1.mp4", "start": 60, "end": 90, "unit": "frames", "text": "a man runs"}\n'
                 '{"video": "cam2", "start": 1, "end": 3, "text": "a car"}\n')
    tracks = {t.video: t for t in read_jsonl(f, fps=30)}
    np.testing.assert_allclose(tracks["cam1"].starts_s, [0, 2])
    np.testing.assert_allclose(tracks["cam1"].ends_s, [2, 3])
    assert tracks["cam2"].texts == ["a car"]
    f.write_text('{"video": "v", "start": 0, "end": 2, "text": "ok"}\n{"video": "v", "start": 3, "end": 1, "text": "x"}\n')
    with pytest.raises(CaptionInputError, match=r"c\.jsonl:2: start 3.0 and end 1.0"):
        read_jsonl(f, 30)
    f.write_text('{"video": "v", "start": 0, "text": "x"}\n')
    with pytest.raises(CaptionInputError, match=r"c\.jsonl:1: a row needs video, start, end and text"):
        read_jsonl(f, 30)


def test_caption_and_video_queries_share_one_scoring_path(seed_memory, tiny_encoder, tmp_path):
    """Identical vectors over identical spans give identical scores, whichever front end made them."""
    from flashback.scoring.captions import CaptionTrack
    from flashback.scoring.pipeline import Detector

    det = Detector(seed_memory, tiny_encoder)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, tiny_encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    track = CaptionTrack("v", "v.json", np.arange(6) * 0.5, np.arange(1, 7) * 0.5, ["x"] * 6)
    by_caption = det.score_caption_track(track, fps=30, n_frames=90, vectors=vectors)
    frame_times = np.arange(90) / 30
    by_segments = det.score_segment_vectors(vectors, np.stack([track.starts_s, track.ends_s], 1), frame_times, 3.0)
    np.testing.assert_array_equal(by_caption.scores, by_segments.scores)
    np.testing.assert_array_equal(by_caption.segments.ids, by_segments.segments.ids)


def test_a_clip_memory_refuses_a_text_encoder(seed_memory, minilm):
    from flashback.errors import EncoderMismatchError
    from flashback.scoring.pipeline import Detector

    with pytest.raises(EncoderMismatchError, match="sentence-transformers:all-MiniLM-L6-v2"):
        Detector(seed_memory, minilm)


@pytest.mark.slow  # in process, but most of a minute: the full suite's
@pytest.mark.skipif(not DEV.is_dir(), reason="needs ../shared/data/ucf_crime_text_dev")
def test_end_to_end_on_a_slice_of_the_real_dev_set(tmp_path):
    """Six real videos' captions (3 anomalous, 3 normal), the real MiniLM, a real DuckDB file."""
    names = ["Arrest001_x264", "Fighting033_x264", "Explosion025_x264",
             "Normal_Videos_345_x264", "Normal_Videos_745_x264", "Normal_Videos_831_x264"]
    caps = tmp_path / "captions"
    caps.mkdir()
    for n in names:
        shutil.copy(DEV / "captions" / f"{n}.json", caps)
    db, out = tmp_path / "c.duckdb", tmp_path / "report"
    p = flashback_here("eval", "--dataset", "ucf-crime", "--captions", str(caps),
         "--annotations", str(DEV / "Temporal_Anomaly_Annotation.txt"), "--frames", str(DEV / "frames.txt"),
         "--db", str(db), "--out", str(out))
    assert p.returncode == 0, p.stderr
    auc = float(next(line for line in p.stdout.splitlines() if line.startswith("AUC ")).split()[1])
    assert 0 <= auc <= 100 and next(line for line in p.stdout.splitlines() if line.startswith("AP "))
    doc = json.loads((out / "report.json").read_text())
    assert doc["metrics"]["n_videos"] == 6 and doc["metrics"]["n_anomalous_videos"] == 3
    frames = {line.split()[0]: int(line.split()[2]) + 1 for line in (DEV / "frames.txt").read_text().splitlines()}
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT count(DISTINCT video_id) FROM scorings").fetchone()[0] == 6
        assert c.execute("SELECT count(*) FROM frame_scores").fetchone()[0] == sum(frames[n] for n in names)
        assert c.execute("SELECT encoder_id FROM runs").fetchone()[0] == "sentence-transformers:all-MiniLM-L6-v2@packaged/384"


def _caption_memory(tmp_path, encoder):
    """A small labelled memory embedded by the real MiniLM: 8 normal and 8 anomalous captions."""
    from flashback.memory.bundle import CaptionTable, load_bundle
    from memory_builder import build_memory

    normal = ["a man walks his dog along the sidewalk", "people wait at a bus stop", "a woman buys bread at a counter",
              "cars drive slowly down a street", "a cashier scans groceries", "children play in a park",
              "a man reads a newspaper on a bench", "shoppers browse the shelves of a store"]
    anomalous = [("a man smashes a car window with a brick", "Vandalism"), ("two men punch and kick each other", "Fighting"),
                 ("a masked man points a gun at a cashier", "Robbery"), ("a building explodes in a ball of fire", "Explosion"),
                 ("a car crashes into another car at an intersection", "RoadAccidents"), ("a man steals a bag and runs", "Stealing"),
                 ("police officers handcuff a man on the ground", "Arrest"), ("a man sets fire to a trash can", "Arson")]
    table = CaptionTable(normal + [t for t, _ in anomalous], [False] * 8 + [True] * 8,
                         ["normal"] * 8 + [c for _, c in anomalous], ["test"] * 16)
    build_memory(table, encoder, tmp_path / "mem")
    return load_bundle(tmp_path / "mem")


def test_score_captions_cli_scores_stores_exports_and_names_bad_files(tmp_path, minilm):
    """Real MiniLM, real DuckDB: a JSON track and a two-video JSONL are scored and stored; a broken
    file is named on stderr and does not stop the others (exit 1)."""
    memory = _caption_memory(tmp_path, minilm)
    caps = tmp_path / "caps"
    caps.mkdir()
    calm = "a man walks his dog along the sidewalk"
    (caps / "street.json").write_text(json.dumps(
        {str(16 * i): (calm if not 20 <= i < 40 else "a man smashes the window of a parked car with a brick")
         for i in range(60)}))
    rows = [{"video": "shop", "start": 2 * i, "end": 2 * i + 2, "text": "a cashier scans groceries"} for i in range(10)]
    rows += [{"video": "park", "start": i, "end": i + 1, "text": "children play on the grass in a park"} for i in range(8)]
    (caps / "more.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (caps / "broken.json").write_text('{"0": "a caption", "16": ')
    db, exported = tmp_path / "r.duckdb", tmp_path / "out.json"
    p = flashback_here("score-captions", str(caps), "--memory", str(memory.path),
         "--db", str(db), "--json", str(exported), "--quiet")
    assert p.returncode == 1, p.stderr
    assert "broken.json" in p.stderr and "not valid JSON" in p.stderr
    doc = json.loads(exported.read_text())
    assert doc["run"]["settings"]["smoothing_sigma_s"] == 3.0 and "centre" not in doc["run"]["settings"]  # the captions preset
    by_name = {Path(v["source"]).name.split("#")[-1]: v for v in doc["videos"]}
    assert set(by_name) == {"street.json", "shop", "park"}
    street = by_name["street.json"]
    assert street["n_frames"] == 60 * 16
    [event] = street["events"]  # frames 320..640 at 30 FPS: 10.7 s to 21.3 s
    assert 9.0 < event["start_s"] < 12.5 and 19.5 < event["end_s"] < 23.0
    assert event["dominant_category"] == "Vandalism"
    assert event["captions"][0]["text"] == "a man smashes a car window with a brick"
    assert not by_name["shop"]["events"] and not by_name["park"]["events"]
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT count(DISTINCT video_id) FROM scorings").fetchone()[0] == 3
        assert c.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        assert c.execute("SELECT DISTINCT encoder_id FROM runs").fetchall() == [(minilm.identity.key,)]


def test_score_captions_refuses_a_memory_of_another_encoder(tmp_path, seed_memory):
    caps = tmp_path / "a.json"
    caps.write_text(json.dumps({"0": "a man walks"}))
    p = flashback_here("score-captions", str(caps), "--memory", str(seed_memory.path),
         "--no-db", "--quiet")
    assert p.returncode == 1 and "all-MiniLM-L6-v2" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_score_captions_with_the_clip_text_tower(tmp_path, seed_memory):
    """--text-encoder clip: captions go through the same open_clip model the memory was built with."""
    from conftest import TINY_CLI

    caps = tmp_path / "a.jsonl"
    caps.write_text("\n".join(json.dumps({"video": "v", "start": i, "end": i + 1, "text": t})
                              for i, t in enumerate(["a man walks his dog", "a man smashes a car window"] * 3)) + "\n")
    out = tmp_path / "o.json"
    p = flashback_here("score-captions", str(caps), "--memory", str(seed_memory.path),
         "--text-encoder", "clip", *TINY_CLI, "--no-db", "--json", str(out), "--quiet")
    assert p.returncode == 0, p.stderr
    [video] = json.loads(out.read_text())["videos"]
    assert video["n_frames"] == 180 and video["grid_samples"] == 6
