"""A markdown table of classifier recipes: group-CV estimate beside the frozen-test figure.

    PYTHONPATH=. python benchmarks/classifier_cv_summary.py NAME=RUN_DIR_OR_REPORT[,TEST_JSON] ...

Each argument names a recipe and points at what ``train classifier --cv-folds K`` wrote: a model
directory (its card), a run directory (``training/cv/report.json``, also after ``--cv-only``) or
a report file; an optional ``evaluate classifier --json`` file after a comma is the frozen-test
figure. Recipes without a test figure show "not scored" there: under docs/protocol.md only the
chosen recipe's final model meets the test split.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPORT = Path("training") / "cv" / "report.json"


def cv_record(path: Path) -> dict[str, Any]:
    """The CV block from a card, a run directory's report.json, or a report file."""
    if path.is_dir() and (path / "card.json").is_file():
        card = json.loads((path / "card.json").read_text(encoding="utf-8"))
        return dict(card["protocol"]["cross_validation"])
    report = path / REPORT if path.is_dir() else path
    return dict(json.loads(report.read_text(encoding="utf-8")))


def per_class_recall(record: dict[str, Any], classes: list[str] | None = None) -> str:
    cm = record.get("confusion_matrix")
    if not cm:
        return ""
    names = classes or [str(i) for i in range(len(cm))]
    return ", ".join(f"{n} {row[i] / max(1, sum(row)):.2f}" for i, (n, row) in enumerate(zip(names, cm)))


def row(name: str, spec: str) -> str:
    run, _, test_path = spec.partition(",")
    cv = cv_record(Path(run))
    test = json.loads(Path(test_path).read_text(encoding="utf-8")) if test_path else None
    classes = cv.get("classes") or (list(test["per_class"]) if test and isinstance(test.get("per_class"), dict) else None)
    cv_txt = (f"{cv['accuracy']:.3f} / {cv['f1']:.3f} ({cv['folds']} folds, {cv['groups']} groups by {cv['rule']}; "
              f"epoch {cv['chosen_epochs']}, views {cv['chosen_test_time_augmentation']})")
    test_txt = f"{test['accuracy']:.3f} / {test['f1']:.3f} ({test['count']} images)" if test else "not scored"
    return f"| {name} | {cv_txt} | {per_class_recall(cv, classes)} | {test_txt} |"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    print("| recipe | group CV acc / macro F1 (choice) | CV recall per class | frozen test acc / macro F1 |")
    print("|---|---|---|---|")
    for arg in argv:
        name, _, spec = arg.partition("=")
        print(row(name, spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
