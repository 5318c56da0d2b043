"""The retrain command's few-label choice simulated inside ``DATA/train`` only: the decision data of fewtiles.md.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/fewtiles.py --data ../shared/datasets/magnetic_tile \
        --cache /tmp/fewlabel/cache [--per-class 10 20 40 80] [--seeds 0 1 2 3 4] [--json FILE]
    python benchmarks/fewtiles.py --table FILE.json ...     # the markdown table of finished runs

``DATA/val`` is never read. ``DATA/train`` is cut into 5 stratified random parts (fixed, seed 0); seed s
holds part s out as the evaluation pool (about val/'s size and class mix, and like val/ it shares
physical tiles, under other lightings, with the rest). For each count N and seed: N random images of
each class of the other four parts get a label (``fewlabel.draw``, per-class; a class with fewer gives
all it has); the labels are cut 80/20 exactly as the command's export
cuts them (``assign_splits`` on ``class/file``, stratified by class, ``HELD_OUT_SPLIT``); the candidates
are chosen by the command's group CV on the 80 % (``choose_candidate`` over ``repeated_folds``), the best
simple answer by CV too, and both are scored on the 20 % (the refusal check). Then the model the
command would register is scored on the **held-out part** (no label touched it), beside the simple
answers fitted on all the labels. Four ways of doing it (fewtiles.md):

* ``before``: the command as it was: regression C 0.1-100, balanced or label-mix prior, fit on the 80 %;
* ``A``: the same choice, the chosen candidate refitted on all labels (80 % + 20 %);
* ``B``: more candidates (C 0.01 and 0.03, and the Ledoit-Wolf shrinkage discriminant), fit on the 80 %;
* ``A+B``: both;
* ``C``: the command's choice and fit, its prior replaced by the pool's class mix by classify-and-count
  (``classifier_head.pool_prior_head``: M = 200 random unlabelled images of the four label parts);
* ``A+C``: both (for the record);
* ``D`` / ``E``: C, then one / two rounds of self-training on the pool (``classifier_head.self_trained_head``:
  M = 1000 unlabelled images of the four label parts, per class the confident ones, at most as many as its
  labels, join the fit at weight 0.5; then C's prior again; selftrain.md);
* ``C@M``: C with its prior counted on the same M images as D/E (for the record).

The feature vectors come from the ``benchmarks/fewlabel_features.py`` cache.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.export_split import assign_splits  # noqa: E402
from app.services.retraining import HELD_OUT_SPLIT  # noqa: E402
from benchmarks.fewlabel import PARTS, draw, mean_sd  # noqa: E402
from benchmarks.fewlabel_features import matrix, tree  # noqa: E402
from inference.training.classifier_head import (  # noqa: E402
    CV_REPEATS,
    HEAD_C,
    POOL_SAMPLE,
    SELF_TRAIN_POOL,
    choose_candidate,
    fit_candidate,
    light_candidates,
    repeated_folds,
    self_trained_head,
)
from inference.training.groups import assign_groups  # noqa: E402
from inference.training.simple_answers import (  # noqa: E402
    FOLDS,
    SIMPLE_MODELS,
    best_name,
    cross_validated,
    fit_predict,
    group_folds,
    score,
)

SETS = ("texture", "defect", "bank", "defect_bank")
PARTS_OUT = 5  # train/ in this many stratified parts; each seed holds one out as its evaluation pool
WAYS = {  # name -> (C grid, heads, refit on all labels, pool images for the prior (0: none), self-training rounds)
    "before": (HEAD_C, ("lr",), False, 0, 0),
    "A": (HEAD_C, ("lr",), True, 0, 0),
    "B": ((0.01, 0.03, *HEAD_C), ("lr", "lda"), False, 0, 0),
    "A+B": ((0.01, 0.03, *HEAD_C), ("lr", "lda"), True, 0, 0),
    "C": (HEAD_C, ("lr",), False, POOL_SAMPLE, 0),
    "A+C": (HEAD_C, ("lr",), True, POOL_SAMPLE, 0),
    "D": (HEAD_C, ("lr",), False, SELF_TRAIN_POOL, 1),
    "E": (HEAD_C, ("lr",), False, SELF_TRAIN_POOL, 2),
    "C@M": (HEAD_C, ("lr",), False, SELF_TRAIN_POOL, 0),
}


def export_halves(lab: np.ndarray, paths: list[Path], classes: list[str], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labelled indices the export puts in train/ and in val/ (the command's 80/20)."""
    parts = assign_splits({int(i): f"{classes[y[i]]}/{paths[i].name}" for i in lab},
                          {int(i): classes[y[i]] for i in lab}, HELD_OUT_SPLIT)
    return (np.array(sorted(i for i in parts if parts[i] == "train")),
            np.array(sorted(i for i in parts if parts[i] == "val")))


