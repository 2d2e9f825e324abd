"""The offline caption generator: deterministic, unique, balanced, covering, and large enough."""

from collections import Counter

import pytest

from flashback.errors import UsageError
from memory_builder.grammar import ANOMALOUS, OfflineGenerator, space_size

UCF = {"Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "Road accident", "Robbery",
       "Shooting", "Shoplifting", "Stealing", "Vandalism"}
XD = {"Fighting", "Shooting", "Riot", "Abuse", "Road accident", "Explosion"}  # XD's "car accident" is Road accident
HAZARDS = {"Fire", "Smoke", "Flood", "Fall", "Collapse", "Wrong-way driving", "Trespass"}


def test_deterministic_by_seed_and_position():
    a = [c.text for c in OfflineGenerator(7).generate(2000)]
    assert a == [c.text for c in OfflineGenerator(7).generate(2000)]
    assert a != [c.text for c in OfflineGenerator(8).generate(2000)]
    # a shard starting at 1000 is the same as positions 1000.. of a longer run
    assert [c.text for c in OfflineGenerator(7).generate(500, start=1000)] == [
        c.text for c in OfflineGenerator(7).generate(1500)][1000:]


def test_unique_balanced_and_covering():
    caps = list(OfflineGenerator(0).generate(50_000))
    assert len({c.text for c in caps}) == len(caps)
    assert sum(c.anomalous for c in caps) == 25_000
    counts = Counter(c.category for c in caps if c.anomalous)
    assert set(counts) == set(ANOMALOUS) and UCF | XD | HAZARDS <= set(counts)
    assert max(counts.values()) - min(counts.values()) <= 1  # categories rotate evenly
    assert all(c.category == "Normal" for c in caps if not c.anomalous)
    assert all(5 <= len(c.text.split()) <= 30 for c in caps)


def test_a_million_unique_captions_are_reachable():
    """Counted from the vocabularies, not generated: each label alone holds over a million... or close."""
    normal, anomalous = space_size(False), space_size(True)
    assert normal >= 1_000_000 and anomalous >= 1_000_000
    assert normal + anomalous >= 2_000_000


def test_domain_steers_the_places():
    caps = list(OfflineGenerator(0, domain="loading dock").generate(2000))
    share = sum("loading dock" in c.text for c in caps) / len(caps)
    assert 0.6 < share < 0.8  # 70% of scenes are placed in the domain; the rest keep general places
    night = list(OfflineGenerator(0, domain="parking garage at night").generate(500))
    in_domain = [c.text for c in night if "parking garage at night" in c.text]
    times = (" in the evening", " during the day", " early in the morning", " in the afternoon", " at dusk", " at midday")
    assert in_domain and not any(t in text for text in in_domain for t in times)  # the domain already says when


def test_category_subset_and_unknown_category():
    caps = list(OfflineGenerator(0, categories=["Fighting", "car accident"]).generate(100))
    assert {c.category for c in caps if c.anomalous} == {"Fighting", "Road accident"}
    with pytest.raises(UsageError, match="unknown anomaly categories"):
        OfflineGenerator(0, categories=["Jaywalking"])
