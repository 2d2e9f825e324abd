"""Search stored footage by text: the plumbing exactly (random weights rank nothing meaningful, so a
query equal to a stored vector must find that segment first), filters, the approximate index kept
in step with the store, another encoder refused; meaning with the real MiniLM on real UCF-Crime
dev captions."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import TINY_CLI, copy_of, flashback_here

from flashback.errors import UsageError
from flashback.review.search import FootageSearch, unpack
from flashback.store import ResultStore

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucf_crime_text_dev"


@pytest.fixture
def store(filled_store, tmp_path):
    return ResultStore(copy_of(filled_store, tmp_path))


def stored(store, where: str = "TRUE"):
    with store.connect(read_only=True) as con:
        return con.execute(f"SELECT vector_id, video_id, segment, vector FROM segment_vectors WHERE {where} "
                           "ORDER BY vector_id").fetchall()


def test_every_segment_keeps_its_vector(store, filled_store):
    results = filled_store[2]
    rows = stored(store)
    assert len(rows) == sum(len(r.segments) for r in results)
    r = results[0]
    mine = [x for x in rows if x[1] == r.video_id]
    got = unpack([x[3] for x in mine], r.segments.vectors.shape[1])
    np.testing.assert_allclose(got, r.segments.vectors, atol=2e-3)  # float16 on disk


@pytest.mark.parametrize("approx_at", [10**9, 10])  # exact, and the approximate index
def test_a_stored_vector_finds_its_own_segment_first(store, filled_store, tiny_encoder, approx_at):
    finder = FootageSearch(store, tiny_encoder, approx_at=approx_at)
    for vid, seg, blob in [(x[1], x[2], x[3]) for x in stored(store)][::7]:
        q = unpack([blob], tiny_encoder.identity.dim)[0]
        top = finder.search_vector(q / np.linalg.norm(q), top=3)
        assert (top[0].video_id, top[0].segment) == (vid, seg) and top[0].similarity > 0.999
        assert [h.similarity for h in top] == sorted((h.similarity for h in top), reverse=True)
    if approx_at == 10:
        assert list(store.path.with_suffix(".search").glob("*.faiss"))


def test_filters_by_camera_and_time(store, tiny_encoder):
    finder = FootageSearch(store, tiny_encoder)
    hits = finder.search("a car on fire", top=100)
    assert {Path(h.path).parent.name for h in hits} == {"gate", "lobby"}
    assert 3 <= len(hits) < finder.n  # moments: overlapping segments nearly as similar are one hit
    lobby = finder.search("a car on fire", top=100, camera="lobby")
    assert lobby and all(Path(h.path).parent.name == "lobby" for h in lobby)
    assert finder.search("a car on fire", camera="nowhere") == []
    assert finder.search("a car on fire", since=datetime.now() + timedelta(days=1)) == []
    assert len(finder.search("a car on fire", top=2, since=datetime.now() - timedelta(days=1))) == 2
    with pytest.raises(UsageError, match="the query text is empty"):
        finder.search("  ")


def test_the_approximate_index_follows_the_store(store, filled_store, seed_memory, tiny_encoder):
    """Rows added after the index was saved are found; rows deleted (a re-scoring) never come back."""
    from flashback.scoring.pipeline import Detector
    from flashback.settings import ScoringSettings
    from flashback.video.synthetic import make_video

    finder = FootageSearch(store, tiny_encoder, approx_at=10)
    finder.search("anything")  # builds and saves the index
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.3, min_event_s=0.5))
    new = det.score(str(make_video(store.path.parent / "new.mp4", n_frames=60, scene_of=lambda k: 3)))
    store.save(filled_store[1], new)
    finder = FootageSearch(store, tiny_encoder, approx_at=10)
    q = new.segments.vectors[1]
    top = finder.search_vector(q, top=1)[0]
    assert (top.video_id, top.segment) == (new.video_id, 1)
    ids = np.load(next(store.path.with_suffix(".search").glob("*.ids.npy")))
    assert len(ids) == finder.n  # brought up to date, not rebuilt from nothing
    old_ids = {x[0] for x in stored(store, f"video_id = '{new.video_id}'")}
    store.save(filled_store[1], new)  # re-scored: its rows get new ids, the old ones are gone
    hits = FootageSearch(store, tiny_encoder, approx_at=10).search_vector(q, top=50)
    assert sum((h.video_id, h.segment) == (new.video_id, 1) for h in hits) == 1
    assert not old_ids & {x[0] for x in stored(store)}


def test_a_store_of_another_encoder_is_refused(store):
    from conftest import SMALL_MODEL

    from flashback.encoders.encoder import ClipEncoder
    from flashback.encoders.encoder_registry import EncoderSpec

    other = ClipEncoder(EncoderSpec(model=SMALL_MODEL, pretrained="random", seed=0), device="cpu", backend="torch")
    with pytest.raises(UsageError, match=r"no segment was stored with encoder open_clip:fb-test-small.*it holds: open_clip:fb-test-tiny"):
        FootageSearch(store, other)


def test_the_search_encoder_is_resolved_without_loading_where_nothing_can_be_missing(store, tmp_path, tiny_encoder):
    """``flashback review``'s check at start: random weights and an existing checkpoint are said from
    the store and the flags alone; hub weights and sentence models are left to loading, and a
    missing checkpoint is refused with the same line loading gives."""
    from flashback.errors import EncoderError
    from flashback.review.search import query_encoder, query_encoder_without_loading

    said = query_encoder_without_loading(store, {})  # the store's own: the tiny model, random seed 0
    assert said == "open_clip:fb-test-tiny@random:0 (random weights)"
    loaded = query_encoder(store, {"device": "cpu"}).identity.key  # the key adds the width, known once loaded
    assert loaded == tiny_encoder.identity.key and loaded.startswith(said.split(" ")[0] + "/")
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"weights")
    assert query_encoder_without_loading(store, {"checkpoint": str(ckpt)}) == f"open_clip:fb-test-tiny from {ckpt}"
    with pytest.raises(EncoderError, match=r"^/nope\.pt: checkpoint file not found$"):
        query_encoder_without_loading(store, {"checkpoint": "/nope.pt"})
    assert query_encoder_without_loading(store, {"pretrained": "laion2b_s34b_b79k"}) is None  # only the hub can tell
    assert query_encoder_without_loading(store, {"text_encoder": "some-sentence-model"}) is None


def test_search_from_the_command_line(store):
    p = flashback_here("search", "a person climbing a fence", "--db", store.path, "--top", "2", "--json", *TINY_CLI)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["query"] == "a person climbing a fence" and len(doc["hits"]) == 2
    assert {"video_id", "path", "camera", "start_s", "end_s", "similarity", "score", "caption", "when"} <= set(doc["hits"][0])
    p = flashback_here("search", "a fight", "--db", store.path, "--camera", "gate", *TINY_CLI)
    assert p.returncode == 0 and "moment(s) among 21 segments" in p.stdout and "g1.mp4" in p.stdout
    p = flashback_here("search", "x", "--db", store.path.with_name("none.duckdb"), *TINY_CLI)
    assert p.returncode == 1 and "none.duckdb: no such results database" in p.stderr


@pytest.mark.slow  # in process, but most of a minute: the full suite's
@pytest.mark.skipif(not DEV.is_dir(), reason="needs ../shared/data/ucf_crime_text_dev")
def test_people_fighting_finds_the_fights_on_real_captions(tmp_path):
    """Three Fighting and three Normal dev videos' captions, scored with the real MiniLM: the query
    ranks the Fighting videos' moments above the Normal ones'."""
    names = ["Fighting033_x264", "Fighting042_x264", "Fighting047_x264",
             "Normal_Videos_345_x264", "Normal_Videos_745_x264", "Normal_Videos_831_x264"]
    names = [n for n in names if (DEV / "captions" / f"{n}.json").is_file()]
    caps = tmp_path / "captions"
    caps.mkdir()
    for n in names:
        shutil.copy(DEV / "captions" / f"{n}.json", caps)
    db = tmp_path / "c.duckdb"
    p = flashback_here("score-captions", caps, "--db", db, timeout=600)
    assert p.returncode == 0, p.stderr
    p = flashback_here("search", "people fighting", "--db", db, "--top", "20", "--json")
    assert p.returncode == 0, p.stderr
    hits = json.loads(p.stdout)["hits"]
    fights = [i for i, h in enumerate(hits) if "Fighting" in h["path"]]
    assert fights[:3] == [0, 1, 2], [(Path(h["path"]).name, h["caption"]) for h in hits]  # the fights come first
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM segment_vectors").fetchone()[0] > 100


@pytest.mark.parametrize("damage", ["truncated index", "garbage ids", "short ids", "pickled ids"])
def test_a_damaged_index_cache_is_rebuilt(store, tiny_encoder, damage):
    """It is a cache: a truncated index or a garbage id map used to end search with exit 70, and a
    short id map (a kill between its two renames) made every search append all vectors again."""
    finder = FootageSearch(store, tiny_encoder, approx_at=10)
    q = unpack([stored(store)[5][3]], tiny_encoder.identity.dim)[0]
    want = finder.search_vector(q, top=3)
    index_file = next(store.path.with_suffix(".search").glob("*.faiss"))
    ids_file = next(store.path.with_suffix(".search").glob("*.ids.npy"))
    if damage == "truncated index":
        index_file.write_bytes(index_file.read_bytes()[:100])
    elif damage == "garbage ids":
        ids_file.write_bytes(b"\x93NUMPY garbage")
    elif damage == "short ids":
        np.save(ids_file, np.load(ids_file)[:-3])
    else:
        np.save(ids_file, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for _ in range(2):
        got = FootageSearch(store, tiny_encoder, approx_at=10).search_vector(q, top=3)
        assert [(h.video_id, h.segment) for h in got] == [(h.video_id, h.segment) for h in want]
        assert len(np.load(ids_file)) == finder.n  # rebuilt whole, not appended to


def test_a_camera_that_is_not_in_the_store_is_said(store):
    """--camera typo used to give an empty table and exit 0, as if nothing had happened there."""
    p = flashback_here("search", "a car on fire", "--db", store.path, "--camera", "lobyy", *TINY_CLI)
    assert p.returncode == 2 and "--camera 'lobyy': no such camera in" in p.stderr and "lobby" in p.stderr
    p = flashback_here("search", "a car on fire", "--db", store.path, "--camera", "lobby", "--json", *TINY_CLI)
    assert p.returncode == 0 and json.loads(p.stdout)["hits"]


def test_neighbouring_segments_of_one_moment_are_one_hit(store, tiny_encoder):
    """3.0-4.0 s and 3.5-4.5 s of one incident used to be two of the top N: a moment is one hit with
    its whole span, its best segment's similarity, and different moments stay apart."""
    finder = FootageSearch(store, tiny_encoder)
    with store.connect(read_only=True) as con:  # two overlapping neighbours (0.5 s apart) of one video
        (vid, a0, a1, va), (_, b0, b1, vb) = con.execute(
            "SELECT video_id, start_s, end_s, vector FROM segment_vectors ORDER BY vector_id LIMIT 2 OFFSET 4").fetchall()
    assert a0 < b0 < a1  # they overlap
    q = unpack([va, vb], tiny_encoder.identity.dim).mean(axis=0)
    hits = finder.search_vector(q / np.linalg.norm(q), top=10)
    best = hits[0]
    assert best.video_id == vid and best.start_s <= a0 and best.end_s >= b1  # both, as one hit with their span
    for a in hits:
        assert not any(b is not a and b.video_id == a.video_id and b.start_s <= a.end_s and b.end_s >= a.start_s for b in hits)
