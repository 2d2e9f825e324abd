"""Issue 32, item 2: the caption path's defaults re-checked on two datasets, with the noise measured.

    python benchmarks/caption_defaults.py [--work DIR] [--out FILE] [--boot N] [--mpnet DIR]

Each row changes one setting of a base and gives, on the UCF-Crime dev half and the XD-Violence
dev subset, frame AUC and AP, the AUC of each of the two folds (caption_levers.py's split), and the
difference to the base with a 95% interval from a paired bootstrap over videos
(caption_encoders.Paired).  The first base is the `captions` preset as shipped (the 1k default
memory in the label template, centred search, alpha 0.95, K 10, lambda 30, sigma 3 s), with every
alternative value; the settings that earlier sessions moved (centring off -> on, lambda 100 -> 30,
sigma 0.5 -> 3 s) are then judged by issue 32's rule: a move holds only if its gain over the value it
replaced clears the interval on UCF dev and does not lose on XD dev, in AUC and in AP.  The newest
move that fails is reverted and the others judged again on that base (``recheck``).  MiniLM, from
caption_encoders.py's vector cache (minutes once cached, most of it the bootstrap); ``--mpnet DIR``
adds all-mpnet-base-v2 on the defaults that hold, at lambda 10-100, since lambda 30 was chosen for
MiniLM's cosine spread.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from caption_auc import ROOT
from caption_encoders import SETS, Cache, Paired, dataset, scorer, vectors
from caption_levers import runner

from flashback.eval.metrics import compute_metrics

# the `captions` preset as it was shipped when issue 32 re-checked it (2026-12-06); what held is
# `flashback.settings.PRESETS["captions"]` and the sentence encoders' lambda now
SHIPPED = {"centre": True, "k": 10, "lam": 30.0, "alpha": 0.95, "sigma_s": 3.0}
# (setting, the value an earlier session moved it from), the newest move first: the defaults the
# rule re-checks (centring came last; sigma and lambda moved together before it)
MOVED = {"centre": False, "lam": 100.0, "sigma_s": 0.5}
# one row per alternative value; the moved settings' old values among them
ALTERNATIVES = {"centre": [False], "sigma_s": [0.5, 1.5, 2.0, 4.0, 6.0], "lam": [10.0, 20.0, 50.0, 100.0],
                "k": [5, 20, 40], "alpha": [1.0, 0.9]}


def rows_for(name: str, folder: Path, fps: float, cache: Cache, boot: int, encoder: str, base: dict, sweep: dict,
             label: str = "shipped") -> list[dict]:
    gt, counts, tracks = dataset(folder, fps)
    run = runner(gt, counts, tracks, fps)
    vecs = vectors(cache, tracks)

    def score(**changed) -> dict:
        s = base | changed
        seg = scorer(vecs, centre=s["centre"], k=s["k"], lam=s["lam"], alpha=s["alpha"])
        return run(seg, sigma_s=s["sigma_s"], keep=True)

    first = score()
    paired = Paired(first["videos"], boot)
    out = []
    for setting, value in [(None, None)] + [(k, v) for k, vs in sweep.items() for v in vs]:
        r = first if setting is None else score(**{setting: value})
        m = compute_metrics(r["videos"]).to_dict()
        row = {"dataset": name, "encoder": encoder, "base": label, "setting": setting or "base", "value": value,
               "auc": round(m["auc"], 2), "ap": round(m["ap"], 2), "fold_auc": [round(f, 2) for f in r["fold_auc"]]}
        if setting is not None:
            row |= paired.delta(r["videos"])
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def verdicts(rows: list[dict], base: dict, moved: dict) -> dict[str, dict]:
    """Issue 32's rule for each moved default: (default - old) must clear its interval on UCF dev
    (the interval of old - default lies wholly below 0, in AUC and in AP) and be >= 0 on XD dev."""
    out = {}
    ref = {r["dataset"]: r for r in rows if r["setting"] == "base"}
    for setting, old in moved.items():
        got = {r["dataset"]: r for r in rows if r["setting"] == setting and r["value"] == old}
        ucf, xd = got["UCF dev"], got["XD dev"]
        clears = ucf["delta_auc_ci95"][1] < 0 and ucf["delta_ap_ci95"][1] < 0
        no_loss = all(xd[m] <= ref["XD dev"][m] for m in ("auc", "ap"))
        out[setting] = {"default": base[setting], "replaced": old, "clears_on_ucf_dev": clears,
                        "no_loss_on_xd_dev": no_loss, "holds": clears and no_loss}
    return out


def recheck(caches: Callable[[], Cache], boot: int) -> tuple[list[dict], list[dict], dict]:
    """Judge the moved defaults on the shipped preset; revert the newest move that does not hold and
    judge the others again on the result (a setting's worth can depend on another: lambda's on
    centring, which changes the spread of the cosines), until every move left holds.  Every pass's
    rows and verdicts, and the defaults that hold."""
    base, moved, rows, judged = dict(SHIPPED), dict(MOVED), [], []
    label = "shipped"
    while moved:
        sweep = ALTERNATIVES if label == "shipped" else {k: [v] for k, v in moved.items()}
        these = [r for name, (folder, fps) in SETS.items()
                 for r in rows_for(name, folder, fps, caches(), boot, "MiniLM", base, sweep, label)]
        v = verdicts(these, base, moved)
        rows += these
        judged.append({"base": label, **v})
        print(json.dumps(judged[-1]), flush=True)
        failed = next((k for k, x in v.items() if not x["holds"]), None)
        if failed is None:
            break
        base[failed] = moved.pop(failed)
        label = ("reverted: " if label == "shipped" else label + ", ") + f"{failed} {base[failed]}"
    return rows, judged, base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "caption_encoders_work")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "caption_defaults.json")
    ap.add_argument("--boot", type=int, default=300, help="bootstrap resamples (300)")
    ap.add_argument("--mpnet", type=Path, help="also all-mpnet-base-v2 (the assembled folder) at other lambdas")
    a = ap.parse_args()
    rows, judged, held = recheck(lambda: Cache(a.work, "minilm", None), a.boot)
    if a.mpnet:
        for name, (folder, fps) in SETS.items():
            rows += rows_for(name, folder, fps, Cache(a.work, "mpnet", str(a.mpnet)), a.boot, "mpnet", held,
                             {"lam": [10.0, 20.0, 50.0, 100.0]}, "the defaults that hold")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"shipped": SHIPPED, "held": held, "rows": rows, "verdicts": judged}, indent=1) + "\n")
    print("| dataset | encoder | base | setting | AUC | AP | fold AUCs | Δ AUC vs its base (95% CI) | Δ AP vs its base (95% CI) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ci = (lambda k: "—" if k not in r else f"[{r[k][0]:+.2f}, {r[k][1]:+.2f}]")  # noqa: E731
        what = "—" if r["setting"] == "base" else f"{r['setting']} {r['value']}"
        print(f"| {r['dataset']} | {r['encoder']} | {r['base']} | {what} | {r['auc']:.2f} | {r['ap']:.2f} | "
              f"{r['fold_auc'][0]:.2f} / {r['fold_auc'][1]:.2f} | {ci('delta_auc_ci95')} | {ci('delta_ap_ci95')} |")
    print(json.dumps(judged, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
