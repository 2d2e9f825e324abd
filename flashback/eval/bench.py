"""``flashback bench``: how fast, per stage and end to end, on this machine.

Stages: decode (video FPS), encoder (frames/s per batch size and precision), search (ms per batch of
segment queries vs memory size and FAISS index type, with recall@10 against exact search), and end
to end (video FPS for one file and for N concurrent feeds sharing one encoder), plus peak memory.
Random weights cost what real ones cost, so nothing is downloaded.  Figures go to stdout, JSON and
a markdown table under the output folder; ratios within one run are what to compare on a shared CPU.
"""

from __future__ import annotations

import json
import platform
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure

from indexes import build_index

from ..encoders.backends import BACKENDS, CPU_BACKENDS, installed
from ..encoders.efficiency import EnergyMeter, efficiency, model_cost
from ..encoders.encoder import ClipEncoder
from ..encoders.encoder_registry import DEFAULT_MODEL, EncoderSpec
from ..memory.bundle import CaptionTable, MemoryBundle
from ..memory.default_memory import default_memory
from ..memory.manifest import Manifest
from ..memory.retrieval import MemorySearcher
from ..scoring.pipeline import Detector
from ..settings import PRESETS
from ..video.decode import FrameFit, VideoReader
from ..video.sources import VideoSource
from ..video.synthetic import make_video
from ..video.timegrid import TimeGrid


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def synthetic_memory(n: int, encoder: ClipEncoder, factory: str, rng) -> MemoryBundle:
    v = rng.standard_normal((n, encoder.dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    half = n // 2
    caps = CaptionTable([""] * n, [False] * half + [True] * (n - half), ["Normal"] * half + ["X"] * (n - half), [""] * n)
    indexes = {"normal": build_index(v[:half], factory), "anomalous": build_index(v[half:], factory)}
    manifest = Manifest(encoder.identity, {"normal": half, "anomalous": n - half}, {}, 0.95, "label", 100.0, factory)
    return MemoryBundle(Path("."), manifest, caps, indexes)


def bench_search(encoder: ClipEncoder, sizes: list[int], factories: list[str], queries: int = 64) -> list[dict]:
    """ms per batch of ``queries`` for each memory size and FAISS index (on the CPU), and on a GPU
    also the exact matrix-product search a CUDA run uses (``indexes.torch_backend``).  HNSW is left
    out past ``HNSW_UP_TO`` captions: building it takes minutes there."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal((queries, encoder.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rows = []
    gpu = encoder.device.startswith("cuda")
    for n in sizes:
        exact_ids = None
        for factory in [f for f in factories if n <= HNSW_UP_TO or "HNSW" not in f] + (["Flat@gpu"] if gpu else []):
            half = n // 2  # FAISS warns when it trains fewer than 39 points per list: stay above that
            f = factory.replace("{nlist}", str(max(1, min(int(4 * np.sqrt(half)), half // 39)))).removesuffix("@gpu")
            t0 = time.perf_counter()
            mem = synthetic_memory(n, encoder, f, np.random.default_rng(2))
            for index in mem.indexes.values():  # the search-time knobs we report with
                if hasattr(index, "nprobe"):
                    index.nprobe = 16
                if hasattr(index, "hnsw"):
                    index.hnsw.efSearch = 64
            searcher = MemorySearcher(mem, 0.95, 10, device=encoder.device if factory.endswith("@gpu") else "cpu")
            build_s = time.perf_counter() - t0
            searcher.search(q)  # a first call pays for GPU kernels' start-up
            t, r = _best(lambda: searcher.search(q), repeat=5)
            if exact_ids is None and f == "Flat":
                exact_ids = r.ids
            recall = None if exact_ids is None else float(knn_intersection_measure(r.ids, exact_ids))
            label = ("exact matrix product on the GPU (fp16)" if factory.endswith("@gpu") else
                     f + (" (nprobe 16)" if "IVF" in f else " (efSearch 64)" if "HNSW" in f else ""))
            rows.append({"memory_size": n, "index": label, "build_s": round(build_s, 3), "ms_per_batch": round(t * 1000, 3),
                         "queries_per_batch": queries, "recall_at_10": recall})
    return rows


HNSW_UP_TO = 200_000


STAGES = 6


def runtimes(encoder: ClipEncoder, quick: bool, backends=BACKENDS) -> list[tuple[str, str]]:
    """(backend, precision) pairs the towers are timed on, side by side, PyTorch fp32 first (the
    reference every cosine is taken to): on CUDA fp32 and fp16; on a CPU torch in fp32 and bf16 and
    each installed CPU backend (of ``backends``) at its default and in fp32.  ``quick``: the reference
    and the default."""
    if encoder.device.startswith("cuda"):
        pairs = [("torch", "fp32"), ("torch", "fp16")]
    else:
        pairs = [("torch", "fp32"), ("torch", "bf16")] + [(b, p) for b in CPU_BACKENDS
                                                   if b in backends and installed(b) for p in ("auto", "fp32")]
        if "openvino" in backends and installed("openvino") and installed("nncf"):
            pairs.append(("openvino", "int8"))  # opt-in, timed so its speed and fidelity can be weighed
    if quick:
        pairs = [("torch", "fp32"), (encoder.backend, "auto")]
    return list(dict.fromkeys(pairs))


def run(seconds: float = 20, size=(320, 240), model: str = DEFAULT_MODEL, device: str = "auto",
        feeds: int = 4, search_sizes=(10_000, 100_000), out_dir: Path | None = None, log=print, quick: bool = False,
        backend: str = "auto", backends=BACKENDS) -> dict:
    """Every stage timed; ``log`` hears each stage start and its figures.  ``quick``: the short
    version (two runtimes, two batch sizes, the fast preset, a small builder sample) for a first
    look in about a minute on a small CPU; the figures are the same kind, from fewer repeats.
    The end-to-end figures run on ``backend`` (auto: what ``score`` would pick)."""
    tmp = Path(tempfile.mkdtemp(prefix="flashback-bench-"))
    stage = iter(range(1, STAGES + 1))

    def step(what: str) -> None:
        log(f"[{next(stage)}/{STAGES}] {what}")

    fps = 30
    n_frames = int(seconds * fps)
    step(f"a {seconds:g} s synthetic {size[0]}x{size[1]} video, the encoder and the default memory's 1,000 captions")
    video = make_video(tmp / "feed.mp4", n_frames=n_frames, fps=fps, size=size, scene_of=lambda i: i // 90)
    encoder = ClipEncoder(EncoderSpec(model=model, pretrained="random"), device=device, backend=backend)
    memory = default_memory(encoder)
    presets = {"fast": PRESETS["fast"]} if quick else PRESETS
    report: dict = {"model": model, "device": encoder.device, "device_name": device_name(encoder.device),
                    "default_precision": encoder.precision, "runtime": encoder.runtime, "video": f"{size[0]}x{size[1]} @ {fps} FPS, {seconds:g} s",
                    "decode_video_fps": {}, "encoder_frames_per_s": {}, "lowest_cosine_to_torch_fp32": {},
                    "search": [], "end_to_end": {}}

    step("decoding on each preset's grid")
    for name, settings in presets.items():
        grid = TimeGrid.from_settings(settings)

        def decode():
            with VideoReader(VideoSource(str(video)), FrameFit(settings.frame_fit, encoder.image_size, encoder.pad_rgb)) as r:
                return sum(1 for _ in r.samples(grid))

        report["decode_video_fps"][name] = round(n_frames / _best(decode, 2)[0], 1)
    log("  " + ", ".join(f"{k} grid {v:,.0f} video FPS" for k, v in report["decode_video_fps"].items()))

    step("the image tower per runtime and batch size, side by side")
    from memory_builder.grammar import OfflineGenerator  # a composition root: the builder's own grammar

    frames = np.random.default_rng(0).integers(0, 255, (64, encoder.image_size, encoder.image_size, 3), np.uint8)
    texts = [c.text for c in OfflineGenerator(1).generate(64 if quick else 256)]
    encoders, reference = {}, None
    for backend_, precision in runtimes(encoder, quick, backends):
        made = ClipEncoder(encoder.spec, encoder.device, precision, backend_)
        enc = encoder if made.runtime == encoder.runtime else made
        encoders[enc.runtime] = enc
        vectors = enc.encode_images(frames), enc.encode_texts(texts)
        reference = reference or vectors
        report["lowest_cosine_to_torch_fp32"][enc.runtime] = {
            tower: round(float((v * r).sum(1).min()), 6) for tower, v, r in zip(("image", "text"), vectors, reference)}
        for bs in (1, 32) if quick else (1, 8, 32, 64):
            reps = max(1, 64 // bs)
            t, _ = _best(lambda: [enc.encode_images(frames[:bs]) for _ in range(reps)], 2)
            report["encoder_frames_per_s"][f"{enc.runtime}/batch{bs}"] = round(bs * reps / t, 1)
    log("  " + ", ".join(f"{k}: {v:,.0f} frames/s" for k, v in report["encoder_frames_per_s"].items()))
    log("  lowest cosine to torch fp32: " + ", ".join(
        f"{k} image {v['image']:.6f}, text {v['text']:.6f}" for k, v in report["lowest_cosine_to_torch_fp32"].items()))

    step("memory building: the offline grammar and the text tower")
    n_gen = 5_000 if quick else 50_000
    t, _ = _best(lambda: sum(1 for _ in OfflineGenerator(0).generate(n_gen)), 1)
    report["builder"] = {"offline_generator_captions_per_s": round(n_gen / t)}
    for runtime, enc in encoders.items():
        t, _ = _best(lambda: enc.encode_texts(texts, batch_size=128), 1)
        report["builder"][f"text_embedding_captions_per_s[{runtime}]"] = round(len(texts) / t, 1)
    log("  " + ", ".join(f"{_builder_label(k)}: {v:,} captions/s" for k, v in report["builder"].items()))

    step(f"caption search at {', '.join(f'{n:,}' for n in search_sizes)} captions")
    report["search"] = bench_search(encoder, list(search_sizes), ["Flat", "HNSW32", "IVF{nlist},Flat"])
    cost, report["efficiency"] = model_cost(encoder), {}
    log("  " + ", ".join(f"{r['memory_size']:,} {r['index']}: {r['ms_per_batch']:.2f} ms" for r in report["search"]))

    step("end to end, per preset" + (f", then {feeds} feeds at once" if feeds > 1 else ""))
    for name, settings in presets.items():
        det = Detector(memory, encoder, settings, batch_size=32)
        before = encoder.images_encoded
        with EnergyMeter(encoder.device) as meter:
            t, _ = _best(lambda: det.score(str(video)), 1)
        per_s = (encoder.images_encoded - before) / seconds
        report["end_to_end"][name] = {"feeds": 1, "video_fps": round(n_frames / t, 1),
                                      "realtime_factor": round(seconds / t, 2),
                                      "frames_encoded_per_video_second": round(per_s, 1)}
        report["efficiency"][name] = efficiency(cost, per_s, meter.joules, seconds)
    if feeds > 1:  # N feeds in parallel threads, one shared encoder
        det = Detector(memory, encoder, PRESETS["fast"], batch_size=32)
        copies = [make_video(tmp / f"feed{i}.mp4", n_frames=n_frames, fps=fps, size=size, scene_of=lambda i: i // 90)
                  for i in range(feeds)]
        t0 = time.perf_counter()
        threads = [threading.Thread(target=det.score, args=(str(c),)) for c in copies]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        t = time.perf_counter() - t0
        report["end_to_end"][f"fast x{feeds} feeds"] = {"feeds": feeds, "video_fps": round(feeds * n_frames / t, 1),
                                                         "realtime_factor": round(feeds * seconds / t, 2)}
    log("  " + ", ".join(f"{k}: {v['video_fps']:,.0f} video FPS ({v['realtime_factor']:.2f}x real time)"
                         for k, v in report["end_to_end"].items()))
    report["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if encoder.device.startswith("cuda"):
        import torch

        report["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tag = "gpu" if encoder.device.startswith("cuda") else "cpu"
        (out_dir / f"bench-{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / f"bench-{tag}.md").write_text(markdown(report))
    return report


def _builder_label(key: str) -> str:
    if key == "offline_generator_captions_per_s":
        return "offline grammar"
    return "text tower, " + key.partition("[")[2].rstrip("]")


def markdown(r: dict) -> str:
    lines = [f"{r['model']} on {r['device_name']}, video {r['video']}", "", "| stage | setting | figure |", "|---|---|---|"]
    for k, v in r["decode_video_fps"].items():
        lines.append(f"| decode | {k} grid | {v:,.1f} video FPS |")
    for k, v in r["encoder_frames_per_s"].items():
        lines.append(f"| encoder | {k} | {v:,.1f} frames/s |")
    for k, v in r.get("builder", {}).items():
        lines.append(f"| memory build | {_builder_label(k)} | {v:,} captions/s |")
    for s in r["search"]:
        rec = "" if s["recall_at_10"] is None else f", recall@10 {s['recall_at_10']:.3f}"
        lines.append(f"| search | {s['memory_size']:,} captions, {s['index']} | {s['ms_per_batch']:.2f} ms / {s['queries_per_batch']} queries{rec} |")
    for k, v in r["end_to_end"].items():
        lines.append(f"| end to end | {k} | {v['video_fps']:,.1f} video FPS ({v['realtime_factor']:.2f}x real time) |")
    for k, e in r.get("efficiency", {}).items():
        energy = "" if e["joules_per_video_hour"] is None else f", {e['joules_per_video_hour'] / 3600:,.2f} Wh per video-hour"
        lines.append(f"| efficiency | {k} preset | {e['params_image_tower_m']:.1f} M image-tower parameters, "
                     f"{e['gmacs_per_frame']:.2f} GMACs/frame x {e['frames_encoded_per_video_s']:.1f} frames/video-s "
                     f"= {e['gmacs_per_video_s']:,.1f} GMACs per video-second{energy} |")
    lines.append(f"| memory | peak RSS | {r['peak_rss_mb']:,.0f} MB |")
    if "peak_gpu_mb" in r:
        lines.append(f"| memory | peak GPU | {r['peak_gpu_mb']:,.0f} MB |")
    return "\n".join(lines) + "\n"
