"""Verdicts adapt the memory without training: a camera's overlay of exemplars.

A reviewer's **False alarm** adds the event's segment vectors (from ``segment_vectors``) to the
overlay of the event's camera as *normal* exemplars; **Confirmed** adds them as *anomalous*
exemplars of the event's category; **Unsure** removes what an earlier verdict on the event added.
An overlay is a small bundle of its own (``bundle.write_bundle``: manifest, checksums, pinned to
the encoder), never a change to the base memory; each exemplar's provenance (reviewer, verdict,
event, time) is its caption row's provenance.  Overlays live next to the store
(``<store>.overlays/<camera>/``), and a scoring that writes to that store searches each camera's
overlay beside the memory for that camera only (``extras.Extras``: exemplars are scoped entries).

A camera is a live feed's name, or the folder a file is in.  At most ``MAX_PER_EVENT`` vectors
of an event are kept (evenly spaced over it), so one long event cannot drown the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..encoders.encoder_registry import EncoderIdentity
from ..errors import BundleError, UsageError
from ..memory.bundle import NORMAL_CATEGORY, BundleSpec, CaptionTable, load_bundle, write_bundle
from ..memory.extras import Entry, Extras
from ..memory.manifest import MANIFEST
from ..store import ResultStore
from ..video.cameras import camera_name

MAX_PER_EVENT = 16
log = logging.getLogger(__name__)


def overlays_dir(store_path: Path) -> Path:
    return Path(store_path).with_suffix(".overlays")


def overlay_dir(store_path: Path, camera: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", camera.strip("/"))[-48:] or "camera"
    return overlays_dir(store_path) / f"{slug}-{hashlib.sha256(camera.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Overlay:
    camera: str
    path: Path
    entries: list[dict]  # provenance of each exemplar, with its label and category
    vectors: np.ndarray
    encoder: str

    @property
    def events(self) -> dict[tuple, dict]:
        """Per event (run, video, first frame): its verdict, reviewer, time and exemplar count."""
        out: dict[tuple, dict] = {}
        for e in self.entries:
            k = (e["run_id"], e["video_id"], e["start_frame"])
            out.setdefault(k, {**{x: e[x] for x in ("verdict", "reviewer", "at", "category")}, "exemplars": 0})["exemplars"] += 1
        return out


_ENTRY_TYPES = {"run_id": str, "video_id": str, "start_frame": int, "verdict": str, "reviewer": str, "at": str,
                "label": str, "category": str}


def _entry(text: str, where: str) -> dict:
    """One exemplar's provenance row, checked: everything that reads an overlay indexes these keys."""
    try:
        e = json.loads(text)
    except (ValueError, RecursionError):
        raise BundleError(f"{where}: not a JSON object") from None
    if not isinstance(e, dict):
        raise BundleError(f"{where}: not a JSON object")
    for k, t in _ENTRY_TYPES.items():
        if not isinstance(e.get(k), t) or isinstance(e.get(k), bool):
            raise BundleError(f"{where}: {k!r} missing or not a {t.__name__}")
    if e["verdict"] not in ("confirmed", "false_alarm") or e["label"] not in ("normal", "anomalous"):
        raise BundleError(f"{where}: verdict {e['verdict']!r} / label {e['label']!r} is not an exemplar's")
    return e


def read_overlay(path: Path, store_path: Path | None = None) -> Overlay:
    """An overlay, every exemplar's provenance checked.  Read for a store (``store_path``), its
    camera must be the one its folder is named for: the manifest's ``provenance.camera`` is not
    signed, and an edit would move the exemplars to another camera."""
    path = Path(path)
    b = load_bundle(path)
    entries = [_entry(p, f"{path}: exemplar {i}") for i, p in enumerate(b.captions.provenance)]
    camera = b.manifest.provenance.get("camera", path.name)
    if store_path is not None and (not isinstance(camera, str) or overlay_dir(store_path, camera).name != path.name):
        raise BundleError(f"{path}: its manifest names camera {camera!r}, not the camera this folder is for")
    return Overlay(camera, path, entries, _vectors(b), b.manifest.encoder.key)


