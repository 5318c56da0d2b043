"""Learning curves of "label next" against a random labelling order, on a class-folder tree.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/label_next.py --train ../shared/datasets/magnetic_tile/train \
        --val ../shared/datasets/magnetic_tile/val [--per-class 10 20 40 80] [--seeds 0 1 2] [--batch 20] \
        [--orders label_next uncertainty_only diversity_only] [--json benchmarks/results/label-next/magnetic_tile.json]

The ``--train`` tree is the pool an inspector labels; its class folders are the answers the
inspector gives. Label counts are ``per-class x number of classes`` in total for both orders (the
same budget: 10 per class on magnetic tile's 6 classes is 60 labels, whatever classes they fall on).

* random: the pool in a seeded random order (an inspector working through a stream of parts);
* label next: ``app.services.label_next.propose`` batch after batch (``--batch`` images each,
  from a cold start: no labels, no classifier), each batch chosen with the labels given so far
  (the seed only changes the order the pool is presented in, i.e. ties; the choice is otherwise
  deterministic, so its seeds vary far less than the random order's);
* ablations, the same batches without one half: ``uncertainty_only`` (the most uncertain images by
  the same margin, random until two classes have two labels) and ``diversity_only`` (k-center
  greedy on the same embedding).

At each count the model is fitted on the labels given and scored on the independent ``--val``
tree: logistic regression (standardised, the retraining comparison's ``logreg`` simple answer)
on the same cheap ``texture`` embedding that "label next" uses, and, for reference, the same
regression on 12 x 12 gray thumbnails (the retraining's best simple answer on magnetic tile) and
on the small-defect statistics (``defect``, the retrain command's third candidate; ADR 0027).
Not the registered network: its retraining takes minutes per point on the shared CPUs, and it
lost to the thumbnail regression at every count (benchmarks/results/retrain-baselines.md).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.image_embedding import TextureEmbedding  # noqa: E402
from app.services.label_next import (  # noqa: E402
    Candidate,
    fitted_probabilities,
    margin_uncertainty,
    propose,
    standardise,
    weighted_k_center,
)
from app.services.labels_needed import COUNTER_FEATURES, labels_needed  # noqa: E402
from inference.imageio import is_image_file  # noqa: E402
from inference.training.classifier_head import texture_matrix  # noqa: E402
from inference.training.simple_answers import SIMPLE_MODELS, fit_predict, score, thumbnails  # noqa: E402


def tree(root: Path) -> tuple[list[Path], list[str]]:
    """Files and their class (parent folder name) of a class-folder tree, sorted by path."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    return paths, [p.parent.name for p in paths]


KINDS = ("texture", "thumbnail", "defect")  # feature sets the logistic regression is scored on


def texture_embeddings(paths: list[Path]) -> np.ndarray:
    """The cheap ``texture`` embedding "label next" chooses on in the station, one row per path."""
    src = TextureEmbedding()
    return np.stack([src.embed(p) for p in paths])


def features(paths: list[Path]) -> dict[str, np.ndarray]:
    return {"texture": texture_embeddings(paths), "thumbnail": thumbnails(paths),
            "defect": texture_matrix(paths, "defect")}


Chooser = Callable[[np.ndarray, list, int, np.random.Generator], list[int]]


def _label_next(x: np.ndarray, labels: list, size: int, rng: np.random.Generator) -> list[int]:
    return list(propose([Candidate(i, lab) for i, lab in enumerate(labels)], x, size).image_ids)


def _uncertainty_only(x: np.ndarray, labels: list, size: int, rng: np.random.Generator) -> list[int]:
    """Ablation: the most uncertain images (same model, same margin), no diversity; random until it can fit."""
    pool = np.asarray([i for i, lab in enumerate(labels) if lab is None])
    fitted = fitted_probabilities(standardise(x), labels)
    if fitted is None:
        return [int(i) for i in rng.choice(pool, min(size, len(pool)), replace=False)]
    unc = margin_uncertainty(fitted[0][pool])
    return [int(pool[i]) for i in np.argsort(-unc, kind="stable")[:size]]


