"""Where the towers run (``encoders/backends.py``): every CPU backend's vectors against PyTorch fp32's,
open_clip's own ``encode_text`` against the trimmed text tower, the export cache (made once, reused,
never half-written, a broken one named), and ``flashback score`` on the default backend, whose run
record names it and whose scores and run id are torch's.

The rest of the suite pins PyTorch (conftest); here is where auto's choice runs."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from conftest import SMALL_MODEL, TINY_CLI, TINY_MODEL, flashback_here

from flashback.encoders.backends import bf16_pays, cpu_has_bf16, installed, resolve_backend
from flashback.encoders.encoder import ClipEncoder
from flashback.encoders.encoder_registry import EncoderSpec
from flashback.errors import EncoderError
from flashback.video.synthetic import make_video

FIDELITY = 0.9999  # the lowest per-vector cosine to PyTorch fp32 a default may give (issue 31)
TEXTS = ["x", "a man runs across a parking lot at night", "two cars collide at a crossing in heavy rain and smoke rises"] + [
    f"person {'very ' * (i % 9)}slowly walking past shop number {i}" for i in range(40)]

needs_openvino = pytest.mark.skipif(not installed("openvino"), reason="openvino is not installed")


def reference(model: str, rng_seed: int = 0):
    """PyTorch fp32 as open_clip computes it (untrimmed text), and the frames and texts it saw."""
    import torch

    ref = ClipEncoder(EncoderSpec(model=model, pretrained="random"), device="cpu", precision="fp32", backend="torch")
    rgb = np.random.default_rng(rng_seed).integers(0, 256, (12, ref.image_size, ref.image_size, 3), dtype=np.uint8)
    tower = ref._image_tower
    with torch.inference_mode():
        x = (torch.from_numpy(rgb).permute(0, 3, 1, 2).float() - tower.mean) / tower.std
        image = ref._model.encode_image(x, normalize=True).numpy()
        text = ref._model.encode_text(ref._tokenizer(TEXTS), normalize=True).numpy()
    return ref, rgb, image, text


def lowest_cosine(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == np.float32
    return float((a * b).sum(1).min())


def test_the_trimmed_text_tower_is_open_clips_encode_text():
    ref, rgb, image, text = reference(SMALL_MODEL)
    assert lowest_cosine(ref.encode_texts(TEXTS), text) > 0.999999
    assert lowest_cosine(ref.encode_texts(TEXTS, batch_size=7), text) > 0.999999  # sorted, chunked, put back in order
    assert lowest_cosine(ref.encode_images(rgb), image) > 0.999999


def auto_runtime() -> str:
    """What ``--precision auto`` runs on OpenVINO on this CPU: the image tower in bf16 only with AMX."""
    return "openvino/bf16 image, fp32 text" if bf16_pays() and cpu_has_bf16() else "openvino/fp32"


@needs_openvino
@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16"])
def test_openvino_holds_the_stated_fidelity(precision):
    ref, rgb, image, text = reference(TINY_MODEL)
    if precision == "bf16" and not cpu_has_bf16():
        pytest.skip("this CPU has no bf16")
    enc = ClipEncoder(ref.spec, device="cpu", precision=precision, backend="openvino")
    assert enc.runtime == {"auto": auto_runtime(), "fp32": "openvino/fp32", "bf16": "openvino/bf16"}[precision]
    assert enc.identity == ref.identity
    # auto's image tower where it is bf16 (the bf16 run's) and every fp32 tower hold the stated floor
    assert lowest_cosine(enc.encode_images(rgb), image) >= (FIDELITY if precision != "fp32" else 0.99999)
    assert lowest_cosine(enc.encode_texts(TEXTS), text) >= {"auto": FIDELITY, "fp32": 0.99999, "bf16": 0.999}[precision]
    assert np.allclose(np.linalg.norm(enc.encode_images(rgb), axis=1), 1, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not installed("onnxruntime"), reason="onnxruntime is not installed")
def test_onnxruntime_matches_torch_and_refuses_bf16():
    """slow: torch's dynamo exporter takes 10-20 s even for the tiny model."""
    ref, rgb, image, text = reference(TINY_MODEL)
    enc = ClipEncoder(ref.spec, device="cpu", backend="onnxruntime")
    assert enc.runtime == "onnxruntime/fp32"
    assert lowest_cosine(enc.encode_images(rgb), image) > 0.99999
    assert lowest_cosine(enc.encode_texts(TEXTS), text) > 0.99999
    with pytest.raises(EncoderError, match="ONNX Runtime runs fp32 on a CPU"):
        ClipEncoder(ref.spec, device="cpu", precision="bf16", backend="onnxruntime")


