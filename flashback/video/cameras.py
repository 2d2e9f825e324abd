"""Per-camera regions: what part of a frame the encoder sees (``--roi``, ``--cameras FILE``).

A camera that looks at a street and a car park only matters for one of them: a region keeps the
rest out of the embedding, so activity outside it cannot move the score.  A rectangle is cut out
before the frame is resized (the encoder sees the region at full detail, not a shrunk whole
frame); a polygon is cut to its bounding box and everything outside the polygon is filled with the
encoder's normalisation mean (zero after normalisation: nothing), the same fill as padding.
Coordinates are pixels of the frame as displayed (rotation applied), origin top left.

The camera file is TOML, one table per camera.  For ``watch`` a table's name is a feed's name; for
``score`` it is a glob matched against each file's path (``fnmatch``, so ``*`` crosses folders).
A table may also list texts to alert on or to ignore at that camera only (``extras.py``)::

    [dock]
    roi = [0, 120, 640, 240]                              # x, y, width, height
    alert = ["a forklift tipping over"]
    ignore = ["workers unloading pallets at night"]
    ["recordings/lot/*"]
    polygon = [[0, 200], [640, 160], [640, 360], [0, 360]]
"""

from __future__ import annotations

import fnmatch
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError, masked

MAX_TEXT = 300  # an alert or ignore text: a sentence, not a paragraph


@dataclass(frozen=True)
class UserText:
    text: str
    anomalous: bool  # --alert (True) or --ignore (False)
    scope: str | None = None  # a camera (feed name, or the file glob of the camera file); None: every input

    def to_dict(self) -> dict:
        return {"text": self.text, "kind": "alert" if self.anomalous else "ignore", **({"camera": self.scope} if self.scope else {})}


def user_texts(alerts: list[str] | None, ignores: list[str] | None, scope: str | None = None) -> list[UserText]:
    """``--alert``/``--ignore`` values, checked: not empty, one line, not absurdly long, no repeats."""
    out: list[UserText] = []
    for flag, values, anomalous in (("--alert", alerts, True), ("--ignore", ignores, False)):
        for v in values or []:
            t = " ".join(str(v).split())
            if not t:
                raise UsageError(f"{flag}: the text is empty")
            if len(t) > MAX_TEXT:
                raise UsageError(f"{flag} {t[:40]!r}...: longer than {MAX_TEXT} characters; describe the scene in a sentence")
            u = UserText(t, anomalous, scope)
            if u not in out:
                out.append(u)
    return out


KEYS = ("roi", "polygon", "alert", "ignore")
REGION_KEYS = ("roi", "polygon")


@dataclass(frozen=True)
class Region:
    box: tuple[int, int, int, int]  # x, y, width, height: what is cut out
    polygon: tuple[tuple[float, float], ...] | None = None  # outside it is blanked (within the box)
    label: str = ""  # where it came from, for messages ("--roi 0,0,320,240", "cameras.toml [dock]")

    def describe(self) -> str:
        """The region as stored with a scoring, so its results can be reproduced."""
        if self.polygon is not None:
            return "polygon " + " ".join(f"{x:g},{y:g}" for x, y in self.polygon)
        return "roi {},{},{},{}".format(*self.box)

    def check(self, width: int, height: int, source: str) -> None:
        x, y, w, h = self.box
        if x + w > width or y + h > height:
            raise InputError(source, f"{self.label}: region {x},{y} {w}x{h} is outside the {width}x{height} frame")

    def cut(self, rgb: np.ndarray, fill: tuple[int, int, int], source: str) -> np.ndarray:
        """The region of a displayed frame (height, width, 3), blanked outside a polygon."""
        self.check(rgb.shape[1], rgb.shape[0], source)
        x, y, w, h = self.box
        rgb = rgb[y : y + h, x : x + w]
        if self.polygon is not None:
            rgb = np.where(self._mask()[..., None], rgb, np.asarray(fill, np.uint8))
        return np.ascontiguousarray(rgb)

    def _mask(self) -> np.ndarray:
        """True inside the polygon, over the box (PIL's polygon fill: edges count as inside)."""
        from PIL import Image, ImageDraw

        x, y, w, h = self.box
        img = Image.new("1", (w, h), 0)
        ImageDraw.Draw(img).polygon([(px - x, py - y) for px, py in self.polygon], fill=1, outline=1)
        return np.asarray(img, dtype=bool)


def camera_of(location: str, live: bool) -> str:
    """What a camera is wherever flashback groups by one (overlays, search, the review app): a live
    feed's name, or the folder a file is in (a URL scored as a file: the URL, password masked)."""
    if live:
        return location
    if "://" in location:
        return masked(location)
    return str(Path(location).parent)


