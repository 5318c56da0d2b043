"""Learning curves of retraining from few labels against the simple answers fitted on the same labels.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/fewlabel.py --data ../shared/datasets/magnetic_tile \
        --cache /tmp/fewlabel/cache [--per-class 10 20 40 80] [--seeds 0 1 2] [--draw per-class|stream] \
        [--sets texture defect bank defect_bank] [--augment none flips] [--json FILE]
    python benchmarks/fewlabel.py --table FILE.json ...     # the markdown table of finished runs

The protocol of ``benchmarks/retraining_loop.py`` (issue 20), without the station around it so that
every count and seed takes seconds once the features are cached (``benchmarks/fewlabel_features.py``):

* labels are drawn as an inspector gives them: ``per-class`` = N random images of each class of
  ``DATA/train`` (what retraining_loop.py labels; a class with fewer gives all it has), ``stream`` =
  the first N x classes images of ``DATA/train`` in a seeded random order (the class mix of the pool);
* the retrain command's choice is made inside those labels only: every candidate (class-balanced
  logistic regression, ``classifier_head.fit_linear_head``, on one feature set at each C of
  ``HEAD_C``, trained on the labelled images alone or with their flipped views, with a balanced prior
  or the labels' class mix) is scored by
  group-aware cross-validation (``groups.assign_groups`` rule ``auto``, ``group_folds``, averaged over
  ``CV_REPEATS`` fold sets) and the best
  by macro F1, then accuracy, is refitted on all the labels (``classifier_head.choose_candidate``);
* the chosen candidate and the simple answers fitted on the same labels (majority, kNN and logistic
  regression on 12 x 12 thumbnails) are scored on ``DATA/val``, which no label touched;
* every candidate's own val score is written too (``candidates_val``), for the record only: nothing
  is chosen on it; so are the chosen one's confusion matrix and, as an explanation only, its score
  had it been told the pool's true class shares (``chosen_val_oracle_pool_prior``, an oracle).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fewlabel_features import matrix, tree  # noqa: E402
from inference.training.classifier_head import (  # noqa: E402
    AUGMENT_VIEWS,
    CANDIDATE_AUGMENT,
    CV_REPEATS,
    HEAD_C,
    choose_candidate,
    fit_candidate,
    light_candidates,
    repeated_folds,
)
from inference.training.classifier_metrics import confusion_matrix  # noqa: E402
from inference.training.groups import assign_groups  # noqa: E402
from inference.training.simple_answers import SIMPLE_MODELS, fit_predict, score  # noqa: E402

PARTS = {"defect_bank": ("defect", "bank")}  # a feature set that is two cached ones side by side


def draw(y: np.ndarray, k: int, per_class: int, seed: int, how: str) -> np.ndarray:
    """Indices of the labelled images: N random per class, or the first N x k of a random order."""
    rng = np.random.default_rng(seed)
    if how == "stream":
        return np.sort(rng.permutation(len(y))[:per_class * k])
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(k)]))


def mean_sd(values: list[float]) -> list[float]:
    return [round(float(np.mean(values)), 4), round(float(np.std(values)), 4)]


def table(files: list[Path]) -> str:
    """A markdown table (acc / F1, mean ± sd over seeds) of the chosen candidate and the simple answers."""
    cols = ["chosen", "before", "thumbnail_logreg", "thumbnail_knn", "majority"]
    lines = ["| data, draw | labels / class | retrained (chosen by group CV) | before: texture / defect only | "
             "thumbnail logreg | thumbnail kNN | majority |", "|---|---|---|---|---|---|---|"]
    for file in files:
        d = json.loads(file.read_text(encoding="utf-8"))
        for n, row in d["summary"].items():
            runs = [r for r in d["runs"] if str(r["per_class"]) == n]
            row = {**row, "before": {m: mean_sd([before(r)[m] for r in runs]) for m in ("accuracy", "f1")}}
            cells = [f"{row[c]['accuracy'][0]:.3f} ± {row[c]['accuracy'][1]:.3f} / {row[c]['f1'][0]:.3f} ± {row[c]['f1'][1]:.3f}"
                     for c in cols]
            cells[0] = f"**{cells[0]}**"
            lines.append(f"| {Path(d['data']).name}, {d['draw']} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def before(run: dict) -> dict:
    """The val score of what the command chose before ADR 0033 on the same labels and CV: the best of the
    balanced texture and defect regressions (the first of equals)."""
    old = {k: v for k, v in run["cv"].items() if re.match(r"^(texture|defect)_linear_C[0-9.e+-]+$", k)}
    pick = max(old, key=lambda k: (old[k]["f1"], old[k]["accuracy"]))
    return run["candidates_val"][pick]


def main() -> int:
    if sys.argv[1:2] == ["--table"]:
        print(table([Path(f) for f in sys.argv[2:]]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="class-folder tree root with train/ and val/")
    ap.add_argument("--cache", type=Path, help="per-image feature cache (benchmarks/fewlabel_features.py)")
    ap.add_argument("--per-class", type=int, nargs="+", default=[10, 20, 40, 80])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--draw", choices=("per-class", "stream"), default="per-class")
    ap.add_argument("--sets", nargs="+", default=["texture", "defect", "bank", "defect_bank"])
    ap.add_argument("--augment", nargs="+", default=list(CANDIDATE_AUGMENT), choices=("none", "flips"),
                    help="none: the labelled images only; flips: also candidates trained on their flipped views")
    ap.add_argument("--priors", nargs="+", default=["balanced", "mix"], choices=("balanced", "mix"))
    ap.add_argument("--cv-repeats", type=int, default=CV_REPEATS, help="group-CV fold sets averaged per candidate")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    paths, names = tree(args.data / "train")
    val_paths, val_names = tree(args.data / "val")
    classes = sorted(set(names))
    y = np.array([classes.index(n) for n in names])
    y_val = np.array([classes.index(n) for n in val_names])
    t0 = time.monotonic()
    base_sets = sorted({part for s in args.sets for part in PARTS.get(s, (s,))} | {"thumbnail"})
    views = ["none", *AUGMENT_VIEWS] if "flips" in args.augment else ["none"]
    feats = {(s, v): matrix(paths, s, v, args.cache) for s in base_sets for v in (views if s != "thumbnail" else ["none"])}
    val_feats = {s: matrix(val_paths, s, "none", args.cache) for s in base_sets}
    print(f"features: {time.monotonic() - t0:.0f} s", flush=True)

    def stacked(store, s: str, view: str = "none") -> np.ndarray:
        return np.concatenate([store[(p, view)] if isinstance(store, dict) and (p, view) in store else store[p]
                               for p in PARTS.get(s, (s,))], axis=1)

    train_sets = {s: {v: stacked(feats, s, v) for v in views} for s in args.sets}
    val_sets = {s: stacked(val_feats, s) for s in args.sets}
    thumb, thumb_val = feats[("thumbnail", "none")], val_feats["thumbnail"]
    file_names = [p.name for p in paths]
    runs: list[dict] = []
    for n in args.per_class:
        for seed in args.seeds:
            t1 = time.monotonic()
            lab = draw(y, len(classes), n, seed, args.draw)
            yl = y[lab]
            present = sorted(set(yl.tolist()))
            groups, rule = assign_groups([file_names[i] for i in lab], [classes[i] for i in yl], "auto")
            fold_sets = repeated_folds(yl, groups, seed, args.cv_repeats)
            candidates = light_candidates({s: {v: m[lab] for v, m in train_sets[s].items()} for s in args.sets},
                                          HEAD_C, args.augment, args.priors)
            chosen, cv = choose_candidate(candidates, yl, fold_sets, classes)
            out = {"per_class": n, "seed": seed, "labels": int(len(lab)),
                   "counts": {classes[c]: int((yl == c).sum()) for c in present}, "groups": rule,
                   "folds": len(fold_sets[0]), "cv_repeats": len(fold_sets), "chosen": chosen, "cv": {k: v.as_dict() for k, v in cv.items()}}
            val_scores = {}
            for name, cand in candidates.items():
                head = fit_candidate(cand, yl, len(classes))
                val_scores[name] = score(y_val, head.predict(val_sets[cand.feature_set]), classes).as_dict()
            out["chosen_val"] = val_scores[chosen]
            head = fit_candidate(candidates[chosen], yl, len(classes))
            z = val_sets[candidates[chosen].feature_set] @ head.coef.T + head.intercept
            out["chosen_val_confusion"] = confusion_matrix(y_val, np.argmax(z, 1), len(classes)).tolist()
            # explanation only, never a candidate: the chosen fit told the pool's true class shares (an
            # oracle the station does not have), i.e. how much of the gap is the unknown class mix
            pool = np.bincount(y, minlength=len(classes)) / len(y)
            trained = np.full(len(classes), 1.0 / len(classes)) if not candidates[chosen].mix else \
                np.bincount(yl, minlength=len(classes)) / len(yl)
            oracle = np.argmax(z + np.log(pool) - np.log(np.maximum(trained, 1e-9)), 1)
            out["chosen_val_oracle_pool_prior"] = score(y_val, oracle, classes).as_dict()
            out["candidates_val"] = val_scores
            out["simple_val"] = {(f"thumbnail_{m}" if m != "majority" else m):
                                 score(y_val, fit_predict(make, thumb[lab], yl, thumb_val), classes).as_dict()
                                 for m, make in SIMPLE_MODELS.items()}
            out["seconds"] = round(time.monotonic() - t1, 1)
            best_simple = max(out["simple_val"].values(), key=lambda s: (s["f1"], s["accuracy"]))
            print(f"{args.draw} {n}/class seed {seed}: {len(lab)} labels, chose {chosen} (cv {cv[chosen].as_dict()}) "
                  f"-> val {out['chosen_val']}; best simple {best_simple}; {out['seconds']} s", flush=True)
            runs.append(out)
    summary = {}
    for n in args.per_class:
        rs = [r for r in runs if r["per_class"] == n]
        row = {"chosen": {m: mean_sd([r["chosen_val"][m] for r in rs]) for m in ("accuracy", "f1")}}
        for key in rs[0]["simple_val"]:
            row[key] = {m: mean_sd([r["simple_val"][key][m] for r in rs]) for m in ("accuracy", "f1")}
        for key in rs[0]["candidates_val"]:
            row["candidate:" + key] = {m: mean_sd([r["candidates_val"][key][m] for r in rs]) for m in ("accuracy", "f1")}
        row["chosen_names"] = [r["chosen"] for r in rs]
        summary[str(n)] = row
        print(f"{n}/class: chosen {row['chosen']} ({row['chosen_names']}); "
              + "; ".join(f"{k} {row[k]}" for k in rs[0]["simple_val"]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": str(args.data), "draw": args.draw, "seeds": args.seeds,
                                         "sets": args.sets, "augment": args.augment, "priors": args.priors,
                                         "classes": classes, "command": " ".join(sys.argv),
                                         "val_images": int(len(y_val)), "summary": summary, "runs": runs}, indent=1),
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
