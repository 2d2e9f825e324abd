"""``flashback memory build``: generate -> clean -> embed -> index, sharded and resumable.

Each stage writes its shards into a work folder next to the output (``.NAME.build-<fingerprint>``),
every file through a temporary name and a rename, and a shard counts as done only once its marker
exists.  Killing the build at any moment (SIGKILL included) and running the same command again
skips every finished shard; since each shard depends only on the settings and its index, the
bundle is the same as an uninterrupted build's.  The bundle itself appears atomically
(flashback.memory.bundle.write_bundle); the work folder is removed after a successful build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from flashback.atomic import atomic_write, atomic_write_text
from flashback.checks import FRACTION, NON_NEGATIVE_INT, Range, check_fields, knob, raise_problems
from flashback.encoders.text_encoder import load_sentence_model
from flashback.errors import BuildError
from flashback.memory.bundle import ALPHA_RANGE, BundleSpec, CaptionTable, build_indexes, write_bundle
from flashback.memory.manifest import Manifest
from flashback.memory.templates import TEMPLATES, apply_template

from .clean import DEFAULT_DEDUP_MODEL, DEFAULT_NEAR_DUP_THRESHOLD, Halves, embed_sentences, exact_key, near_duplicate_keep, normalise
from .grammar import Caption, OfflineGenerator
from .quality import centroid_angle, recall_at_10

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)
GENERATORS = ("offline", "llamacpp", "vllm")
TICK = 512  # sentences the near-duplicate model embeds between progress updates: a bar moves every few seconds even on a CPU
EXACT_UP_TO = 100_000  # auto: exact search below this many captions, IVF with 8-bit codes above
ROUNDS = 4  # generation rounds at most, when cleaning leaves a label short of its half
EXHAUSTED = 0.05  # a round whose new captions of the short label are under 5% of what it asked for ends the rounds


@dataclass(frozen=True)
class BuildConfig:
    generator: str = "offline"
    llm: str | None = None
    domain: str | None = None
    categories: tuple[str, ...] | None = None
    size: int = knob(100_000, Range(2, 100_000_000, integer=True), "--size")
    seed: int = knob(0, NON_NEGATIVE_INT, "--seed")
    alpha: float = knob(0.95, ALPHA_RANGE, "--alpha")
    template: str = "label"
    index: str = "auto"
    near_dup_threshold: float = knob(DEFAULT_NEAR_DUP_THRESHOLD, FRACTION, "--near-dup-threshold")  # 0 = off
    dedup_model: str = DEFAULT_DEDUP_MODEL
    shard_size: int = knob(20_000, Range(1, 10_000_000, integer=True), "--shard-size")
    pairs_per_request: int = knob(8, Range(1, 64, integer=True), "--pairs-per-request")
    oversample: float = 1.15  # raw captions generated per caption wanted (duplicates and drops eat some)

    def __post_init__(self) -> None:
        problems = check_fields(self)
        if self.generator not in GENERATORS:
            problems.append(f"--generator {self.generator}: choose one of {', '.join(GENERATORS)}")
        elif self.generator != "offline" and not self.llm:
            problems.append(f"--generator {self.generator} needs --llm MODEL (a GGUF file for llamacpp, a model name or path for vllm)")
        if self.template not in TEMPLATES:
            problems.append(f"--template {self.template!r}: choose one of {', '.join(TEMPLATES)}")
        raise_problems(problems, "memory build")

    def fingerprint(self, encoder_key: str) -> str:
        payload = json.dumps({**dataclasses.asdict(self), "encoder": encoder_key}, sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- atomic shard files


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj))


def _write_captions(path: Path, caps: list[Caption]) -> None:
    atomic_write_text(path, "".join(json.dumps(dataclasses.asdict(c)) + "\n" for c in caps))


def _read_captions(path: Path) -> list[Caption]:
    return [Caption(**json.loads(line)) for line in path.read_text().splitlines() if line]


def _write_npy(path: Path, a: np.ndarray) -> None:
    def w(t):
        with open(t, "wb") as f:
            np.save(f, a, allow_pickle=False)

    atomic_write(path, w)


# ---------------------------------------------------------------- one shard, wherever it is made


class ShardRunner(Protocol):
    """Makes a build's shards elsewhere (a cluster), yielding each as it is finished, in any order."""

    def generate(self, config: BuildConfig, shards: list[tuple[int, int]]) -> Iterator[tuple[int, list[Caption], dict]]:
        """(shard index, captions wanted) -> (shard index, captions, LLM drops)."""
        ...

    def embed(self, shards: list[tuple[int, list[str]]], sentence: str | None) -> Iterator[tuple[int, np.ndarray]]:
        """(shard index, texts) -> (shard index, vectors), by the build's encoder or the ``sentence`` model."""
        ...


