"""Search stored footage by text, with no re-encoding: every scored segment's vector is in the store
(``segment_vectors``), in the same space as the captions, so a query is one pass through the same
encoder's text tower and one matrix product.

Only segments whose run used the query's encoder are searched (a vector of another encoder lives
in another space, so mixing them would rank nonsense): a store with none is refused, naming the
encoders it does have.  Up to ``APPROX_AT`` segments the search is exact; above, a FAISS HNSW index
is kept next to the store (``<store>.search/``) and brought up to date with the rows added since it
was saved, and rows deleted since (re-scoring, retention) are skipped, and it is rebuilt once they
are a fifth of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from indexes import build_index, load_index, save_index
from indexes import search as index_search

from ..encoders.encoder_registry import DEFAULT_MODEL, DEFAULT_PRETRAINED, RANDOM_TAG, EncoderIdentity, EncoderSpec, weights_label
from ..encoders.protocols import TextEncoder
from ..errors import UsageError, first_line, masked
from ..store import ResultStore
from ..video.cameras import camera_matches, camera_name

log = logging.getLogger(__name__)
APPROX_AT = 200_000  # segments of one encoder above which an approximate index is used
ANN_FACTORY = "HNSW32"
STALE_SHARE = 0.2
CHUNK = 2000  # candidates described per query of the store  # rebuild the approximate index once this share of it was deleted from the store


@dataclass(frozen=True)
class Hit:
    run_id: str
    video_id: str
    path: str  # the file, or the feed's location
    camera: str  # a live feed's name, or the folder a file is in
    segment: int
    start_s: float
    end_s: float
    similarity: float
    score: float  # the segment's anomaly score
    caption: str | None  # its most similar caption
    when: datetime  # its wall-clock time (a feed's clock, a file's creation or file time), else when it was scored

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v.isoformat(timespec="seconds") if isinstance(v, datetime) else v)
                for k, v in asdict(self).items()}


def unpack(blobs, dim: int) -> np.ndarray:
    """Stored vectors (``writers.insert_segment_vectors``: float16 bytes) as float32 rows."""
    if not len(blobs):
        return np.zeros((0, dim), np.float32)
    v = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), dim).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)  # unit again after rounding: a cosine


_META = """
    SELECT v.vector_id, v.run_id, v.video_id, coalesce(f.location, d.path), coalesce(f.feed, ''), v.segment,
           v.start_s, v.end_s, g.score, c.text,
           coalesce(f.started_at + to_milliseconds(CAST(v.start_s * 1000 AS BIGINT)),
                    d.started_at + to_milliseconds(CAST(v.start_s * 1000 AS BIGINT)), s.scored_at), ru.camera
    FROM segment_vectors v JOIN videos d USING (video_id) JOIN scorings s USING (run_id, video_id)
    JOIN runs ru ON ru.run_id = v.run_id
    LEFT JOIN live_feeds f USING (video_id)
    LEFT JOIN segments g USING (run_id, video_id, segment)
    LEFT JOIN segment_captions c ON c.run_id = v.run_id AND c.video_id = v.video_id AND c.segment = v.segment AND c.rank = 0
    WHERE v.vector_id IN ({})
