"""``flashback score --ray`` on a real Ray cluster on loopback: a head and a worker node, each a
``ray start`` process (``flashback.cluster.local.LocalCluster``), the CLI as the driver.

The faults are real too: the test kills the worker process decoding a video, the encoder actor's
process, and in the end a whole worker node (its process session, SIGKILL), and presses Ctrl-C on
the driver.  The videos the faults need are long enough to be caught mid-decode (40 s of 720p, a
few seconds' work on one core).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import FLASHBACK, TINY_CLI, flashback, sigint_as_a_terminal_sends_it
from streams import FFMPEG

from flashback.cluster.local import LocalCluster

pytestmark = pytest.mark.slow  # every test here starts a process (see tests/lanes.py)

# the head notices a lost node within a few seconds rather than Ray's default half minute
FAST_HEALTH = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(head_cpus=1, workers=[1], env=FAST_HEALTH, log_dir=tmp_path_factory.mktemp("ray-logs")) as c:
        yield c
    assert not any(n.alive for n in c.nodes)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from flashback.video.synthetic import make_video

    d = tmp_path_factory.mktemp("cluster-videos")
    short = [make_video(d / f"s{i}.mp4", n_frames=90 + 30 * i, scene_of=lambda k: k // 30) for i in range(3)]
    (d / "broken.mp4").write_bytes(b"not a video at all")
    long = {name: d / f"{name}.mp4" for name in ("long", "poison", "heavy")}
    # 10 s encoded, played 4 times into one 40 s file without encoding again (1.4 CPU-s, not 5.6)
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "10",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", str(d / "ten.mp4")], check=True)
    subprocess.run([FFMPEG, "-loglevel", "error", "-stream_loop", "3", "-i", str(d / "ten.mp4"), "-c", "copy",
                    str(long["long"])], check=True)
    for name in ("poison", "heavy"):  # other bytes (so other videos), the same decoding work
        subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(long["long"]), "-c", "copy", "-metadata", f"title={name}",
                        str(long[name])], check=True)
    return short, d / "broken.mp4", long


ALERT = "a car burns"  # a run-time text: it must reach the actors too (their run id covers it)


def score_on(cluster, db: Path, *videos, memory) -> subprocess.CompletedProcess:
    return flashback("score", *videos, *TINY_CLI, "--memory", memory, "--db", db, "--ray", cluster.address, "--alert", ALERT)


def stored(db: Path) -> dict[str, tuple[int, int]]:
    """Per stored video file name: (scorings rows, frame_scores rows)."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("""SELECT s.path, count(DISTINCT s.run_id), (SELECT count(*) FROM frame_scores f
                              WHERE f.video_id = s.video_id) FROM scorings s GROUP BY s.path, s.video_id""").fetchall()
    return {Path(p).name: (n, f) for p, n, f in rows}


def processes(prefix: str) -> list[int]:
    """PIDs whose command line (Ray's process title) starts with ``prefix``."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(prefix):
                found.append(int(d.name))
    return found


class Killer(threading.Thread):
    """Kills, ``times`` times, a process whose title starts with ``prefix`` as soon as one appears
    (a new one each time: the retry of a video runs in a fresh worker)."""

    def __init__(self, prefix: str, times: int = 1, timeout_s: float = 120.0, sig=signal.SIGKILL):
        super().__init__(daemon=True)
        self.prefix, self.times, self.timeout_s, self.sig = prefix, times, timeout_s, sig
        self.killed: list[int] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while len(self.killed) < self.times and time.monotonic() < deadline:
            for pid in processes(self.prefix):
                if pid not in self.killed:
                    try:
                        os.kill(pid, self.sig)
                        self.killed.append(pid)
                    except ProcessLookupError:
                        pass
                    break
            time.sleep(0.02)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One results file for the first two tests: the second scores the first's videos again."""
    return tmp_path_factory.mktemp("cluster-store") / "r.duckdb"


def test_a_cluster_run_stores_what_a_local_run_computes(cluster, clips, seed_memory, tiny_encoder, store):
    from flashback.scoring.pipeline import Detector
    from flashback.video.cameras import user_texts

    short, broken, _ = clips
    db = store
    r = score_on(cluster, db, *short, broken, memory=seed_memory.path)
    assert r.returncode == 1, r.stderr
    assert "2 node(s), 2 CPU(s)" in r.stderr
    assert f"{broken}: not a readable video" in r.stderr  # a bad input fails alone, named, with its reason
    assert "cluster: 3 video(s) scored, 1 failed" in r.stderr
    assert "video FPS" in r.stderr
    det = Detector(seed_memory, tiny_encoder, texts=user_texts([ALERT], None))
    with duckdb.connect(str(db), read_only=True) as con:
        for v in short:
            local = det.score(str(v))
            got = con.execute("SELECT raw_score, score FROM frame_scores f JOIN scorings s USING (run_id, video_id) "
                              "WHERE s.path = ? ORDER BY frame", [str(v)]).fetchnumpy()
            np.testing.assert_array_equal(got["raw_score"], local.raw_scores)  # identical, not close
            np.testing.assert_array_equal(got["score"], local.scores)


def test_killed_workers_cost_a_retry_and_a_video_that_kills_twice_is_reported(cluster, clips, seed_memory, store):
    """A decoding worker killed once, the encoder actor killed once: those videos start again and
    every video is stored exactly once.  A video whose worker is killed on both attempts is named
    as failed.  It writes to the first test's store: re-scored videos replace rows, never add them."""
    short, _, long = clips
    db = store
    once = stored(db)
    assert sorted(once) == sorted(v.name for v in short)
    killers = [Killer(f"ray::flashback-decode {long['long'].name}"), Killer("ray::VideoEncoder.encode"),
               Killer(f"ray::flashback-decode {long['poison'].name}", times=2)]
    for k in killers:
        k.start()
    r = score_on(cluster, db, long["long"], long["poison"], *short, memory=seed_memory.path)
    for k in killers:
        k.join(timeout=1)
    assert [len(k.killed) for k in killers] == [1, 1, 2], r.stderr
    assert r.returncode == 1, r.stderr
    assert f"{long['poison']}: its worker died 2 times" in r.stderr
    assert "1 encoder actor(s) replaced" in r.stderr
    rows = stored(db)
    assert "poison.mp4" not in rows
    assert rows["long.mp4"] == (1, 1000)  # 40 s at 25 FPS, once
    assert {k: rows[k] for k in once} == once  # the re-scored short videos: the same rows, not twice as many


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_on_the_driver_cancels_the_cluster_work(cluster, clips, seed_memory, tmp_path, sig):
    """Ctrl-C, and SIGTERM alike (a service manager's stop: it used to abort with Ray's crash dump,
    no summary and no JSON)."""
    short, _, long = clips
    db, js = tmp_path / "r.duckdb", tmp_path / "r.json"
    p = subprocess.Popen([FLASHBACK, "score", *map(str, short), str(long["heavy"]), *TINY_CLI, "--memory",
                          str(seed_memory.path), "--db", str(db), "--json", str(js), "--ray", cluster.address],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_a_terminal_sends_it)
    deadline = time.monotonic() + 120
    while not processes(f"ray::flashback-decode {long['heavy'].name}") and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (p.returncode, err[-4000:])
    assert "interrupted" in err and "scored " in out and "Traceback" not in err
    assert "heavy.mp4" not in js.read_text() and "videos" in json.loads(js.read_text())
    deadline = time.monotonic() + 20  # the decoding task is cancelled, not left running on the cluster
    while processes(f"ray::flashback-decode {long['heavy'].name}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes(f"ray::flashback-decode {long['heavy'].name}")
    if db.exists():  # whatever finished before Ctrl-C is whole
        assert all(n == (1, n[1]) and n[1] > 0 for n in stored(db).values())
        assert "heavy.mp4" not in stored(db)


def test_a_lost_worker_node_loses_no_video(cluster, clips, seed_memory, tmp_path):
    """The worker node dies whole (SIGKILL to its raylet, object store and workers) while it decodes:
    the job finishes on the head, and every video is stored once.  Runs last: the node stays dead."""
    short, _, long = clips
    worker = next(n for n in cluster.nodes if not n.head)
    db = tmp_path / "r.duckdb"

    def kill_node_when_busy() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(cluster.node_of(pid) is worker for pid in processes("ray::flashback-decode")):
                cluster.kill_node(worker)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_node_when_busy, daemon=True)
    killer.start()
    videos = [long["long"], long["poison"], long["heavy"], *short]
    r = score_on(cluster, db, *videos, memory=seed_memory.path)
    killer.join(timeout=1)
    assert not worker.alive
    assert r.returncode == 0, r.stderr
    assert "retried after a worker died" in r.stderr
    rows = stored(db)
    assert sorted(rows) == sorted(v.name for v in videos)
    assert all(n == 1 for n, _ in rows.values())
    assert rows["heavy.mp4"][1] == 1000


def test_an_unreachable_cluster_is_one_line_before_any_work(tmp_path, clips):
    short, _, _ = clips
    r = flashback("score", short[0], *TINY_CLI, "--db", tmp_path / "r.duckdb", "--ray", "127.0.0.1:1")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("flashback: error: --ray 127.0.0.1:1: cannot connect")
    assert not (tmp_path / "r.duckdb").exists()


def test_a_memory_build_on_the_cluster_resumes_and_equals_a_local_build(cluster, tiny_encoder, tmp_path):
    """Generation, near-duplicate and embedding shards made by the cluster's workers; the driver
    killed (SIGKILL) once some are done, and the same command run again: it reuses them, and the
    bundle is the one a local, uninterrupted build makes."""
    from flashback.memory.bundle import load_bundle
    from memory_builder.job import BuildConfig, BuildJob

    args = ["memory", "build", "--out", tmp_path / "mem", "--size", "300", "--shard-size", "75", *TINY_CLI,
            "--ray", cluster.address, "--actors", "1"]
    p = subprocess.Popen([FLASHBACK, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".mem.build-*/gen/*.done")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.kill()
    p.wait()
    done = len(list(tmp_path.glob(".mem.build-*/gen/*.done")))
    assert done >= 1 and not (tmp_path / "mem").exists()  # 345 wanted: 4 shards of 75 at once, then one of 45
    r = flashback(*args, env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert f"resumed: reused {done} generate shard(s)" in r.stdout
    config = BuildConfig(size=300, shard_size=75)
    local = BuildJob(config, tiny_encoder, tmp_path / "local").run()
    assert load_bundle(tmp_path / "mem").memory_id == local.memory_id