def caption_generator(c: BuildConfig, engine=None):
    """The offline grammar, or an LLM generator around ``engine`` (loaded here when not given)."""
    cats = list(c.categories) if c.categories else None
    if c.generator == "offline":
        return OfflineGenerator(c.seed, c.domain, cats)
    from .llm import LlamaCppEngine, LLMGenerator, VllmEngine

    if engine is None:
        engine = LlamaCppEngine(c.llm) if c.generator == "llamacpp" else VllmEngine(c.llm)
    return LLMGenerator(engine, c.pairs_per_request, c.seed, c.domain, cats)


def make_shard(c: BuildConfig, gen, k: int, n: int, made_so_far: Callable[[int], None] = lambda m: None) -> tuple[list[Caption], dict]:
    """Shard ``k``'s captions (``n`` wanted) and what the LLM's answers lost; a function of the
    settings, ``k`` and ``n`` only, so any worker makes the same shard."""
    if c.generator == "offline":
        return list(gen.generate(n, start=k * c.shard_size)), {}
    per_shard = max(1, c.shard_size // (2 * c.pairs_per_request))
    requests = max(1, min(per_shard, math.ceil(n / (2 * c.pairs_per_request))))
    before = Counter(gen.drops.counts)
    made: list[Caption] = []
    step = getattr(gen.engine, "requests_per_call", 1)  # vLLM batches; llama.cpp answers one by one
    for r in range(0, requests, step):  # the bar moves per call, not per shard
        made += gen.generate_requests(k * per_shard + r, min(step, requests - r))
        made_so_far(len(made))
    return made, dict(gen.drops.counts - before)


# ---------------------------------------------------------------- the job


class BuildJob:
    def __init__(self, config: BuildConfig, encoder, out: Path, progress: Progress | None = None, engine=None,
                 runner: ShardRunner | None = None):
        """``runner``: a cluster that makes the generation and embedding shards (``memory_builder.cluster``);
        None: this process makes them."""
        self.cfg = config
        self.encoder = encoder
        self.out = Path(out)
        self.work = self.out.parent / f".{self.out.name}.build-{config.fingerprint(encoder.identity.key)}"
        self.progress = progress or (lambda stage, done, total: None)
        self._engine = engine  # an LLM engine, made lazily (loading one is expensive)
        self.stats: dict = {}
        self.reused: Counter = Counter()  # finished shards found from an earlier, interrupted run
        self.runner = runner
        self._made: set[int] = set()  # generation shards this run made

    def run(self) -> Manifest:
        self.work.mkdir(parents=True, exist_ok=True)
        _write_json(self.work / "config.json", {**dataclasses.asdict(self.cfg), "encoder": self.encoder.identity.key})
        captions = self.captions()
        vectors = self.embed(captions)
        manifest = self.index_and_write(captions, vectors)
        shutil.rmtree(self.work, ignore_errors=True)
        return manifest

    # -------------------------------------------------------- 1. generate

    def _generator(self):
        gen = caption_generator(self.cfg, self._engine)
        self._engine = getattr(gen, "engine", None)
        return gen

    def captions(self) -> list[Caption]:
        """Generate, clean, and cut to ``size``: ``size // 2`` normal captions and the rest anomalous.

        Cleaning removes an unknown share of each label (the grammar's samples collide across
        shards: 345k raw at ``--size 300000`` left 133,740 distinct normal ones), so when a label
        comes up short more is generated, in rounds sized by the yield seen so far, until both
        halves are full, the generator stops giving new captions of that label (under
        ``EXHAUSTED`` of what a round added), or ``ROUNDS`` rounds were made.  Short, both labels
        are cut to the shorter one (the memory stays balanced) and ``short_reason`` says why."""
        c = self.cfg
        done = self.work / "clean.done"
        if done.exists():
            self.reused["clean"] += 1
            self.stats.update(json.loads(done.read_text()))
            return _read_captions(self.work / "clean.jsonl")
        want = Halves(c.size // 2, c.size - c.size // 2)
        wanted, before, last = math.ceil(c.size * c.oversample), None, 0
        for rounds in range(1, ROUNDS + 1):
            raw = self.generate(wanted)
            normal, anomalous, stats = self.clean(raw, wanted)
            have = Halves(len(normal), len(anomalous))
            reason = want.shortfall(have, len(raw), rounds, stats)
            if reason is None or rounds == ROUNDS or (before is not None and have.gain(before, want) < EXHAUSTED * (wanted - last) / 2):
                break
            before, last = have, wanted
            wanted = min(4 * wanted, math.ceil(wanted * want.ratio(have) * 1.1) + 2)  # the yield so far, with a margin
        n_n, n_a = (want.normal, want.anomalous) if reason is None else (min(have),) * 2
        kept = normal[:n_n] + anomalous[:n_a]
        stats.update({"generated": len(raw), "rounds": rounds, "kept": len(kept), "kept_normal": n_n, "kept_anomalous": n_a,
                      "requested": c.size, "short_reason": reason})
        _write_captions(self.work / "clean.jsonl", kept)
        _write_json(done, stats)
        self.stats.update(stats)
        return kept

    def generate(self, wanted: int) -> list[Caption]:
        """Shards of at most ``shard_size`` captions until ``wanted`` are made: a small
        memory asks for what it needs, not a whole shard.  Each shard's count depends only on the
        settings and the shards before it, so a resumed build asks for the same ones.

        With a cluster (``runner``) the full shards, whose count cannot depend on the ones before
        them, are made at once on its workers; the last, partial one after them, as here."""
        c = self.cfg
        gen = None
        caps: list[Caption] = []
        drops: Counter = Counter()
        self.progress("generate", 0, wanted)
        if self.runner is not None:
            full = [k for k in range(wanted // c.shard_size) if not self._gen_files(k)[1].exists()]
            done = (wanted // c.shard_size - len(full)) * c.shard_size
            for k, made, shard_drops in self.runner.generate(c, [(k, c.shard_size) for k in full]):
                self._keep_shard(k, made, shard_drops)
                done += len(made)
                self.progress("generate", min(done, wanted), wanted)
        k = 0
        while len(caps) < wanted:
            shard, meta = self._gen_files(k)
            n = min(c.shard_size, wanted - len(caps))
            if meta.exists():
                if k not in self._made:
                    self.reused["generate"] += 1
            else:
                gen = gen or self._generator()
                made, shard_drops = make_shard(c, gen, k, n, lambda m: self.progress("generate", min(len(caps) + m, wanted), wanted))
                self._keep_shard(k, made, shard_drops)
            caps += _read_captions(shard)
            drops.update(json.loads(meta.read_text())["drops"])
            k += 1
            self.progress("generate", min(len(caps), wanted), wanted)
            if k > 10_000:
                raise BuildError(f"generated {len(caps)} of {wanted} captions in 10000 shards; the generator is stuck")
        self.stats["generated"] = len(caps)
        self.stats["llm_drops"] = dict(sorted(drops.items()))
        return caps

    def _gen_files(self, k: int) -> tuple[Path, Path]:
        """Generation shard ``k``'s captions, and its marker: the shard is done once the marker exists."""
        return self.work / "gen" / f"{k:05d}.jsonl", self.work / "gen" / f"{k:05d}.done"

    def _keep_shard(self, k: int, made: list[Caption], drops: dict) -> None:
        self._made.add(k)  # made by this run: read again by a later round, but not reused from an earlier run
        if not made and not drops:
            raise BuildError(f"{self.cfg.llm}: the LLM returned nothing at all; check the model")
        shard, meta = self._gen_files(k)
        _write_captions(shard, made)
        _write_json(meta, {"count": len(made), "drops": drops})

    # -------------------------------------------------------- 2. clean

    def clean(self, raw: list[Caption], wanted: int) -> tuple[list[Caption], list[Caption], dict]:
        """Normalised, without exact duplicates and (``near_dup_threshold``) near-duplicates: the
        normal captions, the anomalous ones, and the counts of what was dropped."""
        c = self.cfg
        seen, unique = set(), []
        for cap in raw:
            text = normalise(cap.text)
            key = exact_key(text)
            if text and key not in seen:
                seen.add(key)
                unique.append(dataclasses.replace(cap, text=text))
        stats = {"exact_duplicates": len(raw) - len(unique), "near_duplicates": 0, "near_dup_threshold": c.near_dup_threshold,
                 "dedup_model": c.dedup_model if c.near_dup_threshold > 0 else None}
        if c.near_dup_threshold > 0 and len(unique) > 1:
            vecs = self._sentence_vectors([u.text for u in unique], f"neardup-{wanted}")  # one folder per round's captions
            keep = near_duplicate_keep(vecs, c.near_dup_threshold)
            stats["near_duplicates"] = int((~keep).sum())
            unique = [u for u, k in zip(unique, keep) if k]
        stats["after_cleaning"] = len(unique)
        return [u for u in unique if not u.anomalous], [u for u in unique if u.anomalous], stats

    def _sentence_vectors(self, texts: list[str], folder: str) -> np.ndarray:
        model = None

        def embed(part: list[str], progress: Callable[[int], None]) -> np.ndarray:
            nonlocal model
            model = model or load_sentence_model(self.cfg.dedup_model)
            vectors = []
            for i in range(0, len(part), TICK):
                vectors.append(embed_sentences(model, part[i : i + TICK]))
                progress(len(vectors[-1]))
            return np.concatenate(vectors)

        return self._embedded("near-duplicates", folder, texts, embed, sentence=self.cfg.dedup_model)

    def _embedded(self, stage: str, folder: str, items: list[str], embed: Callable[..., np.ndarray],
                  sentence: str | None = None) -> np.ndarray:
        """One embedding stage, a checkpointed file per shard: the shards a killed build finished
        are read back, the others embedded here (``embed(part, progress)``, which tells the bar of
        each batch it finishes: the text tower takes a whole shard, as a GPU wants) or, with a
        cluster, by its actors (``runner.embed``; the same model: the build's encoder, or the
        ``sentence`` model), each written as it arrives, so either kind of build resumes the other."""
        n = self.cfg.shard_size
        path = lambda k: self.work / folder / f"{k:05d}.npy"  # noqa: E731
        shards = [(k, items[start : start + n]) for k, start in enumerate(range(0, len(items), n))]
        todo = [(k, part) for k, part in shards if not path(k).exists()]
        if len(shards) > len(todo):
            self.reused[stage] += len(shards) - len(todo)
        done = len(items) - sum(len(part) for _, part in todo)
        self.progress(stage, done, len(items))
        if self.runner is not None:
            made = self.runner.embed(todo, sentence)
        else:
            made = ((k, embed(part, progress=self._told(stage, done, len(items)))) for k, part in todo)
        for k, vectors in made:
            _write_npy(path(k), vectors)
            done += len(vectors)
            self.progress(stage, done, len(items))
        return np.concatenate([np.load(path(k), allow_pickle=False) for k, _ in shards])

    def _told(self, stage: str, offset: int, total: int) -> Callable[[int], None]:
        """The ``progress`` of a stage's part that starts at row ``offset``: told how many more rows are done."""
        done = offset

        def told(m: int) -> None:
            nonlocal done
            done += m
            self.progress(stage, min(done, total), total)

        return told

    # -------------------------------------------------------- 3. embed

    def embed(self, caps: list[Caption]) -> np.ndarray:
        prompts = [apply_template(self.cfg.template, c.text, c.anomalous, c.category) for c in caps]
        return self._embedded("embed", "embed", prompts, self.encoder.encode_texts)

    # -------------------------------------------------------- 4. index and write

    def factory(self, n_side: int) -> tuple[str, dict]:
        choice = self.cfg.index
        if choice == "auto":
            choice = "flat" if 2 * n_side <= EXACT_UP_TO else "ivf"
        nlist = max(16, min(65536, int(4 * math.sqrt(max(n_side, 1)))))
        if choice == "flat":
            return "Flat", {}
        if choice == "ivf":
            return f"IVF{nlist},SQ8", {"nprobe": min(nlist, 32)}
        if choice == "hnsw":
            return "HNSW32,SQ8", {"efSearch": 64}
        return choice, {}  # a FAISS factory string, as given

    def index_and_write(self, caps: list[Caption], vectors: np.ndarray) -> Manifest:
        table = CaptionTable([c.text for c in caps], [c.anomalous for c in caps], [c.category for c in caps],
                             [c.provenance for c in caps])
        factory, knobs = self.factory(max(table.n_normal, table.n_anomalous))
        self.progress("index", 0, 2)
        indexes = build_indexes(table, vectors, factory)
        for index in indexes.values():
            if "nprobe" in knobs:
                index.nprobe = knobs["nprobe"]
            if "efSearch" in knobs:
                index.hnsw.efSearch = knobs["efSearch"]
        self.progress("index", 2, 2)
        self.stats["index"] = {"factory": factory, **knobs, "recall_at_10": recall_at_10(indexes, table, vectors, self.cfg.alpha)}
        self.stats["centroid_angle_deg"] = {
            "with_template": centroid_angle(vectors, table.anomalous),
            "without_template": centroid_angle(self._untemplated_sample(table), self._sample_labels(table)),
        }
        provenance = {"builder": f"memory build ({self.cfg.generator})", "domain": self.cfg.domain, "seed": self.cfg.seed,
                      "llm": self.cfg.llm, "size_requested": self.cfg.size}
        spec = BundleSpec(self.encoder.identity, self.cfg.alpha, self.cfg.template, self.encoder.logit_scale, factory,
                          provenance, self.stats)
        return write_bundle(self.out, table, vectors, spec, indexes=indexes)

    def _sample_ids(self, table: CaptionTable, per_label: int = 200) -> np.ndarray:
        rng = np.random.default_rng(0)
        ids = []
        for is_anom in (False, True):
            side = np.flatnonzero(table.anomalous == is_anom)
            ids.append(np.sort(rng.choice(side, min(per_label, len(side)), replace=False)))
        return np.concatenate(ids)

    def _sample_labels(self, table: CaptionTable) -> np.ndarray:
        return table.anomalous[self._sample_ids(table)]

    def _untemplated_sample(self, table: CaptionTable) -> np.ndarray:
        ids = self._sample_ids(table)
        return self.encoder.encode_texts([table.texts[i] for i in ids])