def _diversity_only(x: np.ndarray, labels: list, size: int, rng: np.random.Generator) -> list[int]:
    """Ablation: k-center greedy on the same embedding, uncertainty ignored."""
    labelled = np.asarray([i for i, lab in enumerate(labels) if lab is not None], dtype=np.int64)
    pool = np.asarray([i for i, lab in enumerate(labels) if lab is None], dtype=np.int64)
    return weighted_k_center(standardise(x), labelled, pool, np.ones(len(pool)), size)


CHOOSERS: dict[str, Chooser] = {"label_next": _label_next, "uncertainty_only": _uncertainty_only,
                                "diversity_only": _diversity_only}


def active_order(choose: Chooser, x: np.ndarray, y: list[str], budget: int, batch: int, seed: int) -> list[int]:
    """The pool's indices in the order ``choose`` proposes them, labelling each batch before the next."""
    rng = np.random.default_rng(seed)
    labels: list[str | None] = [None] * len(y)
    order: list[int] = []
    while len(order) < budget:
        got = choose(x, labels, min(batch, budget - len(order)), rng)
        if not got:
            break
        for i in got:
            labels[i] = y[i]
            order.append(i)
    return order


def pool_order(choose: Chooser, x: np.ndarray, names: list[str], budget: int, batch: int, seed: int) -> list[int]:
    """Rows of ``x`` (the pool, ``names`` its true classes) in the order an inspector following
    ``choose`` labels them: the pool presented in a seeded order (the seed only breaks ties and
    picks among equals), then ``active_order``. One function for this benchmark and
    ``retraining_loop.py --order label-next``, so both label exactly the same images; a budget that is
    a multiple of ``batch`` gives the prefix of a longer order (each batch sees only earlier labels)."""
    perm = np.random.default_rng(seed).permutation(len(names))
    got = active_order(choose, x[perm], [names[i] for i in perm], budget, batch, seed)
    return [int(perm[i]) for i in got]


