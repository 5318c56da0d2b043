"""Means over seeds of lnab's command runs and lnab.md's rule (A against B), printed as Markdown.

    python benchmarks/lnab_summary.py benchmarks/results/lnab/command/*.json

Why a script: the rule is applied by code over the JSON files the runs wrote, not by hand, and only on
seeds where both A and B finished (a pair missing one side is reported, not used).
File names say the variant: ``{base,A,B}_s{seed}.json`` (``lnab_run.sh``).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

F1_MARGIN = 0.02   # A's mean macro F1 must be at least this much above B's
ACC_SLACK = 0.01   # and A's mean accuracy no more than this below B's


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def load(files: list[str]) -> dict[str, dict[int, dict]]:
    """variant -> seed -> the run's JSON."""
    runs: dict[str, dict[int, dict]] = {}
    for f in files:
        variant = Path(f).stem.split("_s")[0]
        run = json.loads(Path(f).read_text(encoding="utf-8"))
        runs.setdefault(variant, {})[int(run["seed"])] = run
    return runs


def main(files: list[str]) -> int:
    runs = load(files)
    print("| variant | seeds | per seed acc / macro F1 | mean ± sd acc | mean ± sd macro F1 | fray / crack / free labels |")
    print("|---|---|---|---|---|---|")
    for v in ("base", "A", "B"):
        rs = runs.get(v, {})
        if not rs:
            continue
        seeds = sorted(rs)
        per = ", ".join(f"{rs[s]['independent_val']['accuracy']:.3f}/{rs[s]['independent_val']['f1']:.3f}" for s in seeds)
        labels = ", ".join(f"{rs[s]['labelled'].get('fray', 0)}/{rs[s]['labelled'].get('crack', 0)}/"
                           f"{rs[s]['labelled'].get('free', 0)}" for s in seeds)
        print(f"| {v} | {' '.join(map(str, seeds))} | {per} | {_ms([rs[s]['independent_val']['accuracy'] for s in seeds])} "
              f"| {_ms([rs[s]['independent_val']['f1'] for s in seeds])} | {labels} |")
    a, b = runs.get("A", {}), runs.get("B", {})
    paired = sorted(set(a) & set(b))
    unpaired = sorted(set(a) ^ set(b))
    if unpaired:
        print(f"\nseeds with only one of A/B finished (not used by the rule): {unpaired}")
    if not paired:
        print("\nno seed with both A and B: the rule cannot be applied")
        return 0
    mean = statistics.mean
    d_acc = mean(a[s]["independent_val"]["accuracy"] for s in paired) - mean(b[s]["independent_val"]["accuracy"] for s in paired)
    d_f1 = mean(a[s]["independent_val"]["f1"] for s in paired) - mean(b[s]["independent_val"]["f1"] for s in paired)
    replace = d_f1 >= F1_MARGIN and d_acc >= -ACC_SLACK
    print(f"\nrule on seeds {paired}: A minus B mean accuracy {d_acc:+.4f}, mean macro F1 {d_f1:+.4f} -> "
          f"{'recommend replacing B by A' if replace else 'keep B'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
