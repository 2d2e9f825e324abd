"""An outbox on disk: what a sink could not deliver yet, one JSON object per line, rewritten
atomically whenever it changes and removed once empty, so a kill loses nothing written there and
the next watch sends it first.  The webhook's and MQTT's (``webhook.py``, ``mqtt.py``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ...atomic import atomic_write_text
from ...errors import first_line


def read_outbox(path: Path, what: str, log=lambda m: None) -> list[dict]:
    """What an earlier watch left; a damaged outbox is named and set aside, not lost and not fatal."""
    path = Path(path)
    if not path.is_file():
        return []
    docs = []
    try:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise ValueError(f"line {lineno} is not a JSON object")
                docs.append(doc)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        path.rename(aside)
        log(f"{what} outbox {path}: not readable ({first_line(e)[:120]}); set aside as {aside}")
        return []
    return docs


def write_outbox(path: Path, docs) -> None:
    """The outbox now holds exactly ``docs`` (none: the file is removed)."""
    docs = list(docs)
    if docs:
        atomic_write_text(path, "".join(json.dumps(d) + "\n" for d in docs))
    elif Path(path).exists():
        Path(path).unlink()
