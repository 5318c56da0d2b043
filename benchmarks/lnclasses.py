"""Train-only simulation of "label next" with and without a rare-class candidate (lnclasses.md).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/lnclasses.py --data magnetic_tile \
        --root ../shared/datasets [--seeds 0 1 2 3 4] [--variants base A B] [--budget 480] \
        --jsonl benchmarks/results/lnclasses/magnetic_tile.jsonl
    python benchmarks/lnclasses.py --summary benchmarks/results/lnclasses/*.jsonl

The ``train`` tree of a data set is split into a pool an inspector labels and a scoring part (never
the frozen ``val``): magnetic tile by capture session (two of ``exp1``..``exp6`` scored, seeded),
NEU by a seeded third of each class. On the pool, ``label_next.py``'s ``pool_order`` runs the
station's order (batches of 20, cold start) with the current ``propose`` (``base``) or with a
candidate hook in a benchmark-side copy of it (``A``: class coverage quota; ``B``: class-balanced
weight); at every multiple of the batch the texture logistic regression is fitted on the labels
given and scored on the scoring part. Why a copy: the candidates were compared before anything in
``propose`` changed; the copy without a hook (``base``) was checked against ``propose`` as it was
then (the runs of commit 14a6144, code of 75f9c50). B was adopted first; since lnab.md's rule (the real command on
fresh seeds) replaced it by A, ``propose`` is the copy with A's hook, and ``--check`` asserts exactly that.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.label_next import (  # noqa: E402
    Candidate,
    propose,
    scored_pool,
    thin_class_picks,
    weighted_k_center,
)
from benchmarks.label_next import pool_order, texture_embeddings, tree  # noqa: E402
from inference.training.simple_answers import SIMPLE_MODELS, fit_predict, score  # noqa: E402

COMMAND_MIN = 5     # the command's MIN_PER_CLASS (information: classes it would leave out)


def _thin_quota(probs: np.ndarray, names: list[str], labels: Sequence[str | None], pool: np.ndarray,
                size: int) -> list[int]:
    """Candidate A: up to ceil(size/4) pool rows, round-robin over the thin seen classes (thinnest
    first), each the most probable not-yet-picked image of its class — since A was adopted, the
    station's own ``thin_class_picks`` (lnab.md; ``--check`` pins the two orders equal)."""
    return [row for row, _c, _n in thin_class_picks(probs, names, labels, pool, size)]


def _balance_factor(probs: np.ndarray, names: list[str], labels: Sequence[str | None]) -> np.ndarray:
    """Candidate B: sqrt(mean labels per seen class / labels of the predicted class), per row."""
    counts = np.asarray([sum(1 for lab in labels if lab == c) for c in names], dtype=np.float64)
    pred = np.argmax(probs, axis=1)
    mean = counts[counts > 0].mean()
    return np.asarray(np.sqrt(mean / np.maximum(counts[pred], 1.0)), dtype=np.float64)


def propose_variant(candidates: Sequence[Candidate], embeddings: np.ndarray, size: int,
                    variant: str) -> list[int]:
    """``propose`` (same pool and weights, ``scored_pool``; same steps) with candidate ``variant``'s hook."""
    sp = scored_pool(candidates, embeddings)
    if sp is None:
        return []
    x, labels, labelled, pool, probs, source, names = sp.x, sp.labels, sp.labelled, sp.pool, sp.probs, sp.source, sp.classes
    weight, ood = sp.weight, sp.ood
    if variant == "B" and source == "labels" and probs is not None:
        weight = weight * _balance_factor(probs[pool], names, labels)
    picks: list[int] = []
    if ood.any():
        picks = weighted_k_center(x, labelled, pool[ood], weight[ood], size)
    if variant == "A" and source == "labels":
        picks += _thin_quota(probs, names, labels, pool[~ood], size - len(picks))
    keep = ~ood & ~np.isin(pool, picks)
    rest = weighted_k_center(x, np.concatenate([labelled, np.asarray(picks, np.int64)]), pool[keep],
                             weight[keep], size - len(picks))
    return [candidates[i].image_id for i in picks + rest]