@pytest.mark.slow
@needs_openvino
def test_the_default_cpu_path_holds_on_vit_b_32():
    """slow: ViT-B-32 (random weights) is exported in about 20 s.  Real weights are not measured here."""
    ref, rgb, image, text = reference("ViT-B-32")
    enc = ClipEncoder(ref.spec, device="cpu")  # auto: openvino, bf16 image tower where the CPU has it
    assert enc.backend == "openvino"
    assert lowest_cosine(enc.encode_images(rgb), image) >= FIDELITY
    assert lowest_cosine(enc.encode_texts(TEXTS), text) >= FIDELITY


@needs_openvino
@pytest.mark.skipif(not installed("nncf"), reason="nncf is not installed")
def test_int8_is_opt_in_says_its_fidelity_and_is_made_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FLASHBACK_CACHE_DIR", str(tmp_path))
    ref, rgb, image, text = reference(TINY_MODEL)
    enc = ClipEncoder(ref.spec, device="cpu", precision="int8", backend="openvino")
    assert enc.runtime == "openvino/int8 image, fp32 text"
    said = enc.int8_fidelity
    assert said["held_out_frames"] > 0 and 0.9 < said["lowest_cosine_to_fp32"] <= said["mean_cosine_to_fp32"] <= 1
    assert "lowest cosine of" in caplog.text and "opt-in" in caplog.text
    # noise frames, unlike the clip it was calibrated on, may sit below what it says; the text tower stays fp32
    assert lowest_cosine(enc.encode_images(rgb), image) > 0.9
    assert lowest_cosine(enc.encode_texts(TEXTS), text) > 0.99999
    made = sorted(p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in (tmp_path / "exports").iterdir())
    assert made == ["image-int8", "image-openvino", "text-openvino"]
    stamp = next((tmp_path / "exports").glob("image-int8-*/model.xml")).stat().st_mtime_ns
    assert ClipEncoder(ref.spec, device="cpu", precision="int8", backend="openvino").int8_fidelity == said
    assert next((tmp_path / "exports").glob("image-int8-*/model.xml")).stat().st_mtime_ns == stamp
    for backend, message in (("torch", "int8 runs on OpenVINO only"), ("onnxruntime", "ONNX Runtime runs fp32")):
        if installed(backend):
            with pytest.raises(EncoderError, match=message):
                ClipEncoder(ref.spec, device="cpu", precision="int8", backend=backend)


@needs_openvino
def test_two_first_runs_at_once_share_one_export(tmp_path, monkeypatch):
    """Two encoders exporting the same towers at the same moment (two cameras' processes starting on
    a fresh box): both load, one export of each tower stays, no temporary folder is left."""
    import threading

    monkeypatch.setenv("FLASHBACK_CACHE_DIR", str(tmp_path))
    spec = EncoderSpec(model=TINY_MODEL, pretrained="random", seed=7)
    made, failed, start = [], [], threading.Barrier(2)

    def first_run():
        start.wait()
        try:
            made.append(ClipEncoder(spec, device="cpu", backend="openvino", precision="fp32"))
        except Exception as e:  # noqa: BLE001 - said by the assertion below
            failed.append(repr(e))

    threads = [threading.Thread(target=first_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failed == [] and len(made) == 2
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "exports").iterdir()) == ["image", "text"]
    rgb = np.full((2, made[0].image_size, made[0].image_size, 3), 40, np.uint8)
    assert np.array_equal(made[0].encode_images(rgb), made[1].encode_images(rgb))


