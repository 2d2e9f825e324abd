"""Fuzzing the files users hand us (hypothesis): manifests and caption files, mutated at random,
must give a result or one clear ``FlashbackError`` line, never another exception."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flashback.errors import FlashbackError
from flashback.memory.bundle import load_bundle, verify_bundle
from flashback.scoring.captions import read_caption_file

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(max_size=30), st.sampled_from(["../../etc/passwd", "/etc/passwd", "captions.parquet", "1", ""]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=20), inner, max_size=4)),
                           max_leaves=12)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def one_clear_line(e: FlashbackError) -> None:
    assert str(e) and "\n" not in str(e)


def paths_in(doc, prefix=()):
    """Every (path) of a JSON document, so a mutation can target any field at any depth."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths_in(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths_in(v, prefix + (i,))


@pytest.fixture(scope="module")
def pristine(seed_memory, tmp_path_factory):
    return seed_memory.path, json.loads((seed_memory.path / "manifest.json").read_text())


@FUZZ
@given(data=st.data())
def test_mutated_manifests_load_or_fail_with_one_line(pristine, tmp_path_factory, data):
    src, manifest = pristine
    doc = copy.deepcopy(manifest)
    paths = list(paths_in(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        value = data.draw(JSON_VALUES)
        if not path:
            doc = value
            break
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    mem = tmp_path_factory.mktemp("fuzz") / "m"
    shutil.copytree(src, mem)
    text = json.dumps(doc, allow_nan=True)
    (mem / "manifest.json").write_text(text)
    try:
        load_bundle(mem)
    except FlashbackError as e:
        one_clear_line(e)
    problems = verify_bundle(mem)
    assert all(p and "\n" not in p for p in problems)
    files = doc.get("files") if isinstance(doc, dict) else None
    if isinstance(files, dict) and any("/" in str(k) for k in files):  # a path in the files map is refused
        assert problems


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["video", "start", "end", "text", "unit", "x"]), JSON_LEAVES,
                                     max_size=6), max_size=5),
       raw=st.binary(max_size=60), use_raw=st.booleans(), fps=st.floats(0.5, 240))
def test_mutated_jsonl_caption_files_parse_or_fail_with_one_line(tmp_path_factory, rows, raw, use_raw, fps):
    f = tmp_path_factory.mktemp("caps") / "c.jsonl"
    f.write_bytes(raw if use_raw else "\n".join(json.dumps(r, allow_nan=True) for r in rows).encode())
    try:
        tracks = read_caption_file(f, fps)
    except FlashbackError as e:
        one_clear_line(e)
        return
    for t in tracks:
        assert len(t.texts) == len(t.starts_s) and all(math.isfinite(x) for x in t.ends_s)
        assert (t.ends_s > t.starts_s).all()


@FUZZ
@given(doc=st.one_of(JSON_VALUES, st.dictionaries(st.text(max_size=25), JSON_LEAVES, max_size=6)),
       window=st.integers(1, 64), fps=st.floats(0.5, 240))
def test_mutated_frame_json_caption_files_parse_or_fail_with_one_line(tmp_path_factory, doc, window, fps):
    f = tmp_path_factory.mktemp("caps") / "c.json"
    f.write_text(json.dumps(doc, allow_nan=True))
    try:
        [t] = read_caption_file(Path(f), fps, window)
    except FlashbackError as e:
        one_clear_line(e)
        return
    assert len(t.texts) == len(doc) and (t.ends_s > t.starts_s).all()
