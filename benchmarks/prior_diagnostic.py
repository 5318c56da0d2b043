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
from typing import Any, Callable

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


def tile_matrix(t: Tiles, cache: Path, suffix: str, compute: Callable[[list[Path]], np.ndarray]) -> np.ndarray:
    """Another per-tile feature matrix (``compute(paths)``), kept beside the ``defect_bank`` cache as
    ``<cache stem><suffix>.npy`` and read from there when it exists."""
    path = cache.with_name(cache.stem + suffix + ".npy")
    if path.exists():
        return np.load(path)
    m = compute(t.paths)
    np.save(path, m)
    return m


@dataclass(frozen=True)
class RunLabels:
    """One earlier run of the retrain command on a train-only split: the indices (rows of ``Tiles``) of its scored
    sessions, its labelled images, the other unlabelled ones and the 200 of those whose predicted mix gives the
    folder prior; the labels' class counts, the capture-session folds inside the labels and the run's C."""
    scored: np.ndarray
    labelled: np.ndarray
    unlabelled: np.ndarray
    sample: np.ndarray
    counts: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    c: float
    order: str
    per_class: int


def run_labels(t: Tiles, run: dict) -> RunLabels:
    """The split and labels of one run's JSON (``lnclasses_command.py``), as every diagnostic reads them."""
    from benchmarks.lnclasses import split
    from inference.training.groups import group_folds

    scored = split("magnetic_tile", t.paths, int(run["seed"]))
    lab = np.array([t.rel[r] for r in run["labelled_files"]])
    unl = np.setdiff1d(np.flatnonzero(~scored), lab)
    return RunLabels(np.flatnonzero(scored), lab, unl, np.random.default_rng(0).permutation(unl)[:200],
                     np.bincount(t.y[lab], minlength=len(t.classes)),
                     list(group_folds(t.y[lab], list(t.sess[lab]), 5, 0)),
                     float(run["card_training"]["head"].get("C") or 10.0), str(run["order"]), int(run["per_class"]))


def out_of_fold(fit: Callable[[np.ndarray], Any], feats: np.ndarray, r: RunLabels) -> np.ndarray:
    """Out-of-fold predictions on the labelled images: ``fit(indices)`` returns a head with ``predict``."""
    oof = np.zeros(len(r.labelled), int)
    for tr, te in r.folds:
        oof[te] = fit(r.labelled[tr]).predict(feats[r.labelled[te]])
    return oof


def folder_prior_predictions(head: Any, feats: np.ndarray, t: Tiles, r: RunLabels, oof: np.ndarray,
                             fitted_labels: np.ndarray | None = None) -> np.ndarray:
    """``head``'s classes for the scored sessions under the command's prior: the folder's mix by adjusted
    classify-and-count (ADR 0045) from the sample's predictions and the out-of-fold ones."""
    from inference.training.classifier_head import adjusted_shares, folder_shares, with_prior

    k = len(t.classes)
    predicted = (np.bincount(head.predict(feats[r.sample]), minlength=k) + 1.0) / (len(r.sample) + k)
    q = folder_shares(adjusted_shares(predicted, t.y[r.labelled], oof, len(r.sample)), r.counts, len(r.unlabelled))
    return np.asarray(with_prior(head, q, fitted_labels).predict(feats[r.scored]))


def folder_prior_scores(head: Any, feats: np.ndarray, t: Tiles, r: RunLabels, oof: np.ndarray,
                        fitted_labels: np.ndarray | None = None) -> tuple[float, float]:
    """(accuracy, macro F1) on the scored sessions of ``folder_prior_predictions``."""
    from sklearn.metrics import f1_score

    pred = folder_prior_predictions(head, feats, t, r, oof, fitted_labels)
    y = t.y[r.scored]
    return float((pred == y).mean()), float(f1_score(y, pred, average="macro"))


# One variant of the features a diagnostic compares: the features the head scores with, and given a run's C the
# fit of its head on training rows (indices of ``Tiles``).
Fit = Callable[[np.ndarray], Any]
Variant = tuple[np.ndarray, Callable[[float], Fit]]


def linear_variant(x: np.ndarray, t: Tiles) -> Variant:
    """The command's kind of head (class-balanced regression at the run's C) on features ``x``."""
    from inference.training.classifier_head import fit_linear_head

    return x, lambda c: lambda idx: fit_linear_head(x[idx], t.y[idx], len(t.classes), c)


