"""``score --workers N``: decoding in worker processes, a long file in time spans, and always the
result of a sequential run: the same samples, scores, store rows and exit status."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import TINY_CLI, flashback, flashback_here

from flashback.batch.parallel import PoolScorer, Work
from flashback.scoring.pipeline import Detector
from flashback.scoring.schedule import Callbacks
from flashback.settings import ScoringSettings
from flashback.video.decode import FrameFit, VideoReader
from flashback.video.sources import VideoSource
from flashback.video.spans import SpanEnd, plan_spans, span_samples, stitch
from flashback.video.synthetic import make_video
from flashback.video.timegrid import TimeGrid

N_LONG = 2000  # ~290 s of variable frame rate: four spans of at least 60 s


def _long_video(path, container_options=None):
    """Variable frame rate (40-250 ms between frames), B-frames, and key frames forced at odd
    places beside the encoder's own; scene 5 (anomalous for ``scene_memory``) from frame 1200 to 1500."""
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(0.04, 0.25, N_LONG))
    times += 0.37 - times[0]  # a first frame that is not at 0
    return make_video(path, n_frames=N_LONG, size=(64, 48), times=list(times),
                      scene_of=lambda i: 5 if 1200 <= i < 1500 else (i // 300) % 3,
                      options={"x264-params": "keyint=300:bframes=3", "preset": "ultrafast"},
                      key_frames=set(rng.choice(N_LONG, 9, replace=False).tolist()))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    _long_video(d / "long.mp4")
    for k in range(3):
        make_video(d / f"short{k}.mp4", n_frames=90 + 30 * k, size=(96, 64), scene_of=lambda i, k=k: 5 if i > 30 else k)
    (d / "broken.mp4").write_bytes(b"not a video at all" * 100)
    return d


def test_spans_give_exactly_the_samples_and_frame_times_of_a_sequential_read(folder):
    grid = TimeGrid.from_settings(ScoringSettings())
    fit, src = FrameFit("pad", 32), VideoSource(str(folder / "long.mp4"))
    with VideoReader(src, fit) as r:
        sequential = [(i, rgb.copy()) for i, rgb in r.samples(grid)]
        timeline = r.timeline
    with VideoReader(src, fit) as r:
        spans = plan_spans(r, grid, 8)
    assert len(spans) == 4 and spans[0].t0 == pytest.approx(0.37)
    got, ends = [], []
    for span in reversed(spans):  # any order: each span stands alone
        with VideoReader(src, fit) as r:
            end = SpanEnd()
            got = [(i, rgb.copy()) for i, rgb in span_samples(r, grid, span, end)] + got
            ends.insert(0, end)
            info = r.info
    joined, tail = stitch(ends, grid, info, spans[-1].first)
    got += [(len(got) + k, ends[-1].tail) for k in range(tail)]
    assert joined.frame_times == timeline.frame_times and len(joined.frame_times) == N_LONG
    assert (joined.duration_s, joined.n_samples) == (timeline.duration_s, timeline.n_samples)
    assert [i for i, _ in got] == [i for i, _ in sequential]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, sequential))


def _score(folder, memory, out, workers: int, *flags, run=flashback):
    r = run("score", folder, "--memory", memory.path, "--workers", workers, "--db", out / "r.duckdb",
            "--json", out / "r.json", *TINY_CLI, *flags)
    return r, json.loads((out / "r.json").read_text())


def _rows(db):
    with duckdb.connect(str(db), read_only=True) as con:
        frames = con.execute("SELECT v.path, f.frame, f.score FROM frame_scores f JOIN videos v USING (video_id) "
                             "ORDER BY 1, 2").fetchall()
        events = con.execute("SELECT video_id, start_frame, end_frame, peak_score FROM events ORDER BY 1, 2").fetchall()
        clips = con.execute("SELECT count(*) FROM event_media WHERE clip_path IS NOT NULL").fetchone()[0]
    return frames, events, clips