def camera_name(path: str, feed: str | None = None, table: str | None = None) -> str:
    """The one name of a camera, for every page, command and sink: a live feed's name; a file's
    camera-file table (``--cameras``, as the run recorded it); else its folder (``camera_of``)."""
    if feed:
        return feed
    if table:
        return table
    return camera_of(path, live=False)


def camera_matches(camera: str, name: str) -> bool:
    """Whether ``name`` (typed by a person) names ``camera``: exactly, or as the last part of a folder."""
    return camera == name or camera.rstrip("/").endswith("/" + name.strip("/"))


def parse_roi(text: str, label: str | None = None) -> Region:
    """``x,y,w,h`` in pixels (the ``--roi`` flag)."""
    label = label or f"--roi {text}"
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{label}: expected x,y,width,height in whole pixels, e.g. 0,120,640,240") from None
    return _rect(x, y, w, h, label)


def _rect(x: int, y: int, w: int, h: int, label: str) -> Region:
    if x < 0 or y < 0 or w < 2 or h < 2:
        raise UsageError(f"{label}: x and y must be >= 0 and width and height >= 2 pixels")
    return Region((x, y, w, h), label=label)


def _coordinate(v) -> bool:
    """A pixel coordinate as a camera file may give it: a finite number >= 0 (not a string, not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1e6


def _polygon(points, label: str) -> Region:
    if not (len(points) >= 3 and all(isinstance(p, list) and len(p) == 2 and all(map(_coordinate, p)) for p in points)):
        raise UsageError(f"{label}: a polygon is a list of at least 3 [x, y] points, numbers >= 0 "
                         "(not strings, tables, nan or inf)")
    pts = tuple((float(p[0]), float(p[1])) for p in points)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, y0 = int(np.floor(min(xs))), int(np.floor(min(ys)))
    box = _rect(x0, y0, max(2, int(np.ceil(max(xs))) + 1 - x0), max(2, int(np.ceil(max(ys))) + 1 - y0), label).box
    return Region(box, pts, label)


@dataclass(frozen=True)
class Cameras:
    """The camera file's regions by table name, and ``--roi`` for everything the file does not name;
    its per-camera ``alert``/``ignore`` texts (``extras.UserText``, scoped to the table's name)."""

    regions: dict[str, Region]
    default: Region | None = None
    texts: tuple[UserText, ...] = ()
    names: tuple[str, ...] = ()  # every table of the file

    def for_feed(self, name: str) -> Region | None:
        return self.regions.get(name, self.default)

    def camera_of_file(self, path: str) -> str | None:
        """The first table whose glob matches the file (as given, or resolved)."""
        for pattern in self.names:
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(str(Path(path).resolve()), pattern):
                return pattern
        return None

    def for_file(self, path: str) -> Region | None:
        name = self.camera_of_file(path)
        return self.regions.get(name, self.default) if name is not None else self.default


def load_cameras(path: Path | None, roi: str | None = None) -> Cameras:
    """``--cameras FILE`` and ``--roi``, checked before anything is loaded."""
    default = parse_roi(roi) if roi else None
    if path is None:
        return Cameras({}, default)
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{path}: cannot read the camera file ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    return cameras_from(doc, str(path), default)


def cameras_from(doc: dict, where: str, default: Region | None = None) -> Cameras:
    """Camera tables already read (a camera file's, or ``serve``'s cameras); ``where`` names them in messages."""
    regions, texts = {}, []
    for name, table in doc.items():
        label = f"{where} [{name}]"
        if not isinstance(table, dict):
            raise UsageError(f"{label}: expected a table of settings ({', '.join(KEYS)})")
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise UsageError(f"{label}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
        for key in ("alert", "ignore"):
            v = table.get(key, [])
            if not (isinstance(v, list) and all(isinstance(t, str) for t in v)):
                raise UsageError(f'{label}: {key} must be a list of texts, e.g. {key} = ["a person climbing the fence"]')
        texts += user_texts(table.get("alert"), table.get("ignore"), scope=name)
        kinds = [k for k in REGION_KEYS if k in table]
        if len(kinds) > 1:
            raise UsageError(f"{label}: give one of roi = [x, y, w, h] or polygon = [[x, y], ...]")
        if not kinds:
            continue
        if "roi" in table:
            v = table["roi"]
            if not (isinstance(v, list) and len(v) == 4 and all(type(n) is int for n in v)):
                raise UsageError(f"{label}: roi must be [x, y, width, height] in whole pixels")
            regions[name] = _rect(*v, label)
        else:
            v = table["polygon"]
            regions[name] = _polygon(v if isinstance(v, list) else [], label)
    return Cameras(regions, default, tuple(texts), tuple(doc))