def _vectors(b) -> np.ndarray:
    """The exemplars' vectors in caption order (normal index rows first, then anomalous)."""
    parts = [b.indexes[side].reconstruct_n(0, b.indexes[side].ntotal) for side in ("normal", "anomalous")
             if b.indexes[side].ntotal]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, b.manifest.encoder.dim), np.float32)


def scan_overlays(store_path: Path) -> tuple[list[Overlay], list[str]]:
    """The store's overlays that read, and one line per overlay that does not (damaged, edited,
    malformed): one bad folder must not cost every other camera its verdicts."""
    root = overlays_dir(store_path)
    found: list[Overlay] = []
    problems: list[str] = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if (p / MANIFEST).is_file() or (p / MANIFEST).is_symlink():
            try:
                found.append(read_overlay(p, store_path))
            except BundleError as e:
                problems.append(str(e))
    return found, problems


def list_overlays(store_path: Path) -> list[Overlay]:
    """The store's overlays that read (``scan_overlays`` says which do not)."""
    return scan_overlays(store_path)[0]


def require_overlay(folder: Path) -> None:
    """An ``--overlay DIR`` must be an overlay folder: checked before any model loads, and on use."""
    if not (Path(folder) / MANIFEST).is_file():
        raise UsageError(f"--overlay {folder}: not an overlay folder (no {MANIFEST})")


def load_extras(store_path: Path | None, extra_dirs: list[Path] = (), encoder_key: str | None = None) -> Extras:
    """Every overlay next to the store (each for its camera) and each ``--overlay DIR`` (for every
    input), as entries searched beside the memory.  An overlay of another encoder is refused; one
    next to the store that cannot be read is named once and left out (its camera is scored without it)."""
    found, problems = scan_overlays(store_path) if store_path is not None else ([], [])
    for p in problems:
        log.warning("%s; left out: that camera is scored without its verdicts until this folder is removed "
                    "(the verdicts stay in the store)", p)
    overlays = [(o, o.camera) for o in found]
    for d in extra_dirs:
        require_overlay(d)
        overlays.append((read_overlay(d), None))
    out = Extras()
    for o, scope in overlays:
        if encoder_key is not None and o.encoder != encoder_key:
            raise UsageError(f"overlay {o.path}: made with encoder {o.encoder}, not {encoder_key}; remove it or score with that encoder")
        entries = [Entry(f"{'confirmed' if e['verdict'] == 'confirmed' else 'false alarm'} by {e['reviewer']}: "
                         f"{e.get('caption') or 'an event'}", e["label"] == "anomalous", e["category"], json.dumps(e), scope,
                         exemplar=True) for e in o.entries]
        out = out + Extras(entries, o.vectors)
    return out


# ------------------------------------------------------------------ a verdict changes an overlay


_EVENT = """
    SELECT e.start_s, e.end_s, coalesce(e.category, '-'), e.captions, v.path, f.feed, r.camera, r.encoder_id,
           r.settings
    FROM events e JOIN videos v USING (video_id) JOIN runs r USING (run_id) LEFT JOIN live_feeds f USING (video_id)
    WHERE e.run_id = ? AND e.video_id = ? AND e.start_frame = ?
"""


def camera_of_video(store: ResultStore, run_id: str, video_id: str) -> str:
    """The camera (``cameras.camera_name``) a run's video is from: its overlay's."""
    with store.connect(read_only=True) as con:
        path, feed, table = con.execute("SELECT v.path, f.feed, r.camera FROM videos v JOIN runs r ON r.run_id = ? "
                                        "LEFT JOIN live_feeds f USING (video_id) WHERE v.video_id = ?", [run_id, video_id]).fetchone()
    return camera_name(path, feed, table)


def held(store: ResultStore, run_id: str, video_id: str, start_frame: int) -> dict | None:
    """What the event's camera overlay holds of it (verdict, reviewer, exemplars), reading that one
    overlay only: the review app asks on every event page it draws."""
    path = overlay_dir(store.path, camera_of_video(store, run_id, video_id))
    if not (path / MANIFEST).is_file():
        return None
    o = read_overlay(path, store.path)
    h = o.events.get((run_id, video_id, int(start_frame)))
    return {**h, "camera": o.camera, "path": str(o.path)} if h else None


