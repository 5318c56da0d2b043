"""Means over seeds of ``retraining_loop.py --json`` files: the retrained version against the simple answers.

    python benchmarks/retraining_loop_summary.py runs/pc*_s*.json

One Markdown row per labelling order and labels-per-class: the new version's independent accuracy / macro F1 (mean ± sd
over the files), the same for each simple answer fitted on the same labels, how often the retrain
command's own held-out check said the version wins (the plain command registers it; else it refuses),
the candidate it chose per file, and the retraining's wall time.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main(files: list[str]) -> int:
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
