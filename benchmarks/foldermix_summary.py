"""foldermix.md's table and rule: P (--class-mix pool) against F (--class-mix folder) on the train-only split.

    PYTHONPATH=. python benchmarks/foldermix_summary.py benchmarks/results/foldermix/*.json
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path


def main(paths: list[str]) -> int:
    runs: dict[tuple[str, str, int], tuple[float, float]] = {}
    for p in paths:
        m = re.match(r"(label-next|per-class)_(pool|folder)_s(\d+)\.json$", Path(p).name)
        if not m:
            continue
        v = json.loads(Path(p).read_text())["independent_val"]
        runs[(m[1], m[2], int(m[3]))] = (v["accuracy"], v["f1"])
    pairs = sorted({(o, s) for o, _, s in runs if (o, "pool", s) in runs and (o, "folder", s) in runs})
    print("| order | seed | P: acc / F1 | F: acc / F1 | F − P: acc / F1 |\n|---|---|---|---|---|")
    for o, s in pairs:
        p, f = runs[(o, "pool", s)], runs[(o, "folder", s)]
        print(f"| {o} | {s} | {p[0]:.3f} / {p[1]:.3f} | {f[0]:.3f} / {f[1]:.3f} | {f[0] - p[0]:+.3f} / {f[1] - p[1]:+.3f} |")

    def mean(mix: str, k: int, order: str | None = None) -> float:
        return statistics.mean(runs[(o, mix, s)][k] for o, s in pairs if order in (None, o))

    def sd(mix: str, k: int, order: str) -> float:
        xs = [runs[(o, mix, s)][k] for o, s in pairs if o == order]
        return statistics.stdev(xs) if len(xs) > 1 else 0.0

    print("\n| order | runs | P: acc / F1 (mean ± sd) | F: acc / F1 (mean ± sd) |\n|---|---|---|---|")
    orders = sorted({o for o, _ in pairs})
    for o in orders:
        n = sum(1 for oo, _ in pairs if oo == o)
        print(f"| {o} | {n} | {mean('pool', 0, o):.3f} ± {sd('pool', 0, o):.3f} / {mean('pool', 1, o):.3f} ± {sd('pool', 1, o):.3f} "
              f"| {mean('folder', 0, o):.3f} ± {sd('folder', 0, o):.3f} / {mean('folder', 1, o):.3f} ± {sd('folder', 1, o):.3f} |")
    d_acc, d_f1 = mean("folder", 0) - mean("pool", 0), mean("folder", 1) - mean("pool", 1)
    worst = min(mean("folder", 1, o) - mean("pool", 1, o) for o in orders)
    adopt = d_f1 >= 0.01 and d_acc >= -0.005 and worst >= -0.01
    print(f"\nall {len(pairs)} pairs: F − P accuracy {d_acc:+.4f}, macro F1 {d_f1:+.4f}; worst order's F1 {worst:+.4f}")
    print("rule: adopt F if F1 >= +0.01, accuracy >= -0.005, and no order's F1 below -0.01 -> "
          + ("ADOPT F (folder)" if adopt else "KEEP P (pool)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