"""


class FootageSearch:
    """Text -> the stored segments most like it, for one store and one encoder."""

    def __init__(self, store: ResultStore, encoder: TextEncoder, approx_at: int = APPROX_AT):
        self.store, self.encoder, self.approx_at = store, encoder, approx_at
        self.key = encoder.identity.key
        if "segment_vectors" not in store.tables():
            raise UsageError(f"{store.path}: written by an older flashback, it keeps no segment vectors "
                             "(score again to search it)")
        with store.connect(read_only=True) as con:
            counts = dict(con.execute("SELECT r.encoder_id, count(*) FROM segment_vectors v JOIN runs r USING (run_id) "
                                      "GROUP BY ALL").fetchall())
        if self.key not in counts:
            have = ", ".join(sorted(counts)) or "none"
            raise UsageError(f"{store.path}: no segment was stored with encoder {self.key} (it holds: {have}); "
                             "search with the encoder the footage was scored with")
        self.n = counts[self.key]

    def cameras(self) -> set[str]:
        """Every camera the store's searchable footage is from: live feeds' names, files' folders."""
        with self.store.connect(read_only=True) as con:
            rows = con.execute("SELECT DISTINCT d.path, f.feed, ru.camera FROM segment_vectors v JOIN videos d USING (video_id) "
                               "JOIN runs ru ON ru.run_id = v.run_id LEFT JOIN live_feeds f USING (video_id)").fetchall()
        return {camera_name(path, feed, table) for path, feed, table in rows}

    def query_vector(self, text: str) -> np.ndarray:
        if not text.strip():
            raise UsageError("search: the query text is empty")
        return np.asarray(self.encoder.encode_texts([text.strip()]), dtype=np.float32)[0]

    def search(self, text: str, top: int = 10, camera: str | None = None, since: datetime | None = None) -> list[Hit]:
        return self.search_vector(self.query_vector(text), top, camera, since)

    def search_vector(self, q: np.ndarray, top: int = 10, camera: str | None = None,
                      since: datetime | None = None) -> list[Hit]:
        """The ``top`` moments most similar to ``q`` (cosine), best first: overlapping or touching
        segments of one video are one moment, its span theirs and its similarity, segment and
        caption its best one's (3.0-4.0 s and 3.5-4.5 s of one fight are one hit, not two).
        ``camera``: a feed's name or a file's folder; ``since``: its clock time (or when it was scored) at or after."""
        filtered = camera is not None or since is not None
        if self.n > self.approx_at:
            ids, sims = self._approximate(q, top * (20 if filtered else 8))
        else:
            ids, sims = self._exact(q)
        moments: list[Hit] = []
        for at in range(0, len(ids), CHUNK):  # best first, a chunk at a time, until the filters leave enough
            for h in self._hits(ids[at:at + CHUNK], sims[at:at + CHUNK]):
                if _keep(h, camera) and (since is None or h.when >= since):
                    _add_moment(moments, h)
            if len(moments) >= top:
                break
        return moments[:top]

    # ------------------------------------------------------------ exact and approximate

    def _rows(self, con, after: int = -1):
        d = con.execute("SELECT v.vector_id, v.vector FROM segment_vectors v JOIN runs r USING (run_id) "
                        "WHERE r.encoder_id = ? AND v.vector_id > ? ORDER BY v.vector_id", [self.key, after]).fetchnumpy()
        return np.asarray(d["vector_id"], np.int64), unpack(list(d["vector"]), self.encoder.identity.dim)

    def _exact(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.store.connect(read_only=True) as con:
            ids, vecs = self._rows(con)
        sims = vecs @ q
        order = np.argsort(-sims, kind="stable")
        return ids[order], sims[order]

    def _approximate(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index, ids = self._index()
        sims, rows = index_search(index, q[None, :], min(k, index.ntotal))
        keep = rows[0] >= 0
        return ids[rows[0][keep]], sims[0][keep]

    def _index(self):
        """The saved approximate index, brought up to date (or rebuilt), and its row -> vector_id map."""
        folder = self.store.path.with_suffix(".search")
        stem = folder / hashlib.sha256(self.key.encode()).hexdigest()[:16]
        index_file, ids_file = stem.with_suffix(".faiss"), stem.with_suffix(".ids.npy")
        cached = self._cached(index_file, ids_file)
        with self.store.connect(read_only=True) as con:
            if cached is not None:
                index, ids = cached
                live = self.n
                if len(ids) and live >= (1 - STALE_SHARE) * len(ids):
                    new_ids, new_vecs = self._rows(con, after=int(ids.max()))
                    if len(new_ids):
                        index.add(new_vecs)
                        ids = np.concatenate([ids, new_ids])
                        self._save(index, ids, index_file, ids_file)
                    return index, ids
            ids, vecs = self._rows(con)
        index = build_index(vecs, ANN_FACTORY)
        self._save(index, ids, index_file, ids_file)
        return index, ids

    def _cached(self, index_file: Path, ids_file: Path):
        """The saved index and its id map if they are whole and agree (one vector per id, ids
        increasing, this encoder's dimension), else None and they are rebuilt: it is a cache, and
        a kill between its two renames, a truncated file or garbage must cost a rebuild, not a
        crash or an index whose rows no longer match their ids."""
        if not (index_file.is_file() and ids_file.is_file()):
            return None
        try:
            index, ids = load_index(index_file), np.load(ids_file, allow_pickle=False)
            whole = (ids.ndim == 1 and ids.dtype.kind == "i" and index.ntotal == len(ids)
                     and index.d == self.encoder.identity.dim and bool(np.all(np.diff(ids) > 0)))
        except Exception as e:  # noqa: BLE001 - FAISS raises RuntimeError, numpy ValueError/OSError/EOFError: all mean "rebuild"
            log.warning("%s: search index cache unreadable (%s); rebuilding it", index_file, first_line(e))
            return None
        if not whole:
            log.warning("%s: search index cache does not match its id map; rebuilding it", index_file)
            return None
        return index, ids

    @staticmethod
    def _save(index, ids: np.ndarray, index_file: Path, ids_file: Path) -> None:
        index_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_file.with_name(index_file.name + ".tmp")
        save_index(index, tmp)
        np.save(ids_file.with_name(ids_file.name + ".tmp.npy"), ids)
        tmp.replace(index_file)
        ids_file.with_name(ids_file.name + ".tmp.npy").replace(ids_file)

    # ------------------------------------------------------------ rows to hits

    def _hits(self, ids: np.ndarray, sims: np.ndarray) -> list[Hit]:
        """Hits in the given order; ids no longer in the store (deleted since an index was saved) drop out."""
        if not len(ids):
            return []
        with self.store.connect(read_only=True) as con:
            rows = con.execute(_META.format(", ".join(str(int(i)) for i in ids))).fetchall()
        meta = {r[0]: r for r in rows}
        out = []
        for i, s in zip(ids, sims):
            r = meta.get(int(i))
            if r is None:
                continue
            path = masked(r[3])  # a store written before passwords were masked may still hold one
            camera = camera_name(path, r[4] or None, r[11])
            out.append(Hit(r[1], r[2], path, camera, int(r[5]), float(r[6]), float(r[7]), float(s),
                           None if r[8] is None else float(r[8]), r[9], r[10]))
        return out


SENTENCE = "sentence-transformers:"


def query_encoder(store: ResultStore, spec: dict) -> TextEncoder:
    """The text tower to search ``store`` with: ``spec`` holds ``text_encoder`` (a sentence model)
    or open_clip's ``model``/``pretrained``/``checkpoint``/``device``.  A store whose every run is a
    caption-path run (sentence vectors) gets the packaged MiniLM unless a sentence model is named."""
    text_encoder = _sentence_model(store, spec)
    if text_encoder is not None:
        from ..encoders.text_encoder import SentenceEncoder

        return SentenceEncoder(text_encoder)
    from ..encoders.encoder import ClipEncoder

    es = _clip_spec(store, spec)  # its model is looked up, extra configs included, by ClipEncoder
    return ClipEncoder(es, device=spec.get("device", "auto"), precision=spec.get("precision", "auto"),
                       backend=spec.get("backend", "auto"))


def query_encoder_without_loading(store: ResultStore, spec: dict) -> str | None:
    """What ``query_encoder`` would load, said without loading it where nothing can be missing: an
    open_clip model with random weights (nothing to fetch) or from a checkpoint file that exists.
    None where only loading can tell (hub weights may not be cached, a sentence model may not be
    installed).  For ``flashback review``'s check at start, which would otherwise pay open_clip's
    imports (several CPU-seconds) in a process that never searches."""
    if _sentence_model(store, spec) is not None:
        return None
    es = _clip_spec(store, spec)  # an unnamed checkpoint is refused here, as query_encoder refuses it
    if es.checkpoint is not None:
        es.check_checkpoint()  # loading's own refusal
        return f"open_clip:{es.model} from {es.checkpoint}"
    return f"open_clip:{es.model}@{weights_label(es)} (random weights)" if es.is_random else None


def _sentence_model(store: ResultStore, spec: dict) -> str | None:
    """The sentence model to search ``store`` with, or None for open_clip's text tower: the one
    named, else the packaged MiniLM where every run is a caption-path run."""
    text_encoder = spec.get("text_encoder")
    if text_encoder is None and store.path.exists():
        with store.connect(read_only=True) as con:
            keys = {r[0] for r in con.execute("SELECT DISTINCT encoder_id FROM runs").fetchall()}
        if keys and all(k.startswith(SENTENCE) for k in keys):
            from ..encoders.text_encoder import DEFAULT_TEXT_ENCODER

            text_encoder = DEFAULT_TEXT_ENCODER
    return text_encoder if text_encoder not in (None, "clip") else None


def recorded_encoder(store: ResultStore) -> EncoderIdentity | None:
    """The open_clip encoder the store's footage was scored with (its latest run that kept vectors)."""
    if not store.path.exists() or "segment_vectors" not in store.tables():
        return None
    with store.connect(read_only=True) as con:
        row = con.execute("SELECT r.encoder_id FROM runs r WHERE r.encoder_id LIKE 'open_clip:%' AND EXISTS "
                          "(SELECT 1 FROM segment_vectors v WHERE v.run_id = r.run_id) ORDER BY r.created_at DESC LIMIT 1").fetchone()
    return EncoderIdentity.from_key(row[0]) if row else None


def _clip_spec(store: ResultStore, spec: dict) -> EncoderSpec:
    """What was named (flag, environment, config file), the rest from what the store recorded, the
    rest the defaults.  A store scored with a local checkpoint needs it named: only its hash is kept."""
    recorded = recorded_encoder(store) if spec.get("model") is None else None
    model = spec.get("model") or (recorded.model if recorded else DEFAULT_MODEL)
    checkpoint, pretrained = spec.get("checkpoint"), spec.get("pretrained")
    if checkpoint:
        return EncoderSpec(model=model, pretrained=None, checkpoint=Path(checkpoint))
    if pretrained is None and recorded is not None:
        if recorded.weights.startswith("sha256:"):
            raise UsageError(f"{store.path}: scored with a local checkpoint ({recorded.weights[:19]}…) of {recorded.model}; "
                             "name it with --checkpoint FILE (or checkpoint = in flashback.toml) to search it")
        tag, _, seed = recorded.weights.partition(":")
        if tag == RANDOM_TAG:
            return EncoderSpec(model=model, pretrained=RANDOM_TAG, seed=int(seed or 0))
        pretrained = recorded.weights
    return EncoderSpec(model=model, pretrained=pretrained or DEFAULT_PRETRAINED)


MOMENT_SHARE = 0.9  # a neighbour this close to a moment's best similarity widens it; a weaker one is its tail


def _add_moment(moments: list[Hit], h: Hit) -> None:
    """``h`` joins the moments of its video it overlaps or touches, which become one (its span
    theirs, the rest the best one's, at the best one's place), or it starts a moment of its own.
    Only a neighbour nearly as similar widens a moment (else a long video's every segment would make
    it one moment of the whole video); a weaker overlapping one is dropped, not a second hit."""
    touching = [k for k, m in enumerate(moments)
                if (m.run_id, m.video_id) == (h.run_id, h.video_id) and h.start_s <= m.end_s and h.end_s >= m.start_s]
    if not touching:
        moments.append(h)
        return
    if h.similarity < MOMENT_SHARE * moments[touching[0]].similarity:
        return
    group = [moments[k] for k in touching] + [h]
    first = touching[0]  # moments are kept best first: the earliest is the best
    moments[first] = dataclasses.replace(moments[first], start_s=min(m.start_s for m in group), end_s=max(m.end_s for m in group))
    for k in reversed(touching[1:]):
        del moments[k]


def _keep(h: Hit, camera: str | None) -> bool:
    return camera is None or camera_matches(h.camera, camera)


def hits_json(hits: list[Hit], query: str) -> str:
    return json.dumps({"query": query, "hits": [h.to_dict() for h in hits]}, indent=1)
