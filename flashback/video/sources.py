"""Turn the user's PATH... arguments into a list of video inputs.

A folder expands to the video files under it (recursively, by extension, sorted so runs are
repeatable); anything with a URL scheme goes to PyAV untouched; a missing path is reported here,
where the user typed it, rather than deep inside the decoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import masked

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .m2ts .mts .flv .wmv .3gp .ogv .asf .vob .y4m".split()
)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class VideoSource:
    """One input: a local file, or a URL that PyAV (FFmpeg) opens itself."""

    location: str
    is_url: bool = False

    @property
    def path(self) -> Path | None:
        return None if self.is_url else Path(self.location)

    @property
    def name(self) -> str:
        """How bars and process titles name it: a file by its name, a URL whole (password masked)."""
        return str(self) if self.is_url else Path(self.location).name

    def __str__(self) -> str:
        """How every message, export and store row names it: a URL's password is masked
        (``errors.masked``); only ``location`` is ever opened."""
        return masked(self.location) if self.is_url else self.location


@dataclass(frozen=True)
class Expansion:
    sources: list[VideoSource]
    problems: list[str]  # one line per argument that named nothing scorable


def is_url(text: str) -> bool:
    return bool(_URL.match(text))


def expand_inputs(arguments: list[str]) -> Expansion:
    sources: list[VideoSource] = []
    problems: list[str] = []
    seen: set[str] = set()

    def add(source: VideoSource) -> None:
        if source.location not in seen:
            seen.add(source.location)
            sources.append(source)

    for arg in arguments:
        if is_url(arg):
            add(VideoSource(arg, is_url=True))
            continue
        path = Path(arg)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            )
            if not found:
                problems.append(
                    f"{arg}: folder holds no video files (looked for {', '.join(sorted(VIDEO_EXTENSIONS))})"
                )
            for p in found:
                add(VideoSource(str(p)))
        elif path.is_file():
            add(VideoSource(str(path)))  # an explicit file is tried whatever its extension
        elif path.exists():
            problems.append(f"{arg}: not a regular file")
        else:
            problems.append(f"{arg}: no such file or folder")
    return Expansion(sources, problems)