@pytest.mark.slow
def test_a_folder_scored_with_workers_is_the_sequential_run(folder, scene_memory, tmp_path):
    """Also with --hwaccel cuda (NVDEC), which this machine, without an NVIDIA driver, cannot open:
    decoding falls back to software, said once, not once per worker or per file."""
    (tmp_path / "seq").mkdir()
    (tmp_path / "par").mkdir()
    seq, a = _score(folder, scene_memory, tmp_path / "seq", 0, run=flashback_here)  # the reference: no process to test
    par, b = _score(folder, scene_memory, tmp_path / "par", 2, "--hwaccel", "cuda")
    said = [line for line in par.stderr.splitlines() if "hardware decoding" in line]
    assert len(said) == 1 and "hardware decoding on cuda is not available here" in said[0] and "software" in said[0]
    assert seq.returncode == par.returncode == 1  # the broken file fails, in both
    assert "2 decoding worker(s): 4 video(s) scored, 1 failed, 1 decoded in spans" in par.stderr
    assert a["videos"] == b["videos"] and a["failures"] == b["failures"]
    assert [v["source"].rsplit("/", 1)[1] for v in b["videos"]] == ["long.mp4", "short0.mp4", "short1.mp4", "short2.mp4"]
    assert "broken.mp4: not a readable video" in par.stderr
    assert all(v["events"] for v in b["videos"])  # each one cuts to the anomalous scene
    frames, events, clips = _rows(tmp_path / "par" / "r.duckdb")
    assert (frames, events, clips) == _rows(tmp_path / "seq" / "r.duckdb") and clips == len(events) >= 4


@pytest.mark.slow
def test_a_worker_killed_mid_file_fails_that_file_only(folder, scene_memory, tiny_encoder):
    detector = Detector(scene_memory, tiny_encoder, ScoringSettings())
    scorer = PoolScorer(detector, workers=2)
    long = VideoSource(str(folder / "long.mp4"))
    work = [Work(long)] + [Work(VideoSource(str(folder / f"short{k}.mp4"))) for k in range(3)]
    results, failures, killed = {}, {}, []

    def on_seconds(w, done, total):
        if w.source == long and not killed:  # SIGKILL the process decoding it, as a crashing codec would die
            pid = next(s.proc.pid for s in scorer.pool._slots if s.job is not None and s.job.source == long)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    interrupted = scorer.run(work, Callbacks(lambda w, r: results.__setitem__(w.source.name, r),
                                             lambda w, why: failures.__setitem__(w.source.name, why), on_seconds))
    assert not interrupted and killed
    assert list(failures) == ["long.mp4"] and "its decoding worker died (exit code -9)" in failures["long.mp4"]
    assert sorted(results) == ["short0.mp4", "short1.mp4", "short2.mp4"]
    assert scorer.pool.restarted == 0 or scorer.report.failed == 1
    for name, r in results.items():
        assert np.array_equal(r.scores, detector.score(str(folder / name)).scores)


