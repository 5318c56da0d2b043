"""A floor for the classifier figures: logistic regression on 12x12 thumbnails.

    PYTHONPATH=. python benchmarks/classifier_thumbnail_baseline.py --data DIR [--json OUT] [--cv-folds K --group-by RULE]

Each image goes through the classifier's own preprocessing (gray, whole image to 96x96, as the
``cpu`` preset sees it), is area-pooled to 12x12, standardised per feature over the training
set, and fed to scikit-learn's LogisticRegression with class-balanced weights and its default
regularisation (nothing tuned). Trained on train/, scored on val/ (or test/) with the same
metrics as ``evaluate classifier``. It tells how much of a data set's signal is plain
low-resolution layout: on magnetic tiles it beats the from-scratch MemoryMamba (RESULTS.md).
With ``--cv-folds K`` it also reports its group-CV estimate on train/ alone (the same folds and
grouping rule as ``train classifier --cv-folds K --group-by RULE``), the figure to set beside a
network's CV estimate (docs/protocol.md).
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
    p.add_argument("--cv-folds", type=int, default=0, help="also the group-CV estimate on train/ (0: none)")
    p.add_argument("--group-by", default="auto", help="grouping rule for the folds (inference/training/groups.py)")
    p.add_argument("--seed", type=int, default=0, help="fold seed (train classifier's --seed)")
    args = p.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from inference.training.classifier_data import preload, training_split
    from inference.training.classifier_metrics import classification_report, confusion_matrix, format_report

    split = training_split(args.data)
    train = preload(split.train, split.classes, INPUT_SIZE, "gray")
    held = preload(split.val, split.classes, INPUT_SIZE, "gray")
    def fit_predict(x_train, y_train, x_test):
        scaler = StandardScaler().fit(x_train)
        clf = LogisticRegression(max_iter=3000, class_weight="balanced")
        clf.fit(scaler.transform(x_train), y_train)
        return clf.predict(scaler.transform(x_test))

    thumbs = _thumbnails(train.images)
    pred = fit_predict(thumbs, train.labels, _thumbnails(held.images))
    report = classification_report(confusion_matrix(held.labels, pred, len(split.classes)), split.classes)
    print(f"data {split.description}\n")
    print(format_report(report))
    if args.cv_folds:
        from inference.training.groups import assign_groups, group_folds, group_key

        names = [group_key(p, args.data / "train") for p in train.paths]
        groups, rule = assign_groups(names, [split.classes[i] for i in train.labels], args.group_by, args.cv_folds)
        folds = group_folds(train.labels, groups, args.cv_folds, args.seed)
        oof = np.empty(len(train.labels), dtype=np.int64)
        for tr, te in folds:
            oof[te] = fit_predict(thumbs[tr], train.labels[tr], thumbs[te])
        cv = classification_report(confusion_matrix(train.labels, oof, len(split.classes)), split.classes)
        cv.update(rule=rule, groups=len(set(groups)), folds=len(folds))
        print(f"\ngroup CV on train/ ({len(folds)} folds, {len(set(groups))} groups by {rule}): "
              f"accuracy {cv['accuracy']:.4f}, macro F1 {cv['f1']:.4f}")
        report["cv"] = {k: cv[k] for k in ("accuracy", "precision", "recall", "f1", "count", "rule", "groups", "folds")}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"baseline": f"logistic regression on {THUMB}x{THUMB} gray thumbnails of the {INPUT_SIZE}x{INPUT_SIZE} input", **report}
        args.json.write_text(json.dumps(record, indent=2), encoding="utf-8")
        print(f"\nmetrics written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