def variants_on_runs(t: Tiles, runs: list[Path], variants: dict[str, Variant]
                     ) -> dict[tuple[str, int], dict[str, list[tuple[float, float]]]]:
    """Each run's labels refitted with each variant under the command's prior, scored on its held-out sessions:
    (order, labels per class) -> variant -> [(accuracy, macro F1)] per run; a line per run as it goes."""
    res: dict[tuple[str, int], dict[str, list[tuple[float, float]]]] = {}
    for f in runs:
        r = run_labels(t, json.loads(Path(f).read_text()))
        row = res.setdefault((r.order, r.per_class), {name: [] for name in variants})
        for name, (x, fit_for) in variants.items():
            fit = fit_for(r.c)
            row[name].append(folder_prior_scores(fit(r.labelled), x, t, r, out_of_fold(fit, x, r)))
        print(f"{Path(f).name}: " + ", ".join(f"{n} {v[-1][0]:.3f}/{v[-1][1]:.3f}" for n, v in row.items()), flush=True)
    return res


def all_labels_cv(t: Tiles, variants: dict[str, Variant]) -> int:
    """Every training tile labelled (the bundled tile classifier's setting, C 10): 5-fold CV by capture session
    (a new lighting) and by physical tile (``series_groups``: a new tile), a table row per variant."""
    from sklearn.metrics import f1_score

    from inference.training.groups import group_folds, series_groups

    groupings = {"capture session": list(t.sess), "physical tile": series_groups([q.name for q in t.paths])}
    print("| features | CV by capture session | CV by physical tile |\n|---|---|---|")
    for name, (x, fit_for) in variants.items():
        fit, cells = fit_for(10.0), []
        for groups in groupings.values():
            pred = np.zeros(len(t.y), int)
            for tr, te in group_folds(t.y, groups, 5, 0):
                pred[te] = fit(tr).predict(x[te])
            cells.append(f"{(pred == t.y).mean():.3f} / {f1_score(t.y, pred, average='macro'):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


def arguments(argv: list[str] | None, doc: str, runs_help: str) -> argparse.Namespace:
    """The diagnostics' command line: run JSON files, the data folder and the feature cache."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("runs", nargs="+", help=runs_help)
    p.add_argument("--data", type=Path, default=Path("/work/shared/datasets/magnetic_tile/train"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/prior_diagnostic_defect_bank.npy"))
    return p.parse_args(argv)


def runs_or_all_labels(argv: list[str] | None, doc: str,
                       extra: Callable[[argparse.ArgumentParser], None] | None = None
                       ) -> tuple[argparse.Namespace, argparse.Namespace]:
    """The feature diagnostics' command line: ``--all-labels`` (no run read: ``all_labels_cv``) and ``extra``'s
    options, then ``arguments``' runs, data and cache."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--all-labels", action="store_true",
                     help="instead of the runs: the bundled tile classifier's head (defect_bank, C 10) on every "
                          "training tile, 5-fold CV by capture session and by physical tile")
    if extra is not None:
        extra(pre)
    known, rest = pre.parse_known_args(argv)
    if known.all_labels and not [a for a in rest if not a.startswith("-")]:
        rest = [*rest, "-"]  # the runs argument is required; with --all-labels no run is read
    return known, arguments(rest, doc, "lnclasses_command.py JSON files")


def compare_feature_sets(argv: list[str] | None, doc: str,
                         feature_sets: Callable[["Tiles", Path], dict[str, np.ndarray]]) -> int:
    """The main of a diagnostic that compares feature sets (``feature_sets(tiles, cache)``; the first is the baseline,
    named ``none``) under the command's kind of head and prior: the all-labels CV rows with ``--all-labels``, else
    a table row per (order, labels per class) of the runs, each set's mean accuracy / macro F1 and in how many runs
    each other set's accuracy is above the baseline's."""
    known, args = runs_or_all_labels(argv, doc)
    warnings.filterwarnings("ignore")

    t = tiles(args.data, args.cache)
    sets = feature_sets(t, args.cache)
    compared = {name: linear_variant(x, t) for name, x in sets.items()}
    if known.all_labels:
        return all_labels_cv(t, compared)
    print_variant_table(variants_on_runs(t, args.runs, compared), list(sets))
    return 0


def print_variant_table(res: dict[tuple[str, int], dict[str, list[tuple[float, float]]]], names: list[str]) -> None:
    """A row per (order, labels per class): each variant's mean accuracy / macro F1 over the runs (``names`` in
    order, the first named ``none``, the baseline) and in how many runs each other one's accuracy is above it."""
    print("\n| order | labels per class | runs | " + " | ".join(names) + " | accuracy above none in (each other, in order) |\n"
          "|---|---|---|" + "---|" * len(names) + "---|")
    for (order, per), row in sorted(res.items()):
        base = np.array(row["none"])
        cells = [f"{np.array(row[n])[:, 0].mean():.3f} / {np.array(row[n])[:, 1].mean():.3f}" for n in names]
        above = [str(int((np.array(row[n])[:, 0] > base[:, 0]).sum())) for n in names if n != "none"]
        print(f"| {order} | {per} | {len(base)} | " + " | ".join(cells) + f" | {', '.join(above)} of {len(base)} |")


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
