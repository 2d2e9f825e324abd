"""The on-disk memory format: round trip, checksums, refusals, and atomic replacement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flashback.bundle import BundleSpec, CaptionTable, load_bundle, verify_bundle, write_bundle
from flashback.errors import BundleError, UsageError
from flashback.manifest import read_manifest
from memory_builder import build_from_captions, read_labelled_captions
from memory_builder.captions_io import CaptionFileError


def table(n_norm=5, n_anom=4):
    return CaptionTable(
        texts=[f"n{i}" for i in range(n_norm)] + [f"a{i}" for i in range(n_anom)],
        anomalous=[False] * n_norm + [True] * n_anom,
        categories=["Normal"] * n_norm + ["Fighting"] * n_anom,
        provenance=["t"] * (n_norm + n_anom),
    )


def vecs(n, d, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def spec(encoder, **changes) -> BundleSpec:
    return BundleSpec(**{"encoder": encoder.identity, "alpha": 0.95, "template": "label", "logit_scale": 14.3, **changes})


@pytest.fixture
def bundle_dir(tmp_path, tiny_encoder):
    out = tmp_path / "mem"
    write_bundle(out, table(), vecs(9, 32), spec(tiny_encoder))
    return out


def test_round_trip(bundle_dir, tiny_encoder):
    b = load_bundle(bundle_dir)
    m = b.manifest
    assert m.counts == {"normal": 5, "anomalous": 4} and m.categories == {"Normal": 5, "Fighting": 4}
    assert m.encoder == tiny_encoder.identity and m.alpha == 0.95 and m.template == "label"
    assert b.captions.texts == table().texts
    assert b.indexes["anomalous"].ntotal == 4
    np.testing.assert_allclose(b.indexes["normal"].reconstruct_n(0, 5), vecs(9, 32)[:5])
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    assert raw["format"] == "flashback-memory" and raw["format_version"] == 1 and raw["dim"] == 32
    assert sorted(p.name for p in bundle_dir.iterdir()) == [
        "anomalous.faiss", "captions.parquet", "manifest.json", "normal.faiss"]
    for f in bundle_dir.iterdir():  # no pickle anywhere: pickle streams start with 0x80 <protocol>
        assert not f.read_bytes()[:1] == b"\x80"


def test_tampered_file_is_named(bundle_dir):
    idx = bundle_dir / "anomalous.faiss"
    data = bytearray(idx.read_bytes())
    data[-1] ^= 0xFF
    idx.write_bytes(bytes(data))
    assert any("anomalous.faiss" in p and "SHA-256" in p for p in verify_bundle(bundle_dir))
    with pytest.raises(BundleError, match="anomalous.faiss"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "manifest.json").write_text(json.dumps({"format": "flashback-memory", "format_version": 99})),
         "format version 99"),
        (lambda d: (d / "captions.parquet").unlink(), "captions.parquet: missing"),
    ],
)
def test_unreadable_bundles_fail_with_one_line(bundle_dir, damage, match):
    damage(bundle_dir)
    with pytest.raises(BundleError, match=match) as e:
        load_bundle(bundle_dir)
    assert "\n" not in str(e.value)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no such memory bundle"):
        read_manifest(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(BundleError, match="is a file"):
        read_manifest(tmp_path / "f")


def test_failed_rebuild_leaves_the_old_bundle_whole(bundle_dir, tiny_encoder):
    before = {p.name: p.read_bytes() for p in bundle_dir.iterdir()}
    with pytest.raises(UsageError, match="IVF64"):  # cannot train 64 centroids on 5 vectors
        write_bundle(bundle_dir, table(), vecs(9, 32, seed=1), spec(tiny_encoder, alpha=0.9, index_factory="IVF64,Flat"))
    assert {p.name: p.read_bytes() for p in bundle_dir.iterdir()} == before
    assert [p.name for p in bundle_dir.parent.iterdir()] == ["mem"]  # no temp folders left behind


def test_rebuild_replaces_and_changes_the_id(bundle_dir, tiny_encoder):
    old = read_manifest(bundle_dir).memory_id
    write_bundle(bundle_dir, table(), vecs(9, 32, seed=2), spec(tiny_encoder))
    assert load_bundle(bundle_dir).memory_id != old
    assert [p.name for p in bundle_dir.parent.iterdir()] == ["mem"]


def test_refuses_to_overwrite_a_folder_that_is_not_a_bundle(tmp_path, tiny_encoder):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("precious")
    with pytest.raises(BundleError, match="not a memory bundle; refusing"):
        write_bundle(tmp_path / "docs", table(), vecs(9, 32), spec(tiny_encoder))
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "precious"


def test_a_memory_needs_both_labels(tmp_path, tiny_encoder):
    with pytest.raises(BundleError, match="both normal and anomalous"):
        write_bundle(tmp_path / "m", table(n_anom=0), vecs(5, 32), spec(tiny_encoder))


def test_hnsw_factory_string(tmp_path, tiny_encoder):
    write_bundle(tmp_path / "h", table(40, 40), vecs(80, 32), spec(tiny_encoder, index_factory="HNSW16"))
    b = load_bundle(tmp_path / "h")
    assert b.manifest.index_factory == "HNSW16" and "HNSW" in type(b.indexes["normal"]).__name__


# ---------------------------------------------------------------- labelled caption files


def test_jsonl_and_csv_captions(tmp_path, tiny_encoder):
    j = tmp_path / "c.jsonl"
    j.write_text(
        '{"text": "a man walks a dog", "label": "normal"}\n\n'
        '{"text": "a man  smashes a window", "label": "anomalous", "category": "Vandalism"}\n'
        '{"text": "A man walks a dog", "label": "0"}\n'
    )
    c = tmp_path / "c.csv"
    c.write_text("text,label,category\npeople queue at a till,normal,\ncars collide,1,Road accident\n")
    manifest, report = build_from_captions([j, c], tiny_encoder, tmp_path / "out")
    assert report.rows == 5 and report.duplicates == 1
    b = load_bundle(tmp_path / "out")
    assert b.captions.texts == ["a man walks a dog", "people queue at a till", "a man smashes a window", "cars collide"]
    assert b.captions.categories == ["Normal", "Normal", "Vandalism", "Road accident"]
    assert b.captions.provenance[0] == "c.jsonl:1"


@pytest.mark.parametrize(
    "content,suffix,match",
    [
        ('{"text": "ok", "label": "normal"}\n{"text": "x", "label": "weird"}\n', ".jsonl", r"c\.jsonl:2: label 'weird'"),
        ('{"text": "ok", "label": "normal"}\n{broken\n', ".jsonl", r"c\.jsonl:2: not valid JSON"),
        ('{"text": "fight", "label": "anomalous"}\n', ".jsonl", r"c\.jsonl:1: an anomalous caption needs its category"),
        ('{"text": "", "label": "normal"}\n', ".jsonl", r"c\.jsonl:1: 'text' is missing or empty"),
        ("caption,label\nx,normal\n", ".csv", r"c\.csv:1: header must name"),
        ("text,label\nok,normal\n,normal\n", ".csv", r"c\.csv:3: 'text' is missing"),
        ("x", ".txt", "unknown caption file type"),
    ],
)
def test_bad_caption_rows_name_file_and_line(tmp_path, content, suffix, match):
    f = tmp_path / f"c{suffix}"
    f.write_text(content)
    with pytest.raises(CaptionFileError, match=match):
        read_labelled_captions([f])


def test_seed_set_is_a_few_hundred_varied_captions():
    from flashback.default_memory import seed_captions_path

    t, report = read_labelled_captions([seed_captions_path()])
    assert report.duplicates == 0 and 300 <= len(t) <= 1000
    assert t.n_normal >= 150 and t.n_anomalous >= 150
    ucf = {"Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "Road accident",
           "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"}
    assert ucf <= set(t.categories)
