"""Means over seeds of ``retraining_loop.py --json`` files: the retrained version against the simple answers.

    python benchmarks/retraining_loop_summary.py [--per-run] runs/pc*_s*.json

One Markdown row per labelling order and labels-per-class: the new version's independent accuracy / macro F1 (mean ± sd
over the files), the same for each simple answer fitted on the same labels, how often the retrain
command's own held-out check said the version wins (the plain command registers it; else it refuses),
the candidate it chose per file, and the retraining's wall time. ``--per-run``: one row per file instead,
with the labels per class it got, the classes the command left out, the best simple answer by accuracy
and by macro F1, and whether the new version is above every simple answer on both.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def per_run(files: list[str]) -> int:
    print("| order | labels / class | seed | labels given per class | left out | new version acc / F1 | best simple acc | "
          "best simple F1 | above every simple answer (acc, F1) | command's verdict | chosen | retrain wall s |")
    print("|---" * 12 + "|")
    rows = [json.loads(Path(f).read_text(encoding="utf-8")) for f in files]
    for r in sorted(rows, key=lambda r: (r.get("order", "per-class"), r["per_class"], r["seed"] is None, r["seed"])):
        new, simple = r["independent_val"], r["simple_answers_independent_val"]
        acc_name = max(simple, key=lambda n: simple[n]["accuracy"])
        f1_name = max(simple, key=lambda n: simple[n]["f1"])
        above = (all(new["accuracy"] > v["accuracy"] for v in simple.values()),
                 all(new["f1"] > v["f1"] for v in simple.values()))
        check = r["held_out_comparison"].get("simple_answers", {})
        given = ", ".join(f"{k} {v}" for k, v in r["labelled"].items())
        print(f"| {r.get('order', 'per-class')} | {r['per_class']} | {r['seed']} | {given} | "
              f"{', '.join(new.get('classes_left_out') or []) or '—'} | {new['accuracy']:.3f} / {new['f1']:.3f} | "
              f"{simple[acc_name]['accuracy']:.3f} ({acc_name}) | {simple[f1_name]['f1']:.3f} ({f1_name}) | "
              f"{'yes' if above[0] else 'no'}, {'yes' if above[1] else 'no'} | "
              f"{'wins: registers' if check.get('wins') else 'loses: refuses'} | {check.get('chosen', '?')} | "
              f"{r['retrain_seconds']:.0f} |")
    return 0


def main(files: list[str]) -> int:
    if files and files[0] == "--per-run":
        return per_run(files[1:])
    runs: dict[tuple[str, int], list[dict]] = {}
    for f in files:
        run = json.loads(Path(f).read_text(encoding="utf-8"))
        runs.setdefault((run.get("order", "per-class"), run["per_class"]), []).append(run)
    names = sorted({k for rs in runs.values() for r in rs for k in r["simple_answers_independent_val"]})
    print("| order | labels / class | seeds | new version acc / F1 | " + " | ".join(f"{n} acc / F1" for n in names)
          + " | command's verdict: wins | chosen | retrain wall s |")
    print("|---" * (len(names) + 7) + "|")
    for (order, per_class), rs in sorted(runs.items()):
        rs = sorted(rs, key=lambda r: (r["seed"] is None, r["seed"]))
        cells = [f"{_ms([r['independent_val']['accuracy'] for r in rs])} / {_ms([r['independent_val']['f1'] for r in rs])}"]
        for n in names:
            cells.append(f"{_ms([r['simple_answers_independent_val'][n]['accuracy'] for r in rs])} / "
                         f"{_ms([r['simple_answers_independent_val'][n]['f1'] for r in rs])}")
        wins = [bool(r["held_out_comparison"].get("simple_answers", {}).get("wins")) for r in rs]
        chosen = [r["held_out_comparison"].get("simple_answers", {}).get("chosen", "?") for r in rs]
        cells += [f"{sum(wins)} of {len(wins)}", ", ".join(chosen), _ms([r["retrain_seconds"] for r in rs])]
        print(f"| {order} | {per_class} | {', '.join(str(r['seed']) for r in rs)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
