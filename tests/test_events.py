import numpy as np
import pytest

from flashback.memory.bundle import CaptionTable
from flashback.scoring.events import find_events, threshold_runs
from flashback.scoring.scoring import Segments
from flashback.settings import ScoringSettings

CAPTIONS = CaptionTable(["calm street", "man walks", "fight", "fire"], [False, False, True, True],
                        ["Normal", "Normal", "Fighting", "Fire"], ["t"] * 4)


def run(scores, fps=10.0, threshold=0.5, min_event_s=0.5, merge_gap_s=0.3):
    scores = np.asarray(scores, float)
    times = np.arange(len(scores)) / fps
    duration = len(scores) / fps
    spans = np.array([[s, min(s + 1.0, duration)] for s in np.arange(0, duration, 0.5)])
    S = len(spans)
    ids = np.tile([2, 0, 3], (S, 1))  # fight, calm street, fire
    sims = np.tile([0.3, 0.2, 0.1], (S, 1))
    weights = np.tile([0.6, 0.3, 0.1], (S, 1))
    anomalous = np.tile([True, False, True], (S, 1))
    segments = Segments(np.arange(S), spans, (weights * anomalous).sum(1), ids, sims, weights, anomalous)
    settings = ScoringSettings(threshold=threshold, min_event_s=min_event_s, merge_gap_s=merge_gap_s)
    return find_events(times, duration, scores, segments, CAPTIONS, settings)


def test_runs():
    assert threshold_runs(np.array([0, 1, 1, 0, 1, 0, 0, 1], bool)) == [(1, 2), (4, 4), (7, 7)]
    assert threshold_runs(np.zeros(3, bool)) == []


def test_event_bounds_peak_and_explanation():
    s = [0] * 10 + [0.6, 0.9, 0.7, 0.8, 0.6, 0.55] + [0] * 10
    (e,) = run(s)
    assert (e.start_frame, e.end_frame, e.peak_frame) == (10, 15, 11)
    assert e.start_s == pytest.approx(1.0) and e.end_s == pytest.approx(1.6) and e.peak_score == pytest.approx(0.9)
    assert e.category == "Fighting"
    ex = e.explanation
    assert ex.anomalous_weight == pytest.approx(0.7) and ex.normal_weight == pytest.approx(0.3)
    assert [c.text for c in ex.captions] == ["fight", "calm street", "fire"]


def test_short_gaps_merge_and_short_runs_drop():
    s = [0.9] * 4 + [0] * 2 + [0.9] * 4 + [0] * 10 + [0.9] * 3 + [0] * 5
    events = run(s, min_event_s=0.5, merge_gap_s=0.3)
    # frames 0-3 and 6-9 merge (gap 0.2 s); 20-22 lasts 0.3 s < 0.5 s and is dropped
    assert [(e.start_frame, e.end_frame) for e in events] == [(0, 9)]
    events = run(s, min_event_s=0.2, merge_gap_s=0.1)
    assert [(e.start_frame, e.end_frame) for e in events] == [(0, 3), (6, 9), (20, 22)]
    assert [e.index for e in events] == [0, 1, 2]


def test_event_running_to_the_end_of_the_video():
    (e,) = run([0] * 5 + [1.0] * 10)
    assert e.end_frame == 14 and e.end_s == pytest.approx(1.5)
