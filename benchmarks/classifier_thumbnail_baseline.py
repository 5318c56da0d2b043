"""A floor for the classifier figures: logistic regression on 12x12 thumbnails.

    PYTHONPATH=. python benchmarks/classifier_thumbnail_baseline.py --data DIR [--json OUT]

Each image goes through the classifier's own preprocessing (gray, whole image to 96x96, as the
``cpu`` preset sees it), is area-pooled to 12x12, standardised per feature over the training
set, and fed to scikit-learn's LogisticRegression with class-balanced weights and its default
regularisation (nothing tuned). Trained on train/, scored on val/ (or test/) with the same
metrics as ``evaluate classifier``. It tells how much of a data set's signal is plain
low-resolution layout: on magnetic tiles it beats the from-scratch MemoryMamba (RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

INPUT_SIZE = 96
THUMB = 12


def _thumbnails(images):
    import numpy as np

    n, c, s, _ = images.shape
    k = s // THUMB
    x = images.astype(np.float32).reshape(n, c, THUMB, k, THUMB, k).mean(axis=(3, 5)) / 255.0
    return x.reshape(n, -1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="split tree: train/<class>/*, val/<class>/*")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from inference.training.classifier_data import preload, training_split
    from inference.training.classifier_metrics import classification_report, confusion_matrix, format_report

    split = training_split(args.data)
    train = preload(split.train, split.classes, INPUT_SIZE, "gray")
    held = preload(split.val, split.classes, INPUT_SIZE, "gray")
    scaler = StandardScaler().fit(_thumbnails(train.images))
    clf = LogisticRegression(max_iter=3000, class_weight="balanced")
    clf.fit(scaler.transform(_thumbnails(train.images)), train.labels)
    pred = clf.predict(scaler.transform(_thumbnails(held.images)))
    report = classification_report(confusion_matrix(held.labels, pred, len(split.classes)), split.classes)
    print(f"data {split.description}\n")
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"baseline": f"logistic regression on {THUMB}x{THUMB} gray thumbnails of the {INPUT_SIZE}x{INPUT_SIZE} input", **report}
        args.json.write_text(json.dumps(record, indent=2), encoding="utf-8")
        print(f"\nmetrics written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
