"""The embedded default memory: built on first use for the encoder, cached, rebuilt if damaged."""

from flashback.memory.bundle import load_bundle
from flashback.memory.default_memory import default_memory, default_memory_path


def test_built_once_then_cached_and_repaired(tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHBACK_CACHE_DIR", str(tmp_path))
    path = default_memory_path(tiny_encoder)
    assert path.is_relative_to(tmp_path) and not path.exists()
    first = default_memory(tiny_encoder)
    assert first.path == path and first.manifest.encoder == tiny_encoder.identity
    assert first.manifest.counts == {"normal": 500, "anomalous": 500}
    prov = first.manifest.provenance
    assert prov["builder"] == "default" and prov["seed_captions"] == 326 and prov["grammar_captions"] == 674
    assert len({t.lower() for t in first.captions.texts}) == 1000
    stamp = (path / "manifest.json").stat().st_mtime_ns
    again = default_memory(tiny_encoder)
    assert again.memory_id == first.memory_id
    assert (path / "manifest.json").stat().st_mtime_ns == stamp  # not rebuilt

    (path / "normal.faiss").write_bytes(b"broken")
    repaired = default_memory(tiny_encoder)
    assert repaired.memory_id == first.memory_id  # deterministic rebuild
    load_bundle(path)