def apply_verdict(store: ResultStore, run_id: str, video_id: str, start_frame: int, verdict: str, reviewer: str) -> Path | None:
    """Bring the event's camera overlay in line with this verdict; returns the overlay folder (None
    when the event has no stored vectors: a store written before they were kept)."""
    from .search import unpack

    with store.connect(read_only=True) as con:
        row = con.execute(_EVENT, [run_id, video_id, start_frame]).fetchone()
        if row is None:
            raise UsageError(f"no event {run_id}/{video_id}/{start_frame} in {store.path}")
        start_s, end_s, category, captions, path, feed, table, encoder_key, settings = row
        blobs = [r[0] for r in con.execute(
            "SELECT vector FROM segment_vectors WHERE run_id = ? AND video_id = ? AND end_s > ? AND start_s < ? "
            "ORDER BY segment", [run_id, video_id, start_s, end_s]).fetchall()]
    camera = camera_name(path, feed, table)
    path = overlay_dir(store.path, camera)
    key = {"run_id": run_id, "video_id": video_id, "start_frame": int(start_frame)}
    old = read_overlay(path, store.path) if (path / MANIFEST).is_file() else None  # a damaged one raises: never overwritten
    keep = [i for i, e in enumerate(old.entries) if {k: e[k] for k in key} != key] if old else []
    entries = [old.entries[i] for i in keep] if old else []
    vectors = old.vectors[keep] if old else np.zeros((0, 0), np.float32)
    if verdict in ("confirmed", "false_alarm") and blobs:
        v = unpack(blobs, EncoderIdentity.from_key(encoder_key).dim)
        v = v[np.unique(np.linspace(0, len(v) - 1, min(len(v), MAX_PER_EVENT)).round().astype(int))]
        top = next((c["text"] for c in json.loads(captions) if c["label"] == "anomalous"), None)
        anomalous = verdict == "confirmed"
        entries += [{**key, "verdict": verdict, "reviewer": reviewer, "at": datetime.now().isoformat(timespec="seconds"),
                     "label": "anomalous" if anomalous else "normal", "category": category if anomalous else NORMAL_CATEGORY,
                     "caption": top, "start_s": start_s, "end_s": end_s}] * len(v)
        vectors = v if not len(vectors) else np.concatenate([vectors, v])
    elif not blobs and verdict != "unsure" and not old:
        return None
    _write(path, camera, entries, vectors, encoder_key, json.loads(settings))
    return path


def remove_event(store_path: Path, run_id: str, video_id: str, start_frame: int) -> list[Path]:
    """Undo: the exemplars of one event leave every overlay that has them."""
    changed = []
    for o in list_overlays(store_path):
        keep = [i for i, e in enumerate(o.entries) if (e["run_id"], e["video_id"], e["start_frame"]) != (run_id, video_id, start_frame)]
        if len(keep) != len(o.entries):
            _write(o.path, o.camera, [o.entries[i] for i in keep], o.vectors[keep], o.encoder, None)
            changed.append(o.path)
    return changed


def _write(path: Path, camera: str, entries: list[dict], vectors: np.ndarray, encoder_key: str, settings: dict | None) -> None:
    """Rewrite the overlay (atomically, ``write_bundle``), or remove it once it holds nothing."""
    if not entries:
        if path.exists():
            shutil.rmtree(path)
        return
    order = sorted(range(len(entries)), key=lambda i: entries[i]["label"] == "anomalous")  # normal rows first
    entries, vectors = [entries[i] for i in order], vectors[order]
    table = CaptionTable([e.get("caption") or "-" for e in entries], [e["label"] == "anomalous" for e in entries],
                         [e["category"] for e in entries], [json.dumps(e, sort_keys=True) for e in entries])
    spec = BundleSpec(EncoderIdentity.from_key(encoder_key), alpha=(settings or {}).get("alpha") or 1.0,
                      template="none", logit_scale=(settings or {}).get("logit_scale") or 100.0,
                      provenance={"kind": "overlay", "camera": camera})
    try:
        write_bundle(path, table, vectors, spec, require_both=False)
    except BundleError as e:
        raise UsageError(f"overlay for {camera}: {e}") from None