@pytest.mark.slow
def test_a_recording_cut_short_gives_the_sequential_result_however_it_is_split(scene_memory, tiny_encoder, tmp_path):
    """Matroska declares its duration up front: a recording cut at 60 % (173 s of frames) still
    claims 288 s.  In two spans the last one meets the end of the data, which the stitch reports as
    truncation, as a sequential read does; in four, spans find no frames where the plan put them,
    and the file is read again sequentially."""
    whole = _long_video(tmp_path / "whole.mkv")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    detector = Detector(scene_memory, tiny_encoder, ScoringSettings())
    sequential = detector.score(str(cut))
    assert sequential.truncated and "only 172.70 s of the declared 288.06 s" in sequential.note
    for workers, resequenced in ((2, 0), (4, 1)):
        scorer, got = PoolScorer(detector, workers), []
        scorer.run([Work(VideoSource(str(cut)))], Callbacks(lambda w, r: got.append(r), lambda w, why: pytest.fail(why)))
        (r,) = got
        assert (scorer.report.split, scorer.report.resequenced) == (1, resequenced)
        assert np.array_equal(r.scores, sequential.scores) and np.array_equal(r.frame_times, sequential.frame_times)
        assert (r.truncated, r.note, r.n_samples, r.duration_s) == (True, sequential.note, sequential.n_samples, sequential.duration_s)
        assert [(e.start_frame, e.end_frame) for e in r.events] == [(e.start_frame, e.end_frame) for e in sequential.events]


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_keeps_what_was_finished(folder, scene_memory, tmp_path):
    import subprocess
    import time

    from conftest import FLASHBACK, sigint_as_a_terminal_sends_it

    p = subprocess.Popen([FLASHBACK, "score", str(folder), "--memory", str(scene_memory.path), "--workers", "2",
                          "--db", str(tmp_path / "r.duckdb"), *TINY_CLI], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=sigint_as_a_terminal_sends_it, env={**os.environ, "FLASHBACK_LOG_EVERY_S": "0"})
    seen, deadline = "", time.monotonic() + 120
    while "long.mp4: " not in seen and time.monotonic() < deadline:
        seen += p.stderr.readline()
    workers = [int(c) for t in Path(f"/proc/{p.pid}/task").iterdir() for c in (t / "children").read_text().split()]
    assert len(workers) >= 2  # the decoding workers (and multiprocessing's resource tracker)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted: the decoding workers are stopped" in err and "Traceback" not in seen + err
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker ends a moment after the command
    while [w for w in workers if Path(f"/proc/{w}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]  # nothing outlives the command


def test_workers_and_a_cluster_are_refused_together(folder):
    r = flashback_here("score", folder / "short0.mp4", "--workers", 2, "--ray", "local", *TINY_CLI)
    assert r.returncode == 2 and "--workers decodes on this machine and --ray on a cluster's workers" in r.stderr


@pytest.mark.slow
def test_workers_do_not_run_the_parents_main_script(folder, scene_memory, tiny_encoder, tmp_path, monkeypatch):
    """``spawn`` re-runs the parent's ``__main__`` in each child (found when a Streamlit app test had
    left its script there: every worker ran the app and died).  A parent whose main script would
    leave a mark must see no mark, and its videos scored."""
    import sys
    import types

    mark = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(mark)!r}, 'w').write('the parent script ran in a worker')\n")
    fake = types.ModuleType("__main__")
    fake.__file__, fake.__spec__ = str(script), None
    monkeypatch.setitem(sys.modules, "__main__", fake)
    results, failures = {}, {}
    PoolScorer(Detector(scene_memory, tiny_encoder, ScoringSettings()), workers=2).run(
        [Work(VideoSource(str(folder / "short0.mp4")))], Callbacks(lambda w, r: results.__setitem__(w.source.name, r),
                                                                   lambda w, why: failures.__setitem__(w.source.name, why)))
    assert not failures and list(results) == ["short0.mp4"] and not mark.exists()
    assert fake.__file__ == str(script)  # put back for the parent


@pytest.mark.slow
def test_workers_end_when_their_parent_is_killed(folder, tmp_path):
    """A parent killed with SIGKILL cannot stop its workers; each finds its pipe broken and ends,
    rather than decoding on for nobody (or waiting forever on a full pipe)."""
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(f"""
import os, sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import TINY_CONFIG, TINY_MODEL
import open_clip, json, pathlib
cfg = pathlib.Path({str(tmp_path)!r}) / "configs"; cfg.mkdir(exist_ok=True)
(cfg / f"{{TINY_MODEL}}.json").write_text(json.dumps(TINY_CONFIG)); os.environ["FLASHBACK_MODEL_CONFIGS"] = str(cfg)
import numpy as np
from flashback.eval.bench import synthetic_memory
from flashback.encoders.encoder import ClipEncoder
from flashback.encoders.encoder_registry import EncoderSpec
from flashback.batch.parallel import PoolScorer
from flashback.scoring.pipeline import Detector, Work
from flashback.scoring.schedule import Callbacks
from flashback.video.sources import VideoSource
if __name__ == "__main__":
    enc = ClipEncoder(EncoderSpec(model=TINY_MODEL, pretrained="random"), device="cpu", backend="torch")
    scorer = PoolScorer(Detector(synthetic_memory(100, enc, "Flat", np.random.default_rng(0)), enc), 2)
    said = []
    def seconds(w, done, total):
        if not said:
            said.append(1)
            print(" ".join(str(s.proc.pid) for s in scorer.pool._slots), flush=True)
            time.sleep(600)  # killed here, mid-file
    scorer.run([Work(VideoSource({str(folder / "long.mp4")!r}))], Callbacks(print, print, seconds))
""")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert len(pids) == 2
    p.kill()
    p.wait()
    deadline = time.monotonic() + 20

    def alive() -> list[int]:
        running = []
        for q in pids:
            try:
                if Path(f"/proc/{q}/stat").read_text().split()[2] != "Z":
                    running.append(q)
            except FileNotFoundError:
                pass
        return running

    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive()
