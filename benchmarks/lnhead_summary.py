"""Means over seeds of lnhead's command runs and lnhead.md's rule (H, defect_bank space, against texture).

    python benchmarks/lnhead_summary.py benchmarks/results/lnhead/*.json
    python benchmarks/lnhead_summary.py --base logreg --candidate head benchmarks/results/lnunc/*.json   # lnunc.md

lnunc.md's rule is the same (a candidate against the station, the same margins), on files named by its margin.

Why a script: the rule is applied by code over the JSON files the runs wrote, and only on seeds where both
spaces finished at a budget (a seed missing one side is reported, not used). File names say the run:
``{texture,defect_bank}_pc{20,40}_s{seed}.json`` (``benchmarks/lnhead_lane.sh``).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.lnab_summary import _ms

GAIN_240 = 0.010    # H's mean accuracy at 240 labels must rise by at least this
SLACK = 0.010       # and no mean (F1 at 240; accuracy or F1 at 120) may fall by more than this


def load(files: list[str]) -> dict[tuple[str, int], dict[int, dict]]:
    """(space, labels per class) -> seed -> the run's scores on the scored sessions."""
    runs: dict[tuple[str, int], dict[int, dict]] = {}
    for f in files:
        space, pc, _seed = Path(f).stem.rsplit("_", 2)
        run = json.loads(Path(f).read_text(encoding="utf-8"))
        runs.setdefault((space, int(pc[2:])), {})[int(run["seed"])] = run
    return runs


def paired_delta(runs: dict[tuple[str, int], dict[int, dict]], pc: int, base: str = "texture",
                 cand: str = "defect_bank") -> tuple[list[int], float, float]:
    """Seeds with both ways at ``pc`` and candidate minus base in mean accuracy and mean macro F1 over them."""
    h, t = runs.get((cand, pc), {}), runs.get((base, pc), {})
    seeds = sorted(set(h) & set(t))
    if not seeds:
        return [], float("nan"), float("nan")
    mean = statistics.mean
    d = [mean(h[s]["independent_val"][k] for s in seeds) - mean(t[s]["independent_val"][k] for s in seeds)
         for k in ("accuracy", "f1")]
    return seeds, d[0], d[1]


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="texture")
    ap.add_argument("--candidate", default="defect_bank")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    base, cand = a.base, a.candidate
    runs = load(a.files)
    print("| space | labels | seeds | mean ± sd accuracy | mean ± sd macro F1 | per seed accuracy / F1 | fray / crack / free labels (mean) |")
    print("|---|---|---|---|---|---|---|")
    for (space, pc), rs in sorted(runs.items(), key=lambda kv: (-kv[0][1], kv[0][0] != base)):
        seeds = sorted(rs)
        iv = [rs[s]["independent_val"] for s in seeds]
        per = ", ".join(f"{v['accuracy']:.3f}/{v['f1']:.3f}" for v in iv)
        lab = [statistics.mean(rs[s]["labelled"].get(c, 0) for s in seeds) for c in ("fray", "crack", "free")]
        print(f"| {space} | {pc * 6} | {' '.join(map(str, seeds))} | {_ms([v['accuracy'] for v in iv])} "
              f"| {_ms([v['f1'] for v in iv])} | {per} | {lab[0]:.1f} / {lab[1]:.1f} / {lab[2]:.1f} |")
    s40, a40, f40 = paired_delta(runs, 40, base, cand)
    s20, a20, f20 = paired_delta(runs, 20, base, cand)
    for pc in (40, 20):
        missing = sorted(set(runs.get((cand, pc), {})) ^ set(runs.get((base, pc), {})))
        if missing:
            print(f"\n{pc * 6} labels: seeds with one space only (not used): {missing}")
    if not s40 or not s20:
        print("\nthe rule needs both budgets with both spaces")
        return 0
    adopt = a40 >= GAIN_240 and f40 >= -SLACK and a20 >= -SLACK and f20 >= -SLACK
    print(f"\nrule: 240 labels (seeds {s40}) {cand} minus {base} accuracy {a40:+.4f}, macro F1 {f40:+.4f}; "
          f"120 labels (seeds {s20}) accuracy {a20:+.4f}, macro F1 {f20:+.4f} -> "
          f"{f'adopt {cand}' if adopt else f'keep {base}'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
