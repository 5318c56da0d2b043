"""The tables and rules of foldermix.md, accmix.md and selectfor.md: today's command (P) against a candidate on the
train-only split (``lnclasses_command.py`` runs named ``{order}_{variant}_s{seed}.json``).

    PYTHONPATH=. python benchmarks/prior_summary.py --rule foldermix benchmarks/results/foldermix/*.json
    PYTHONPATH=. python benchmarks/prior_summary.py --rule accmix benchmarks/results/accmix/*.json
    PYTHONPATH=. python benchmarks/prior_summary.py --rule selectfor benchmarks/results/selectfor/*.json
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

CANDIDATE = {"foldermix": "folder", "accmix": "acc-folder", "selectfor": "p"}
BASE = {"foldermix": "pool", "accmix": "pool", "selectfor": "d"}  # today's command in each study


def adopt(rule: str, d_acc: float, d_f1: float, per_order: dict[str, tuple[float, float]]) -> bool:
    """The rule each results file fixed before its runs (differences candidate - P, means over the pairs)."""
    if rule == "foldermix":
        return d_f1 >= 0.01 and d_acc >= -0.005 and min(f1 for _, f1 in per_order.values()) >= -0.01
    if rule == "selectfor":
        overall = (d_acc >= 0.01 and d_f1 >= -0.005) or (d_f1 >= 0.01 and d_acc >= -0.005)
        return overall and all(acc >= -0.02 and f1 >= -0.01 for acc, f1 in per_order.values())
    overall = d_f1 >= 0.01 and (d_acc >= 0.01 or (d_acc >= -0.005 and d_f1 >= 0.02))
    return overall and all(acc >= -0.02 and f1 >= -0.01 for acc, f1 in per_order.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", choices=tuple(CANDIDATE), required=True)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    cand, base = CANDIDATE[a.rule], BASE[a.rule]
    runs: dict[tuple[str, str, int], tuple[float, float]] = {}
    for p in a.files:
        m = re.match(r"(label-next|per-class)_([a-z-]+)_s(\d+)\.json$", Path(p).name)
        if m:
            v = json.loads(Path(p).read_text())["independent_val"]
            runs[(m[1], m[2], int(m[3]))] = (v["accuracy"], v["f1"])
    pairs = sorted({(o, s) for o, _, s in runs if (o, base, s) in runs and (o, cand, s) in runs})
    print(f"| order | seed | P: acc / F1 | {cand}: acc / F1 | difference: acc / F1 |\n|---|---|---|---|---|")
    for o, s in pairs:
        p, f = runs[(o, base, s)], runs[(o, cand, s)]
        print(f"| {o} | {s} | {p[0]:.3f} / {p[1]:.3f} | {f[0]:.3f} / {f[1]:.3f} | {f[0] - p[0]:+.3f} / {f[1] - p[1]:+.3f} |")

    def values(mix: str, k: int, order: str | None = None) -> list[float]:
        return [runs[(o, mix, s)][k] for o, s in pairs if order in (None, o)]

    def ms(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"

    print(f"\n| order | runs | P: acc / F1 (mean ± sd) | {cand}: acc / F1 (mean ± sd) |\n|---|---|---|---|")
    orders = sorted({o for o, _ in pairs})
    per_order = {}
    for o in orders:
        print(f"| {o} | {len(values(base, 0, o))} | {ms(values(base, 0, o))} / {ms(values(base, 1, o))} "
              f"| {ms(values(cand, 0, o))} / {ms(values(cand, 1, o))} |")
        per_order[o] = tuple(statistics.mean(values(cand, k, o)) - statistics.mean(values(base, k, o)) for k in (0, 1))
    d_acc, d_f1 = (statistics.mean(values(cand, k)) - statistics.mean(values(base, k)) for k in (0, 1))
    print(f"\nall {len(pairs)} pairs: {cand} - P accuracy {d_acc:+.4f}, macro F1 {d_f1:+.4f}; per order "
          + ", ".join(f"{o} {acc:+.4f} / {f1:+.4f}" for o, (acc, f1) in per_order.items()))
    print(f"rule ({a.rule}.md): " + (f"ADOPT {cand}" if adopt(a.rule, d_acc, d_f1, per_order) else f"KEEP P ({base})"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