def chooser(variant: str):
    def choose(x: np.ndarray, labels: list, size: int, rng: np.random.Generator) -> list[int]:
        cands = [Candidate(i, lab) for i, lab in enumerate(labels)]
        return propose_variant(cands, x, size, "none" if variant == "base" else variant)
    return choose


def split(data: str, paths: list[Path], seed: int) -> np.ndarray:
    """Boolean mask of the scoring part (the rest is the pool); see lnclasses.md."""
    rng = np.random.default_rng(seed)
    if data == "magnetic_tile":
        sessions = [p.name.split("_")[0] for p in paths]
        scored = set(rng.permutation([f"exp{k}" for k in range(1, 7)])[:2].tolist())
        return np.asarray([s in scored for s in sessions])
    mask = np.zeros(len(paths), dtype=bool)
    by_class: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        by_class.setdefault(p.parent.name, []).append(i)
    for _, idx in sorted(by_class.items()):
        chosen = rng.permutation(idx)[: len(idx) // 3]
        mask[chosen] = True
    twins = [i for i, p in enumerate(paths) if p.stem in ("patches_101", "patches_105")]
    if twins:
        mask[twins] = mask[twins[0]]
    return mask


def run(a: argparse.Namespace) -> None:
    paths, names = tree(a.root / a.data / "train")
    classes = sorted(set(names))
    cache = Path(f"/tmp/lnclasses_{a.data}_texture.npy")
    if cache.exists():
        x = np.load(cache)
    else:
        x = texture_embeddings(paths)
        np.save(cache, x)
    y = np.asarray([classes.index(n) for n in names])
    a.jsonl.parent.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        scored = split(a.data, paths, seed)
        pool, test = np.flatnonzero(~scored), np.flatnonzero(scored)
        pool_names = [names[i] for i in pool]
        base_order = None
        for variant in a.variants:
            t0 = time.perf_counter()
            order = pool_order(chooser(variant), x[pool], pool_names, a.budget, a.batch, seed)
            if variant == "base":
                base_order = order
            if a.check and variant == "A":
                real = pool_order(lambda xx, lab, s, r: list(propose([Candidate(i, v) for i, v in enumerate(lab)],
                                                                      xx, s).image_ids),
                                  x[pool], pool_names, a.budget, a.batch, seed)
                assert real == order, "propose differs from the benchmark copy with candidate A's hook"
            sel_s = time.perf_counter() - t0
            rows = {}
            for n in range(a.batch, len(order) + 1, a.batch):
                idx = pool[np.asarray(order[:n])]
                s = score(y[test], fit_predict(SIMPLE_MODELS["logreg"], x[idx], y[idx], x[test]), classes)
                per = {c: int((y[idx] == k).sum()) for k, c in enumerate(classes)}
                keep = np.isin(y[idx], [classes.index(c) for c, k in per.items() if k >= COMMAND_MIN])
                sd = score(y[test], fit_predict(SIMPLE_MODELS["logreg"], x[idx[keep]], y[idx[keep]], x[test]), classes)
                rows[n] = {**s.as_dict(), "per_class": per,
                           "left_out": [c for c, k in per.items() if k < COMMAND_MIN],
                           "dropped": sd.as_dict()}
            rec = {"data": a.data, "variant": variant, "seed": seed, "pool": int(len(pool)), "scored": int(len(test)),
                   "scored_sessions": sorted({paths[i].name.split("_")[0] for i in test}) if a.data == "magnetic_tile" else None,
                   "select_s": round(sel_s, 1), "same_as_base": order == base_order, "rows": rows}
            with a.jsonl.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            r = rows.get(240) or rows[max(rows)]
            print(f"{a.data} seed {seed} {variant}: {sel_s:.0f} s; at {240 if 240 in rows else max(rows)}: "
                  f"acc {r['accuracy']:.3f} F1 {r['f1']:.3f} per class {r['per_class']}", flush=True)


def summary(files: list[Path]) -> None:
    recs = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
    by: dict[tuple[str, str], dict[int, dict]] = {}
    for r in recs:
        by.setdefault((r["data"], r["variant"]), {})[r["seed"]] = r["rows"]

    def mean(data: str, variant: str, n: int, key: str, sub: str | None = None) -> tuple[float, float, int]:
        vals = [(rows[str(n)][sub] if sub else rows[str(n)])[key] for rows in by.get((data, variant), {}).values()
                if str(n) in rows]
        return (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)) if vals else (math.nan, 0.0, 0)

    for (data, variant), seeds in sorted(by.items()):
        print(f"\n{data} {variant} (seeds {sorted(seeds)})")
        for n in (60, 120, 240, 360, 480):
            if not all(str(n) in rows for rows in seeds.values()):
                continue
            acc, f1 = mean(data, variant, n, "accuracy"), mean(data, variant, n, "f1")
            dacc, df1 = mean(data, variant, n, "accuracy", "dropped"), mean(data, variant, n, "f1", "dropped")
            per = {c: float(np.mean([rows[str(n)]["per_class"][c] for rows in seeds.values()]))
                   for c in next(iter(seeds.values()))[str(n)]["per_class"]}
            left = sum(len(rows[str(n)]["left_out"]) for rows in seeds.values())
            print(f"  {n:4d}: acc {acc[0]:.3f} ± {acc[1]:.3f} / F1 {f1[0]:.3f} ± {f1[1]:.3f} | classes <5 dropped: "
                  f"{dacc[0]:.3f} / {df1[0]:.3f} | mean labels " + ", ".join(f"{c} {v:.1f}" for c, v in per.items())
                  + f" | classes < 5 labels over seeds: {left}")
    print("\nAdoption rule (lnclasses.md), candidate minus base, means over seeds:")
    passed = {}
    for cand in ("A", "B"):
        if ("magnetic_tile", cand) not in by:
            continue
        d = {n: (mean("magnetic_tile", cand, n, "accuracy")[0] - mean("magnetic_tile", "base", n, "accuracy")[0],
                 mean("magnetic_tile", cand, n, "f1")[0] - mean("magnetic_tile", "base", n, "f1")[0]) for n in (120, 240, 480)}
        neu = mean("neu_cls", cand, 120, "accuracy")[0] - mean("neu_cls", "base", 120, "accuracy")[0]
        checks = {"240 F1 >= +0.03": d[240][1] >= 0.03, "240 acc >= -0.01": d[240][0] >= -0.01,
                  "120 acc/F1 >= -0.01": min(d[120]) >= -0.01, "480 acc/F1 >= -0.01": min(d[480]) >= -0.01,
                  "NEU 120 acc >= -0.01": neu >= -0.01}
        passed[cand] = all(checks.values())
        print(f"  {cand}: " + "; ".join(f"{n}: acc {da:+.3f} F1 {df:+.3f}" for n, (da, df) in d.items())
              + f"; NEU 120 acc {neu:+.3f} -> " + ", ".join(f"{k} {'ok' if v else 'FAILS'}" for k, v in checks.items())
              + f" => {'passes' if passed[cand] else 'does not pass'}")
    winners = [c for c, ok in passed.items() if ok]
    if not winners:
        print("  decision: nothing adopted")
    elif len(winners) == 1:
        print(f"  decision: adopt {winners[0]}")
    else:
        fa, fb = mean("magnetic_tile", "A", 240, "f1")[0], mean("magnetic_tile", "B", 240, "f1")[0]
        print(f"  decision: adopt {'B' if abs(fa - fb) < 0.01 or fb > fa else 'A'} (240 F1 A {fa:.3f}, B {fb:.3f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("magnetic_tile", "neu_cls"))
    p.add_argument("--root", type=Path, required=False, default=Path("/work/shared/datasets"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--variants", nargs="+", default=["base", "A", "B"], choices=("base", "A", "B"))
    p.add_argument("--budget", type=int, default=480)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--check", action="store_true", help="assert propose gives the order of the copy with A's hook (A replaced B, lnab.md)")
    p.add_argument("--jsonl", type=Path)
    p.add_argument("--summary", type=Path, nargs="+")
    a = p.parse_args()
    if a.summary:
        summary(a.summary)
    else:
        run(a)


if __name__ == "__main__":
    main()
