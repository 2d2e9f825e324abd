"""Timestamped captions as input: each caption is one retrieval query over the time it covers.

Formats:
- JSON object ``{"0": "caption", "16": "caption", ...}``: frame index -> the caption of the window
  starting there (the layout of VideoLLaMA-style dense captioning, one caption every N frames).
  A window runs to the next caption's frame; the last one runs ``--window`` frames.
- JSONL rows ``{"video": ..., "start": ..., "end": ..., "text": ...}`` with ``"unit": "frames"`` or
  ``"seconds"`` (default seconds); one file may hold many videos.

Every malformed entry stops the read with the file and line (or key) named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class CaptionInputError(ValueError):
    pass


@dataclass
class CaptionTrack:
    video: str  # stem used to match ground truth
    source: str  # the file it came from
    starts_s: np.ndarray
    ends_s: np.ndarray
    texts: list[str]

    @property
    def duration_s(self) -> float:
        return float(self.ends_s.max()) if len(self.ends_s) else 0.0


def read_frame_json(path: Path, fps: float, window: int = 16) -> CaptionTrack:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise CaptionInputError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise CaptionInputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(doc, dict) or not doc:
        raise CaptionInputError(f"{path}: expected a non-empty object of frame index -> caption")
    items = []
    for k, v in doc.items():
        try:
            frame = int(k)
        except ValueError:
            raise CaptionInputError(f"{path}: key {k!r} is not a frame index") from None
        if frame < 0:
            raise CaptionInputError(f"{path}: key {k!r} is a negative frame index")
        if not isinstance(v, str) or not v.strip():
            raise CaptionInputError(f"{path}: caption at frame {k} is empty or not text")
        items.append((frame, " ".join(v.split())))
    items.sort()
    frames = np.array([f for f, _ in items], dtype=np.float64)
    ends = np.append(frames[1:], frames[-1] + window)
    return CaptionTrack(path.stem, str(path), frames / fps, ends / fps, [t for _, t in items])


def read_jsonl(path: Path, fps: float) -> list[CaptionTrack]:
    path = Path(path)
    rows: dict[str, list[tuple[float, float, str]]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise CaptionInputError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(r, dict) or not all(k in r for k in ("video", "start", "end", "text")):
                raise CaptionInputError(f"{where}: a row needs video, start, end and text")
            unit = r.get("unit", "seconds")
            if unit not in ("seconds", "frames"):
                raise CaptionInputError(f"{where}: unit {unit!r} is not seconds or frames")
            try:
                s, e = float(r["start"]), float(r["end"])
            except (TypeError, ValueError):
                raise CaptionInputError(f"{where}: start/end are not numbers") from None
            if s < 0 or e <= s:
                raise CaptionInputError(f"{where}: start {s} and end {e} are not a forward time span")
            if not isinstance(r["text"], str) or not r["text"].strip():
                raise CaptionInputError(f"{where}: empty caption")
            scale = 1 / fps if unit == "frames" else 1.0
            rows.setdefault(str(r["video"]), []).append((s * scale, e * scale, " ".join(r["text"].split())))
    if not rows:
        raise CaptionInputError(f"{path}: no caption rows")
    tracks = []
    for video, rs in rows.items():
        rs.sort()
        tracks.append(CaptionTrack(Path(video).stem if "." in Path(video).name else video, str(path),
                                   np.array([r[0] for r in rs]), np.array([r[1] for r in rs]), [r[2] for r in rs]))
    return tracks


def find_caption_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files and folders -> caption files (``*.json``/``*.jsonl`` inside folders), plus one problem per bad path."""
    files: list[Path] = []
    problems: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(list(p.glob("*.json")) + list(p.glob("*.jsonl")))
            files += found
            if not found:
                problems.append(f"{p}: no .json or .jsonl caption files")
        elif p.is_file():
            files.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    return files, problems


def read_caption_file(path: Path, fps: float, window: int = 16) -> list[CaptionTrack]:
    return read_jsonl(path, fps) if Path(path).suffix == ".jsonl" else [read_frame_json(path, fps, window)]


def read_caption_inputs(paths: list[Path], fps: float, window: int = 16) -> list[CaptionTrack]:
    """Every track of every caption file, sorted by video; the first problem stops the read."""
    files, problems = find_caption_files(paths)
    if problems:
        raise CaptionInputError(problems[0])
    tracks = []
    for f in files:
        tracks += read_caption_file(f, fps, window)
    return sorted(tracks, key=lambda t: t.video)
