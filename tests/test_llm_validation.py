"""What an LLM returns is validated: good pairs become captions, every defect is dropped and counted."""

import json

from memory_builder.llm import Drops, pair_schema, parse_pairs, user_prompt

CATS = ["Fighting", "Road accident", "Robbery"]


def pairs(*items):
    return json.dumps({"pairs": list(items)})


def side(cat, desc):
    return {"category": cat, "description": desc}


def test_good_answer():
    d = Drops()
    caps = parse_pairs(pairs({"normal": side("Normal", "A man walks a dog on a sidewalk."),
                              "anomalous": side("fighting", "Two men punch each other outside a bar")},
                             {"normal": side("normal", "cars wait at a red light"),
                              "anomalous": side("car accident", "a car hits a pole on a wet road")}), CATS, d, "t:0")
    assert [(c.text, c.anomalous, c.category) for c in caps] == [
        ("A man walks a dog on a sidewalk.", False, "Normal"),
        ("Two men punch each other outside a bar", True, "Fighting"),
        ("cars wait at a red light", False, "Normal"),
        ("a car hits a pole on a wet road", True, "Road accident")]
    assert d.to_dict() == {}
    assert caps[1].provenance == "t:0:0"


def test_defects_are_dropped_and_counted():
    d = Drops()
    assert parse_pairs("{not json", CATS, d, "t") == []
    assert parse_pairs('{"answer": 3}', CATS, d, "t") == []
    caps = parse_pairs(pairs(
        {"normal": side("Normal", "people shop here"), "anomalous": side("Robbery", "")},     # empty
        {"normal": side("Fighting", "two men fight"), "anomalous": side("Normal", "a calm street")},  # mismatches
        {"normal": {"description": "x"}, "anomalous": side("Dancing", "people dance wildly")},  # missing field, unknown
        {"normal": side("Normal", " ".join(["word"] * 40)), "anomalous": side("Robbery", "a man grabs a purse")},
        {"normal": side("Normal", "Burglary"), "anomalous": side("Robbery", "a man grabs a purse")},  # a label, not a scene
        "not an object",
    ), CATS, d, "t")
    assert [c.text for c in caps] == ["people shop here", "a man grabs a purse", "a man grabs a purse"]
    assert d.to_dict() == {"empty_caption": 1, "label_category_mismatch": 2, "malformed_json": 1,
                           "missing_field": 1, "no_pairs_list": 1, "overlong_caption": 1, "pair_not_an_object": 1,
                           "too_short": 1, "unknown_category": 1}


def test_prompt_and_schema():
    p = user_prompt(4, CATS, ["Robbery", "Fighting"], "loading dock at night")
    assert "4 pairs" in p and "loading dock at night" in p and "prefer these categories: Robbery, Fighting" in p
    s = pair_schema(4, CATS)
    assert s["properties"]["pairs"]["maxItems"] == 4
    item = s["properties"]["pairs"]["items"]["properties"]
    assert item["normal"]["properties"]["category"]["enum"] == ["Normal"]
    assert item["anomalous"]["properties"]["category"]["enum"] == CATS
    assert s["properties"]["pairs"]["items"]["required"] == ["normal", "anomalous"]
