"""The ``flashback`` command end to end: in this process (``flashback_here``) where what a command does
is tested, and as the installed console script in a subprocess where a process is (another
process holding the store's lock)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import duckdb
import pytest
from conftest import TINY_CLI, flashback_here

from flashback.encoders.backends import bf16_pays, installed
from flashback.video.synthetic import make_video


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("cams")
    (d / "north").mkdir()
    make_video(d / "north" / "a.mp4", n_frames=60, scene_of=lambda i: i // 20)
    make_video(d / "b.mkv", n_frames=50, fps=25, codec="libvpx-vp9")
    (d / "north" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(2000))
    return d


def test_folder_with_one_corrupt_file(folder, tmp_path):
    db, js, cs = tmp_path / "r.duckdb", tmp_path / "r.json", tmp_path / "r.csv"
    p = flashback_here("score", folder, "--db", db, "--json", js, "--csv", cs, "--threshold", "0.3", *TINY_CLI)
    assert p.returncode == 1, p.stderr
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert errors == [f"flashback: error: {folder / 'north' / 'broken.mp4'}: not a readable video (Invalid data found when processing input)"]
    assert "scored 2 video(s)" in p.stdout and "1 failed" in p.stdout
    with duckdb.connect(str(db), read_only=True) as c:
        paths = sorted(r[0] for r in c.execute("SELECT path FROM scorings").fetchall())
        assert paths == [str(folder / "b.mkv"), str(folder / "north" / "a.mp4")]
        n_frames = c.execute("SELECT count(*) FROM frame_scores").fetchone()[0]
        assert n_frames == 110
    doc = json.loads(js.read_text())
    assert [v["source"] for v in doc["videos"]] == [str(folder / "b.mkv"), str(folder / "north" / "a.mp4")]
    assert doc["failures"][0]["source"] == str(folder / "north" / "broken.mp4")
    assert doc["run"]["settings"]["top_k"] == 10 and doc["run"]["settings"]["alpha"] == 0.95
    assert len(doc["videos"][0]["frame_scores"]["score"]) == 50
    rows = list(csv.DictReader(cs.open()))
    assert len(rows) == 110 and set(rows[0]) >= {"source", "frame", "time_s", "score", "event"}

    # the same command again replaces rows instead of adding to them
    p = flashback_here("score", folder, "--db", db, "--threshold", "0.3", *TINY_CLI)
    assert p.returncode == 1
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM frame_scores").fetchone()[0] == 110
        assert c.execute("SELECT count(*) FROM scorings").fetchone()[0] == 2


def test_all_good_exits_0_and_shows_events(folder, tmp_path):
    p = flashback_here("score", folder / "b.mkv", "--db", tmp_path / "r.duckdb", "--threshold", "0.01", *TINY_CLI)
    assert p.returncode == 0, p.stderr
    assert "Flagged events" in p.stdout and "b.mkv" in p.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["score", "x.mp4", "--overlap", "1.5"], "overlap must be in [0, segment length)"),
        (["score", "x.mp4", "--no-such-flag"], "unrecognized arguments"),
        (["score"], "give at least one PATH (a video, a folder or a URL), or --sample"),
        (["score", "x.mp4", "--pretrained", "a", "--checkpoint", "b"], "not allowed with argument"),
    ],
)
def test_usage_errors_exit_2(args, message):
    p = flashback_here(*args)
    assert p.returncode == 2 and message in p.stderr


@pytest.mark.slow
def test_locked_database_is_named(folder, tmp_path):
    db = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(db)!r}); print('ok', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        p = flashback_here("score", folder / "b.mkv", "--db", db, *TINY_CLI)  # the other process is the holder
    finally:
        holder.kill()
        holder.wait()
    assert p.returncode == 1
    assert f"flashback: error: {db}: locked by another process (PID {holder.pid})" in p.stderr


def test_memory_from_captions_info_verify_and_wrong_encoder(folder, tmp_path):
    caps = tmp_path / "caps.csv"
    caps.write_text("text,label,category\na quiet road,normal,\npeople shop,normal,\na car burns,anomalous,Arson\n")
    mem = tmp_path / "mem"
    p = flashback_here("memory", "from-captions", caps, "--out", mem, "--alpha", "0.9", *TINY_CLI)
    assert p.returncode == 0, p.stderr
    assert "2 normal and 1 anomalous" in p.stdout
    p = flashback_here("memory", "info", mem)
    assert p.returncode == 0 and "alpha        0.9" in p.stdout and "Arson" in p.stdout
    assert flashback_here("memory", "verify", mem).returncode == 0

    p = flashback_here("score", folder / "b.mkv", "--memory", mem, "--no-db", "--encoder", "fb-test-tiny",
                  "--pretrained", "random", "--device", "cpu", "--frames-per-segment", "4")
    assert p.returncode == 0, p.stderr

    # a memory built for these weights refuses a different encoder, naming both
    other = tmp_path / "other.pt"
    import open_clip
    import torch

    torch.manual_seed(5)
    torch.save(open_clip.create_model("fb-test-tiny").state_dict(), other)
    p = flashback_here("score", folder / "b.mkv", "--memory", mem, "--no-db", "--encoder", "fb-test-tiny",
                  "--checkpoint", other, "--device", "cpu")
    assert p.returncode == 1
    assert "open_clip:fb-test-tiny@random:0/32" in p.stderr and "@sha256:" in p.stderr

    (mem / "captions.parquet").write_bytes(b"tampered")
    p = flashback_here("memory", "verify", mem)
    assert p.returncode == 1 and "captions.parquet" in p.stderr
    p = flashback_here("score", folder / "b.mkv", "--memory", mem, "--no-db", *TINY_CLI)
    assert p.returncode == 1 and "captions.parquet" in p.stderr


def test_missing_checkpoint_and_unknown_model_are_one_line(folder):
    p = flashback_here("score", folder / "b.mkv", "--no-db", "--encoder", "fb-test-tiny", "--checkpoint", "/nope.pt")
    assert p.returncode == 1 and "flashback: error: /nope.pt: checkpoint file not found" in p.stderr
    p = flashback_here("score", folder / "b.mkv", "--no-db", "--encoder", "ViT-Q-99")
    assert p.returncode == 1 and "unknown open_clip model 'ViT-Q-99'" in p.stderr


def test_bench_measures_every_stage_and_writes_its_report(tmp_path):
    """A small real run of `flashback bench`: every stage measured, JSON and markdown written."""
    out = tmp_path / "bench"
    p = flashback_here("bench", "--seconds", "2", "--size", "64x48", "--model", "fb-test-tiny", "--device", "cpu",
                       "--feeds", "2", "--search-sizes", "400", "--backends", "openvino", "--out", out)
    assert p.returncode == 0, p.stderr
    report = json.loads((out / "bench-cpu.json").read_text())
    assert set(report["decode_video_fps"]) == {"default", "fast", "captions"}
    assert all(v > 0 for v in report["decode_video_fps"].values())
    assert {"torch/fp32/batch1", "torch/fp32/batch64", "torch/bf16/batch1"} <= set(report["encoder_frames_per_s"])
    cosines = report["lowest_cosine_to_torch_fp32"]
    assert cosines["torch/fp32"] == {"image": 1.0, "text": 1.0} and cosines["torch/bf16"]["image"] < 1
    if installed("openvino"):  # the default CPU path, timed beside torch and held to its stated fidelity
        keys = set(report["encoder_frames_per_s"])
        assert "openvino/fp32/batch32" in keys and (not bf16_pays() or "openvino/bf16 image, fp32 text/batch32" in keys)
        assert all(v >= 0.9999 for k, c in cosines.items() if k.startswith("openvino/") and "int8" not in k
                   for v in c.values())  # int8 is opt-in: timed and its fidelity shown, not held to the floor
        assert not installed("nncf") or "openvino/int8 image, fp32 text" in cosines
    assert [r["index"].split(" ")[0] for r in report["search"]][0] == "Flat" and report["search"][0]["recall_at_10"] == 1.0
    assert report["end_to_end"]["fast x2 feeds"]["feeds"] == 2 and report["end_to_end"]["default"]["video_fps"] > 0
    assert report["peak_rss_mb"] > 0 and "| end to end |" in (out / "bench-cpu.md").read_text()
    e = report["efficiency"]["default"]
    assert e["macs_per_frame"] == 1_869_824 and e["gmacs_per_frame"] == 0.00187  # fb-test-tiny, counted by hand below
    assert e["frames_encoded_per_video_s"] == report["end_to_end"]["default"]["frames_encoded_per_video_second"]
    assert e["gmacs_per_video_s"] == pytest.approx(e["gmacs_per_frame"] * e["frames_encoded_per_video_s"], abs=0.05)
    assert e["joules_per_video_hour"] is None and "GMACs per video-second" in (out / "bench-cpu.md").read_text()
    assert "| decode |" in p.stdout
    # progress per stage on stderr, human labels, no raw keys and no library chatter
    assert [line.split("]")[0] for line in p.stderr.splitlines() if line.startswith("flashback: [")] == \
        [f"flashback: [{k}/6" for k in range(1, 7)]
    assert "text_embedding" not in p.stdout and "| memory build | text tower, torch/fp32 |" in p.stdout
    assert "WARNING clustering" not in p.stderr and "Warning" not in p.stderr


def test_bench_quick_is_the_short_version(tmp_path):
    out = tmp_path / "bench"
    p = flashback_here("bench", "--quick", "--size", "64x48", "--model", "fb-test-tiny", "--device", "cpu", "--out", out)
    assert p.returncode == 0, p.stderr
    report = json.loads((out / "bench-cpu.json").read_text())
    assert set(report["decode_video_fps"]) == {"fast"} and set(report["encoder_frames_per_s"]) == {"torch/fp32/batch1", "torch/fp32/batch32"}
    assert {r["memory_size"] for r in report["search"]} == {10_000} and report["video"].endswith(", 4 s")
    assert set(report["end_to_end"]) == {"fast", "fast x2 feeds"}


def test_the_efficiency_report_counts_what_a_hand_count_gives(tiny_encoder):
    """fb-test-tiny: a 32-pixel frame in 8-pixel patches is 16 patches + 1 class token, width 64, 2 layers.
    Patch embedding 16 x 64 x 192; per layer qkv 17 x 64 x 192, output 17 x 64 x 64, MLP 2 x 17 x 64 x 256;
    projection 64 x 32.  (The attention-score products are not counted: about 1 % of a real ViT.)"""
    from flashback.encoders.efficiency import model_cost

    macs = 16 * 64 * 192 + 2 * (17 * 64 * 192 + 17 * 64 * 64 + 2 * 17 * 64 * 256) + 64 * 32
    cost = model_cost(tiny_encoder)
    assert cost["macs_per_frame"] == macs
    assert cost["params_image_tower_m"] == round(sum(p.numel() for p in tiny_encoder._model.visual.parameters()) / 1e6, 2)


def test_a_folder_kept_from_python_is_stored_as_flashback_score_stores_it(folder, tmp_path, seed_memory, tiny_encoder):
    """The documented Python call (store.keeper.keep_all with a scheduler) and the command write the
    same rows: one contract for the local loop, the pool and Ray, one keeper for what is stored."""
    from flashback.scoring.pipeline import Detector, Work
    from flashback.scoring.schedule import InProcess
    from flashback.settings import ScoringSettings
    from flashback.store import ResultStore, RunRecord
    from flashback.store.keeper import Keeper, keep_all
    from flashback.video.sources import expand_inputs

    by_cli = tmp_path / "cli.duckdb"
    assert flashback_here("score", folder, "--db", by_cli, "--threshold", "0.3", "--memory", seed_memory.path, *TINY_CLI).returncode == 1
    detector = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.3))
    keeper = Keeper(ResultStore(tmp_path / "py.duckdb"), RunRecord.of(detector), warn=lambda m: None)
    sources = expand_inputs([str(folder)]).sources
    assert keep_all([Work(s) for s in sources], InProcess(detector), keeper) is False
    assert [r.source for r in keeper.results] == [str(folder / "b.mkv"), str(folder / "north" / "a.mp4")]
    assert [f["source"] for f in keeper.failures] == [str(folder / "north" / "broken.mp4")]

    def rows(db):
        with duckdb.connect(str(db), read_only=True) as c:
            return {t: c.execute(f"SELECT * EXCLUDE (run_id) FROM {t} ORDER BY ALL").fetchall()
                    for t in ("frame_scores", "segments", "events", "event_media")}

    cli, py = rows(by_cli), rows(tmp_path / "py.duckdb")
    assert cli["frame_scores"] and cli["events"]  # something to compare
    assert {t: len(v) for t, v in py.items()} == {t: len(v) for t, v in cli.items()}
    assert py["frame_scores"] == cli["frame_scores"] and py["segments"] == cli["segments"] and py["events"] == cli["events"]


def test_exports_say_each_videos_camera_and_clock_time(tmp_path, seed_memory):
    import csv
    from datetime import datetime

    (tmp_path / "north").mkdir()
    video = make_video(tmp_path / "north" / "cam.mp4", n_frames=90, scene_of=lambda i: 5 if i >= 45 else 0)
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    p = flashback_here("score", video, "--no-db", "--json", js, "--csv", cs, "--threshold", "0", "--memory", seed_memory.path,
                       *TINY_CLI)
    assert p.returncode == 0, p.stderr
    v = json.loads(js.read_text())["videos"][0]
    start = datetime.fromisoformat(v["clock_start"])
    expected = datetime.fromtimestamp(video.stat().st_mtime).timestamp() - v["duration_s"]
    assert v["camera"] == str(tmp_path / "north") and v["clock_from"] == "file time"
    assert abs(start.timestamp() - expected) < 0.01
    assert v["events"] and v["events"][0]["start_clock"].endswith("(file time)")
    rows = list(csv.DictReader(open(cs)))
    assert rows[0]["clock"] == f"{start:%Y-%m-%d %H:%M:%S} (file time)"
