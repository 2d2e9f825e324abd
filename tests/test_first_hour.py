"""A new user's first hour (issue 18): what the first commands do before, during and after the
slow parts: inputs checked before any model loads, no empty store, the one-time default-memory
build announced with a bar, repeated frames encoded once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import TINY_CLI, flashback, flashback_here

from flashback.memory.default_memory import DEFAULT_SIZE, default_memory, default_memory_path
from flashback.video.synthetic import make_video


def test_a_missing_input_loads_nothing_and_leaves_no_store(tmp_path):
    """A checkpoint that does not exist would fail loudly if the model were loaded: it never is."""
    db = tmp_path / "flashback.duckdb"
    no_weights = ["--encoder", "ViT-B-32", "--checkpoint", tmp_path / "absent.pt"]
    p = flashback_here("score", tmp_path / "camera.mp4", "--db", db, *no_weights, timeout=60)
    assert p.returncode == 1
    assert p.stderr.splitlines() == [f"flashback: error: {tmp_path / 'camera.mp4'}: no such file or folder",
                                     "flashback: error: no video to score: nothing was loaded and nothing was stored"]
    assert not db.exists()
    p = flashback_here("score-captions", tmp_path / "captions.json", "--db", db, "--text-encoder", "clip", *no_weights, timeout=60)
    assert p.returncode == 1 and "no caption file to score" in p.stderr and "absent.pt" not in p.stderr
    assert not db.exists()


def test_a_run_that_scores_nothing_creates_no_store_and_a_run_that_scores_creates_it(tmp_path):
    db = tmp_path / "r.duckdb"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(2000))
    p = flashback_here("score", broken, "--db", db, *TINY_CLI)
    assert p.returncode == 1 and "not a readable video" in p.stderr
    assert not db.exists()
    good = make_video(tmp_path / "good.mp4", n_frames=20)
    p = flashback_here("score", good, "--db", db, *TINY_CLI)
    assert p.returncode == 0, p.stderr
    assert db.exists() and f"stored in {db}" in p.stdout
    p = flashback_here("score", good, "--db", tmp_path / "no" / "such" / "folder.duckdb", *TINY_CLI)
    assert p.returncode == 1 and "folder" in p.stderr and "does not exist" in p.stderr


def test_the_default_memory_build_is_announced_once_with_its_cache(tmp_path):
    cache = tmp_path / "cache"
    video = make_video(tmp_path / "v.mp4", n_frames=20)
    first = flashback_here("score", video, "--no-db", *TINY_CLI, env={"FLASHBACK_CACHE_DIR": str(cache)})
    assert first.returncode == 0, first.stderr
    said = [line for line in first.stderr.splitlines() if "building the default memory" in line]
    assert len(said) == 1 and "once" in said[0] and str(cache / "memories") in said[0]
    again = flashback_here("score", video, "--no-db", *TINY_CLI, env={"FLASHBACK_CACHE_DIR": str(cache)})
    assert again.returncode == 0 and "building the default memory" not in again.stderr
    assert "default memory:" not in again.stderr  # no progress either: it is loaded, not built


def test_the_default_memory_build_reports_progress_as_it_goes(tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHBACK_CACHE_DIR", str(tmp_path))
    ticks: list[int] = []
    default_memory(tiny_encoder, progress=ticks.append)
    assert sum(ticks) == DEFAULT_SIZE and len(ticks) >= 10  # a bar that moves, not one jump at the end
    assert default_memory_path(tiny_encoder).is_dir()


def without(packages: list[str], *args: str) -> subprocess.CompletedProcess:
    """``flashback ARGS`` in a Python where ``packages`` cannot be imported (as if their extra
    were not installed): ``sys.modules[name] = None`` makes import and find_spec both fail."""
    code = ("import sys\n" + "".join(f"sys.modules[{p!r}] = None\n" for p in packages)
            + "from flashback.cli import main\nsys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], check=False, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_a_missing_extra_is_named_before_any_work(tmp_path):
    no_weights = ["--encoder", "ViT-B-32", "--checkpoint", str(tmp_path / "absent.pt")]
    p = without(["sentence_transformers"], "memory", "build", "--out", tmp_path / "mem", "--size", "100", *no_weights)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        ("flashback: error: sentence-transformers is not installed: pip install 'flashback[dedup]' "
         "(a memory build can also skip near-duplicates with --near-dup-threshold 0)")]
    assert not list(tmp_path.iterdir())  # no work folder either
    p = without(["streamlit"], "review", "--db", tmp_path / "r.duckdb")
    assert p.returncode == 1 and "pip install 'flashback[ui]'" in p.stderr


@pytest.mark.slow  # what a fresh process imports
def test_an_encoder_loads_without_transformers_unless_its_text_tower_needs_one():
    """open_clip imports transformers for its Hugging Face text towers (1.1 CPU-s of every command's
    start): a model without one loads without it, and one with one still gets it, afterwards too."""
    code = """if True:
        import sys
        from flashback.encoders.encoder import ClipEncoder
        from flashback.encoders.encoder_registry import EncoderSpec
        from flashback.errors import EncoderError
        ClipEncoder(EncoderSpec("fb-test-tiny", "random"), device="cpu", backend="torch")
        import open_clip
        print("transformers" in sys.modules, open_clip.hf_model.transformers is None)
        try:  # roberta's config comes from the hub: offline, the load stops there
            ClipEncoder(EncoderSpec("roberta-ViT-B-32", "random"), device="cpu", backend="torch")
        except EncoderError as e:
            print(e)
        print(open_clip.hf_model.transformers.__name__)
    """
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr
    first, *rest = p.stdout.splitlines()
    assert first == "False True"
    assert rest[-1] == "transformers" and "pip install transformers" not in p.stdout + p.stderr


def test_a_refused_import_is_refused_to_that_package_alone(tmp_path, monkeypatch):
    """How open_clip loads without transformers: the finder refuses a package to the imports of one
    package's modules (which fall back as if it were not installed), not to anyone else's."""
    import importlib

    from flashback.encoders.encoder_registry import RefusedTo

    (tmp_path / "extra_lib.py").write_text("VALUE = 7\n")
    (tmp_path / "user_pkg").mkdir()
    (tmp_path / "user_pkg" / "__init__.py").write_text(
        "try:\n    import extra_lib\nexcept ImportError:\n    extra_lib = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    finder = RefusedTo("extra_lib", str(tmp_path / "user_pkg") + os.sep)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    for name in ("extra_lib", "user_pkg"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert importlib.import_module("user_pkg").extra_lib is None  # refused to user_pkg's own import
    assert importlib.import_module("extra_lib").VALUE == 7  # anyone else gets it, meanwhile too


def test_a_slow_video_encodes_each_source_frame_once_with_the_same_scores(seed_memory, tiny_encoder, tmp_path):
    """10 FPS on the 16-per-second grid: 80 samples fall on 50 frames. Each frame is encoded once,
    and the result is the one of encoding every sample (checked against that, done the obvious way)."""
    import numpy as np

    from flashback.scoring.pipeline import Detector
    from flashback.settings import ScoringSettings
    from flashback.video.decode import VideoReader
    from flashback.video.sources import VideoSource

    video = make_video(tmp_path / "slow.mp4", n_frames=50, fps=10, scene_of=lambda i: i // 7)
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.3), batch_size=5)
    before = tiny_encoder.images_encoded
    r = det.score(str(video))
    assert r.n_samples == 80 and tiny_encoder.images_encoded - before == 50

    with VideoReader(VideoSource(str(video)), det.frame_fit()) as reader:
        frames = np.stack([rgb.copy() for _, rgb in reader.samples(det.grid)])
        tl = reader.timeline
    each = det.score_grid(tiny_encoder.encode_images(frames), np.asarray(tl.frame_times), tl.duration_s)
    np.testing.assert_allclose(r.raw_scores, each.raw_scores, atol=1e-6)
    np.testing.assert_allclose(r.scores, each.scores, atol=1e-6)
    assert [(e.start_frame, e.end_frame) for e in r.events] == [(e.start_frame, e.end_frame) for e in each.events]


@pytest.mark.slow
def test_stopping_review_with_ctrl_c_or_a_hangup_stops_its_server(filled_store, tmp_path):
    """SIGTERM is the browser test's way out; Ctrl-C and a closed terminal must end it as well."""
    import signal
    import urllib.request

    import pytest
    from review_server import review_server

    pytest.importorskip("streamlit")
    for sig in (signal.SIGINT, signal.SIGHUP):
        with review_server(filled_store[0], stop_signal=sig) as url:
            assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).status == 200


