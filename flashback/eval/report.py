"""Evaluation reports: JSON for programs, markdown for people, PNG curves for looking at.

Published figures are the ones collected in shared/design/method.md (zero-shot / training-free
methods, full test sets); ours come first so the comparison is one glance.
"""

from __future__ import annotations

import json
from pathlib import Path

from .metrics import Metrics, ScoredVideo, curves

# (UCF-Crime AUC, XD-Violence AP, XD-Violence AUC); None where not published
PUBLISHED = {
    "Flashback (paper)": (87.29, 75.13, 90.54),
    "VADTree": (84.74, 68.85, 90.55),
    "PANDA": (84.89, 70.16, None),
    "EventVAD": (82.03, 64.04, 87.51),
    "LAVAD": (80.28, 62.01, 85.36),
    "LLaVA-1.5": (72.84, 50.26, 79.62),
    "zero-shot CLIP": (53.16, 17.83, 38.21),
}


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(dataset: str, metrics: Metrics, context: dict) -> str:
    m = metrics.to_dict()
    lines = [f"# Flashback evaluation: {dataset}", ""]
    if "@random:" in str(context.get("encoder", "")):
        lines += ["> **Random encoder weights**: these figures measure the plumbing, not detection quality.", ""]
    lines += [f"- {k}: {v}" for k, v in context.items()]
    lines += [f"- videos: {m['n_videos']} ({m['n_anomalous_videos']} anomalous), frames: {m['n_frames']} "
              f"({m['positive_frames']} anomalous)", ""]
    ours = {"ucf-crime": (m["auc"], None, None), "xd-violence": (None, m["ap"], m["auc"])}.get(dataset)
    if ours is None:  # your own cameras: no published figure is on this data, so none is put beside it
        lines += ["| this run | frame AUC | frame AP |", "|---|---|---|", f"| **{dataset}** | {_fmt(m['auc'])} | {_fmt(m['ap'])} |",
                  "", "Published methods report UCF-Crime and XD-Violence only; they are not comparable with these videos."]
    else:
        lines += ["| method | UCF-Crime AUC | XD-Violence AP | XD-Violence AUC |", "|---|---|---|---|"]
        lines.append(f"| **this run** ({dataset}) | {_fmt(ours[0])} | {_fmt(ours[1])} | {_fmt(ours[2])} |")
        for name, (u, xa, xu) in PUBLISHED.items():
            lines.append(f"| {name} | {_fmt(u)} | {_fmt(xa)} | {_fmt(xu)} |")
    lines += ["", f"Frame AUC {_fmt(m['auc'])} · AP {_fmt(m['ap'])} · AUC on anomalous videos only "
              f"{_fmt(m['auc_anomalous_videos'])}", ""]
    if m["per_class_auc"]:
        lines += ["| class (+ all normal videos) | AUC |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(m["per_class_auc"].items(), key=lambda kv: (kv[1] is None, kv[1]))]
    return "\n".join(lines) + "\n"


def plot_curves(videos: list[ScoredVideo], out_dir: Path, title: str, metrics: Metrics | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = curves(videos)
    written = []
    for key, (x, y), xl, yl in (("roc", c.get("roc", (None, None)), "false positive rate", "true positive rate"),
                                 ("pr", c.get("pr", (None, None)), "recall", "precision")):
        if x is None:
            continue
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
        value = None if metrics is None else (metrics.auc if key == "roc" else metrics.ap)
        ax.plot(x, y, lw=1.5, label=None if value is None else f"{'AUC' if key == 'roc' else 'AP'} {value * 100:.2f}")
        if value is not None:
            ax.legend(loc="lower right" if key == "roc" else "upper right")
        if key == "roc":
            ax.plot([0, 1], [0, 1], ls=":", c="grey")
        ax.set(xlabel=xl, ylabel=yl, xlim=(0, 1), ylim=(0, 1.01), title=f"{title}: {key.upper()}")
        ax.grid(alpha=0.3)
        path = out_dir / f"{key}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def write_report(out_dir: Path, dataset: str, metrics: Metrics, videos: list[ScoredVideo], context: dict,
                 per_video: list[dict]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"dataset": dataset, "metrics": metrics.to_dict(), "context": context, "videos": per_video,
           "published": {k: dict(zip(("ucf_auc", "xd_ap", "xd_auc"), v)) for k, v in PUBLISHED.items()}}
    (out_dir / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out_dir / "report.md").write_text(markdown(dataset, metrics, context))
    plots = plot_curves(videos, out_dir, dataset, metrics)
    return {"json": out_dir / "report.json", "markdown": out_dir / "report.md", **{p.stem: p for p in plots}}
