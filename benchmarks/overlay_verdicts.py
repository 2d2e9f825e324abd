"""What reviewers' verdicts buy (issue 15): false alarms marked on half the normal dev videos, the
AUC/AP change on the other half, on the caption path of the UCF-Crime dev half.

    python benchmarks/overlay_verdicts.py [--work DIR] [--out FILE]

The shipped caption defaults score every dev video (the real Detector, the default 1k memory, the
packaged MiniLM).  The normal videos are split in two halves by name (alternately).  A reviewer
goes through the events of one half's normal videos, highest peak first, and marks them False
alarm, as the ground truth says they are; each verdict puts that event's segment vectors (at most
16) into the overlay as normal exemplars (``flashback.review.overlays``' rule, through ``Extras``, the same
entries ``score --overlay`` searches).  Then the *other* half's normal videos and every anomalous
video are scored with and without the overlay: frame AUC/AP, false-alarm events on the held-out
normal videos, and anomalous videos still flagged.  Both halves take a turn as the reviewed one.
Caption vectors are cached by content in --work (``caption_levers.Embeddings``): ~10 min on 2 cores
the first time, seconds after.  Writes benchmarks/results/overlay_verdicts.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from caption_auc import FPS, ROOT, dev_data
from caption_levers import Embeddings

from flashback.encoders.text_encoder import SentenceEncoder  # noqa: E402
from flashback.eval.annotations import frame_labels  # noqa: E402
from flashback.eval.metrics import ScoredVideo, compute_metrics  # noqa: E402
from flashback.memory.bundle import NORMAL_CATEGORY  # noqa: E402
from flashback.memory.default_memory import default_memory  # noqa: E402
from flashback.memory.extras import Entry, Extras  # noqa: E402
from flashback.review.overlays import MAX_PER_EVENT  # noqa: E402
from flashback.scoring.pipeline import Detector  # noqa: E402
from flashback.settings import PRESETS  # noqa: E402

VERDICTS = (10, 50, 200)
REVIEW_THRESHOLDS = (0.5, 0.3)  # the shipped event threshold, and a lower one that flags enough normal footage for 200 verdicts
GATES = (None, 0.8, 0.9)  # exemplars compared raw, or only for near-duplicates (retrieval.MemorySearcher._gate)


def exemplars(result, event) -> np.ndarray:
    """The event's segment vectors, at most MAX_PER_EVENT evenly spaced: what a False alarm adds."""
    seg = result.segments
    inside = np.flatnonzero((seg.spans[:, 1] > event.start_s) & (seg.spans[:, 0] < event.end_s))
    pick = inside[np.unique(np.linspace(0, len(inside) - 1, min(len(inside), MAX_PER_EVENT)).round().astype(int))]
    return seg.vectors[pick]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "caption_auc_work")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "overlay_verdicts.json")
    a = ap.parse_args()
    gt, counts, tracks = dev_data()
    whole = Embeddings(a.work)(sorted({x for t in tracks for x in t.texts}), "q-")
    Q = {t.video: np.stack([whole[x] for x in t.texts]).astype(np.float32) for t in tracks}
    encoder = SentenceEncoder()
    memory = default_memory(encoder)
    settings = PRESETS["captions"]
    truth = {t.video: gt.truth_for(t.video) for t in tracks}
    normals = sorted(t.video for t in tracks if not truth[t.video].anomalous)
    half = {v: i % 2 for i, v in enumerate(normals)}

    def score(det: Detector, videos: list) -> dict:
        return {t.video: det.score_caption_track(t, FPS, counts.get(t.video), vectors=Q[t.video]) for t in videos}

    def measure(results: dict) -> dict:
        scored = [ScoredVideo(v, truth[v].category, frame_labels(truth[v], len(r.scores)), r.scores) for v, r in results.items()]
        m = compute_metrics(scored).to_dict()
        normal = [r for v, r in results.items() if not truth[v].anomalous]
        anomalous = [r for v, r in results.items() if truth[v].anomalous]
        return {"auc": round(m["auc"], 2), "ap": round(m["ap"], 2), "false_alarm_events": sum(len(r.events) for r in normal),
                "anomalous_videos_flagged": f"{sum(bool(r.events) for r in anomalous)}/{len(anomalous)}"}

    rows = []
    for review_threshold in REVIEW_THRESHOLDS:
        reviewing = dataclasses.replace(settings, threshold=review_threshold)
        flagged = score(Detector(memory, encoder, reviewing), [t for t in tracks if not truth[t.video].anomalous])
        base = score(Detector(memory, encoder, settings), tracks)
        for reviewed in (0, 1):
            held_out = [t for t in tracks if truth[t.video].anomalous or half[t.video] != reviewed]
            before = measure({t.video: base[t.video] for t in held_out})
            events = sorted(((e.peak_score, v, e) for v in normals if half[v] == reviewed for e in flagged[v].events),
                            key=lambda x: -x[0])
            for n in VERDICTS:
                chosen = events[:n]
                vecs = [x for x in (exemplars(flagged[v], e) for _, v, e in chosen) if len(x)]
                if not vecs or (n > len(events) and n != VERDICTS[0] and len(events) < n // 2):
                    continue
                v = np.concatenate(vecs)
                entries = [Entry("false alarm (benchmark)", False, NORMAL_CATEGORY, "{}", None, exemplar=True)] * len(v)
                reviewed_normals = [t for t in tracks if not truth[t.video].anomalous and half[t.video] == reviewed]
                own_before = sum(len(base[t.video].events) for t in reviewed_normals)
                for gate in GATES:
                    det = Detector(memory, encoder, settings, overlays=Extras(entries, v))
                    det.searcher.exemplar_gate = gate
                    after = measure(score(det, held_out))
                    own_after = sum(len(r.events) for r in score(det, reviewed_normals).values())
                    rows.append({"review_threshold": review_threshold, "reviewed_half": "AB"[reviewed], "verdicts_asked": n,
                                 "verdicts_given": len(chosen), "exemplars": len(v), "gate": gate, "before": before,
                                 "after": after, "own_false_alarm_events": [own_before, own_after],
                                 "delta_auc": round(after["auc"] - before["auc"], 2),
                                 "delta_ap": round(after["ap"] - before["ap"], 2)})
                    print(rows[-1], file=sys.stderr, flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"normal_videos": len(normals), "rows": rows}, indent=1) + "\n")
    print("| review threshold | gate | reviewed half | verdicts | exemplars | held-out AUC before → after | AP before → after | "
          "false-alarm events on held-out normals | anomalous videos flagged | false alarms on the reviewed videos |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, f = r["before"], r["after"]
        print(f"| {r['review_threshold']} | {r['gate'] or 'none'} | {r['reviewed_half']} | {r['verdicts_given']} of {r['verdicts_asked']} | {r['exemplars']} | "
              f"{b['auc']:.2f} → {f['auc']:.2f} ({r['delta_auc']:+.2f}) | {b['ap']:.2f} → {f['ap']:.2f} ({r['delta_ap']:+.2f}) | "
              f"{b['false_alarm_events']} → {f['false_alarm_events']} | {b['anomalous_videos_flagged']} → {f['anomalous_videos_flagged']} | "
              f"{r['own_false_alarm_events'][0]} → {r['own_false_alarm_events'][1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