def test_backend_choices_are_refused_in_one_line():
    with pytest.raises(EncoderError, match="--backend tensorrt: choose one of auto, torch, openvino, onnxruntime"):
        resolve_backend("tensorrt", "cpu")
    with pytest.raises(EncoderError, match="--backend openvino runs on the CPU; with --device cuda use torch"):
        resolve_backend("openvino", "cuda")
    assert resolve_backend("auto", "cuda:1") == "torch"
    assert resolve_backend("auto", "cpu") == next((b for b in ("openvino", "onnxruntime") if installed(b)), "torch")


@needs_openvino
def test_the_export_is_made_once_reused_and_a_broken_one_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHBACK_CACHE_DIR", str(tmp_path))
    spec = EncoderSpec(model=TINY_MODEL, pretrained="random", seed=3)
    first = ClipEncoder(spec, device="cpu", backend="openvino")
    exports = tmp_path / "exports"
    folders = sorted(p.name for p in exports.iterdir())
    assert [f.split("-")[0] for f in folders] == ["image", "text"]  # nothing half-made left beside them
    stamps = {p: p.stat().st_mtime_ns for p in exports.rglob("*") if p.is_file()}
    (exports / ".image-openvino-interrupted.x").mkdir()  # what a killed first run leaves: ignored
    again = ClipEncoder(spec, device="cpu", backend="openvino")
    assert {p: p.stat().st_mtime_ns for p in exports.rglob("*") if p.is_file()} == stamps  # reused, not re-made
    rgb = np.full((2, again.image_size, again.image_size, 3), 90, np.uint8)
    assert np.array_equal(first.encode_images(rgb), again.encode_images(rgb))
    other = ClipEncoder(EncoderSpec(model=TINY_MODEL, pretrained="random", seed=4), device="cpu", backend="openvino")
    assert len([p for p in exports.iterdir() if not p.name.startswith(".")]) == 4  # other weights, other export
    assert not np.allclose(other.encode_images(rgb), first.encode_images(rgb))
    xml = next(exports.glob("image-*/model.xml"))
    xml.write_text("<net>not a model")
    with pytest.raises(EncoderError, match=f"{xml}: cannot load this openvino export .*delete {xml.parent}"):
        ClipEncoder(spec, device="cpu", backend="openvino")


@needs_openvino
def test_score_on_the_default_backend_records_it_and_keeps_torchs_run(tmp_path):
    video = tmp_path / "cam.mp4"
    make_video(video, n_frames=90, scene_of=lambda i: i // 30)
    stored = {}
    for backend in ("torch", "auto"):
        db = tmp_path / f"{backend}.duckdb"
        p = flashback_here("score", video, "--db", db, "--backend", backend, *TINY_CLI)
        assert p.returncode == 0, p.stderr
        with duckdb.connect(str(db), read_only=True) as c:
            stored[backend] = (c.execute("SELECT run_id, encoder_runtime FROM scorings").fetchall(),
                               c.execute("SELECT score FROM frame_scores ORDER BY frame").fetchnumpy()["score"])
    (torch_run, torch_scores), (auto_run, auto_scores) = stored["torch"], stored["auto"]
    assert torch_run[0][1] == "torch/fp32" and auto_run[0][1] == auto_runtime()
    assert torch_run[0][0] == auto_run[0][0]  # the same results to 1e-4: the same run
    assert len(auto_scores) == len(torch_scores) == 90 and np.abs(auto_scores - torch_scores).max() < 0.02
