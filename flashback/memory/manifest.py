"""The manifest of a memory bundle: what it says, how it is checked, and the id computed from it.

``manifest.json`` is the one file of a bundle read before any check has passed, so it is checked
first and in one place: parsed as strict JSON (no NaN or Infinity), then validated against
``manifest.schema.json``, which fixes the three data files to plain names (never a path, so
nothing outside the bundle folder is ever opened), bounds alpha and the logit scale, and types
every field.  The memory id is a content address (``memory_id_of``), recomputed when a bundle is
loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema

from ..encoders.encoder_registry import EncoderIdentity
from ..errors import BundleError

FORMAT = "flashback-memory"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CAPTIONS = "captions.parquet"
INDEX_FILES = {"normal": "normal.faiss", "anomalous": "anomalous.faiss"}


@dataclass
class Manifest:
    encoder: EncoderIdentity
    counts: dict[str, int]
    categories: dict[str, int]
    alpha: float
    template: str
    logit_scale: float
    index_factory: str
    files: dict[str, dict] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)  # builder statistics: de-dup counts, recall@10, centroid angles
    created_at: str = ""
    memory_id: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "memory_id": self.memory_id,
            "created_at": self.created_at,
            "encoder": self.encoder.to_dict(),
            "dim": self.encoder.dim,
            "counts": self.counts,
            "categories": self.categories,
            "alpha": self.alpha,
            "template": self.template,
            "logit_scale": self.logit_scale,
            "index": {"factory": self.index_factory, **INDEX_FILES},
            "files": self.files,
            "provenance": self.provenance,
            "build": self.build,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Manifest":
        """From a manifest that passed ``manifest.schema.json`` (``read_manifest`` checks it)."""
        return cls(
            encoder=EncoderIdentity.from_dict(d["encoder"]),
            counts={k: int(v) for k, v in d["counts"].items()},
            categories={k: int(v) for k, v in d["categories"].items()},
            alpha=float(d["alpha"]),
            template=str(d["template"]),
            logit_scale=float(d["logit_scale"]),
            index_factory=str(d["index"]["factory"]),
            files=dict(d["files"]),
            provenance=dict(d.get("provenance", {})),
            build=dict(d.get("build", {})),
            created_at=str(d.get("created_at", "")),
            memory_id=str(d["memory_id"]),
            format_version=int(d["format_version"]),
        )


def memory_id_of(m: Manifest) -> str:
    """Content address: same captions, vectors, encoder and calibration -> same id."""
    payload = json.dumps(
        {"files": {k: v["sha256"] for k, v in m.files.items()}, "encoder": m.encoder.key,
         "alpha": m.alpha, "template": m.template, "logit_scale": m.logit_scale},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]



@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((resources.files("flashback.memory") / "manifest.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _schema_problem(raw) -> str | None:
    """The manifest's most relevant schema violation, as one short phrase, or None."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(raw))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path) or "manifest"
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    return f"{where}: {message}"


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such memory bundle")
    if not path.is_dir():
        raise BundleError(f"{path}: a memory bundle is a folder, this is a file")
    mf = path / MANIFEST
    if mf.is_symlink():
        raise BundleError(f"{mf}: a symbolic link; a bundle must hold its own files (links are not followed)")
    if not mf.is_file():
        raise BundleError(f"{path}: not a memory bundle ({MANIFEST} is missing)")
    try:
        fd = os.open(mf, os.O_RDONLY | os.O_NOFOLLOW)  # a link made after the check above is refused too
        with open(fd, encoding="utf-8") as f:
            raw = json.loads(f.read(), parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{mf}: not valid JSON ({e})") from None
    except RecursionError:
        raise BundleError(f"{mf}: not a manifest (JSON nested too deeply to read)") from None
    except OSError as e:
        raise BundleError(f"{mf}: cannot read ({e.strerror or e})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(f"{mf}: not a {FORMAT} manifest")
    version = raw.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool) or not isinstance(version, int):
        raise BundleError(f"{mf}: format version {version!r} ({type(version).__name__}); "
                          f"this flashback reads format version {FORMAT_VERSION} (an integer)")
    problem = _schema_problem(raw)
    if problem is None and raw["dim"] != raw["encoder"]["dim"]:
        problem = f"dim: {raw['dim']} differs from encoder.dim {raw['encoder']['dim']}"
    if problem:
        raise BundleError(f"{mf}: malformed manifest ({problem})")
    return Manifest.from_json(raw)
