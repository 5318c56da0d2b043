"""The retrain command's refusal rules against the truth on an independent part (results/verdict.md and
verdict-pooled.md, each written before its runs): per run JSON of ``retraining_loop.py`` / ``lnclasses_command.py``,
the shipped verdict (stored), verdict.md's candidate (below on both held-out figures), verdict-pooled.md's (the
check on every label, stored beside the shipped one where the command computed it), and whether the new version is
truly better or worse than the best simple answer the command named, on the run's independent part.

    PYTHONPATH=. python benchmarks/verdict.py benchmarks/results/verdict/*.json [--json OUT]
    PYTHONPATH=. python benchmarks/verdict.py --rule pooled benchmarks/results/verdict-pooled/*.json [--json OUT]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

EPS = 1e-9


def _ge(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["accuracy"] >= b["accuracy"] - EPS and a["f1"] >= b["f1"] - EPS


def _below_both(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["accuracy"] < b["accuracy"] - EPS and a["f1"] < b["f1"] - EPS


def judge(run: dict[str, Any]) -> dict[str, Any] | None:
    """The run's verdicts and truth; None where the command did not compare (too few labels)."""
    comp = run.get("held_out_comparison", {}).get("simple_answers", {})
    if not comp or "held_out" not in comp:
        return None
    chosen, simple = comp["chosen"], comp["best_simple"]
    held_new, held_simple = comp["held_out"][chosen], comp["held_out"][simple]
    independent = run["simple_answers_independent_val"]
    key = simple if simple in independent else f"thumbnail_{simple}"
    if key not in independent:
        return {"skipped": f"best simple answer {simple!r} not scored on the independent part"}
    new, base = run["independent_val"], independent[key]
    truth = "better" if _ge(new, base) else "worse" if _below_both(new, base) else "mixed"
    row = {"order": run["order"], "per_class": run["per_class"], "seed": run["seed"], "held_out": comp["held_out_images"],
           # the held-out part's verdict: "wins" is the check on every label since ADR 0072
           "shipped_registers": bool(comp.get("held_out_wins", comp["wins"])),
           "below_both_registers": not _below_both(held_new, held_simple),
           "truth": truth, "new": {k: round(new[k], 4) for k in ("accuracy", "f1")},
           "best_simple": {"name": simple, **{k: round(base[k], 4) for k in ("accuracy", "f1")}}}
    pooled = comp.get("pooled")
    if pooled is not None:   # verdict-pooled.md: where the nested check could not be made, the shipped one decides
        row["pooled_registers"] = bool(pooled["wins"]) if "wins" in pooled else row["shipped_registers"]
        row["pooled_made"] = "wins" in pooled
        row["pooled_seconds"] = float(pooled["seconds"])
        row["retrain_seconds"] = float(run["retrain_seconds"])
    return row


def errors(rows: list[dict[str, Any]], rule: str) -> dict[str, int]:
    reg = f"{rule}_registers"
    return {"wrongful_refusals": sum(1 for r in rows if not r[reg] and r["truth"] == "better"),
            "wrongful_registrations": sum(1 for r in rows if r[reg] and r["truth"] == "worse"),
            "refusals": sum(1 for r in rows if not r[reg]),
            "mixed_refused": sum(1 for r in rows if not r[reg] and r["truth"] == "mixed")}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--rule", choices=("below_both", "pooled"), default="below_both",
                    help="the candidate judged: verdict.md's (below on both held-out figures) or verdict-pooled.md's")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from json_report import write_report

    rows, no_compare = [], []
    for path in sorted(args.runs):
        run = json.loads(path.read_text(encoding="utf-8"))
        if "order" not in run:   # not a run's report (this script's own output may lie beside them)
            continue
        got = judge(run)
        if got is None or "skipped" in got:
            no_compare.append(f"{path.name}: {got['skipped'] if got else 'no comparison (too few labels)'}")
            continue
        rows.append({"run": path.stem, **got})
    if args.rule == "pooled" and not all("pooled_registers" in r for r in rows):
        ap.error("--rule pooled: a run's comparison holds no pooled check (run with the code of verdict-pooled.md)")
    for r in rows:
        r["candidate_registers"] = r[f"{args.rule}_registers"]
    report = {"rule": args.rule, "runs": rows, "not_compared": no_compare, "shipped": errors(rows, "shipped"),
              "candidate": errors(rows, "candidate"),
              "truth": {t: sum(1 for r in rows if r["truth"] == t) for t in ("better", "worse", "mixed")}}
    report["adopt"] = (report["candidate"]["wrongful_registrations"] <= report["shipped"]["wrongful_registrations"]
                       and report["candidate"]["wrongful_refusals"] < report["shipped"]["wrongful_refusals"])
    if args.rule == "pooled":   # verdict-pooled.md's third criterion, and verdict.md's rule beside it (information)
        check = float(np.median([r["pooled_seconds"] for r in rows]))
        rest = float(np.median([r["retrain_seconds"] - r["pooled_seconds"] for r in rows]))
        report["cost"] = {"median_check_seconds": round(check, 1), "median_rest_seconds": round(rest, 1),
                          "share_of_rest": round(check / rest, 3), "fell_back": sum(not r["pooled_made"] for r in rows)}
        report["below_both"] = errors(rows, "below_both")
        report["adopt"] = report["adopt"] and check <= 0.5 * rest
    for r in rows:
        flag = "" if r["shipped_registers"] == r["candidate_registers"] else "   <- the rules differ"
        print(f"{r['run']:22s} held out {r['held_out']:3d}  truth {r['truth']:6s}  shipped "
              f"{'registers' if r['shipped_registers'] else 'refuses  '}  candidate "
              f"{'registers' if r['candidate_registers'] else 'refuses  '}  new {r['new']}  simple {r['best_simple']}{flag}")
    for line in no_compare:
        print(f"not compared: {line}")
    print(f"truth: {report['truth']}; shipped {report['shipped']}; candidate ({args.rule}) {report['candidate']}")
    if args.rule == "pooled":
        print(f"cost: {report['cost']}; below on both (information) {report['below_both']}")
    print(f"rule ({'verdict-pooled.md' if args.rule == 'pooled' else 'verdict.md'}): "
          f"{'ADOPT' if report['adopt'] else 'do not adopt'}")
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