def curve(order: list[int], counts: list[int], train: dict[str, np.ndarray], y: np.ndarray,
          val: dict[str, np.ndarray], yv: np.ndarray, classes: list[str]) -> dict[int, dict[str, dict]]:
    out: dict[int, dict[str, dict]] = {}
    for n in counts:
        idx = np.asarray(order[:n])
        out[n] = {}
        for kind in KINDS:
            pred = fit_predict(SIMPLE_MODELS["logreg"], train[kind][idx], y[idx], val[kind])
            s = score(yv, pred, classes)
            out[n][kind] = {**s.as_dict(), "classes_seen": int(len(np.unique(y[idx])))}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, type=Path)
    p.add_argument("--val", required=True, type=Path)
    p.add_argument("--per-class", type=int, nargs="+", default=[10, 20, 40, 80])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--target", type=float, default=0.85, help="the counter's target accuracy")
    p.add_argument("--orders", nargs="+", default=list(CHOOSERS), choices=list(CHOOSERS),
                   help="orders besides random (label_next; ablations uncertainty_only, diversity_only)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    if not a.train.is_dir() or not a.val.is_dir():
        sys.exit(f"no dataset at {a.train} / {a.val}")
    paths, names = tree(a.train)
    vpaths, vnames = tree(a.val)
    classes = sorted(set(names) | set(vnames))
    y = np.asarray([classes.index(n) for n in names])
    yv = np.asarray([classes.index(n) for n in vnames])
    t0 = time.perf_counter()
    train, val = features(paths), features(vpaths)
    counter_x = texture_matrix(paths, COUNTER_FEATURES) if "label_next" in a.orders else None  # what the counter reads
    embed_s = time.perf_counter() - t0
    counts = [k * len(set(names)) for k in a.per_class]
    runs: dict[str, dict[int, dict]] = {"random": {}, **{name: {} for name in a.orders}}
    select_s: list[float] = []
    for seed in a.seeds:
        order = list(range(len(paths)))
        random.Random(seed).shuffle(order)
        runs["random"][seed] = curve(order, counts, train, y, val, yv, classes)
        for name in a.orders:
            t0 = time.perf_counter()
            chosen = pool_order(CHOOSERS[name], train["texture"], names, max(counts), a.batch, seed)
            if name == "label_next":
                select_s.append(time.perf_counter() - t0)
            runs[name][seed] = curve(chosen, counts, train, y, val, yv, classes)
            picked = [names[i] for i in chosen]
            print(f"seed {seed}: {name} picked per class at {max(counts)}: "
                  + ", ".join(f"{c} {picked.count(c)}" for c in sorted(set(names))), flush=True)
            if name != "label_next":
                continue
            for n in counts:  # what the station's counter would have said at this point
                assert counter_x is not None
                est = labels_needed(counter_x[chosen[:n]], [names[i] for i in chosen[:n]],
                                    [paths[i].name for i in chosen[:n]], target=a.target, pool=len(paths) - n)
                runs[name][seed][n]["counter"] = {"more": est.more, "short": est.short, "cv_accuracy": est.accuracy_now,
                                                  "ceiling": est.ceiling, "text": est.text}
    summary: dict[str, dict] = {}
    for order_name, by_seed in runs.items():
        summary[order_name] = {}
        for n in counts:
            row = {}
            for kind in KINDS:
                acc = [by_seed[s][n][kind]["accuracy"] for s in a.seeds]
                f1 = [by_seed[s][n][kind]["f1"] for s in a.seeds]
                row[kind] = {"accuracy": round(float(np.mean(acc)), 4), "accuracy_sd": round(float(np.std(acc)), 4),
                             "f1": round(float(np.mean(f1)), 4), "f1_sd": round(float(np.std(f1)), 4)}
            summary[order_name][n] = row
    print("the counter (label next order, target accuracy under group CV):")
    for n in counts:
        said = [runs["label_next"][s][n]["counter"] for s in a.seeds]
        print(f"{n:6d} labels: " + "; ".join(f"seed {s}: {c['short']} (CV acc {c['cv_accuracy'] if c['cv_accuracy'] is None else round(c['cv_accuracy'], 3)})"
                                             for s, c in zip(a.seeds, said)))
    target = summary["random"][max(counts)]["texture"]["accuracy"]
    reach = next((n for n in counts if summary["label_next"][n]["texture"]["accuracy"] >= target), None)
    print(f"embedding {embed_s:.1f} s for {len(paths) + len(vpaths)} images; label next selection "
          f"{np.mean(select_s):.1f} s per seed for {max(counts)} labels")
    print("labels | order            | " + " | ".join(f"{kind} logreg acc / F1" for kind in KINDS))
    for n in counts:
        for order_name in runs:
            r = summary[order_name][n]
            print(f"{n:6d} | {order_name:16s} | " + " | ".join(
                f"{r[k]['accuracy']:.3f} ± {r[k]['accuracy_sd']:.3f} / {r[k]['f1']:.3f} ± {r[k]['f1_sd']:.3f}" for k in KINDS))
    verdict = (f"label next reaches random's {max(counts)}-label accuracy {target:.3f} at {reach} labels"
               if reach is not None else f"label next does not reach random's {max(counts)}-label accuracy {target:.3f}")
    half = reach is not None and reach <= max(counts) // 2
    print(verdict + ("; target (at most half the labels) met" if half else "; target (at most half the labels) NOT met"))
    mid = max(counts) // 2
    per_seed = {s: (runs["label_next"][s][mid]["texture"]["accuracy"], runs["random"][s][max(counts)]["texture"]["accuracy"])
                for s in a.seeds if mid in runs["label_next"][s]}
    print(f"per seed, label next at {mid} vs random at {max(counts)}: "
          + "; ".join(f"seed {s} {ln:.3f} vs {rd:.3f}" for s, (ln, rd) in per_seed.items())
          + f" ({sum(ln >= rd for ln, rd in per_seed.values())} of {len(per_seed)} seeds reach it)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"train": str(a.train), "val": str(a.val), "counts": counts, "seeds": a.seeds,
                                      "batch": a.batch, "summary": summary, "runs": runs, "verdict": verdict,
                                      "half_met": half, "per_seed_half": per_seed, "embed_s": embed_s,
                                      "select_s": select_s}, indent=1))


if __name__ == "__main__":
    main()
