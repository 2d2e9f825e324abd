"""Regressions from trying to break flashback as a hostile or unlucky user would: very short and odd
inputs, a real full filesystem, bad numbers in caption files and flags, markup in data, names with
newlines, identical files, tampered manifests.  Each one names the input and goes on; none ends a
run with a traceback or loses what was already scored."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import TINY_CLI, flashback_here, memory_from_rows, tmpfs

from flashback.video.synthetic import make_video


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("flashback: error:")]


def no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr


# ---------------------------------------------------------------- inputs that used to end a run


def test_one_frame_videos_and_a_still_image_are_scored_and_the_run_goes_on(tmp_path):
    import av

    d = tmp_path / "in"
    d.mkdir()
    make_video(d / "a_one_frame.mp4", n_frames=1)
    make_video(d / "b_tiny.mkv", n_frames=1, fps=60)  # shorter than half a sampling step
    with av.open(str(d / "c_still.jpg"), "w", format="image2") as c:  # a JPEG, given explicitly
        s = c.add_stream("mjpeg", rate=1)
        s.width, s.height, s.pix_fmt = 64, 48, "yuvj420p"
        for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    make_video(d / "d_normal.mp4", n_frames=45)
    js = tmp_path / "r.json"
    p = flashback_here("score", d, d / "c_still.jpg", "--db", tmp_path / "r.duckdb", "--json", js, *TINY_CLI)
    no_traceback(p)
    assert p.returncode == 0, p.stderr
    videos = {Path(v["source"]).name: v for v in json.loads(js.read_text())["videos"]}
    assert set(videos) == {"a_one_frame.mp4", "b_tiny.mkv", "c_still.jpg", "d_normal.mp4"}
    assert videos["a_one_frame.mp4"]["n_frames"] == 1 and len(videos["a_one_frame.mp4"]["frame_scores"]["score"]) == 1
    assert videos["c_still.jpg"]["n_frames"] == 1 and videos["d_normal.mp4"]["n_frames"] == 45


def test_a_newline_in_a_file_name_stays_one_error_line(tmp_path):
    bad = tmp_path / "cam\nevil.mp4"
    bad.write_bytes(b"not a video at all")
    p = flashback_here("score", bad, "--no-db", *TINY_CLI)
    assert p.returncode == 1
    [line] = error_lines(p.stderr)
    assert "cam\\nevil.mp4" in line and "not a readable video" in line
    assert len([x for x in p.stderr.splitlines() if "evil" in x]) == 1


def test_a_newline_in_a_file_name_stays_one_line_in_the_summary(tmp_path, seed_memory):
    calm = make_video(tmp_path / "calm\nevil.mp4", n_frames=30)
    busy = make_video(tmp_path / "busy\nevil.mp4", n_frames=60)
    p = flashback_here("score", calm, "--no-db", "--threshold", "1", "--memory", seed_memory.path, *TINY_CLI)
    q = flashback_here("score", busy, "--no-db", "--threshold", "0", "--memory", seed_memory.path, *TINY_CLI)
    assert p.returncode == q.returncode == 0, p.stderr + q.stderr
    assert [x for x in p.stdout.splitlines() if "evil" in x] == [f"  {tmp_path}/calm\\nevil.mp4: no events (max score "
                                                                  + p.stdout.split("max score ")[1].split(")")[0] + ")"]
    assert all("busy\\nevil.mp4" in x for x in q.stdout.splitlines() if "evil" in x)


def test_byte_identical_files_are_said_to_be_one_video(tmp_path):
    a = make_video(tmp_path / "a.mp4", n_frames=30)
    b = tmp_path / "copy_of_a.mp4"
    shutil.copy(a, b)
    db = tmp_path / "r.duckdb"
    p = flashback_here("score", a, b, "--db", db, *TINY_CLI)
    assert p.returncode == 0, p.stderr
    assert f"{b}: the same bytes as {a}; scored and stored once" in p.stderr
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM videos").fetchone()[0] == 1


# ---------------------------------------------------------------- markup in data


@pytest.fixture(scope="module")
def bracket_memory(tmp_path_factory):
    """Captions and a category full of rich markup and HTML."""
    rows = [{"text": f"a calm street [/] number {i}", "label": "normal"} for i in range(6)]
    rows += [{"text": f"[bold red]a man smashes[/] a window [click] {i}", "label": "anomalous", "category": "Vandalism [/]"}
             for i in range(6)]
    return memory_from_rows(tmp_path_factory.mktemp("brackets"), rows)


def test_memory_info_prints_brackets_as_they_are(bracket_memory):
    p = flashback_here("memory", "info", bracket_memory)
    no_traceback(p)
    assert p.returncode == 0 and "Vandalism [/]" in p.stdout


def test_the_summary_prints_captions_and_names_with_brackets(bracket_memory, tmp_path):
    video = make_video(tmp_path / "[click] cam.mp4", n_frames=60)
    p = flashback_here("score", video, "--memory", bracket_memory, "--no-db", "--threshold", "0", *TINY_CLI)
    no_traceback(p)
    assert p.returncode == 0, p.stderr
    assert "[click] cam.mp4" in p.stdout and "[bold red]a man smashes[/]" in p.stdout


# ---------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize("args,message", [
    (["--fps", "0"], "argument --fps: must be a number in (0, 1000] (got 0)"),
    (["--fps", "-30"], "argument --fps: must be a number in (0, 1000]"),
    (["--fps", "nan"], "argument --fps: must be a number in (0, 1000] (got nan)"),
    (["--window", "-3"], "argument --window: must be a whole number in [1, 1e+06]"),
    (["--sigma", "-1"], "argument --sigma: must be a number in [0, 3600]"),
    (["--threshold", "inf"], "argument --threshold: must be a number in [0, 1]"),
    (["--top-k", "2.5"], "argument --top-k: must be a whole number"),
])
def test_every_numeric_flag_is_range_checked(tmp_path, args, message):
    f = tmp_path / "a.json"
    f.write_text('{"0": "a man walks"}')
    p = flashback_here("score-captions", f, "--no-db", *args)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    no_traceback(p)


@pytest.mark.parametrize("args,message", [
    (["watch", "x.mp4", "--max-latency", "0"], "argument --max-latency: must be a number in [0.05, 3600]"),
    (["watch", "x.mp4", "--duration", "-5"], "argument --duration: must be a number > 0"),
    (["memory", "build", "--out", "m", "--size", "1"], "argument --size: must be a whole number in [2, 1e+08]"),
    (["memory", "build", "--out", "m", "--near-dup-threshold", "2"], "argument --near-dup-threshold: must be a number in [0, 1]"),
    (["review", "--port", "0"], "argument --port: must be a whole number in [1, 65535]"),
    (["bench", "--size", "640by480"], "argument --size: expected WIDTHxHEIGHT"),
    (["score", "x.mp4", "--segment", "1", "--overlap", "1"], "flashback: error: settings: --overlap must be in [0, segment length)"),
    (["search", "x", "--since", "999999d"], "argument --since: '999999d': too far back"),
    (["clips", "--out", "c", "--since", "99999999999h"], "argument --since: '99999999999h': too far back"),
])
def test_every_command_checks_its_numbers_before_any_work(tmp_path, args, message):
    p = flashback_here(*args, cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    no_traceback(p)


@pytest.mark.parametrize("name,content,message", [
    ("latin1.jsonl", "caf\xe9".encode("latin-1"), "latin1.jsonl: not UTF-8 text"),
    ("nan.jsonl", b'{"video": "v", "start": NaN, "end": 2, "text": "x"}\n', "nan.jsonl:1: not valid JSON (NaN is not a number JSON allows)"),
    ("inf.jsonl", b'{"video": "v", "start": 0, "end": Infinity, "text": "x"}\n', "inf.jsonl:1: not valid JSON (Infinity"),
    ("huge.jsonl", b'{"video": "v", "start": 0, "end": 1e300, "text": "x"}\n', "huge.jsonl:1: end 1e+300 s is outside"),
    ("bigint.jsonl", b'{"video": "v", "start": 0, "end": 1' + b"0" * 400 + b', "text": "x"}\n', "bigint.jsonl:1: end is far too large"),
    ("neg.jsonl", b'{"video": "v", "start": -4, "end": 2, "text": "x"}\n', "neg.jsonl:1: start -4 s is outside"),
    ("bool.jsonl", b'{"video": "v", "start": true, "end": 2, "text": "x"}\n', "bool.jsonl:1: start is not a number"),
    ("key.json", b'{"99999999999999999999999999": "x"}', "key.json: key '99999999999999999999999999' is not a frame index"),
    ("far.json", b'{"999999999999": "x"}', "far.json: key '999999999999': frame time"),
    ("latin1.json", "{\"0\": \"caf\xe9\"}".encode("latin-1"), "latin1.json: not UTF-8 text"),
    ("deep.json", b"[" * 100_000, "deep.json: JSON nested too deeply to read"),
])
def test_bad_caption_files_are_named_and_the_others_scored(tmp_path, minilm_memory, name, content, message):
    d = tmp_path / "caps"
    d.mkdir()
    (d / name).write_bytes(content)
    (d / "good.json").write_text(json.dumps({str(16 * i): "a man walks his dog" for i in range(10)}))
    js = tmp_path / "r.json"
    p = flashback_here("score-captions", d, "--memory", minilm_memory, "--no-db", "--json", js, "--quiet")
    no_traceback(p)
    assert p.returncode == 1
    [line] = error_lines(p.stderr)
    assert message in line, line
    assert [Path(v["source"]).name for v in json.loads(js.read_text())["videos"]] == ["good.json"]


@pytest.fixture(scope="module")
def minilm_memory(tmp_path_factory):
    f = tmp_path_factory.mktemp("mini") / "caps.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in [
        {"text": "a man walks his dog", "label": "normal"}, {"text": "people wait for a bus", "label": "normal"},
        {"text": "a man smashes a window", "label": "anomalous", "category": "Vandalism"},
        {"text": "two men fight", "label": "anomalous", "category": "Fighting"}]))
    from flashback.encoders.text_encoder import SentenceEncoder
    from memory_builder import build_from_captions

    out = f.parent / "mem"
    build_from_captions([f], SentenceEncoder(), out)
    return out


# ---------------------------------------------------------------- a real full filesystem


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a real filesystem that fills up.  Needs root (mount); skipped otherwise."""
    with tmpfs(tmp_path / "disk", "4m") as mnt:
        yield mnt


