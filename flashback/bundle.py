"""The memory bundle: a folder with a manifest, a caption table and two FAISS indexes.

Layout (documented for users in indexes/README.md):

    manifest.json      format name + version, encoder identity, counts, alpha, template,
                       logit scale, index factory, SHA-256 and size of every other file
    captions.parquet   id, text, label ('normal' | 'anomalous'), category, provenance
    normal.faiss       the normal captions' unit vectors, row p = caption id p
    anomalous.faiss    the anomalous captions' unit vectors, row p = caption id n_normal + p

Normal and anomalous captions live in separate indexes so that alpha stays a query-time setting:
scaling every anomalous similarity by the same alpha > 0 keeps their order, so the exact top-K
under alpha is the top-K of (top-K normal) and (alpha * top-K anomalous), and a sweep over alpha
never rebuilds anything.  No pickle: JSON, Parquet and FAISS's own binary format only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from indexes import build_index, load_index, save_index

from .encoder_registry import EncoderIdentity, file_sha256
from .errors import BundleError, EncoderMismatchError

FORMAT = "flashback-memory"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CAPTIONS = "captions.parquet"
INDEX_FILES = {"normal": "normal.faiss", "anomalous": "anomalous.faiss"}
LABELS = ("normal", "anomalous")
NORMAL_CATEGORY = "Normal"


@dataclass
class CaptionTable:
    """Captions in bundle order: all normal ones first, then all anomalous ones."""

    texts: list[str]
    anomalous: np.ndarray  # bool per caption
    categories: list[str]
    provenance: list[str]

    def __post_init__(self) -> None:
        self.anomalous = np.asarray(self.anomalous, dtype=bool)
        n = len(self.texts)
        if not (len(self.anomalous) == len(self.categories) == len(self.provenance) == n):
            raise ValueError("caption table columns differ in length")
        if n and np.any(np.diff(self.anomalous.astype(np.int8)) < 0):
            raise ValueError("caption table must list all normal captions before the anomalous ones")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_normal(self) -> int:
        return int((~self.anomalous).sum())

    @property
    def n_anomalous(self) -> int:
        return int(self.anomalous.sum())

    def label(self, i: int) -> str:
        return LABELS[int(self.anomalous[i])]

    def category_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.categories).items(), key=lambda kv: (-kv[1], kv[0])))


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


@dataclass
class MemoryBundle:
    path: Path
    manifest: Manifest
    captions: CaptionTable
    indexes: dict  # label -> faiss.Index

    @property
    def memory_id(self) -> str:
        return self.manifest.memory_id

    def require_encoder(self, identity: EncoderIdentity) -> None:
        if identity != self.manifest.encoder:
            raise EncoderMismatchError(
                f"{self.path}: memory was built with encoder {self.manifest.encoder.key}, "
                f"but scoring uses {identity.key}; rebuild the memory for this encoder or pass the matching --encoder/--pretrained/--checkpoint"
            )


# ---------------------------------------------------------------- writing


def write_bundle(
    out: Path,
    captions: CaptionTable,
    vectors: np.ndarray,
    encoder: EncoderIdentity,
    alpha: float,
    template: str,
    logit_scale: float,
    index_factory: str = "Flat",
    provenance: dict | None = None,
    indexes: dict | None = None,
    build: dict | None = None,
) -> Manifest:
    """Write a complete bundle to a temporary sibling folder, then move it into place.

    A crash at any point leaves either the previous bundle or the new one at ``out``, never a mix.
    ``indexes`` may hold the two FAISS indexes already built (the builder measures their recall first).
    """
    out = Path(out)
    if captions.n_normal == 0 or captions.n_anomalous == 0:
        raise BundleError(
            f"{out}: a memory needs both normal and anomalous captions "
            f"(got {captions.n_normal} normal, {captions.n_anomalous} anomalous)"
        )
    if vectors.shape != (len(captions), encoder.dim):
        raise ValueError(f"vectors {vectors.shape} do not match {len(captions)} captions x dim {encoder.dim}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (got {alpha})")
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise BundleError(f"{out}: exists and is not a memory bundle; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        _write_captions(tmp / CAPTIONS, captions)
        for label, is_anom in (("normal", False), ("anomalous", True)):
            index = indexes[label] if indexes else build_index(vectors[captions.anomalous == is_anom], index_factory)
            save_index(index, tmp / INDEX_FILES[label])
        files = {
            name: {"sha256": file_sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (CAPTIONS, *INDEX_FILES.values())
        }
        manifest = Manifest(
            encoder=encoder,
            counts={"normal": captions.n_normal, "anomalous": captions.n_anomalous},
            categories=captions.category_counts(),
            alpha=float(alpha),
            template=template,
            logit_scale=float(logit_scale),
            index_factory=index_factory,
            files=files,
            provenance=provenance or {},
            build=build or {},
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        manifest.memory_id = _memory_id(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _memory_id(m: Manifest) -> str:
    """Content address: same captions, vectors, encoder and calibration -> same id."""
    payload = json.dumps(
        {"files": {k: v["sha256"] for k, v in m.files.items()}, "encoder": m.encoder.key,
         "alpha": m.alpha, "template": m.template, "logit_scale": m.logit_scale},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _write_captions(path: Path, t: CaptionTable) -> None:
    caption_rows = {  # noqa: F841 - read by DuckDB's replacement scan below
        "id": np.arange(len(t), dtype=np.int64),
        "text": np.array(t.texts, dtype=object),
        "label": np.array([LABELS[int(a)] for a in t.anomalous], dtype=object),
        "category": np.array(t.categories, dtype=object),
        "provenance": np.array(t.provenance, dtype=object),
    }
    con = duckdb.connect()
    try:
        con.execute(f"COPY (SELECT * FROM caption_rows ORDER BY id) TO '{_sql_path(path)}' (FORMAT parquet)")
    finally:
        con.close()


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.replaced-{os.getpid()}-{time.time_ns()}"
    os.replace(out, old)  # the old bundle stays whole until the new one is in place
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- reading


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such memory bundle")
    if not path.is_dir():
        raise BundleError(f"{path}: a memory bundle is a folder, this is a file")
    mf = path / MANIFEST
    if not mf.is_file():
        raise BundleError(f"{path}: not a memory bundle ({MANIFEST} is missing)")
    try:
        raw = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mf}: not valid JSON ({e})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(f"{mf}: not a {FORMAT} manifest")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{mf}: format version {version}, this flashback reads version {FORMAT_VERSION}")
    try:
        return Manifest.from_json(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{mf}: malformed manifest ({type(e).__name__}: {e})") from None


def verify_bundle(path: Path) -> list[str]:
    """Every problem found, one line each; an empty list means the bundle is intact."""
    try:
        manifest = read_manifest(path)
    except BundleError as e:
        return [str(e)]
    problems = []
    expected = {CAPTIONS, *INDEX_FILES.values()}
    if set(manifest.files) != expected:
        problems.append(f"{path}: manifest lists files {sorted(manifest.files)}, expected {sorted(expected)}")
    for name, meta in manifest.files.items():
        f = Path(path) / name
        if not f.is_file():
            problems.append(f"{f}: missing")
        elif f.stat().st_size != meta.get("bytes"):
            problems.append(f"{f}: size {f.stat().st_size} bytes, manifest says {meta.get('bytes')}")
        elif file_sha256(f) != meta.get("sha256"):
            problems.append(f"{f}: SHA-256 does not match the manifest (modified or corrupt)")
    return problems


def load_bundle(path: Path, gpu: bool = False) -> MemoryBundle:
    path = Path(path)
    manifest = read_manifest(path)
    problems = verify_bundle(path)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BundleError(problems[0] + more)
    try:
        con = duckdb.connect()
        try:
            cols = con.execute(
                f"SELECT id, text, label, category, provenance FROM read_parquet('{_sql_path(path / CAPTIONS)}') ORDER BY id"
            ).fetchnumpy()
        finally:
            con.close()
        captions = CaptionTable(
            texts=list(cols["text"]),
            anomalous=np.asarray(cols["label"]) == "anomalous",
            categories=list(cols["category"]),
            provenance=list(cols["provenance"]),
        )
        indexes = {label: load_index(path / f, gpu=gpu) for label, f in INDEX_FILES.items()}
    except (duckdb.Error, RuntimeError, ValueError) as e:
        raise BundleError(f"{path}: unreadable bundle ({str(e).splitlines()[0]})") from None
    if not np.array_equal(cols["id"], np.arange(len(captions))):
        raise BundleError(f"{path / CAPTIONS}: caption ids are not 0..N-1")
    counts = {"normal": captions.n_normal, "anomalous": captions.n_anomalous}
    for label, index in indexes.items():
        if index.ntotal != counts[label] or index.d != manifest.encoder.dim:
            raise BundleError(
                f"{path / INDEX_FILES[label]}: holds {index.ntotal} vectors of dim {index.d}, "
                f"expected {counts[label]} of dim {manifest.encoder.dim}"
            )
    if counts != manifest.counts:
        raise BundleError(f"{path}: caption table counts {counts} differ from the manifest's {manifest.counts}")
    return MemoryBundle(path, manifest, captions, indexes)
