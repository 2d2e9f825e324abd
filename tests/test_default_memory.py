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


def test_two_first_uses_at_once_build_it_once(tiny_encoder, tmp_path, monkeypatch):
    """Two cameras' processes starting together on a fresh box (threads here: the lock is an flock
    on a file each opens for itself, which excludes threads as it does processes): one builds, the
    other waits and reads that build; neither sees the bundle swapped under it."""
    import threading

    import memory_builder

    monkeypatch.setenv("FLASHBACK_CACHE_DIR", str(tmp_path))
    builds, real = [], memory_builder.build_memory

    def counted(*args, **kwargs):
        builds.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(memory_builder, "build_memory", counted)
    got, errors = [], []

    def first_use() -> None:
        try:
            got.append(default_memory(tiny_encoder).memory_id)
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=first_use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(got) == 2 and got[0] == got[1]
    assert len(builds) == 1
    path = default_memory_path(tiny_encoder)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, f".{path.name}.lock"])  # no temporary left
