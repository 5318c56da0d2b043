"""pu.md's stage 2 rule over the command runs (``benchmarks/pu_lane.sh``): per order the means of base and U, then over
every (seed, order) pair both ran the mean accuracy and macro F1 differences. U is adopted if over all pairs accuracy
>= +0.010 and macro F1 >= -0.005, and in the random order alone accuracy >= -0.005 and macro F1 >= -0.010.

    PYTHONPATH=. python benchmarks/pu_summary.py benchmarks/results/pu/{base,U}_*_s*.json

File names ``{base,U}_{per-class,random}[_pc{N}]_s{seed}.json``; a pair missing one side is named, not used. With
``--curve`` (pu.md's check at other label counts) it prints each order's means and pair differences, no rule; with
``--per-pair``, every pair's figures and what its U run's card says it used.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.lnab_summary import _ms

ALL_ACC_GAIN, ALL_F1_SLACK = 0.010, 0.005
RANDOM_ACC_SLACK, RANDOM_F1_SLACK = 0.005, 0.010


def load(files: list[str]) -> dict[tuple[str, str], dict[int, dict]]:
    """(variant, order) -> seed -> the run's JSON."""
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for f in files:
        variant, order, *rest = Path(f).stem.split("_")   # {variant}_{order}[_pc{N}]_s{seed}
        order = "_".join([order, *rest[:-1]])
        run = json.loads(Path(f).read_text(encoding="utf-8"))
        runs.setdefault((variant, order), {})[int(run["seed"])] = run
    return runs


def deltas(runs: dict[tuple[str, str], dict[int, dict]], order: str) -> list[tuple[int, float, float]]:
    """(seed, U - base accuracy, U - base macro F1) for every seed of ``order`` both ran."""
    b, u = runs.get(("base", order), {}), runs.get(("U", order), {})
    missing = sorted(set(b) ^ set(u))
    if missing:
        print(f"{order}: seeds with one side only, not used: {missing}")
    return [(s, u[s]["independent_val"]["accuracy"] - b[s]["independent_val"]["accuracy"],
             u[s]["independent_val"]["f1"] - b[s]["independent_val"]["f1"]) for s in sorted(set(b) & set(u))]


def in_fit(run: dict) -> str:
    """The dominant class and weight the card records (``-`` where none)."""
    said = run["card_training"].get("pool_prior", {}).get("folder", {}).get("unreviewed_in_fit") or {}
    return f"{said.get('class')} {said.get('weight')}" if said.get("class") else "-"


def head_prior(run: dict) -> str:
    """``mix`` where the group CV chose a head whose biases carry the labels' mix, else ``balanced``."""
    return "mix" if str(run["card_training"]["head"].get("prior", "")).startswith("the labels'") else "balanced"


def main(argv: list[str]) -> int:
    curve, per_pair = "--curve" in argv, "--per-pair" in argv
    runs = load([a for a in argv if a not in ("--curve", "--per-pair")])
    if per_pair:   # each pair: base and U, their difference and what the U run's card says it used
        print("| order | seed | base | U | U − base | unreviewed in the fit | U's head |\n|---|---|---|---|---|---|---|")
        for order in sorted({o for _, o in runs}):
            for s, da, df in deltas(runs, order):
                b, u = runs[("base", order)][s]["independent_val"], runs[("U", order)][s]["independent_val"]
                print(f"| {order} | {s} | {b['accuracy']:.3f} / {b['f1']:.3f} | {u['accuracy']:.3f} / {u['f1']:.3f} "
                      f"| {da:+.3f} / {df:+.3f} | {in_fit(runs[('U', order)][s])} | {head_prior(runs[('U', order)][s])} |")
        return 0
    print("| order | variant | seeds | mean ± sd accuracy | mean ± sd macro F1 | unreviewed in the fit (class, weight) |")
    print("|---|---|---|---|---|---|")
    for (variant, order), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0] != "base")):
        seeds = sorted(rs)
        iv = [rs[s]["independent_val"] for s in seeds]
        used = sorted({in_fit(rs[s]) for s in seeds})
        print(f"| {order} | {variant} | {' '.join(map(str, seeds))} | {_ms([v['accuracy'] for v in iv])} "
              f"| {_ms([v['f1'] for v in iv])} | {', '.join(used)} |")
    if curve:
        for order in sorted({o for _, o in runs}):
            d = deltas(runs, order)
            if d:
                print(f"\n{order}: {len(d)} pairs, accuracy {statistics.mean(x[1] for x in d):+.4f} (higher in "
                      f"{sum(x[1] > 0 for x in d)}, lower in {sum(x[1] < 0 for x in d)}), macro F1 "
                      f"{statistics.mean(x[2] for x in d):+.4f}")
        return 0
    every = []
    verdicts = []
    for order in ("per-class", "random"):
        d = deltas(runs, order)
        every += d
        if d:
            da, df = statistics.mean(x[1] for x in d), statistics.mean(x[2] for x in d)
            print(f"\n{order}: {len(d)} pairs, accuracy {da:+.4f} (higher in {sum(x[1] > 0 for x in d)}), macro F1 "
                  f"{df:+.4f} (higher in {sum(x[2] > 0 for x in d)})")
            if order == "random":
                verdicts.append(da >= -RANDOM_ACC_SLACK and df >= -RANDOM_F1_SLACK)
    if not every:
        print("no pair")
        return 1
    da, df = statistics.mean(x[1] for x in every), statistics.mean(x[2] for x in every)
    adopted = da >= ALL_ACC_GAIN and df >= -ALL_F1_SLACK and all(verdicts) and bool(verdicts)
    print(f"\nall {len(every)} pairs: accuracy {da:+.4f}, macro F1 {df:+.4f}; rule (all: accuracy >= +{ALL_ACC_GAIN}, "
          f"F1 >= -{ALL_F1_SLACK}; random: accuracy >= -{RANDOM_ACC_SLACK}, F1 >= -{RANDOM_F1_SLACK}): "
          f"{'met, U adopted' if adopted else 'not met, U not adopted'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
