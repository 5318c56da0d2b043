"""Learning curves of "label next" against a random labelling order, on a class-folder tree.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/label_next.py --train ../shared/datasets/magnetic_tile/train \
        --val ../shared/datasets/magnetic_tile/val [--per-class 10 20 40 80] [--seeds 0 1 2] [--batch 20] \
        [--json benchmarks/results/label-next/magnetic_tile.json]

The ``--train`` tree is the pool an inspector labels; its class folders are the answers the
inspector gives. Label counts are ``per-class x number of classes`` in total for both orders (the
same budget: 10 per class on magnetic tile's 6 classes is 60 labels, whatever classes they fall on).

* random: the pool in a seeded random order (an inspector working through a stream of parts);
* label next: ``app.services.label_next.propose`` batch after batch (``--batch`` images each,
  from a cold start: no labels, no classifier), each batch chosen with the labels given so far
  (the seed changes only ties and the first pick's neighbourhood: the order is deterministic,
  so the seeds of "label next" differ only through the model's random state, i.e. hardly).

At each count the model is fitted on the labels given and scored on the independent ``--val``
tree: logistic regression (standardised, the retraining comparison's ``logreg`` simple answer)
on the same cheap ``texture`` embedding that "label next" uses, and, for reference, the same
regression on 12 x 12 gray thumbnails (the retraining's best simple answer on magnetic tile).
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.image_embedding import TextureEmbedding  # noqa: E402
from app.services.label_next import Candidate, propose  # noqa: E402
from inference.imageio import is_image_file  # noqa: E402
from inference.training.simple_answers import SIMPLE_MODELS, fit_predict, score, thumbnails  # noqa: E402


def tree(root: Path) -> tuple[list[Path], list[str]]:
    """Files and their class (parent folder name) of a class-folder tree, sorted by path."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    return paths, [p.parent.name for p in paths]


def features(paths: list[Path]) -> dict[str, np.ndarray]:
    src = TextureEmbedding()
    return {"texture": np.stack([src.embed(p) for p in paths]), "thumbnail": thumbnails(paths)}


def label_next_order(x: np.ndarray, y: list[str], budget: int, batch: int) -> list[int]:
    """The pool's indices in the order "label next" proposes them, labelling each batch before the next."""
    labels: list[str | None] = [None] * len(y)
    order: list[int] = []
    index = {i: i for i in range(len(y))}
    while len(order) < budget:
        cands = [Candidate(i, labels[i]) for i in range(len(y))]
        got = propose(cands, x, min(batch, budget - len(order))).image_ids
        if not got:
            break
        for i in got:
            labels[index[i]] = y[i]
            order.append(i)
    return order


def curve(order: list[int], counts: list[int], train: dict[str, np.ndarray], y: np.ndarray,
          val: dict[str, np.ndarray], yv: np.ndarray, classes: list[str]) -> dict[int, dict[str, dict]]:
    out: dict[int, dict[str, dict]] = {}
    for n in counts:
        idx = np.asarray(order[:n])
        out[n] = {}
        for kind in ("texture", "thumbnail"):
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
    embed_s = time.perf_counter() - t0
    counts = [k * len(set(names)) for k in a.per_class]
    runs: dict[str, dict[int, list]] = {"random": {}, "label_next": {}}
    select_s: list[float] = []
    for seed in a.seeds:
        order = list(range(len(paths)))
        random.Random(seed).shuffle(order)
        runs["random"][seed] = curve(order, counts, train, y, val, yv, classes)
        rng = np.random.default_rng(seed)  # label next: the pool presented in a seeded order (ties, first pick)
        perm = rng.permutation(len(paths))
        t0 = time.perf_counter()
        ln = label_next_order(train["texture"][perm], [names[i] for i in perm], max(counts), a.batch)
        select_s.append(time.perf_counter() - t0)
        runs["label_next"][seed] = curve([int(perm[i]) for i in ln], counts, train, y, val, yv, classes)
        picked = [names[int(perm[i])] for i in ln[:max(counts)]]
        print(f"seed {seed}: label next picked per class at {max(counts)}: "
              + ", ".join(f"{c} {picked.count(c)}" for c in sorted(set(names))), flush=True)
    summary: dict[str, dict] = {}
    for order_name, by_seed in runs.items():
        summary[order_name] = {}
        for n in counts:
            row = {}
            for kind in ("texture", "thumbnail"):
                acc = [by_seed[s][n][kind]["accuracy"] for s in a.seeds]
                f1 = [by_seed[s][n][kind]["f1"] for s in a.seeds]
                row[kind] = {"accuracy": round(float(np.mean(acc)), 4), "accuracy_sd": round(float(np.std(acc)), 4),
                             "f1": round(float(np.mean(f1)), 4), "f1_sd": round(float(np.std(f1)), 4)}
            summary[order_name][n] = row
    target = summary["random"][max(counts)]["texture"]["accuracy"]
    reach = next((n for n in counts if summary["label_next"][n]["texture"]["accuracy"] >= target), None)
    print(f"embedding {embed_s:.1f} s for {len(paths) + len(vpaths)} images; label next selection "
          f"{np.mean(select_s):.1f} s per seed for {max(counts)} labels")
    print("labels | order      | texture logreg acc / F1          | thumbnail logreg acc / F1")
    for n in counts:
        for order_name in ("random", "label_next"):
            r = summary[order_name][n]
            print(f"{n:6d} | {order_name:10s} | {r['texture']['accuracy']:.3f} ± {r['texture']['accuracy_sd']:.3f} / "
                  f"{r['texture']['f1']:.3f} ± {r['texture']['f1_sd']:.3f} | {r['thumbnail']['accuracy']:.3f} ± "
                  f"{r['thumbnail']['accuracy_sd']:.3f} / {r['thumbnail']['f1']:.3f} ± {r['thumbnail']['f1_sd']:.3f}")
    verdict = (f"label next reaches random's {max(counts)}-label accuracy {target:.3f} at {reach} labels"
               if reach is not None else f"label next does not reach random's {max(counts)}-label accuracy {target:.3f}")
    half = reach is not None and reach <= max(counts) // 2
    print(verdict + ("; target (at most half the labels) met" if half else "; target (at most half the labels) NOT met"))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"train": str(a.train), "val": str(a.val), "counts": counts, "seeds": a.seeds,
                                      "batch": a.batch, "summary": summary, "runs": runs, "verdict": verdict,
                                      "half_met": half, "embed_s": embed_s, "select_s": select_s}, indent=1))


if __name__ == "__main__":
    main()
