"""The on-disk memory format: round trip, checksums, refusals, and atomic replacement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flashback.errors import BundleError, UsageError
from flashback.memory.bundle import BundleSpec, CaptionTable, load_bundle, verify_bundle, write_bundle
from flashback.memory.manifest import memory_id_of, read_manifest
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
    from flashback.memory.default_memory import seed_captions_path

    t, report = read_labelled_captions([seed_captions_path()])
    assert report.duplicates == 0 and 300 <= len(t) <= 1000
    assert t.n_normal >= 150 and t.n_anomalous >= 150
    ucf = {"Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "Road accident",
           "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"}
    assert ucf <= set(t.categories)


# ---------------------------------------------------------------- tampered manifests


def edit_manifest(bundle_dir, change) -> None:
    m = json.loads((bundle_dir / "manifest.json").read_text())
    change(m)
    (bundle_dir / "manifest.json").write_text(json.dumps(m, allow_nan=True))


@pytest.mark.parametrize("change,match", [
    (lambda m: m["files"].__setitem__("../../etc/passwd", {"sha256": "0" * 64, "bytes": 1}), r"files: .*'\.\./\.\./etc/passwd'"),
    (lambda m: m["files"].__setitem__("/etc/passwd", m["files"].pop("captions.parquet")), r"files: .*'/etc/passwd'"),
    (lambda m: m.__setitem__("counts", [1, 2]), r"counts: \[1, 2\] is not of type 'object'"),
    (lambda m: m.__setitem__("categories", "all"), r"categories: 'all' is not of type 'object'"),
    (lambda m: m.__setitem__("files", None), r"files: None is not of type 'object'"),
    (lambda m: m.__setitem__("alpha", 0), r"alpha: 0 is less than or equal to the minimum of 0"),
    (lambda m: m.__setitem__("alpha", -1), r"alpha: -1"),
    (lambda m: m.__setitem__("logit_scale", float("nan")), r"not valid JSON \(NaN is not a JSON number\)"),
    (lambda m: m.__setitem__("logit_scale", float("inf")), r"not valid JSON \(Infinity is not a JSON number\)"),
    (lambda m: m.__setitem__("logit_scale", 1e9), r"logit_scale: 1000000000\.0 is greater than the maximum of 10000"),
])
def test_a_malformed_manifest_is_refused_before_any_data_file_is_opened(bundle_dir, change, match, monkeypatch):
    import flashback.memory.bundle as bundle

    edit_manifest(bundle_dir, change)
    opened = []
    monkeypatch.setattr(bundle, "file_sha256", lambda p: opened.append(p))  # nothing may be read past the manifest
    with pytest.raises(BundleError, match=match) as e:
        load_bundle(bundle_dir)
    assert opened == [] and "\n" not in str(e.value) and "bytes" not in str(e.value)
    assert verify_bundle(bundle_dir) == [str(e.value)]


def test_a_resigned_truncated_bundle_fails_verify_as_it_fails_loading(bundle_dir):
    """Truncate the caption table and write its new checksum into the manifest: the checksums agree,
    the content does not, and verify says so as loading does."""
    from flashback.encoders.encoder_registry import file_sha256

    caps = bundle_dir / "captions.parquet"
    table_rows = read_manifest(bundle_dir).counts
    import duckdb

    with duckdb.connect() as c:  # the same table less its last row, as a tamperer would write it
        c.execute(f"COPY (SELECT * FROM read_parquet('{caps}') WHERE id < 8) TO '{caps}.new' (FORMAT parquet)")
    (bundle_dir / "captions.parquet.new").replace(caps)
    edit_manifest(bundle_dir, lambda m: m["files"].__setitem__("captions.parquet", {"sha256": file_sha256(caps),
                                                                                   "bytes": caps.stat().st_size}))
    edit_manifest(bundle_dir, lambda m: m.__setitem__("memory_id", memory_id_of(read_manifest(bundle_dir))))  # fully re-signed
    assert table_rows == {"normal": 5, "anomalous": 4}
    with pytest.raises(BundleError) as e:
        load_bundle(bundle_dir)
    assert "anomalous.faiss: holds 4 vectors of dim 32, expected 3" in str(e.value)
    assert verify_bundle(bundle_dir) == [str(e.value)]


def test_an_edited_manifest_gets_no_old_id(bundle_dir):
    """Changing alpha by hand would otherwise store new results under the old memory's id."""
    edit_manifest(bundle_dir, lambda m: m.__setitem__("alpha", 0.5))
    with pytest.raises(BundleError, match="memory_id .* does not match the bundle's content .*edited after the build"):
        load_bundle(bundle_dir)
    assert len(verify_bundle(bundle_dir)) == 1