def fill(mnt: Path) -> Path:
    filler = mnt / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow  # mounts a small tmpfs
def test_a_full_disk_fails_each_video_keeps_old_rows_and_exports_everything(small_disk, tmp_path):
    a = make_video(tmp_path / "a.mp4", n_frames=90, scene_of=lambda i: i // 30)
    b = make_video(tmp_path / "b.mp4", n_frames=60)
    db = small_disk / "r.duckdb"
    p = flashback_here("score", a, "--db", db, *TINY_CLI)
    assert p.returncode == 0, p.stderr
    with duckdb.connect(str(db), read_only=True) as c:
        before = c.execute("SELECT count(*) FROM frame_scores").fetchone()[0]
    filler = fill(small_disk)
    js = tmp_path / "r.json"
    p = flashback_here("score", a, b, "--db", db, "--json", js, "--sigma", "0.3", *TINY_CLI)  # new settings: new rows needed
    no_traceback(p)
    assert p.returncode == 1
    lines = error_lines(p.stderr)
    assert lines and all(str(db) in line for line in lines), p.stderr
    assert any("No space left on device" in line for line in lines) or any("cannot open" in line for line in lines)
    assert len(json.loads(js.read_text())["videos"]) == 2  # everything scored reached the export
    filler.unlink()
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM frame_scores").fetchone()[0] == before
        assert c.execute("SELECT count(*) FROM scorings").fetchone()[0] == 1


@pytest.mark.slow  # mounts a small tmpfs
def test_eval_captions_names_a_store_failure_per_video_and_still_reports(small_disk, tmp_path):
    dev = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucf_crime_text_dev"
    if not dev.is_dir():
        pytest.skip("needs ../shared/data/ucf_crime_text_dev")
    caps = tmp_path / "caps"
    caps.mkdir()
    for n in ("Arrest001_x264", "Normal_Videos_345_x264"):
        shutil.copy(dev / "captions" / f"{n}.json", caps)
    db = small_disk / "c.duckdb"
    flashback_here("eval", "--dataset", "ucf-crime", "--captions", caps, "--annotations", dev / "Temporal_Anomaly_Annotation.txt",
              "--db", db, "--out", tmp_path / "warm")  # builds the default caption memory and the store
    fill(small_disk)
    p = flashback_here("eval", "--dataset", "ucf-crime", "--captions", caps, "--annotations", dev / "Temporal_Anomaly_Annotation.txt",
                  "--frames", dev / "frames.txt", "--db", db, "--out", tmp_path / "report", "--sigma", "2")
    no_traceback(p)
    assert p.returncode == 1 and len(error_lines(p.stderr)) == 2, p.stderr
    assert "AUC " in p.stdout and (tmp_path / "report" / "report.json").is_file()


# ---------------------------------------------------------------- manifests


def test_a_version_given_as_a_string_is_said_so(tmp_path, seed_memory):
    mem = tmp_path / "m"
    shutil.copytree(seed_memory.path, mem)
    m = json.loads((mem / "manifest.json").read_text())
    m["format_version"] = "1"
    (mem / "manifest.json").write_text(json.dumps(m))
    p = flashback_here("memory", "verify", mem)
    assert p.returncode == 1 and "format version '1' (str); this flashback reads format version 1 (an integer)" in p.stderr


@pytest.mark.slow  # mounts a small tmpfs
def test_a_full_media_disk_is_said_to_be_full_not_the_recording_broken(small_disk, tmp_path):
    from flashback.scoring.events import Event
    from flashback.scoring.scoring import Explanation
    from flashback.video.media import file_event_media

    video = make_video(tmp_path / "cam.mp4", n_frames=300, size=(320, 240), scene_of=lambda i: i // 30)
    events = [Event(0, 2.0, 6.0, 4, 12, 0.9, 8, 4.0, Explanation("Fighting", 0.9, 0.1, []))]
    fill(small_disk)
    [m] = file_event_media(video, "vid", "run", events, 10.0, small_disk / "media")
    assert m.clip is None and "No space left on device" in m.note, m.note
    assert "cannot be decoded" not in m.note


def test_exports_are_readable_by_others_as_a_plain_open_makes_them(tmp_path, seed_memory):
    """Exports were written mode 0600 (mkstemp's): a colleague or a web server could not read them."""
    import os
    import stat

    video = make_video(tmp_path / "v.mp4", n_frames=30)
    old = os.umask(0o022)
    try:
        p = flashback_here("score", video, "--no-db", "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv",
                           "--memory", seed_memory.path, *TINY_CLI)
    finally:
        os.umask(old)
    assert p.returncode == 0, p.stderr
    for f in ("r.json", "r.csv"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o644, f
    (tmp_path / "r.json").chmod(0o640)  # a file that is there keeps its own mode
    assert flashback_here("score", video, "--no-db", "--json", tmp_path / "r.json", "--memory", seed_memory.path,
                          *TINY_CLI).returncode == 0
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640
