"""Shared fixtures: a tiny open_clip architecture (registered here, never shipped), a memory
bundle built with it, and an isolated cache folder so the default memory is built per test run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lanes import pytest_configure, pytest_runtest_protocol  # noqa: F401  (the fast lane stays in process)
from xdist_guard import pytest_collection_modifyitems, pytest_xdist_make_scheduler  # noqa: F401  (heaviest first; crash-safe)


def pytest_sessionstart(session):
    """The test command installs with ``pip --no-compile``: pip byte-compiles every file of every
    package (PyTorch's 5 GB among them: a minute of the install here), though the suite's processes
    import a small part of them.  Where the environment sets PYTHONDONTWRITEBYTECODE (this machine and
    its CI do), no process would keep what it compiles, and each of the suite's hundred CLI, pool, Ray
    and Streamlit processes would compile torch and open_clip again (about 12 CPU-s each).  So the
    suite's processes write bytecode: the first to import a module compiles it, the others read it
    (here, before the xdist workers start: they inherit the environment)."""
    if not hasattr(session.config, "workerinput"):
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        sys.dont_write_bytecode = False


TINY_MODEL = "fb-test-tiny"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


# slow enough per caption that a test can interrupt a build mid-embedding, still seconds in all
SMALL_MODEL = "fb-test-small"
SMALL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 192, "heads": 4, "layers": 3},
}


@pytest.fixture(scope="session")
def tiny_config_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("model_configs")
    (d / f"{TINY_MODEL}.json").write_text(json.dumps(TINY_CONFIG))
    (d / f"{SMALL_MODEL}.json").write_text(json.dumps(SMALL_CONFIG))
    return d


@pytest.fixture(autouse=True, scope="session")
def _register_tiny(tiny_config_dir, tmp_path_factory):
    """Make the tiny model visible to this process and to CLI subprocesses, and isolate the cache:
    one per run, shared by its xdist workers (a default memory built by one is read by the other, as
    two processes of a user's share it; a test that needs an empty cache makes its own)."""
    os.environ["FLASHBACK_MODEL_CONFIGS"] = str(tiny_config_dir)
    base = tmp_path_factory.getbasetemp()
    run = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # pytest-N/, above each popen-gwK/
    (run / "cache").mkdir(exist_ok=True)
    os.environ["FLASHBACK_CACHE_DIR"] = str(run / "cache")
    # no config file or FLASHBACK_* default of the machine's may change what a test runs
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg_config"))
    for key in ("FLASHBACK_CONFIG", "FLASHBACK_ENCODER", "FLASHBACK_PRETRAINED", "FLASHBACK_CHECKPOINT",
                "FLASHBACK_DEVICE", "FLASHBACK_PRECISION", "FLASHBACK_MEMORY", "FLASHBACK_DB"):
        os.environ.pop(key, None)
    # the suite runs PyTorch, exact and the same on every machine; test_backends.py runs the CPU
    # backends (auto's choice where they are installed) against it, through the CLI too
    os.environ["FLASHBACK_BACKEND"] = "torch"
    from flashback.encoders.encoder_registry import import_open_clip

    import_open_clip().add_model_config(str(tiny_config_dir))
    yield


@pytest.fixture(scope="session")
def tiny_spec():
    from flashback.encoders.encoder_registry import EncoderSpec

    return EncoderSpec(model=TINY_MODEL, pretrained="random", seed=0)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_spec):
    from flashback.encoders.encoder import ClipEncoder

    return ClipEncoder(tiny_spec, device="cpu", backend="torch")


TINY_CLI = ["--encoder", TINY_MODEL, "--pretrained", "random", "--device", "cpu"]


@pytest.fixture(scope="session")
def seed_memory(tiny_encoder, tmp_path_factory):
    from flashback.memory.bundle import load_bundle
    from flashback.memory.default_memory import seed_captions_path
    from memory_builder import build_from_captions

    out = tmp_path_factory.mktemp("mem") / "seed"
    build_from_captions([seed_captions_path()], tiny_encoder, out)
    return load_bundle(out)


@pytest.fixture(scope="session")
def filled_store(seed_memory, tiny_encoder, tmp_path_factory):
    """Three videos in two camera folders, scored with a threshold low enough to flag events."""
    from flashback.scoring.pipeline import Detector
    from flashback.settings import ScoringSettings
    from flashback.store import ResultStore, RunRecord
    from flashback.video.media import file_event_media
    from flashback.video.synthetic import make_video

    d = tmp_path_factory.mktemp("review")
    (d / "gate").mkdir()
    (d / "lobby").mkdir()
    videos = [make_video(d / "gate" / "g1.mp4", n_frames=150, scene_of=lambda k: k // 30),
              make_video(d / "gate" / "g2.mp4", n_frames=120, scene_of=lambda k: 4 if k > 60 else 1),
              make_video(d / "lobby" / "l1.mp4", n_frames=90, scene_of=lambda k: 6)]
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.3, min_event_s=0.5))
    run = RunRecord(det.settings.to_dict(), seed_memory.memory_id, str(seed_memory.path), tiny_encoder.identity.key, "test")
    db = d / "results.duckdb"
    store = ResultStore(db)
    store.initialize()
    results = [det.score(str(v)) for v in videos]
    for v, r in zip(videos, results):
        store.save(run, r, file_event_media(v, r.video_id, run.run_id, r.events, r.duration_s, store.media_dir))
    return db, run, results


