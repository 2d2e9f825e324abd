"""Evaluation on real synthetic videos: reuse of stored scores and cached embeddings (counted encoder
calls), a sweep that encodes nothing, label alignment at the edges, and the CLI's report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import FLASHBACK, TINY_CLI, flashback_here, sigint_as_a_terminal_sends_it

from flashback.eval.annotations import load_ground_truth
from flashback.eval.embedding_cache import EmbeddingCache
from flashback.eval.evaluate import Evaluation, match_videos, run_sweep, sweep_variants
from flashback.eval.metrics import compute_metrics
from flashback.scoring.pipeline import Detector
from flashback.settings import ScoringSettings
from flashback.video.sources import expand_inputs
from flashback.video.synthetic import make_video
from flashback.video.timegrid import TimeGrid


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("ucf")
    make_video(d / "Fighting001_x264.mp4", n_frames=120, scene_of=lambda k: 3 if 40 <= k < 80 else 0)
    make_video(d / "Arson002_x264.mp4", n_frames=95, scene_of=lambda k: 5 if k >= 60 else 1)
    make_video(d / "Normal_Videos_001_x264.mp4", n_frames=70, scene_of=lambda k: 2)
    make_video(d / "Unlisted_x264.mp4", n_frames=10)
    ann = d / "ann.txt"
    ann.write_text("Fighting001_x264.mp4  Fighting  40  79  -1  -1\n"
                   "Arson002_x264.mp4  Arson  60  200  -1  -1\n"
                   "Normal_Videos_001_x264.mp4  Normal  -1  -1  -1  -1\n"
                   "Gone_x264.mp4  Normal  -1  -1  -1  -1\n")
    return d, ann


def evaluation(tiny_encoder, seed_memory, tmp_path, store=True, cache=True):
    from flashback.store import ResultStore

    s = None
    if store:
        s = ResultStore(tmp_path / "r.duckdb")
        s.initialize()
    c = EmbeddingCache(tmp_path / "emb", tiny_encoder.identity.key, "pad") if cache else None
    return Evaluation(Detector(seed_memory, tiny_encoder, ScoringSettings()), c, s)


def score_all(ev, pairs):
    out = [ev.score_one(src, truth) for src, truth in pairs]
    return [o[0] for o in out], {str(src): o[2] for (src, _), o in zip(pairs, out)}


def test_match_labels_and_reuse(dataset, tiny_encoder, seed_memory, tmp_path):
    d, ann = dataset
    gt = load_ground_truth("ucf-crime", ann)
    m = match_videos(expand_inputs([str(d)]).sources, gt)
    assert [Path(s.location).name for s, _ in m.pairs] == ["Arson002_x264.mp4", "Fighting001_x264.mp4", "Normal_Videos_001_x264.mp4"]
    assert m.unannotated == [str(d / "Unlisted_x264.mp4")] and m.missing == ["Gone_x264"]

    ev = evaluation(tiny_encoder, seed_memory, tmp_path)
    before = tiny_encoder.images_encoded
    videos, grids = score_all(ev, m.pairs)
    grid = TimeGrid.from_settings(ScoringSettings())
    assert tiny_encoder.images_encoded - before == sum(grid.n_samples(n / 30) for n in (95, 120, 70))
    assert ev.reused == {"store": 0, "cache": 0, "encoded": 3}
    # labels align with decoded frames: inclusive interval, clipped at the video's end (annotated to 200)
    arson, fight, normal = videos
    assert len(arson.labels) == 95 and arson.labels[:60].sum() == 0 and arson.labels[60:].all()
    assert np.flatnonzero(fight.labels).tolist() == list(range(40, 80))
    assert not normal.labels.any()

    # same settings and store: scores come from DuckDB, nothing decoded or encoded
    again = evaluation(tiny_encoder, seed_memory, tmp_path)
    mark = tiny_encoder.images_encoded
    videos2, _ = score_all(again, m.pairs)
    assert again.reused == {"store": 3, "cache": 0, "encoded": 0} and tiny_encoder.images_encoded == mark
    for a, b in zip(videos, videos2):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-9)

    # no store, warm cache: scores from cached embeddings, nothing encoded, identical results
    cached = evaluation(tiny_encoder, seed_memory, tmp_path, store=False)
    videos3, _ = score_all(cached, m.pairs)
    assert cached.reused == {"store": 0, "cache": 3, "encoded": 0} and tiny_encoder.images_encoded == mark
    for a, b in zip(videos, videos3):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_sweep_costs_retrieval_only(dataset, tiny_encoder, seed_memory, tmp_path):
    d, ann = dataset
    m = match_videos(expand_inputs([str(d)]).sources, load_ground_truth("ucf-crime", ann))
    ev = evaluation(tiny_encoder, seed_memory, tmp_path, store=False)
    videos, grids = score_all(ev, m.pairs)
    variants = sweep_variants(ev.detector.settings, seed_memory, tiny_encoder, sizes=(100, 1_000_000))
    params = {(v.parameter, v.value) for v in variants}
    assert {("top_k", "1"), ("alpha", "0.8"), ("frames_per_segment", "4"), ("smoothing_sigma_s", "0.0"),
            ("template", "none"), ("memory_size", "100"), ("centre", "on")} <= params
    assert ("memory_size", "1000000") not in params  # larger than the memory: skipped
    before = tiny_encoder.images_encoded
    rows = run_sweep(ev, m.pairs, grids, variants)
    assert tiny_encoder.images_encoded == before  # no frame encoded again
    assert len(rows) == len(variants)
    base = compute_metrics(videos).to_dict()
    assert rows[0]["parameter"] == "base" and rows[0]["auc"] == base["auc"] and rows[0]["ap"] == base["ap"]
    assert next(r for r in rows if r["parameter"] == "memory_size")["memory_size"] == 100


def test_coarser_grids_come_from_the_cached_fine_grid(dataset, tiny_encoder, seed_memory, tmp_path):
    d, _ = dataset
    ev = evaluation(tiny_encoder, seed_memory, tmp_path, store=False)
    from flashback.scoring.pipeline import video_id_for
    from flashback.video.sources import VideoSource

    src = VideoSource(str(d / "Fighting001_x264.mp4"))
    fine = ev.grid_embeddings(src, video_id_for(src))
    fine_grid = TimeGrid.from_settings(ScoringSettings())
    coarse_grid = TimeGrid.from_settings(ScoringSettings(frames_per_segment=4))
    hit = ev.cache.load(video_id_for(src), coarse_grid)
    assert hit is not None and hit.step_s == coarse_grid.step_s
    assert len(hit.vectors) == coarse_grid.n_samples(fine.duration_s)
    # each coarse sample is the fine sample within half a fine step of its own time
    for j in range(len(hit.vectors)):
        i = j * 4 + 2
        assert abs(fine_grid.sample_time(i) - coarse_grid.sample_time(j)) <= fine_grid.step_s / 2 + 1e-9
        np.testing.assert_array_equal(hit.vectors[j], fine.vectors[i])


def test_cli_prints_auc_ap_and_writes_the_report(dataset, tmp_path):
    d, ann = dataset
    out = tmp_path / "report"
    p = flashback_here("eval", "--dataset", "ucf-crime", "--videos", str(d),
         "--annotations", str(ann), "--db", str(tmp_path / "e.duckdb"), "--out", str(out), *TINY_CLI)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    auc = next(line for line in lines if line.startswith("AUC "))
    assert auc.split()[1].replace(".", "").isdigit() and next(line for line in lines if line.startswith("AP "))
    assert "1 annotated video(s) were not found" in p.stderr and "1 video(s) have no annotation" in p.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["metrics"]["n_videos"] == 3 and float(auc.split()[1]) == doc["metrics"]["auc"]
    assert "LAVAD" in (out / "report.md").read_text()
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "pr.png").stat().st_size > 1000


def test_cli_sweep_rescores_from_the_store_run_without_encoding(dataset, tmp_path):
    """eval --sweep after a plain eval: scores come from the store, embeddings from the cache, and the
    ablation table is written with no frame encoded for it."""
    d, ann = dataset
    out, db = tmp_path / "report", tmp_path / "e.duckdb"
    cmd = ["eval", "--dataset", "ucf-crime", "--videos", str(d), "--annotations", str(ann), "--db", str(db), "--out", str(out), *TINY_CLI]
    first = flashback_here(*cmd)
    assert first.returncode == 0, first.stderr
    p = flashback_here(*cmd, "--sweep")
    assert p.returncode == 0, p.stderr
    assert "from store 3, from embedding cache 0, encoded 0" in p.stdout
    assert "frames encoded for it)" in p.stdout and ", 0 frames encoded for it)" in p.stdout
    rows = json.loads((out / "sweep.json").read_text())
    params = {r["parameter"] for r in rows}
    assert {"base", "top_k", "alpha", "frames_per_segment", "smoothing_sigma_s", "centre", "template"} <= params
    base = next(r for r in rows if r["parameter"] == "base")
    assert base["auc"] == pytest.approx(json.loads((out / "report.json").read_text())["metrics"]["auc"])
    assert (out / "sweep.md").read_text().startswith("| parameter | value | AUC |")


def test_a_ctrl_c_while_a_result_is_stored_leaves_it_counted(dataset, tiny_encoder, seed_memory, tmp_path):
    """The Ctrl-C test below failed in a clean-clone CI run (exit 1, "no video could be scored"): its
    SIGINT landed after the store's COMMIT, while the file closed, so the video was stored but never
    counted.  Here a real store commits and then the interrupt arrives: the video must be counted."""
    from flashback.store import ResultStore

    class InterruptedAfterCommit(ResultStore):
        def save(self, run, result, media=()):
            super().save(run, result, media)
            raise KeyboardInterrupt

    d, ann = dataset
    pair = match_videos(expand_inputs([str(d)]).sources, load_ground_truth("ucf-crime", ann)).pairs[0]
    store = InterruptedAfterCommit(tmp_path / "r.duckdb")
    store.initialize()
    ev = Evaluation(Detector(seed_memory, tiny_encoder, ScoringSettings()), None, store)
    counted = []
    with pytest.raises(KeyboardInterrupt):
        ev.score_one(*pair, keep=lambda video, row, emb: counted.append(row["video_id"]))
    assert len(counted) == 1
    assert store.frame_scores(ev.run.run_id, counted[0]) is not None  # and it is stored


@pytest.mark.slow
def test_ctrl_c_during_eval_reports_what_was_scored(tmp_path):
    """SIGINT after the first video is stored: exit 130, and metrics and report cover the videos done."""
    import signal
    import time

    import duckdb

    names = ["Arson010_x264", "Fighting010_x264", "Normal_Videos_010_x264", "Normal_Videos_011_x264"]
    for k, name in enumerate(names):
        make_video(tmp_path / f"{name}.mp4", n_frames=900, scene_of=lambda i, k=k: (i // 150 + k) % 7)
    ann = tmp_path / "ann.txt"
    ann.write_text("Arson010_x264.mp4 Arson 300 600 -1 -1\nFighting010_x264.mp4 Fighting 100 400 -1 -1\n"
                   "Normal_Videos_010_x264.mp4 Normal -1 -1 -1 -1\nNormal_Videos_011_x264.mp4 Normal -1 -1 -1 -1\n")
    db, out = tmp_path / "e.duckdb", tmp_path / "report"
    proc = subprocess.Popen([FLASHBACK, "eval", "--dataset", "ucf-crime",
                             "--videos", str(tmp_path), "--annotations", str(ann), "--db", str(db), "--out", str(out),
                             "--no-cache", *TINY_CLI], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_a_terminal_sends_it)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with duckdb.connect(str(db), read_only=True) as c:
                if c.execute("SELECT count(*) FROM scorings").fetchone()[0] >= 1:
                    break
        except duckdb.Error:
            pass  # not created yet, or the scorer holds it for a moment
        time.sleep(0.05)
    assert proc.poll() is None, "eval finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    done = json.loads((out / "report.json").read_text())["metrics"]["n_videos"]
    assert 1 <= done < 4
    assert f"interrupted: the metrics and report above cover the {done} of 4 videos scored" in stdout
    assert "AUC " in stdout


def test_a_report_on_your_own_cameras_is_not_put_under_a_published_datasets_heading():
    from flashback.eval.metrics import Metrics
    from flashback.eval.report import markdown

    own = markdown("frames", Metrics(0.81, 0.52, 0.6, n_videos=3), {})
    assert "UCF-Crime AUC" not in own and "| **frames** | 81.00 | 52.00 |" in own and "not comparable" in own
    ucf = markdown("ucf-crime", Metrics(0.81, 0.52, 0.6, n_videos=3), {})
    assert "| method | UCF-Crime AUC |" in ucf and "| **this run** (ucf-crime) | 81.00 |" in ucf
