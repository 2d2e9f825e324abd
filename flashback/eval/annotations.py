"""Temporal ground truth in the field's formats, turned into per-frame labels aligned with our scores.

Formats (one video per line; every parse error names the file and line):

- ``ucf-crime``: UCF-Crime's ``Temporal_Anomaly_Annotation.txt``:
  ``Arrest001_x264.mp4  Arrest  1185  1485  -1  -1`` (frame numbers; -1 where there is no second
  interval; the class is ``Normal`` for normal videos).
- ``xd-violence``: XD-Violence's annotation list: ``name  s1 e1 [s2 e2 ...]`` (frame numbers at the
  dataset's 24 FPS).  Only violent videos are listed; every other video is normal.
- ``frames``: a generic CSV with a header: ``video,start,end`` plus ``unit`` (``frames`` or
  ``seconds``) per row, or the columns named ``start_s,end_s`` / ``start_frame,end_frame``.  Videos
  with no row are normal.  A row with empty start/end lists a normal video explicitly.

Intervals are inclusive at both ends, as the annotation files state a first and a last frame.
Videos are matched by file stem, so ``Arrest001_x264.mp4`` and ``Arrest001_x264`` are the same.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataFileError

DATASETS = ("ucf-crime", "xd-violence", "frames")


class AnnotationError(DataFileError):
    """An annotation or frame-count file that does not parse: names the file and line."""


@dataclass
class VideoTruth:
    video: str  # file stem
    intervals: list[tuple[float, float]] = field(default_factory=list)
    unit: str = "frames"  # or "seconds"
    category: str | None = None  # UCF-Crime's class; None where the format has none

    @property
    def anomalous(self) -> bool:
        return bool(self.intervals)


@dataclass
class GroundTruth:
    dataset: str
    videos: dict[str, VideoTruth]
    unlisted_are_normal: bool  # XD-Violence and generic CSV: yes; UCF-Crime lists every test video

    def truth_for(self, stem: str) -> VideoTruth | None:
        if stem in self.videos:
            return self.videos[stem]
        return VideoTruth(stem) if self.unlisted_are_normal else None


def stem(name: str) -> str:
    """File name without a video extension; other dots stay (XD-Violence names are full of them)."""
    from ..video.sources import VIDEO_EXTENSIONS

    base = Path(name).name
    suffix = Path(base).suffix
    return base[: -len(suffix)] if suffix.lower() in VIDEO_EXTENSIONS else base


def _int(token: str, where: str, what: str) -> int:
    try:
        return int(float(token))
    except (ValueError, OverflowError):
        raise AnnotationError(f"{where}: {what} {token!r} is not a number") from None


def _pairs(tokens: list[str], where: str) -> list[tuple[float, float]]:
    if len(tokens) % 2:
        raise AnnotationError(f"{where}: start/end frames come in pairs, found {len(tokens)} numbers")
    out = []
    for a, b in zip(tokens[::2], tokens[1::2]):
        s, e = _int(a, where, "start frame"), _int(b, where, "end frame")
        if s == -1 and e == -1:
            continue
        if s < 0 or e < s:
            raise AnnotationError(f"{where}: interval {s}..{e} is not a valid frame range")
        out.append((float(s), float(e)))
    return out


def parse_ucf_crime(path: Path) -> GroundTruth:
    videos = {}
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        tokens = line.split()
        if len(tokens) < 4:
            raise AnnotationError(f"{where}: expected 'video class start end [start end]', got {line!r}")
        name, category = tokens[0], tokens[1]
        intervals = _pairs(tokens[2:], where)
        if category.lower().startswith("normal") and intervals:
            raise AnnotationError(f"{where}: a Normal video with anomalous intervals")
        _add(videos, VideoTruth(stem(name), intervals, "frames", category), where)
    return GroundTruth("ucf-crime", videos, unlisted_are_normal=False)


def parse_xd_violence(path: Path) -> GroundTruth:
    videos = {}
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        tokens = line.split()
        if len(tokens) < 3:
            raise AnnotationError(f"{where}: expected 'video start end [start end ...]', got {line!r}")
        _add(videos, VideoTruth(stem(tokens[0]), _pairs(tokens[1:], where), "frames", None), where)
    return GroundTruth("xd-violence", videos, unlisted_are_normal=True)


def parse_frames_csv(path: Path) -> GroundTruth:
    videos: dict[str, VideoTruth] = {}
    with _open(path) as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if "video" not in cols:
            raise AnnotationError(f"{path}:1: header must have a 'video' column (got {reader.fieldnames})")
        if {"start_s", "end_s"} <= cols:
            start, end, fixed = "start_s", "end_s", "seconds"
        elif {"start_frame", "end_frame"} <= cols:
            start, end, fixed = "start_frame", "end_frame", "frames"
        elif {"start", "end", "unit"} <= cols:
            start, end, fixed = "start", "end", None
        else:
            raise AnnotationError(
                f"{path}:1: header needs start_s,end_s or start_frame,end_frame or start,end,unit (got {reader.fieldnames})"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            name = (row.get("video") or "").strip()
            if not name:
                raise AnnotationError(f"{where}: empty video name")
            unit = fixed or (row.get("unit") or "").strip().lower()
            if unit not in ("frames", "seconds"):
                raise AnnotationError(f"{where}: unit {row.get('unit')!r} is not 'frames' or 'seconds'")
            truth = videos.setdefault(stem(name), VideoTruth(stem(name), [], unit))
            if truth.unit != unit:
                raise AnnotationError(f"{where}: {name} mixes frames and seconds")
            a, b = (row.get(start) or "").strip(), (row.get(end) or "").strip()
            if not a and not b:
                continue  # a normal video, listed explicitly
            try:
                s, e = float(a), float(b)
            except ValueError:
                raise AnnotationError(f"{where}: start/end {a!r}, {b!r} are not numbers") from None
            if not (math.isfinite(s) and math.isfinite(e)) or s < 0 or e < s:
                raise AnnotationError(f"{where}: interval {a}..{b} is not a valid range")
            truth.intervals.append((s, e))
    return GroundTruth("frames", videos, unlisted_are_normal=True)


def load_ground_truth(dataset: str, path: Path) -> GroundTruth:
    parsers = {"ucf-crime": parse_ucf_crime, "xd-violence": parse_xd_violence, "frames": parse_frames_csv}
    if dataset not in parsers:
        raise AnnotationError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: no such annotation file")
    gt = parsers[dataset](path)
    if not gt.videos:
        raise AnnotationError(f"{path}: no annotations in the file")
    return gt


def frame_labels(truth: VideoTruth, n_frames: int, frame_times: np.ndarray | None = None) -> np.ndarray:
    """1 for each of our decoded frames inside an interval: by index for frame units, by time for seconds."""
    labels = np.zeros(n_frames, dtype=np.int8)
    if truth.unit == "seconds":
        if frame_times is None:
            raise TypeError("second-based annotations need the frames' timestamps")  # a caller's bug, not the user's
        t = np.asarray(frame_times)
        for s, e in truth.intervals:
            labels[(t >= s) & (t <= e)] = 1
    else:
        for s, e in truth.intervals:
            labels[int(s) : min(int(e) + 1, n_frames)] = 1
    return labels


def _open(path: Path):
    try:
        return open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror})") from None


def _lines(path: Path):
    with _open(path) as f:
        try:
            for lineno, line in enumerate(f, 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    yield lineno, line.strip()
        except UnicodeDecodeError:
            raise AnnotationError(f"{path}: not UTF-8 text") from None


def _add(videos: dict, truth: VideoTruth, where: str) -> None:
    if truth.video in videos:
        raise AnnotationError(f"{where}: {truth.video} is annotated twice")
    videos[truth.video] = truth


def read_frame_counts(path: Path) -> dict[str, int]:
    """``video first last [label]`` per line (UCF-Crime's frames.txt) -> frames in each video."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: no such frame-count file")
    out = {}
    for lineno, line in _lines(path):
        tokens = line.split()
        where = f"{path}:{lineno}"
        if len(tokens) < 3:
            raise AnnotationError(f"{where}: expected 'video first last [label]', got {line!r}")
        first, last = _int(tokens[1], where, "first frame"), _int(tokens[2], where, "last frame")
        if last < first:
            raise AnnotationError(f"{where}: last frame {last} before first frame {first}")
        out[stem(tokens[0])] = last + 1  # frame indices 0..last, as the annotations number them
    return out
