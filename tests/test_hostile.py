"""Regressions from the second round of trying to break flashback (issue 27): what a shared bundle,
a file name, a camera URL or a reviewer can make flashback print, store or show.  Every printed
datum is printable text (no terminal escapes, no emoji rewriting) and a camera's password never
leaves the URL it is opened with."""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest
from conftest import TINY_CLI, flashback_here, free_port, memory_from_rows

from flashback.errors import masked, printable
from flashback.video.synthetic import make_video

ESC_TITLE = "\x1b]0;pwned\x07"
ESC_RED = "\x1b[31m"
BIDI = "\u202e"


def printed_safely(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and BIDI not in text, repr(text[:400])


@pytest.fixture(scope="module")
def escape_memory(tmp_path_factory):
    """Captions and a category carrying terminal escapes, a bidi override and emoji codes."""
    rows = [{"text": f"a calm street :smile: number {i}", "label": "normal"} for i in range(6)]
    rows += [{"text": f"{ESC_TITLE}a man smashes {ESC_RED}a window{BIDI} :-1 {i}", "label": "anomalous",
              "category": f"Vandalism{ESC_RED} :thumbsup:"} for i in range(6)]
    return memory_from_rows(tmp_path_factory.mktemp("escapes"), rows)


def test_escapes_in_a_bundle_and_a_file_name_reach_no_terminal(escape_memory, tmp_path):
    info = flashback_here("memory", "info", escape_memory)
    assert info.returncode == 0, info.stderr
    video = make_video(tmp_path / f"cam{ESC_TITLE} :smile:.mp4", n_frames=60)
    score = flashback_here("score", video, "--memory", escape_memory, "--no-db", "--threshold", "0", *TINY_CLI)
    assert score.returncode == 0, score.stderr
    for p in (info, score):
        printed_safely(p.stdout + p.stderr)
    assert "Vandalism\\x1b[31m :thumbsup:" in info.stdout  # shown as the text it is, emoji code included
    assert "cam\\x1b]0;pwned\\x07 :smile:.mp4" in score.stdout and ":-1" in score.stdout


def test_printable_and_masked():
    assert printable(f"a{ESC_RED}b\nc\td{BIDI}") == "a\\x1b[31mb\nc\td\\u202e"
    assert masked("rtsp://admin:s3cret@cam:554/s?x=1") == "rtsp://admin:***@cam:554/s?x=1"
    assert masked("rtsp://admin:p@ss@cam/s") == "rtsp://admin:***@cam/s"  # the last '@' ends the password
    assert masked("http://cam/snap.cgi?user=a&pwd=s3cret&x=1") == "http://cam/snap.cgi?user=a&pwd=***&x=1"
    assert masked("rtsp://viewer@cam/s and rtsp://cam/s") == "rtsp://viewer@cam/s and rtsp://cam/s"


@contextlib.contextmanager
def http_folder(folder):
    """A loopback HTTP server for one folder (FFmpeg's http protocol sends the URL's user and password)."""
    handler = functools.partial(type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://admin:s3cret@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_camera_password_is_never_printed_exported_or_stored(seed_memory, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    make_video(www / "cam.ts", n_frames=90, scene_of=lambda i: 5 if i >= 45 else 0)
    db, exported, lines = tmp_path / "r.duckdb", tmp_path / "r.json", tmp_path / "ev.jsonl"
    dead = f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/stream"
    with http_folder(www) as base:
        score = flashback_here("score", f"{base}/cam.ts", dead, "--memory", seed_memory.path, "--db", db,
                               "--json", exported, *TINY_CLI)
        watch = flashback_here("watch", f"yard={base}/cam.ts", "--memory", seed_memory.path, "--db", db,
                               "--events", lines, "--duration", "3", "--read-timeout", "1", *TINY_CLI)
    search = flashback_here("search", "a street", "--db", db, "--json", *TINY_CLI)
    assert score.returncode == 1 and "rtsp://admin:***@127.0.0.1" in score.stderr  # the dead one, named
    assert watch.returncode == 0, watch.stderr
    assert search.returncode == 0, search.stderr
    doc = json.loads(exported.read_text())
    assert [r["source"] for r in doc["videos"]] == [f"{base.replace(':s3cret@', ':***@')}/cam.ts"]
    started = json.loads(lines.read_text().splitlines()[0])
    assert started["feeds"][0]["location"].startswith("http://admin:***@127.0.0.1")
    with duckdb.connect(str(db), read_only=True) as con:
        stored = [con.execute(f"SELECT * FROM {t}").fetchall() for t in ("videos", "scorings", "live_feeds", "runs")]
    assert stored[0] and stored[2]
    said = [score.stdout, score.stderr, watch.stdout, watch.stderr, search.stdout, search.stderr, exported.read_text(),
            lines.read_text(), repr(stored)]
    assert not [s for s in said if "s3cret" in s]
    assert json.loads(search.stdout)["hits"] and all("s3cret" not in h["path"] for h in json.loads(search.stdout)["hits"])


def test_search_json_is_written_as_it_is(seed_memory, tmp_path):
    """Rich used to rewrite ':smile:' in a query (and ':-1' in errors) to emoji, JSON included."""
    video = make_video(tmp_path / "v.mp4", n_frames=60)
    db = tmp_path / "r.duckdb"
    assert flashback_here("score", video, "--memory", seed_memory.path, "--db", db, *TINY_CLI).returncode == 0
    p = flashback_here("search", "a fight :smile: :-1", "--db", db, "--json", *TINY_CLI)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["query"] == "a fight :smile: :-1"


def test_the_review_app_masks_a_password_a_legacy_store_still_holds():
    from ui.views.common import md

    shown = md("rtsp://admin:s3cret@cam/s")
    assert "s3cret" not in shown and "admin\\:\\*\\*\\*@" in shown


@pytest.mark.parametrize("name", ["manifest.json", "normal.faiss"])
def test_a_symbolic_link_inside_a_bundle_is_refused_not_followed(seed_memory, tmp_path, name):
    import shutil

    mem = shutil.copytree(seed_memory.path, tmp_path / "mem")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(mem / name, elsewhere)
    (mem / name).symlink_to(elsewhere)  # the very bytes the manifest pinned: only the link is wrong
    verify = flashback_here("memory", "verify", mem)
    score = flashback_here("score", make_video(tmp_path / "v.mp4", n_frames=30), "--memory", mem, "--no-db", *TINY_CLI)
    for p in (verify, score):
        assert p.returncode == 1 and f"{mem / name}: a symbolic link" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


def test_deeply_nested_json_is_one_line_not_a_recursion_error(seed_memory, tmp_path):
    import shutil

    mem = shutil.copytree(seed_memory.path, tmp_path / "mem")
    (mem / "manifest.json").write_text("[" * 100_000)
    caps = tmp_path / "caps.jsonl"
    caps.write_text('{"text": "a calm street", "label": "normal"}\n' + "[" * 100_000 + "\n")
    verify = flashback_here("memory", "verify", mem)
    build = flashback_here("memory", "from-captions", caps, "--out", tmp_path / "new", *TINY_CLI)
    assert verify.returncode == 1 and f"{mem / 'manifest.json'}: not a manifest (JSON nested too deeply" in verify.stderr
    assert build.returncode == 1 and f"{caps}:2: JSON nested too deeply to read" in build.stderr, build.stderr
    assert "Traceback" not in verify.stderr + build.stderr


def test_no_csv_cell_starts_a_formula(tmp_path):
    """File names, categories, reviewers and notes are anyone's text: in the score CSV, clips'
    index.csv and the review app's export a cell that starts like a formula gets an apostrophe."""
    import csv

    from ui.data import EventKey, ReviewDB

    rows = [{"text": f"a calm street {i}", "label": "normal"} for i in range(6)]
    rows += [{"text": f"-1+1 a window is smashed {i}", "label": "anomalous", "category": "=HYPERLINK(\"http://x\",\"y\")"}
             for i in range(6)]
    mem = memory_from_rows(tmp_path, rows)
    video = make_video(tmp_path / "@cam.mp4", n_frames=60)
    db, scores = tmp_path / "r.duckdb", tmp_path / "scores.csv"
    p = flashback_here("score", video, "--memory", mem, "--db", db, "--csv", scores, "--threshold", "0", *TINY_CLI)
    assert p.returncode == 0, p.stderr
    review = ReviewDB(db)
    event = review.events()[0]
    review.save_verdict(EventKey.decode(event["key"]), event["end_frame"], "confirmed", "+reviewer", "=1+1 note")
    assert flashback_here("clips", "--db", db, "--out", tmp_path / "clips").returncode == 0
    tables = [list(csv.reader(open(scores))), list(csv.reader(open(tmp_path / "clips" / "index.csv"))),
              list(csv.reader(review.export_csv().splitlines()))]
    for table in tables:
        for row in table[1:]:
            for value in row:
                if value[:1] in ("=", "+", "-", "@"):
                    float(value)  # only a number may start so
    flat = [v for t in tables for r in t for v in r]
    assert "'=HYPERLINK(\"http://x\",\"y\")" in flat and "'+reviewer" in flat and "'=1+1 note" in flat
    assert any(v.endswith("@cam.mp4") for v in flat)


def test_a_file_replaced_while_it_was_scored_is_not_stored_under_its_old_content(seed_memory, tiny_encoder, tmp_path):
    """The clip used to be cut from the new recording and videos.path to name other content (rc 0)."""
    from flashback.scoring.pipeline import Detector, Work
    from flashback.scoring.schedule import InProcess
    from flashback.settings import ScoringSettings
    from flashback.store import ResultStore, RunRecord
    from flashback.store.keeper import Keeper, keep_all
    from flashback.video.sources import expand_inputs

    cam, other = tmp_path / "cam.mp4", tmp_path / "other.mp4"
    make_video(cam, n_frames=90, scene_of=lambda i: 5 if i >= 45 else 0)
    make_video(other, n_frames=90, size=(96, 64))
    kept = make_video(tmp_path / "kept.mp4", n_frames=60, scene_of=lambda i: 5 if i >= 30 else 0)
    detector = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.0, min_event_s=0.5))
    store = ResultStore(tmp_path / "r.duckdb")
    keeper = Keeper(store, RunRecord.of(detector), warn=lambda m: None)

    class ReplacedAfterScoring:  # the camera's recorder rotates the file between its scoring and its storing
        def claim(self, w, video_id):
            return keeper.claim(w, video_id)

        def seconds(self, w, done, total):
            pass

        def result(self, w, result):
            if w.source.path == cam:
                other.replace(cam)
            keeper.result(w, result)

        def failure(self, w, reason, error=None):
            keeper.failure(w, reason, error)

    work = [Work(s) for s in expand_inputs([str(cam), str(kept)]).sources]
    keep_all(work, InProcess(detector), keeper, sink=ReplacedAfterScoring())
    assert [f["source"] for f in keeper.failures] == [str(cam)]
    assert "replaced or changed while it was scored" in keeper.failures[0]["error"]
    with duckdb.connect(str(store.path), read_only=True) as c:
        assert c.execute("SELECT path FROM videos").fetchall() == [(str(kept),)]
        assert c.execute("SELECT count(*) FROM event_media").fetchone()[0] >= 1  # the untouched file kept its clips


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(template="bogus"), "template 'bogus' is not one this flashback knows"),
    (lambda m: m.update(categories={"Nothing to see": 1}), "categories differ from the caption table's"),
])
def test_a_re_signed_manifest_edit_fails_verify(seed_memory, tmp_path, edit, message):
    """An edited manifest whose memory_id was recomputed used to pass verify: an unknown template then
    blamed a --template flag the user never passed; edited categories were shown as the memory's."""
    import shutil

    from flashback.memory.manifest import Manifest, memory_id_of

    mem = shutil.copytree(seed_memory.path, tmp_path / "mem")
    raw = json.loads((mem / "manifest.json").read_text())
    edit(raw)
    raw["memory_id"] = memory_id_of(Manifest.from_json(raw))
    (mem / "manifest.json").write_text(json.dumps(raw))
    p = flashback_here("memory", "verify", mem)
    assert p.returncode == 1 and message in p.stderr and "--template" not in p.stderr, p.stderr
