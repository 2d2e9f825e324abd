"""``flashback memory build --ray``: a build's shards made on a Ray cluster.

Generation shards are tasks (the offline grammar) or calls on actors that hold the LLM (one per
GPU); embedding shards are calls on actors that hold the text model, the build's encoder or the
near-duplicate model.  Every shard is a function of the settings and its index
(``job.make_shard``), so the cluster makes the same shards a local build does, and the driver
writes each one into the same work folder as it arrives: a killed build resumes either way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import ray
from ray.exceptions import RayError, RayTaskError

from flashback.cluster.connect import ActorPlan, Cluster, task_failure
from flashback.encoders.backends import Runtime
from flashback.encoders.encoder_registry import EncoderSpec
from flashback.errors import BuildError, ClusterError, first_line

from .grammar import Caption
from .job import BuildConfig, caption_generator, make_shard


@ray.remote(num_cpus=1, max_retries=2)
def _grammar_shard(c: BuildConfig, k: int, n: int) -> tuple[int, list[Caption], dict]:
    return (k, *make_shard(c, caption_generator(c), k, n))


@ray.remote(max_restarts=2, max_task_retries=2)
class _Generator:
    """An LLM held once; each call makes one shard."""

    def __init__(self, c: BuildConfig):
        self.c, self.gen = c, caption_generator(c)

    def shard(self, k: int, n: int) -> tuple[int, list[Caption], dict]:
        return (k, *make_shard(self.c, self.gen, k, n))


@ray.remote(max_restarts=2, max_task_retries=2)
class _Embedder:
    """A text model held once: the build's open_clip encoder, or a sentence-transformers model."""

    def __init__(self, spec: EncoderSpec, device: str, runtime: Runtime, sentence: str | None):
        if sentence is not None:
            from flashback.encoders.text_encoder import load_sentence_model

            from .clean import embed_sentences

            model = load_sentence_model(sentence)
            self.embed = lambda texts: embed_sentences(model, texts)
        else:
            from flashback.encoders.encoder import ClipEncoder

            self.embed = ClipEncoder(spec, device=device, precision=runtime.precision, backend=runtime.backend).encode_texts

    def shard(self, k: int, texts: list[str]) -> tuple[int, np.ndarray]:
        return k, self.embed(texts)


class RayShards:
    """A ``job.ShardRunner`` on a cluster: actors made when a stage first needs them."""

    def __init__(self, cluster: Cluster, spec: EncoderSpec, runtime: Runtime = Runtime(), actors: int | None = None,
                 gpus_per_actor: float = 1.0):
        self.spec, self.runtime = spec, runtime
        self.plan = ActorPlan.for_cluster(cluster, actors, gpus_per_actor, cpus_per=2)
        if self.plan.cpus > cluster.cpus:
            raise ClusterError(f"{cluster.describe()}: {self.plan.n} actor(s) need more CPUs than it has; ask for fewer --actors")

    def _on_actors(self, cls, args: tuple, shards: list[tuple]) -> Iterator:
        """Each shard's ``shard`` call, in turn on the stage's actors: no more actors than shards
        (each loads a model, which is not free)."""
        actors = [cls.options(**self.plan.options, scheduling_strategy="SPREAD").remote(*args)
                  for _ in range(min(self.plan.n, len(shards)))]
        turns = itertools.cycle(actors)
        return _as_finished([next(turns).shard.remote(*shard) for shard in shards], actors)

    def generate(self, c: BuildConfig, shards: list[tuple[int, int]]) -> Iterator[tuple[int, list[Caption], dict]]:
        if not shards:
            return iter(())
        if c.generator == "offline":
            return _as_finished([_grammar_shard.remote(c, k, n) for k, n in shards])
        return self._on_actors(_Generator, (c,), shards)

    def embed(self, shards: list[tuple[int, list[str]]], sentence: str | None) -> Iterator[tuple[int, np.ndarray]]:
        if not shards:
            return iter(())
        return self._on_actors(_Embedder, (self.spec, self.plan.device, self.runtime, sentence), shards)


def _as_finished(refs: list, actors: list = ()) -> Iterator:
    """Each result as soon as it is ready; a shard that fails ends the build with its reason (the
    shards finished before it are kept, and the same command resumes).  The stage's actors go
    at its end, so the next stage's have the resources."""
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(ready[0])
            except RayTaskError as e:
                what, ours = task_failure(e)
                raise BuildError(what if ours else f"a shard failed on the cluster ({what})") from None
            except RayError as e:
                raise BuildError(f"a shard was lost on the cluster ({first_line(e)}); run the same command again to resume") from None
    finally:
        for ref in pending:  # Ctrl-C or a failure: nothing is left running for this build
            try:
                ray.cancel(ref, force=not actors)  # Ray force-cancels tasks, not actor calls
            except (RayError, TypeError, ValueError):
                pass
        for a in actors:
            ray.kill(a)
