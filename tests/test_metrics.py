"""Metrics on tiny cases whose values are worked out by hand."""

import math

import numpy as np
import pytest

from flashback.eval.metrics import ScoredVideo, compute_metrics


def v(name, labels, scores, cat=None):
    return ScoredVideo(name, cat, np.array(labels, np.int8), np.array(scores, float))


def test_auc_and_ap_by_hand():
    # frames (label, score): (1,.9) (0,.8) (1,.7) (0,.1) -> of 4 pos/neg pairs 3 are ordered: AUC 0.75
    # ranked: .9 hit (P=1), .8 miss, .7 hit (P=2/3): AP = (1 + 2/3) / 2 = 0.8333
    m = compute_metrics([v("a", [1, 0], [0.9, 0.8]), v("b", [1, 0], [0.7, 0.1])])
    assert m.auc == pytest.approx(0.75) and m.ap == pytest.approx(5 / 6)
    assert m.to_dict()["auc"] == 75.0 and m.to_dict()["ap"] == 83.33


def test_anomalous_only_and_per_class():
    videos = [
        v("f1", [0, 1, 1], [0.2, 0.9, 0.8], "Fighting"),  # perfect inside the video
        v("s1", [1, 0, 0], [0.3, 0.5, 0.1], "Shooting"),  # its event scores below a normal frame
        v("n1", [0, 0], [0.4, 0.05], "Normal"),
    ]
    m = compute_metrics(videos)
    assert m.n_videos == 3 and m.n_anomalous_videos == 2 and m.n_frames == 8 and m.positive_frames == 3
    # Fighting + normal: positives .9 .8, negatives .2 .4 .05 -> 1.0
    assert m.per_class_auc["Fighting"] == pytest.approx(1.0)
    # Shooting + normal: positive .3 vs negatives .5 .1 .4 .05 -> beats 2 of 4: 0.5
    assert m.per_class_auc["Shooting"] == pytest.approx(0.5)
    # anomalous videos only: positives .9 .8 .3, negatives .2 .5 .1 -> 3+3+2 = 8 of 9
    assert m.auc_anomalous_videos == pytest.approx(8 / 9)


def test_one_class_only_is_not_a_number_not_a_crash():
    m = compute_metrics([v("n", [0, 0, 0], [0.1, 0.2, 0.3])])
    assert math.isnan(m.auc) and m.to_dict()["auc"] is None
