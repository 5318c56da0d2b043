"""Which class-mix estimate suits which labelling order: a diagnostic on runs the retrain command already
made on ``lnclasses.split``'s train-only splits (their ``labelled_files``), nothing chosen (session 19,
benchmarks/results/prior-diagnostic.md).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/prior_diagnostic.py benchmarks/results/thin/label-next_k2_pc*_s*.json \\
        benchmarks/results/refit/*_d_s*.json benchmarks/results/selectfor/*_d_s*.json

For each run: the run's labelled images, the ``defect_bank`` regression with the C the run's card chose
(class-balanced, fitted on all its labels; no flips), its out-of-fold predictions by group folds of
capture sessions, and the scored part's accuracy and macro F1 under the head with each prior: ``acc``
(the command's folder mix by adjusted classify-and-count, ADR 0045), ``cc`` (the same folder mix by
plain classify-and-count), ``labels`` (the labels' own mix), ``balanced``, ``em`` (the folder mix with the unlabelled images' share by EM on the head's posteriors,
Saerens et al. 2002) and ``true`` (the scored part's
real mix: an oracle). It shows how far each estimate's share of ``free`` is from the real one. The
command itself also weighs flips, other feature sets and the refit; this isolates the prior.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Tiles:
    """``magnetic_tile/train`` as the diagnostics read it: the files, class names, each file's class index, its
    row by "class/name" (a run's ``labelled_files``), its capture session and its ``defect_bank`` features."""
    paths: list[Path]
    classes: list[str]
    y: np.ndarray
    rel: dict[str, int]
    sess: np.ndarray
    x: np.ndarray


def tiles(data: Path, cache: Path) -> Tiles:
    """The tile table, the features read from ``cache`` when it exists, else computed and saved there."""
    from benchmarks.label_next import tree
    from inference.imageio import read_image
    from inference.texture_features import image_defect_bank

    paths, names = tree(data)
    classes = sorted(set(names))
    if cache.exists():
        x = np.load(cache)
    else:
        x = np.stack([image_defect_bank(read_image(q, "gray")) for q in paths]).astype(np.float32)
        np.save(cache, x)
    return Tiles(paths, classes, np.array([classes.index(n) for n in names]),
                 {f"{q.parent.name}/{q.name}": i for i, q in enumerate(paths)},
                 np.array([q.name.split("_")[0] for q in paths]), x)


def arguments(argv: list[str] | None, doc: str, runs_help: str) -> argparse.Namespace:
    """The diagnostics' command line: run JSON files, the data folder and the feature cache."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("runs", nargs="+", help=runs_help)
    p.add_argument("--data", type=Path, default=Path("/work/shared/datasets/magnetic_tile/train"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/prior_diagnostic_defect_bank.npy"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "lnclasses_command.py JSON files")
    warnings.filterwarnings("ignore")
    from sklearn.metrics import f1_score

    from benchmarks.lnclasses import split
    from inference.training.classifier_head import (
        adjusted_shares,
        fit_linear_head,
        folder_shares,
        pool_shares,
        with_prior,
    )
    from inference.training.groups import group_folds

    t = tiles(args.data, args.cache)
    paths, classes, y, rel, sess, x = t.paths, t.classes, t.y, t.rel, t.sess, t.x
    k, free = len(classes), classes.index("free")
    res: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {}
    for f in args.runs:
        d = json.loads(Path(f).read_text())
        scored = split("magnetic_tile", paths, int(d["seed"]))
        sc = np.flatnonzero(scored)
        lab = np.array([rel[r] for r in d["labelled_files"]])
        unl = np.setdiff1d(np.flatnonzero(~scored), lab)
        c = float(d["card_training"]["head"].get("C") or 10.0)
        oof = np.zeros(len(lab), int)
        for tr, te in group_folds(y[lab], list(sess[lab]), 5, 0):
            oof[te] = fit_linear_head(x[lab[tr]], y[lab[tr]], k, c).predict(x[lab[te]])
        head = fit_linear_head(x[lab], y[lab], k, c)
        sample = np.random.default_rng(0).permutation(unl)[:200]
        counts = np.bincount(y[lab], minlength=k)
        qs = {"acc": folder_shares(adjusted_shares(pool_shares(head, x[sample]), y[lab], oof, len(sample)), counts, len(unl)),
              "cc": folder_shares(pool_shares(head, x[sample]), counts, len(unl)),
              "labels": (counts + 1) / (counts + 1).sum(), "balanced": np.full(k, 1 / k),
              "true": np.bincount(y[sc], minlength=k) / len(sc)}
        z = x[unl] @ head.coef.T + head.intercept  # EM (Saerens et al. 2002) on every unlabelled image, from equal shares
        post0 = np.exp(z - z.max(1, keepdims=True))
        post0 /= post0.sum(1, keepdims=True)
        q_em = np.full(k, 1 / k)
        for _ in range(200):
            post = post0 * (q_em * k)
            q_em = (post / post.sum(1, keepdims=True)).mean(0)
        qs["em"] = folder_shares(q_em, counts, len(unl))
        order = "label next" if Path(f).name.startswith("label-next") else "random per class"
        for name, q in qs.items():
            pred = with_prior(head, q).predict(x[sc])
            res.setdefault((order, int(d["per_class"]), name), []).append(
                (float((pred == y[sc]).mean()), float(f1_score(y[sc], pred, average="macro")), float(q[free])))
    print("| order | labels per class | runs | prior | accuracy | macro F1 | its share of free |\n|---|---|---|---|---|---|---|")
    for (order, per, name), v in sorted(res.items()):
        acc, f1, qf = (float(np.mean([r[i] for r in v])) for i in range(3))
        print(f"| {order} | {per} | {len(v)} | {name} | {acc:.3f} | {f1:.3f} | {qf:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
