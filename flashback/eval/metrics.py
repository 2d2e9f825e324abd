"""Frame-level detection metrics in the field's protocol, computed by scikit-learn.

All videos' frames are concatenated before computing ROC-AUC (UCF-Crime's protocol) and average
precision (XD-Violence's).  Also: AUC over anomalous videos only (does the score find the event
inside the video, not just the anomalous video?) and per-class AUC (one class's videos plus every
normal video), which tells which categories the memory handles worst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ScoredVideo:
    video: str
    category: str | None
    labels: np.ndarray  # per frame, 0/1
    scores: np.ndarray  # per frame

    @property
    def anomalous(self) -> bool:
        return bool(self.labels.any())


@dataclass
class Metrics:
    auc: float
    ap: float
    auc_anomalous_videos: float
    per_class_auc: dict[str, float] = field(default_factory=dict)
    n_videos: int = 0
    n_anomalous_videos: int = 0
    n_frames: int = 0
    positive_frames: int = 0

    def to_dict(self) -> dict:
        clean = lambda x: None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x * 100, 2)  # noqa: E731
        return {"auc": clean(self.auc), "ap": clean(self.ap), "auc_anomalous_videos": clean(self.auc_anomalous_videos),
                "per_class_auc": {k: clean(v) for k, v in self.per_class_auc.items()},
                "n_videos": self.n_videos, "n_anomalous_videos": self.n_anomalous_videos,
                "n_frames": self.n_frames, "positive_frames": self.positive_frames}


# scikit-learn is imported where it is used: it takes most of a second, and every command would
# pay it (the CLI's parser imports this module) while only evaluation needs it

def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def _ap(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if y.sum() > 0 else float("nan")


def concat(videos: list[ScoredVideo]) -> tuple[np.ndarray, np.ndarray]:
    if not videos:
        return np.zeros(0, np.int8), np.zeros(0)
    return np.concatenate([v.labels for v in videos]), np.concatenate([v.scores for v in videos])


def compute_metrics(videos: list[ScoredVideo]) -> Metrics:
    y, s = concat(videos)
    anomalous = [v for v in videos if v.anomalous]
    normal = [v for v in videos if not v.anomalous]
    per_class = {}
    for cat in sorted({v.category for v in anomalous if v.category}):
        yc, sc = concat([v for v in anomalous if v.category == cat] + normal)
        per_class[cat] = _auc(yc, sc)
    ya, sa = concat(anomalous)
    return Metrics(
        auc=_auc(y, s), ap=_ap(y, s), auc_anomalous_videos=_auc(ya, sa), per_class_auc=per_class,
        n_videos=len(videos), n_anomalous_videos=len(anomalous), n_frames=int(len(y)), positive_frames=int(y.sum()),
    )


def curves(videos: list[ScoredVideo]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    y, s = concat(videos)
    if not 0 < y.sum() < len(y):
        return {}
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    return {"roc": (fpr, tpr), "pr": (recall, precision)}
