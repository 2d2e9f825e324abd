"""LLM caption generation: one prompt, one JSON schema, two engines (vLLM on GPU, llama.cpp on CPU).

The model is asked for N pairs per request, one normal and one anomalous scene each, under a JSON
schema that the engine enforces while decoding (vLLM's structured outputs, llama.cpp's JSON-schema
grammar).  Everything that comes back is still validated, since a grammar does not make a caption
short, non-empty or correctly labelled: each defect is dropped and counted, never fatal.
Category coverage is balanced by rotating two category hints across requests.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from flashback.errors import BuildError

from .grammar import ANOMALOUS, CATEGORY_ALIASES, Caption

MAX_WORDS = 30
MIN_WORDS = 3  # "Burglary" is a label, not a scene
DEFAULT_VLLM_MODEL = "Qwen/Qwen2.5-7B-Instruct"  # any instruct model vLLM serves; 7-8B writes good captions

def _side(categories: list[str]) -> dict:
    return {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": categories},
                       "description": {"type": "string", "minLength": 12, "maxLength": 200}},
        "required": ["category", "description"],
    }


def pair_schema(n: int, categories: list[str] | None = None) -> dict:
    """The decoder is held to this; categories are enums, so the model cannot invent or swap them."""
    anomalous = categories or list(ANOMALOUS)
    return {
        "type": "object",
        "properties": {"pairs": {"type": "array", "minItems": 1, "maxItems": n,
                                 "items": {"type": "object",
                                           "properties": {"normal": _side(["Normal"]), "anomalous": _side(anomalous)},
                                           "required": ["normal", "anomalous"]}}},
        "required": ["pairs"],
    }


SYSTEM = "You write short scene descriptions for a video surveillance dataset. You answer with JSON only."


def user_prompt(n: int, categories: list[str], hint: list[str], domain: str | None) -> str:
    where = f" in this setting: {domain}" if domain else " in everyday public and private places"
    return (
        f"Write {n} pairs of scenes as a fixed security camera would see them{where}. "
        "Each pair has one normal, everyday event and one anomalous event. "
        f"Each description is one plain sentence of at most {MAX_WORDS - 5} words, concrete and visible on camera: "
        "who, doing what, where. No names, no sounds, no thoughts. "
        f"The normal event's category is \"Normal\". The anomalous event's category is one of: {', '.join(categories)}. "
        f"In this batch, prefer these categories: {', '.join(hint)}. "
        'Answer as {"pairs": [{"normal": {"category": "Normal", "description": "..."}, '
        '"anomalous": {"category": "...", "description": "..."}}]}'
    )


@dataclass
class Drops:
    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n

    def to_dict(self) -> dict:
        return dict(sorted(self.counts.items()))


def _category(raw: str, allowed: dict[str, str]) -> str | None:
    key = " ".join(str(raw).replace("_", " ").split()).lower()
    return allowed.get(CATEGORY_ALIASES.get(key, key).lower())


def parse_pairs(text: str, categories: list[str], drops: Drops, provenance: str) -> list[Caption]:
    """Captions from one LLM answer; every defect is counted in ``drops`` under its reason."""
    allowed = {c.lower(): c for c in categories}
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, TypeError, RecursionError):
        drops.add("malformed_json")
        return []
    pairs = doc.get("pairs") if isinstance(doc, dict) else doc
    if not isinstance(pairs, list):
        drops.add("no_pairs_list")
        return []
    out = []
    for k, pair in enumerate(pairs):
        if not isinstance(pair, dict):
            drops.add("pair_not_an_object")
            continue
        for side in ("normal", "anomalous"):
            item = pair.get(side)
            if not isinstance(item, dict) or "description" not in item or "category" not in item:
                drops.add("missing_field")
                continue
            desc = " ".join(str(item["description"]).split()).strip()
            if not desc:
                drops.add("empty_caption")
                continue
            if len(desc.split()) > MAX_WORDS:
                drops.add("overlong_caption")
                continue
            if len(desc.split()) < MIN_WORDS:
                drops.add("too_short")
                continue
            raw_cat = str(item["category"]).strip()
            if side == "normal":
                if raw_cat.lower() != "normal":
                    drops.add("label_category_mismatch")
                    continue
                out.append(Caption(desc, False, "Normal", f"{provenance}:{k}"))
            else:
                cat = _category(raw_cat, allowed)
                if raw_cat.lower() == "normal":
                    drops.add("label_category_mismatch")
                    continue
                if cat is None:
                    drops.add("unknown_category")
                    continue
                out.append(Caption(desc, True, cat, f"{provenance}:{k}"))
    return out


class LLMGenerator:
    """Requests i = 0, 1, 2 ... each with seed (seed + i) and its own category hint; deterministic per engine."""

    def __init__(self, engine, pairs_per_request: int = 8, seed: int = 0, domain: str | None = None,
                 categories: list[str] | None = None):
        self.engine = engine
        self.n = pairs_per_request
        self.seed = seed
        self.domain = domain
        self.categories = categories or list(ANOMALOUS)
        self.drops = Drops()

    def request(self, i: int) -> tuple[list[dict], int]:
        c = self.categories
        hint = [c[(2 * i) % len(c)], c[(2 * i + 1) % len(c)]]
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": user_prompt(self.n, c, hint, self.domain)}]
        return messages, self.seed + i

    def generate_requests(self, first: int, count: int) -> Iterator[Caption]:
        reqs = [self.request(i) for i in range(first, first + count)]
        answers = self.engine.complete([m for m, _ in reqs], [s for _, s in reqs], pair_schema(self.n, self.categories))
        for i, text in zip(range(first, first + count), answers):
            yield from parse_pairs(text, self.categories, self.drops, f"{self.engine.name}:{self.seed}:{i}")


class LlamaCppEngine:
    """llama-cpp-python with a JSON-schema grammar; CPU-friendly.  Extra: pip install 'flashback[llamacpp]'."""

    name = "llamacpp"
    requests_per_call = 1  # sequential on the CPU anyway

    def __init__(self, model_path: str, temperature: float = 0.8, top_p: float = 0.95, max_tokens: int = 512,
                 n_ctx: int = 2048, threads: int | None = None):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BuildError("the llama.cpp generator needs llama-cpp-python: pip install 'flashback[llamacpp]'") from None
        self.llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads, verbose=False, seed=0)
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens

    def complete(self, messages: list[list[dict]], seeds: list[int], schema: dict) -> list[str]:
        out = []
        for msgs, seed in zip(messages, seeds):
            self.llm.set_seed(seed)
            r = self.llm.create_chat_completion(
                messages=msgs, response_format={"type": "json_object", "schema": schema},
                temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=seed,
            )
            out.append(r["choices"][0]["message"]["content"] or "")
        return out


class VllmEngine:
    """vLLM's offline LLM API, all requests of a shard in one batched call.  Extra: pip install 'flashback[llm]'."""

    name = "vllm"
    requests_per_call = 256  # enough for vLLM's continuous batching to fill a GPU

    def __init__(self, model: str = DEFAULT_VLLM_MODEL, temperature: float = 0.9, top_p: float = 0.95,
                 max_tokens: int = 1024, **llm_kwargs):
        try:
            from vllm import LLM
        except ImportError:
            raise BuildError("the vLLM generator needs vllm and a GPU: pip install 'flashback[llm]'") from None
        self.llm = LLM(model=model, **llm_kwargs)
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens

    def _params(self, seed: int, schema: dict):
        from vllm import SamplingParams

        common = dict(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=seed)
        try:  # vLLM >= 0.10: structured outputs
            from vllm.sampling_params import StructuredOutputsParams

            return SamplingParams(structured_outputs=StructuredOutputsParams(json=schema), **common)
        except ImportError:  # older releases: guided decoding
            from vllm.sampling_params import GuidedDecodingParams

            return SamplingParams(guided_decoding=GuidedDecodingParams(json=schema), **common)

    def complete(self, messages: list[list[dict]], seeds: list[int], schema: dict) -> list[str]:
        outputs = self.llm.chat(messages, [self._params(s, schema) for s in seeds], use_tqdm=False)
        return [o.outputs[0].text for o in outputs]
