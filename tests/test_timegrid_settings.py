import dataclasses

import numpy as np
import pytest

from flashback.errors import UsageError
from flashback.settings import PRESETS, ScoringSettings, preset
from flashback.video.timegrid import TimeGrid, average_over_covering_segments


def test_default_grid_shares_frames_between_overlapping_segments():
    g = TimeGrid.from_settings(ScoringSettings())
    assert g.step_s == pytest.approx(1 / 16) and g.stride == 8 and g.frames_per_segment == 16
    a, b = set(g.segment_samples(0, 100)), set(g.segment_samples(1, 100))
    assert len(a & b) == 8  # half of each 1-s segment is shared with the next


@pytest.mark.parametrize("n,expected", [(1, 1), (16, 1), (17, 2), (24, 2), (25, 3), (160, 19)])
def test_segment_count_reaches_the_last_sample(n, expected):
    g = TimeGrid.from_settings(ScoringSettings())
    assert g.n_segments(n) == expected
    last = g.segment_samples(expected - 1, n)
    assert last[-1] == n - 1 and len(last) >= 1


def test_fast_preset_is_a_quarter_of_the_encoder_work():
    assert PRESETS["fast"].sample_step_s == pytest.approx(4 * PRESETS["default"].sample_step_s)
    with pytest.raises(UsageError, match="--preset 'turbo'"):
        preset("turbo")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"overlap_s": 1.0}, "overlap"),
        ({"frames_per_segment": 0}, "--frames-per-segment must be a whole number in"),
        ({"top_k": 0}, "--top-k"),
        ({"alpha": 0}, "--alpha must be a number in \\(0, 100\\]"),
        ({"threshold": 1.5}, "--threshold"),
        ({"smoothing_sigma_s": float("nan")}, "--sigma must be a number in \\[0, 3600\\] \\(got nan\\)"),
        ({"segment_s": float("inf")}, "--segment"),
        ({"frame_fit": "stretch"}, "--frame-fit 'stretch': choose one of pad, crop, squash, tiles"),
        ({"frames_per_segment": 10, "overlap_s": 0.25}, "whole number of sampling steps"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(kwargs, match):
    with pytest.raises(UsageError, match=match) as e:
        ScoringSettings(**kwargs)
    assert str(e.value).startswith("settings: ")


def test_overlap_average_at_edges():
    spans = np.array([[0.0, 1.0], [0.5, 1.5], [1.0, 1.8]])
    scores = np.array([0.0, 1.0, 0.5])
    times = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 1.49, 1.5, 1.79, 1.9])
    got = average_over_covering_segments(times, spans, scores)
    np.testing.assert_allclose(got, [0, 0, 0.5, 0.5, 0.75, 0.75, 0.5, 0.5, 0.5])


def test_a_centred_search_is_asked_for_on_either_path():
    """No preset searches the memory centred (retrieval.MemorySearcher; the caption path did until
    its gain failed to clear the noise); --centre on/off overrides any preset."""
    from flashback.cli import build_parser
    from flashback.cli.options import settings_from_args

    parser = build_parser()
    centre = lambda argv, preset: settings_from_args(parser.parse_args(argv), preset).centre  # noqa: E731
    assert centre(["score-captions", "c.json"], "captions") is False
    assert centre(["score-captions", "c.json", "--centre", "on"], "captions") is True
    assert centre(["score-captions", "c.json", "--centre", "off"], "captions") is False
    assert centre(["score", "v.mp4"], "default") is False
    assert centre(["score", "v.mp4", "--centre", "on"], "default") is True
    assert centre(["eval", "--dataset", "ucf-crime", "--captions", "c", "--annotations", "a.txt", "--preset", "fast"], "captions") is False


def test_runs_recorded_before_centring_keep_their_ids():
    """``centre`` enters the run record only when on: a video run stored by an earlier flashback has
    the same settings dict, so its run id, and a re-score replaces it instead of adding a second run."""
    from flashback.store import RunRecord

    plain = ScoringSettings().to_dict()
    assert "centre" not in plain and ScoringSettings(**plain) == ScoringSettings()
    centred = dataclasses.replace(PRESETS["captions"], centre=True)
    assert centred.to_dict()["centre"] is True and ScoringSettings(**centred.to_dict()) == centred
    assert "centre" not in PRESETS["captions"].to_dict()
    before = {"segment_s": 1.0, "overlap_s": 0.5, "frames_per_segment": 16, "top_k": 10, "alpha": 0.95, "logit_scale": 100.0,
              "smoothing_sigma_s": 0.5, "threshold": 0.5, "min_event_s": 1.0, "merge_gap_s": 1.0, "frame_fit": "pad"}
    now = ScoringSettings(alpha=0.95, logit_scale=100.0).to_dict()
    assert RunRecord(now, "m", "", "e", "x").run_id == RunRecord(before, "m", "", "e", "y").run_id
