"""The table and rule of provenance.md: the retrain command with the "label next" labels stored as chosen (P)
against the same labels stored without their source (base), pairs by seed and labels per class.

    PYTHONPATH=. python benchmarks/provenance_summary.py benchmarks/results/provenance/*.json
    PYTHONPATH=. python benchmarks/provenance_summary.py --information benchmarks/results/provenance/val/*.json

Runs are ``lnclasses_command.py`` JSON files named ``label-next_{base|P}_pc{N}_s{seed}.json``, or ``val_run.sh``'s on
the independent val, ``magnetic_tile_label-next[_base]_pc{N}_s{seed}.json`` (no tag: P; ``--information``: no rule). Besides the rule's
figures, each row gives the share of ``free`` in the written head's prior and how many runs beat every simple
answer fitted on the same labels (accuracy and macro F1 on the scored sessions), as information.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

NAME = re.compile(r"label-next_(?:(base|P)_)?pc(\d+)_s(\d+)\.json$")


def figures(d: dict) -> tuple[float, float, float, bool, float, float]:
    """(accuracy, macro F1, the prior's share of free, above every simple answer on both, and the thumbnail
    regression's accuracy and macro F1 on the same labels)."""
    ind = d["independent_val"]
    shares = (d.get("card_training") or {}).get("pool_prior", {}).get("shares", {})
    simple = d["simple_answers_independent_val"].values()
    above = all(ind["accuracy"] > s["accuracy"] and ind["f1"] > s["f1"] for s in simple)
    thumb = d["simple_answers_independent_val"]["thumbnail_logreg"]
    return (float(ind["accuracy"]), float(ind["f1"]), float(shares.get("free", float("nan"))), above,
            float(thumb["accuracy"]), float(thumb["f1"]))


def adopt(d_acc: float, d_f1: float) -> bool:
    """provenance.md's rule, fixed before the runs: mean macro F1 +0.010 or more, mean accuracy -0.005 or more."""
    return d_f1 >= 0.010 and d_acc >= -0.005


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--information", action="store_true", help="print the table only (the val scoring, after the rule)")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    runs: dict[tuple[str, int, int], tuple[float, float, float, bool, float, float]] = {}
    for p in a.files:
        m = NAME.search(Path(p).name)
        if m:
            runs[(m[1] or "P", int(m[2]), int(m[3]))] = figures(json.loads(Path(p).read_text(encoding="utf-8")))
    pairs = sorted({(n, s) for v, n, s in runs if v == "P" and ("base", n, s) in runs})
    if not pairs:
        raise SystemExit("no pair of base and P runs")
    print("| labels per class | pairs | base accuracy / macro F1 | P accuracy / macro F1 | difference | F1 better in "
          "| share of free in the prior, base / P | above every simple answer, base / P "
          "| thumbnail regression, same labels |")
    print("|---|---|---|---|---|---|---|---|---|")
    d_acc_all: list[float] = []
    d_f1_all: list[float] = []
    for n in sorted({n for n, _ in pairs}):
        ps = [(runs[("base", n, s)], runs[("P", n, s)]) for nn, s in pairs if nn == n]
        mean = statistics.fmean
        d_acc = [p[0] - b[0] for b, p in ps]
        d_f1 = [p[1] - b[1] for b, p in ps]
        d_acc_all += d_acc
        d_f1_all += d_f1
        print(f"| {n} | {len(ps)} | {mean(b[0] for b, _ in ps):.3f} / {mean(b[1] for b, _ in ps):.3f} "
              f"| {mean(p[0] for _, p in ps):.3f} / {mean(p[1] for _, p in ps):.3f} "
              f"| {mean(d_acc):+.3f} / {mean(d_f1):+.3f} | {sum(x > 0 for x in d_f1)} of {len(ps)} "
              f"| {mean(b[2] for b, _ in ps):.3f} / {mean(p[2] for _, p in ps):.3f} "
              f"| {sum(b[3] for b, _ in ps)} / {sum(p[3] for _, p in ps)} of {len(ps)} "
              f"| {mean(p[4] for _, p in ps):.3f} / {mean(p[5] for _, p in ps):.3f} |")
    d_acc_m, d_f1_m = statistics.fmean(d_acc_all), statistics.fmean(d_f1_all)
    print(f"\nall {len(pairs)} pairs: accuracy {d_acc_m:+.4f}, macro F1 {d_f1_m:+.4f} "
          f"(F1 better in {sum(x > 0 for x in d_f1_all)}, worse in {sum(x < 0 for x in d_f1_all)})")
    if not a.information:
        print("rule (provenance.md): " + ("ADOPT P" if adopt(d_acc_m, d_f1_m) else "NOT ADOPTED (base stays)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