FLASHBACK = str(Path(sys.executable).with_name("flashback"))


def copy_of(filled_store, folder: Path) -> Path:
    """A test's own copy of ``filled_store``'s database, and its media folder beside it."""
    import shutil

    db = folder / "r.duckdb"
    shutil.copy(filled_store[0], db)
    shutil.copytree(filled_store[0].with_suffix(".media"), db.with_suffix(".media"))
    return db


def sigint_as_a_terminal_sends_it() -> None:
    """``preexec_fn`` of a command a test presses Ctrl-C on: SIGINT back to its default action.  A
    shell's background job (one way CI starts the suite) inherits SIGINT ignored, and a Python
    started that way never raises KeyboardInterrupt, so the test would see nothing stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flashback(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """The installed ``flashback`` command, as a user runs it (``env`` adds to this environment); a
    wide terminal, so that the table's cells are not folded across lines."""
    return subprocess.run([FLASHBACK, *map(str, args)], check=False, capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "COLUMNS": "400", **(env or {})})


def flashback_here(*args, cwd=None, env=None, timeout=None) -> subprocess.CompletedProcess:
    """``flashback`` run in this process, answering as ``flashback()`` does (exit status, stdout,
    stderr as text), for tests of what a command does rather than of how its process behaves
    (signals, kills, locks, an exit under ``os._exit``, what a fresh process imports): it saves the
    4 s a new process spends importing torch and open_clip, and keeps the test in the fast lane.
    ``cwd`` and ``env`` hold for the call and are restored after it; the consoles are as wide as ``flashback()``'s;
    ``timeout`` is taken for ``flashback()``'s sake and left to the suite's faulthandler timeout."""
    import contextlib
    import io
    import logging

    from flashback.cli import common, main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in env or {}}
    saved_width = {c: c._width for c in (common.out, common.err)}  # rich fixes a console's width when it is made
    common.log_to_stderr()  # main's first step, taken here so that its handler can be pointed at this call's stderr
    handlers = [h for h in logging.getLogger("flashback").handlers if isinstance(h, logging.StreamHandler)]
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    try:
        for c in saved_width:
            c.width = 400
        with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            # set, not setStream: that flushes the old stream, which an earlier test's capture may have closed
            previous = [h.stream for h in handlers]
            for h in handlers:
                h.stream = stderr
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's refusals
                code = e.code if isinstance(e.code, int) else 2
            finally:
                for h, old in zip(handlers, previous):
                    h.stream = old
    finally:
        for c, w in saved_width.items():
            c._width = w
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["flashback", *map(str, args)], code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def scene_memory(tiny_encoder, tmp_path_factory):
    """Normal captions are scene-0 frames, anomalous ones scene-5 frames, as the tiny encoder sees them:
    a video that cuts to scene 5 must score high there and low elsewhere."""
    import numpy as np

    from flashback.memory.bundle import BundleSpec, CaptionTable, load_bundle, write_bundle
    from flashback.video.synthetic import frame_image

    size = tiny_encoder.image_size
    frames = [frame_image(i, size, size, scene) for scene in (0, 5) for i in range(0, 40, 5)]
    vecs = tiny_encoder.encode_images(np.stack(frames))
    n = len(frames) // 2
    table = CaptionTable([f"a calm street, view {i}" for i in range(n)] + [f"a window is smashed, view {i}" for i in range(n)],
                         [False] * n + [True] * n, ["normal"] * n + ["Vandalism"] * n, ["test"] * (2 * n))
    out = tmp_path_factory.mktemp("scene") / "mem"
    write_bundle(out, table, vecs, BundleSpec(tiny_encoder.identity, alpha=1.0, template="none", logit_scale=100.0))
    return load_bundle(out)


def memory_from_rows(folder: Path, rows: list[dict]) -> Path:
    """A memory built by ``flashback memory from-captions`` (tiny encoder) from labelled caption rows."""
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "caps.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mem = folder / "mem"
    p = flashback_here("memory", "from-captions", f, "--out", mem, *TINY_CLI)
    assert p.returncode == 0, p.stderr
    return mem



@contextlib.contextmanager
def tmpfs(mnt: Path, size: str):
    """A real tmpfs of ``size`` mounted at ``mnt`` for the block (needs root: the test is skipped otherwise)."""
    mnt.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
