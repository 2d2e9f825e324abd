"""Read labelled captions from JSONL or CSV, checking every row where it enters.

Rows: text, label (normal | anomalous; also 0/1, abnormal), category (optional for normal rows,
which get "Normal"; required for anomalous ones), provenance (optional).  A bad row stops the read
with the file, line number and problem; exact duplicates (after whitespace and case folding) are
dropped and counted, since they would only skew the retrieval weights.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from flashback.errors import DataFileError
from flashback.memory.bundle import NORMAL_CATEGORY, CaptionTable

MAX_CAPTION_CHARS = 300
_LABELS = {"normal": False, "0": False, "anomalous": True, "anomaly": True, "abnormal": True, "1": True}


class CaptionFileError(DataFileError):
    """A labelled-caption file that does not parse: names the file and line."""


@dataclass
class ReadReport:
    rows: int
    duplicates: int


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _rows(path: Path):
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CaptionFileError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                except RecursionError:
                    raise CaptionFileError(f"{path}:{lineno}: JSON nested too deeply to read") from None
                if not isinstance(row, dict):
                    raise CaptionFileError(f"{path}:{lineno}: expected a JSON object per line")
                yield lineno, row
    elif suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames or "text" not in reader.fieldnames or "label" not in reader.fieldnames:
                raise CaptionFileError(f"{path}:1: header must name at least 'text' and 'label' (got {reader.fieldnames})")
            for row in reader:
                yield reader.line_num, row
    else:
        raise CaptionFileError(f"{path}: unknown caption file type {suffix!r} (use .jsonl or .csv)")


def read_labelled_captions(paths: list[Path]) -> tuple[CaptionTable, ReadReport]:
    normal: list[tuple[str, str, str]] = []
    anomalous: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    rows = dups = 0
    for path in map(Path, paths):
        if not path.is_file():
            raise CaptionFileError(f"{path}: no such caption file")
        try:
            for lineno, row in _rows(path):
                rows += 1
                where = f"{path}:{lineno}"
                text = row.get("text")
                if not isinstance(text, str) or not normalise(text):
                    raise CaptionFileError(f"{where}: 'text' is missing or empty")
                text = normalise(text)
                if len(text) > MAX_CAPTION_CHARS:
                    raise CaptionFileError(f"{where}: caption is {len(text)} characters, the limit is {MAX_CAPTION_CHARS}")
                label = str(row.get("label", "")).strip().lower()
                if label not in _LABELS:
                    raise CaptionFileError(f"{where}: label {row.get('label')!r} is not normal or anomalous")
                is_anom = _LABELS[label]
                category = normalise(str(row.get("category") or ""))
                if is_anom and (not category or category.lower() == "normal"):
                    raise CaptionFileError(f"{where}: an anomalous caption needs its category (e.g. Fighting)")
                if not is_anom:
                    category = NORMAL_CATEGORY
                key = text.lower()
                if key in seen:
                    dups += 1
                    continue
                seen.add(key)
                prov = str(row.get("provenance") or f"{path.name}:{lineno}")
                (anomalous if is_anom else normal).append((text, category, prov))
        except UnicodeDecodeError:
            raise CaptionFileError(f"{path}: not UTF-8 text") from None
    ordered = normal + anomalous
    table = CaptionTable(
        texts=[t for t, _, _ in ordered],
        anomalous=[False] * len(normal) + [True] * len(anomalous),
        categories=[c for _, c, _ in ordered],
        provenance=[p for _, _, p in ordered],
    )
    return table, ReadReport(rows=rows, duplicates=dups)
