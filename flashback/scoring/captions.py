"""Timestamped captions as input: each caption is one retrieval query over the time it covers.

Formats:
- JSON object ``{"0": "caption", "16": "caption", ...}``: frame index -> the caption of the window
  starting there (the layout of VideoLLaMA-style dense captioning, one caption every N frames).
  A window runs to the next caption's frame; the last one runs ``--window`` frames.
- JSONL rows ``{"video": ..., "start": ..., "end": ..., "text": ...}`` with ``"unit": "frames"`` or
  ``"seconds"`` (default seconds); one file may hold many videos.

Every malformed entry stops the read with the file and line (or key) named: text that is not
UTF-8, JSON's non-standard NaN/Infinity, times that are not finite, negative or beyond
``MAX_CAPTION_TIME_S`` (a frame key of a hundred digits would otherwise ask for a frame array
that no memory holds).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataFileError

MAX_CAPTION_TIME_S = 7 * 24 * 3600.0  # one caption file covers at most a week of video
_FRAME_KEY = re.compile(r"^\s*-?\d{1,15}\s*$")


class CaptionInputError(DataFileError):
    """A timestamped-caption file that does not parse: names the file and line."""


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


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _loads(text: str, where: str):
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise CaptionInputError(f"{where}:{e.lineno}: not valid JSON ({e.msg})") from None
    except ValueError as e:
        raise CaptionInputError(f"{where}: not valid JSON ({e})") from None
    except RecursionError:
        raise CaptionInputError(f"{where}: JSON nested too deeply to read") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CaptionInputError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise CaptionInputError(f"{path}: cannot read ({e.strerror or e})") from None


def _number(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CaptionInputError(f"{where}: {what} is not a number (got {str(value)[:40]!r})")
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise CaptionInputError(f"{where}: {what} is far too large") from None


def _seconds(value: float, where: str, what: str) -> float:
    if not (0 <= value <= MAX_CAPTION_TIME_S):  # also false for NaN
        raise CaptionInputError(f"{where}: {what} {value:g} s is outside 0..{MAX_CAPTION_TIME_S:g} s "
                                "(a week; is --fps right?)")
    return value


def read_frame_json(path: Path, fps: float, window: int = 16) -> CaptionTrack:
    path = Path(path)
    doc = _loads(_read_text(path), str(path))
    if not isinstance(doc, dict) or not doc:
        raise CaptionInputError(f"{path}: expected a non-empty object of frame index -> caption")
    items = []
    for k, v in doc.items():
        if not _FRAME_KEY.match(k):
            raise CaptionInputError(f"{path}: key {k[:40]!r} is not a frame index")
        frame = int(k)
        if frame < 0:
            raise CaptionInputError(f"{path}: key {k!r} is a negative frame index")
        _seconds((frame + window) / fps, f"{path}: key {k!r}", "frame time")
        if not isinstance(v, str) or not v.strip():
            raise CaptionInputError(f"{path}: caption at frame {k} is empty or not text")
        items.append((frame, " ".join(v.split())))
    items.sort()
    for (f0, _), (f1, _) in zip(items, items[1:]):
        if f0 == f1:
            raise CaptionInputError(f"{path}: frame {f1} has two captions (keys that differ only in how they are written)")
    frames = np.array([f for f, _ in items], dtype=np.float64)
    ends = np.append(frames[1:], frames[-1] + window)
    return CaptionTrack(path.stem, str(path), frames / fps, ends / fps, [t for _, t in items])


def read_jsonl(path: Path, fps: float) -> list[CaptionTrack]:
    path = Path(path)
    rows: dict[str, list[tuple[float, float, str]]] = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        r = _loads(line, where)
        if not isinstance(r, dict) or not all(k in r for k in ("video", "start", "end", "text")):
            raise CaptionInputError(f"{where}: a row needs video, start, end and text")
        unit = r.get("unit", "seconds")
        if unit not in ("seconds", "frames"):
            raise CaptionInputError(f"{where}: unit {unit!r} is not seconds or frames")
        scale = 1 / fps if unit == "frames" else 1.0
        s, e = (_seconds(_number(r[k], where, k) * scale, where, k) for k in ("start", "end"))
        if e <= s:
            raise CaptionInputError(f"{where}: start {float(r['start'])} and end {float(r['end'])} are not a forward time span")
        if not isinstance(r["text"], str) or not r["text"].strip():
            raise CaptionInputError(f"{where}: empty caption")
        rows.setdefault(str(r["video"]), []).append((s, e, " ".join(r["text"].split())))
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
