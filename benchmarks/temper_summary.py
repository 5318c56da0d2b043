"""temper.md's rule over the command runs: per label count the means of base and T, then over every (seed, count)
pair both ran, the mean macro F1 and accuracy differences (T adopted if F1 >= +0.010 and accuracy >= -0.005).

    PYTHONPATH=. python benchmarks/temper_summary.py benchmarks/results/temper/*.json

File names ``{base,T}_pc{10,20,40}_s{seed}.json`` (``benchmarks/temper_lane.sh``); a pair missing one side is named,
not used. With the addendum's ``random_pc80_s{seed}.json`` (``OUT=benchmarks/results/temper benchmarks/lnhead_random.sh``)
it also prints, per seed, label next at 240 with T beside the random order at 480 ("half the labels" on those splits).
"""
from __future__ import annotations

import statistics
import sys

from benchmarks.lnab_summary import _ms
from benchmarks.lnhead_summary import load

F1_GAIN = 0.010
ACC_SLACK = 0.005


def half_the_labels(runs: dict[tuple[str, int], dict[int, dict]]) -> None:
    """Per seed with both: label next at 240 labels with T against the random order at 480, then the means."""
    t, r = runs.get(("T", 40), {}), runs.get(("random", 80), {})
    seeds = sorted(set(t) & set(r))
    if not seeds:
        return
    print("\n| seed | label next at 240, T | random order at 480 |\n|---|---|---|")
    for s in seeds:
        a, b = t[s]["independent_val"], r[s]["independent_val"]
        print(f"| {s} | {a['accuracy']:.3f} / {a['f1']:.3f} | {b['accuracy']:.3f} / {b['f1']:.3f} |")
    mean = statistics.mean
    ta, tf = (mean(t[s]["independent_val"][k] for s in seeds) for k in ("accuracy", "f1"))
    ra, rf = (mean(r[s]["independent_val"][k] for s in seeds) for k in ("accuracy", "f1"))
    at_or_above = sum(1 for s in seeds if t[s]["independent_val"]["accuracy"] >= r[s]["independent_val"]["accuracy"])
    print(f"| **mean** | **{ta:.3f} / {tf:.3f}** | **{ra:.3f} / {rf:.3f}** |\n\nhalf the labels (accuracy at 240 >= at "
          f"480): {'met' if ta >= ra else 'not met'}; at or above in {at_or_above} of {len(seeds)} seeds")


def main(argv: list[str]) -> int:
    runs = load(argv)
    print("| variant | labels | seeds | mean ± sd accuracy | mean ± sd macro F1 | prior's share of free (mean) |")
    print("|---|---|---|---|---|---|")
    for (variant, pc), rs in sorted(runs.items(), key=lambda kv: (-kv[0][1], kv[0][0] != "base")):
        seeds = sorted(rs)
        iv = [rs[s]["independent_val"] for s in seeds]
        free = statistics.mean(rs[s]["card_training"]["pool_prior"]["shares"].get("free", float("nan")) for s in seeds)
        print(f"| {variant} | {pc * 6} | {' '.join(map(str, seeds))} | {_ms([v['accuracy'] for v in iv])} "
              f"| {_ms([v['f1'] for v in iv])} | {free:.3f} |")
    d_acc: list[float] = []
    d_f1: list[float] = []
    for pc in sorted({pc for _, pc in runs}):
        b, t = runs.get(("base", pc), {}), runs.get(("T", pc), {})
        missing = sorted(set(b) ^ set(t))
        if missing:
            print(f"labels {pc * 6}: seeds with one side only, not used: {missing}")
        for s in sorted(set(b) & set(t)):
            d_acc.append(t[s]["independent_val"]["accuracy"] - b[s]["independent_val"]["accuracy"])
            d_f1.append(t[s]["independent_val"]["f1"] - b[s]["independent_val"]["f1"])
    if not d_acc:
        print("no pair")
        return 1
    half_the_labels(runs)
    da, df = statistics.mean(d_acc), statistics.mean(d_f1)
    better = sum(1 for x in d_f1 if x > 0)
    adopted = df >= F1_GAIN and da >= -ACC_SLACK
    print(f"\n{len(d_acc)} pairs: accuracy {da:+.4f}, macro F1 {df:+.4f} (F1 higher in {better}, lower in "
          f"{sum(1 for x in d_f1 if x < 0)}); rule F1 >= +{F1_GAIN} and accuracy >= -{ACC_SLACK}: "
          f"{'met, T adopted' if adopted else 'not met, T not adopted'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