def test_the_sample_clip_is_made_once_and_scored_with_no_video_of_ones_own(tmp_path):
    import av

    from flashback.video.sample import FIRE_FROM_S, FPS, HEIGHT, SECONDS, WIDTH, draw

    cache = tmp_path / "cache"
    db = tmp_path / "r.duckdb"
    p = flashback_here("score", "--sample", "--db", db, *TINY_CLI, env={"FLASHBACK_CACHE_DIR": str(cache)})
    assert p.returncode == 0, p.stderr
    clip = cache / "sample" / "flashback-sample-v1.mp4"
    assert "scored 1 video(s)" in p.stdout and f"stored in {db}" in p.stdout
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        assert (s.width, s.height, s.codec_context.name) == (WIDTH, HEIGHT, "h264")
        assert sum(1 for _ in c.decode(s)) == FPS * SECONDS
    made = clip.stat().st_mtime_ns
    assert flashback_here("score", "--sample", "--no-db", *TINY_CLI, env={"FLASHBACK_CACHE_DIR": str(cache)}).returncode == 0
    assert clip.stat().st_mtime_ns == made  # made once
    before, after = draw(int((FIRE_FROM_S - 1) * FPS)), draw(int((FIRE_FROM_S + 3) * FPS))
    assert (after[200:330, 360:520, 0] > 200).mean() > 0.3 > (before[200:330, 360:520, 0] > 200).mean()  # the fire