def table(files: list[Path], ways: list[str] | None = None) -> str:
    """The markdown table of finished runs: the ``ways`` columns (default: every way of the first file)."""
    ways = ways or list(json.loads(files[0].read_text(encoding="utf-8"))["ways"])
    lines = ["| data | labels / class | " + " | ".join(ways) + " | thumbnail logreg | thumbnail kNN | majority |",
             "|---|---|" + "---|" * (len(ways) + 3)]
    for file in files:
        d = json.loads(file.read_text(encoding="utf-8"))
        for n, row in d["summary"].items():
            cells = [f"{row[k]['accuracy'][0]:.3f} ± {row[k]['accuracy'][1]:.3f} / {row[k]['f1'][0]:.3f} ± {row[k]['f1'][1]:.3f}"
                     for k in [*ways, "thumbnail_logreg", "thumbnail_knn", "majority"]]
            lines.append(f"| {Path(d['data']).name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["--table"]:  # --table FILE... [--ways W...]
        rest = sys.argv[2:]
        cut = rest.index("--ways") if "--ways" in rest else len(rest)
        print(table([Path(f) for f in rest[:cut]], rest[cut + 1:] or None))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="class-folder tree root; only its train/ is read")
    ap.add_argument("--cache", type=Path, help="per-image feature cache (benchmarks/fewlabel_features.py)")
    ap.add_argument("--per-class", type=int, nargs="+", default=[10, 20, 40, 80])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                    help=f"seed s draws the labels with seed s and scores on part s % {PARTS_OUT} of train/")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    paths, names = tree(args.data / "train")
    classes = sorted(set(names))
    k = len(classes)
    y = np.array([classes.index(n) for n in names])
    t0 = time.monotonic()
    base = {p: matrix(paths, p, "none", args.cache) for s in (*SETS, "thumbnail") for p in PARTS.get(s, (s,))}
    feats = {s: np.concatenate([base[p] for p in PARTS.get(s, (s,))], axis=1) for s in SETS}
    thumb = base["thumbnail"]
    from sklearn.model_selection import StratifiedKFold
    outer = [te for _tr, te in StratifiedKFold(PARTS_OUT, shuffle=True, random_state=0).split(thumb, y)]
    print(f"features of {len(paths)} train images: {time.monotonic() - t0:.0f} s", flush=True)
    runs: list[dict] = []
    for n in args.per_class:
        for seed in args.seeds:
            t1 = time.monotonic()
            rest = outer[seed % PARTS_OUT]
            pool = np.setdiff1d(np.arange(len(y)), rest)
            lab = pool[draw(y[pool], k, n, seed, "per-class")]
            fit_idx, check_idx = export_halves(lab, paths, classes, y)
            yf, yc, yr = y[fit_idx], y[check_idx], y[rest]
            groups, rule = assign_groups([paths[i].name for i in fit_idx], [classes[c] for c in yf], "auto")
            folds = group_folds(yf, groups, FOLDS, seed)
            fold_sets = [folds, *repeated_folds(yf, groups, seed, CV_REPEATS)[1:]]
            # the best simple answer by the same group CV (the command's refusal check compares with it)
            simple_cv = {}
            for m, make in SIMPLE_MODELS.items():
                key = f"thumbnail_{m}" if m != "majority" else "majority"
                def simple(tr: np.ndarray, te: np.ndarray, make=make, x=thumb[fit_idx], yf=yf) -> np.ndarray:
                    return fit_predict(make, x[tr], yf[tr], x[te])
                simple_cv[key] = cross_validated(simple, yf, folds, classes)
            best_simple = best_name(simple_cv)
            bm = best_simple.removeprefix("thumbnail_")
            simple_check = score(yc, fit_predict(SIMPLE_MODELS[bm], thumb[fit_idx], yf, thumb[check_idx]), classes)
            superset = light_candidates({s: {"none": feats[s][fit_idx]} for s in SETS}, WAYS["A+B"][0],
                                        ("none",), ("balanced", "mix"), WAYS["A+B"][1])
            _, cv = choose_candidate(superset, yf, fold_sets, classes)
            out: dict = {"per_class": n, "seed": seed, "labels": int(len(lab)), "fit": int(len(fit_idx)),
                         "check": int(len(check_idx)), "part": int(len(rest)), "groups": rule,
                         "cv_repeats": len(fold_sets), "best_simple": best_simple,
                         "best_simple_check": simple_check.as_dict(), "cv": {kk: v.as_dict() for kk, v in cv.items()}}
            unlabelled = np.setdiff1d(pool, lab)
            order = np.random.default_rng(seed).permutation(unlabelled)  # the pool drawn with the run's seed
            out["unlabelled"] = int(len(unlabelled))
            for way, (cs, heads, refit, prior, rounds) in WAYS.items():
                allowed = light_candidates({s: {"none": feats[s][fit_idx]} for s in SETS}, cs, ("none",),
                                           ("balanced", "mix"), heads)
                chosen = best_name({kk: cv[kk] for kk in allowed})
                cand = allowed[chosen]
                check = score(yc, fit_candidate(cand, yf, k).predict(feats[cand.feature_set][check_idx]), classes)
                final_idx = lab if refit else fit_idx
                final = dataclass_for(cand, feats, final_idx)
                head = fit_candidate(final, y[final_idx], k)
                extra: dict = {}
                if prior:  # the command's own code: the pool's class mix, with self-training first when rounds > 0
                    sample = np.sort(order[:prior])
                    head, done = self_trained_head(head, feats[cand.feature_set][final_idx], y[final_idx], cand.c,
                                                   feats[cand.feature_set][sample], cand.mix, rounds)
                    extra = {"pool": int(len(sample)), "shares": [round(float(q), 4) for q in done["shares"]]}
                    if rounds:
                        truth = y[sample[done["rows"]]]
                        extra |= {"pseudo_labels": done["pseudo_labels"],
                                  "pseudo_correct": [int(((done["classes"] == c) & (truth == c)).sum()) for c in range(k)]}
                pred = head.predict(feats[cand.feature_set][rest])
                out[way] = {"chosen": chosen, "cv": cv[chosen].as_dict(), "check": check.as_dict(),
                            "wins": check.beats_or_ties(simple_check), "part": score(yr, pred, classes).as_dict(), **extra}
            out["simple_part"] = {(f"thumbnail_{m}" if m != "majority" else m):
                                  score(yr, fit_predict(make, thumb[lab], y[lab], thumb[rest]), classes).as_dict()
                                  for m, make in SIMPLE_MODELS.items()}
            out["seconds"] = round(time.monotonic() - t1, 1)
            print(f"{n}/class seed {seed}: " + "; ".join(
                f"{w} {out[w]['chosen']} part {out[w]['part']['accuracy']:.3f}/{out[w]['part']['f1']:.3f}"
                f"{'' if out[w]['wins'] else ' (refused)'}" for w in WAYS)
                + f"; logreg {out['simple_part']['thumbnail_logreg']['accuracy']:.3f}; {out['seconds']} s", flush=True)
            runs.append(out)
    summary = {}
    for n in args.per_class:
        rs = [r for r in runs if r["per_class"] == n]
        row = {w: {m: mean_sd([r[w]["part"][m] for r in rs]) for m in ("accuracy", "f1")} for w in WAYS}
        row |= {key: {m: mean_sd([r["simple_part"][key][m] for r in rs]) for m in ("accuracy", "f1")}
                for key in rs[0]["simple_part"]}
        row["chosen"] = {w: [r[w]["chosen"] for r in rs] for w in WAYS}
        row["refused"] = {w: sum(not r[w]["wins"] for r in rs) for w in WAYS}
        summary[str(n)] = row
        print(f"{n}/class: " + "; ".join(f"{w} {row[w]}" for w in WAYS), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": str(args.data), "seeds": args.seeds, "classes": classes,
                                         "ways": {w: {"C": list(v[0]), "heads": list(v[1]), "refit_on_all": v[2],
                                                      "pool_prior": v[3], "self_train_rounds": v[4]}
                                                  for w, v in WAYS.items()},
                                         "command": " ".join(sys.argv), "summary": summary, "runs": runs}, indent=1),
                             encoding="utf-8")
    return 0


def dataclass_for(cand, feats: dict[str, np.ndarray], idx: np.ndarray):
    """The same candidate (feature set, head, C, prior) on the rows of images ``idx``."""
    import dataclasses

    return dataclasses.replace(cand, views={"none": feats[cand.feature_set][idx]})


if __name__ == "__main__":
    sys.exit(main())
