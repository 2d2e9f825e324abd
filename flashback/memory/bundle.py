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

Bundles are shareable files, so loading trusts nothing: the manifest is checked against
``manifest.schema.json`` before any other file is opened (the data files are three fixed plain
names, never paths), every file's size and SHA-256 are checked, the tables and indexes must agree
with the manifest, and the memory id is recomputed from the content.  ``verify_bundle`` runs the
same checks and lists every problem.
"""

from __future__ import annotations

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

from ..checks import Range
from ..encoders.encoder_registry import EncoderIdentity, file_sha256
from ..errors import BundleError, EncoderMismatchError, UsageError, ctrl_c_stays_ctrl_c, first_line
from .manifest import CAPTIONS, INDEX_FILES, MANIFEST, Manifest, memory_id_of, read_manifest
from .templates import TEMPLATES

LABELS = ("normal", "anomalous")
NORMAL_CATEGORY = "Normal"
ALPHA_RANGE = Range(0, 100, low_open=True)  # as in manifest.schema.json
LOGIT_SCALE_RANGE = Range(0, 10_000, low_open=True)


@dataclass
class CaptionTable:
    """Captions in bundle order: all normal ones first, then all anomalous ones."""

    texts: list[str]
    anomalous: np.ndarray  # bool per caption
    categories: list[str]
    provenance: list[str]
    ordered: bool = True  # a bundle's table; False: a run's, with its extra entries after the memory's

    def __post_init__(self) -> None:
        self.anomalous = np.asarray(self.anomalous, dtype=bool)
        n = len(self.texts)
        if not (len(self.anomalous) == len(self.categories) == len(self.provenance) == n):
            raise BundleError("caption table columns differ in length")
        if self.ordered and n and np.any(np.diff(self.anomalous.astype(np.int8)) < 0):
            raise BundleError("caption table must list all normal captions before the anomalous ones")

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


@dataclass(frozen=True)
class BundleSpec:
    """What a bundle is built with besides its captions and vectors; all of it goes in the manifest."""

    encoder: EncoderIdentity
    alpha: float
    template: str
    logit_scale: float
    index_factory: str = "Flat"
    provenance: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)  # builder statistics: de-dup counts, recall@10, centroid angles


def write_bundle(out: Path, captions: CaptionTable, vectors: np.ndarray, spec: BundleSpec,
                 indexes: dict | None = None, require_both: bool = True) -> Manifest:
    """Write a complete bundle to a temporary sibling folder, then move it into place.

    A crash at any point leaves either the previous bundle or the new one at ``out``, never a mix.
    ``indexes`` may hold the two FAISS indexes already built (the builder measures their recall first).
    ``require_both``: a memory needs both sides; an overlay of verdicts (``overlays.py``) may hold one.
    """
    out = Path(out)
    if require_both and (captions.n_normal == 0 or captions.n_anomalous == 0):
        raise BundleError(
            f"{out}: a memory needs both normal and anomalous captions "
            f"(got {captions.n_normal} normal, {captions.n_anomalous} anomalous)"
        )
    if vectors.shape != (len(captions), spec.encoder.dim):
        raise BundleError(f"{out}: vectors {vectors.shape} do not match {len(captions)} captions x dim {spec.encoder.dim}")
    problem = ALPHA_RANGE.problem(spec.alpha) or LOGIT_SCALE_RANGE.problem(spec.logit_scale)
    if problem:
        raise UsageError(f"{out}: alpha and logit scale {problem}")
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise BundleError(f"{out}: exists and is not a memory bundle; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        _write_captions(tmp / CAPTIONS, captions)
        for label, index in (indexes or build_indexes(captions, vectors, spec.index_factory)).items():
            save_index(index, tmp / INDEX_FILES[label])
        files = {
            name: {"sha256": file_sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (CAPTIONS, *INDEX_FILES.values())
        }
        manifest = Manifest(
            encoder=spec.encoder,
            counts={"normal": captions.n_normal, "anomalous": captions.n_anomalous},
            categories=captions.category_counts(),
            alpha=float(spec.alpha),
            template=spec.template,
            logit_scale=float(spec.logit_scale),
            index_factory=spec.index_factory,
            files=files,
            provenance=spec.provenance,
            build=spec.build,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        manifest.memory_id = memory_id_of(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def build_indexes(captions: CaptionTable, vectors: np.ndarray, factory: str) -> dict:
    """The normal and the anomalous index of a memory, from a FAISS factory string."""
    try:
        return {label: build_index(vectors[captions.anomalous == is_anom], factory)
                for label, is_anom in (("normal", False), ("anomalous", True))}
    except ValueError as e:  # the backend's "not a factory string" / "cannot train on N vectors"
        raise UsageError(str(e)) from None


def _write_captions(path: Path, t: CaptionTable) -> None:
    caption_rows = {  # noqa: F841 - read by DuckDB's replacement scan below
        "id": np.arange(len(t), dtype=np.int64),
        "text": np.array(t.texts, dtype=object),
        "label": np.array([LABELS[int(a)] for a in t.anomalous], dtype=object),
        "category": np.array(t.categories, dtype=object),
        "provenance": np.array(t.provenance, dtype=object),
    }
    con = _connect()
    try:
        with ctrl_c_stays_ctrl_c():
            con.execute(f"COPY (SELECT * FROM caption_rows ORDER BY id) TO '{_sql_path(path)}' (FORMAT parquet)")
    finally:
        con.close()


def _connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that prints nothing: it prints a progress bar to stdout for a query over
    2 s (a 1M-caption table), into a command's JSON or CSV there."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con


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


def _file_problems(path: Path, manifest: Manifest) -> list[str]:
    """Size and SHA-256 of each data file against the manifest (the names are fixed by the schema).
    A bundle holds its own files: a symbolic link is refused, never followed (it would read, size
    and hash whatever it points at)."""
    problems = []
    for name, meta in manifest.files.items():
        f = Path(path) / name
        if f.is_symlink():
            problems.append(f"{f}: a symbolic link; a bundle must hold its own files (links are not followed)")
        elif not f.is_file():
            problems.append(f"{f}: missing")
        elif f.stat().st_size != meta["bytes"]:
            problems.append(f"{f}: size {f.stat().st_size} bytes, manifest says {meta['bytes']}")
        elif file_sha256(f) != meta["sha256"]:
            problems.append(f"{f}: SHA-256 does not match the manifest (modified or corrupt)")
    return problems


def verify_bundle(path: Path) -> list[str]:
    """Every problem found, one line each; an empty list means the bundle is intact and loads.

    The same checks as ``load_bundle``: checksums first (all of them reported), then the content.
    """
    try:
        manifest = read_manifest(path)
    except BundleError as e:
        return [str(e)]
    problems = _file_problems(path, manifest)
    if problems:
        return problems
    try:
        load_bundle(path)
    except BundleError as e:
        return [str(e)]
    return []


def load_bundle(path: Path, gpu: bool = False) -> MemoryBundle:
    path = Path(path)
    manifest = read_manifest(path)
    problems = _file_problems(path, manifest)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BundleError(problems[0] + more)
    computed = memory_id_of(manifest)
    if computed != manifest.memory_id:
        raise BundleError(f"{path / MANIFEST}: memory_id {manifest.memory_id} does not match the bundle's content "
                          f"({computed}): the manifest was edited after the build; rebuild the memory")
    if manifest.template not in TEMPLATES:  # else a later text would blame a --template flag nobody passed
        raise BundleError(f"{path / MANIFEST}: template {manifest.template!r} is not one this flashback knows "
                          f"({', '.join(sorted(TEMPLATES))})")
    try:
        con = _connect()
        try:
            with ctrl_c_stays_ctrl_c():  # else "unreadable bundle (Query interrupted)", which it is not
                cols = con.execute(
                    f"SELECT id, text, label, category, provenance FROM read_parquet('{_sql_path(path / CAPTIONS)}') ORDER BY id"
                ).fetchnumpy()
        finally:
            con.close()
        labels = np.asarray(cols["label"])
        if not np.isin(labels, LABELS).all():
            raise BundleError(f"{path / CAPTIONS}: labels other than normal/anomalous")
        captions = CaptionTable(
            texts=[str(t) for t in cols["text"]],
            anomalous=labels == "anomalous",
            categories=[str(c) for c in cols["category"]],
            provenance=[str(p) for p in cols["provenance"]],
        )
        indexes = {label: load_index(path / f, gpu=gpu) for label, f in INDEX_FILES.items()}
    except BundleError as e:
        raise BundleError(f"{path}: unreadable bundle ({e})") from None
    except (duckdb.Error, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{path}: unreadable bundle ({first_line(e)})") from None
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
    if captions.category_counts() != manifest.categories:  # not signed: derived, so an edit is caught here
        raise BundleError(f"{path / MANIFEST}: categories differ from the caption table's "
                          f"({captions.category_counts()}): the manifest was edited after the build")
    if manifest.provenance.get("kind") != "overlay" and 0 in counts.values():  # an overlay of verdicts may hold one side
        raise BundleError(f"{path}: a memory needs both normal and anomalous captions (has {counts})")
    return MemoryBundle(path, manifest, captions, indexes)