@pytest.mark.slow
def test_even_a_sigkilled_review_takes_its_server_with_it(filled_store):
    """SIGKILL cannot be forwarded; the kernel's parent-death signal (Linux) ends the server."""
    import signal
    import time

    import pytest
    from review_server import alive, descendants, start_review

    pytest.importorskip("streamlit")
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    proc, _url = start_review(filled_store[0], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        servers = descendants(proc.pid)
        assert servers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while alive(servers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(servers), "the Streamlit server outlived a SIGKILLed flashback review"


@pytest.mark.slow
def test_off_a_terminal_long_steps_still_say_how_far_they_are(tmp_path):
    """stderr to a file (a log, a service): no bars, but progress lines, each task finished once."""
    cache = tmp_path / "cache"
    video = make_video(tmp_path / "v.mp4", n_frames=60)
    p = flashback("score", video, "--no-db", *TINY_CLI,
                  env={"FLASHBACK_CACHE_DIR": str(cache), "FLASHBACK_LOG_EVERY_S": "0"})
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    memory = [x for x in lines if x.startswith("flashback: default memory: ")]
    assert len(memory) >= 10 and memory[-1] == f"flashback: default memory: {DEFAULT_SIZE:,}/{DEFAULT_SIZE:,} captions"
    assert any(x.startswith("flashback: v.mp4: ") and "s of video" in x for x in lines)
    assert lines.count("flashback: all videos: 1/1 videos") == 1
    assert not any("\x1b[" in x or "━" in x for x in lines)  # no terminal codes, no bar glyphs
