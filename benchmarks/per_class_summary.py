"""Per-class means over runs of the retrain command: precision, recall, F1 and support on the scored images, and the
labels each class was given. What pu.md's "Why" and the closing note's rare-class recalls read (session 42).

    PYTHONPATH=. python benchmarks/per_class_summary.py RUN.json ...

Reads ``independent_val.per_class`` and ``labelled`` of ``lnclasses_command.py`` or ``retraining_loop.py`` JSON files.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def main(argv: list[str]) -> int:
    rows: dict[str, list[tuple[float, float, float, float, float]]] = defaultdict(list)
    for f in argv:
        run = json.loads(Path(f).read_text(encoding="utf-8"))
        labelled = run.get("labelled") or {}
        for name, v in run["independent_val"]["per_class"].items():
            rows[name].append((v["precision"], v["recall"], v["f1"], v["support"], labelled.get(name, 0)))
    print(f"{len(argv)} run(s)\n\n| class | precision | recall | F1 | scored images | labels given |\n|---|---|---|---|---|---|")
    for name, vals in sorted(rows.items()):
        n = len(vals)
        p, r, f1, sup, lab = (sum(v[i] for v in vals) / n for i in range(5))
        print(f"| {name} | {p:.2f} | {r:.2f} | {f1:.2f} | {sup:.0f} | {lab:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
