"""Mean of several network seeds' leave-scene-out rows, candidate against base, by the additions rule.

One network seed per fold swings by a few detections and about ±0.01 IoU (segmenter-scenes-2.md), so a
decision between two recipes can rest on the mean of several seeds' runs of ``segmenter_views_cv.py``:
each view set's pooled IoU, nIoU, Pd, Fa and detections are averaged over the candidate's JSON files and
over the base's, and ``segmenter_cv.wins`` (the rule every segmenter addition is judged by) compares the
two means.

    PYTHONPATH=. python benchmarks/segmenter_seed_mean.py --candidate A.json A2.json --base B.json B2.json \
        [--row "two views: frame + h"] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

KEYS = ("iou", "niou", "pd", "fa", "detected")


def mean_rows(files: list[Path]) -> dict[str, dict[str, float]]:
    """View set -> the mean of its pooled figures over ``files`` (view sets present in every file)."""
    reports = [json.loads(f.read_text(encoding="utf-8"))["rows"] for f in files]
    names = [n for n in reports[0] if all(n in r for r in reports)]
    return {n: {k: sum(float(r[n]["pooled"][k]) for r in reports) / len(reports) for k in KEYS} for n in names}


def compare(candidate: list[Path], base: list[Path]) -> dict[str, Any]:
    from inference.training.segmenter_cv import wins
    cand, ref = mean_rows(candidate), mean_rows(base)
    rows = {n: {"candidate": cand[n], "base": ref[n], "wins": wins({"pooled": cand[n]}, {"pooled": ref[n]})}
            for n in cand if n in ref}
    return {"candidate_files": [str(f) for f in candidate], "base_files": [str(f) for f in base], "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--candidate", type=Path, nargs="+", required=True, help="segmenter_views_cv.py JSON, one per seed")
    p.add_argument("--base", type=Path, nargs="+", required=True)
    p.add_argument("--row", default="two views: frame + h", help="the row the rule reads (marked in the table)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    out = compare(args.candidate, args.base)
    out["rule_row"] = args.row

    def fmt(m: dict[str, float]) -> str:
        return f"{m['iou']:.4f} / {m['niou']:.4f} / {m['pd']:.4f} ({m['detected']:.1f}) / {m['fa']:.2f}"
    print(f"mean of {len(args.candidate)} candidate and {len(args.base)} base run(s): IoU / nIoU / Pd (detected) / Fa")
    print("| view set | candidate | base | candidate wins? |\n|---|---|---|---|")
    for name, r in out["rows"].items():
        mark = "**" if name == args.row else ""
        print(f"| {mark}{name}{mark} | {fmt(r['candidate'])} | {fmt(r['base'])} | {'yes' if r['wins'] else 'no'} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
