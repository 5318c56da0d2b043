"""Out-of-domain descriptions of a version retrained from few labels (issue 20 item 3), on training splits only.

    PYTHONPATH=. python benchmarks/ood_few.py [--datasets ../shared/datasets] [--counts 20,40,80,160]
                                              [--seeds 0,1,2] [--json benchmarks/results/ood-few.json]

Why: seen under Xvfb (session 33), a classifier retrained at the station from 48 reviewed NEU images (its domain
fitted on the 36 of its training share, as ``retrain`` does) called magnetic tiles *in* domain (in-domain score
0.53, "inclusion 1.00"), where the bundled NEU classifier calls them out of domain (0.00). Its description is a
Gaussian of 31 descriptor features with 32 components fitted on 36 images: each cross-validation fold's Gaussian
is fitted on ~29 images in 31 dimensions, so the held-out training images lie far outside it, no threshold
quantile reaches the 1 % own-image target, and the largest one (the max of those inflated distances) is taken.

The simulation: a "line" is one data set's training split (NEU, magnetic tile). ``n`` of its images (seeded) are
the retraining's training share; the domain is fitted on their classifier descriptor features with the grouping
``retrain`` uses (``path_groups`` rule ``auto``). Scored, all on training splits (no test split is read):

- **own**: the line's other training images (not among the ``n``) flagged out of domain (should be few);
- **foreign**: the other line's training images, SIRST frames and MVTec bottle training images flagged
  (should be nearly all).

Candidates (``RULES``): ``current`` (32 components), ``k_n/4`` (components at most a quarter of the images, so a
fold's Gaussian is not degenerate), ``range`` (the per-feature range part alone), and (added after the first run,
below) ``cap``: the current threshold, but at most ``CAP`` times the median of the training images' combined
out-of-fold distances.

Rule, written before any run: a candidate replaces ``current`` if, over both lines, every ``n`` and the seeds,
its mean foreign rate is at least 0.05 higher, its mean own rate at most 0.02 higher, and at no ``n`` its own
rate mean exceeds ``current``'s by more than 0.05; among several, the higher foreign rate, then the simpler.
Descriptors are computed once per image (the classifier family's features) and kept in memory.

First run (seeds 0-2, results/ood-few.md): no candidate wins; the current rule flags 100 % of the other sets in 22
of 24 runs, but two tile-fitted runs let NEU in (foreign 0.68: NEU flagged 1-3 %). Where that comes from, read
on the station's case (not a figure): one unusually bright training image (pitted_surface_101, grey quartiles
91-100 against a median of 41-50), held out in cross-validation, lies 28 units out on the range part; with 36
images the 0.99 quantile is that one distance, so the threshold admits anything as far out (tiles at 31).
Second rule, written before the second run (seeds 0-9): ``cap`` with ``CAP`` = 4.9, the largest ratio of the
chosen threshold to the median out-of-fold distance among the choosing sets' full training fits (SIRST training
frames 4.9, MVTec bottle training images 1.76; NEU 2.62 and tile 2.51 printed for information, not used). It is
adopted if, over both lines, every ``n`` and seeds 0-9, it at least halves the number of runs whose foreign rate
is below 0.95, raises the mean own rate by at most 0.02, and at no ``n`` raises it by more than 0.05.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RULES: dict[str, dict] = {
    "current": {"components": 32, "parts": ("descriptor", "descriptor_range")},
    "k_n/4": {"components": "n/4", "parts": ("descriptor", "descriptor_range")},
    "range": {"components": 32, "parts": ("descriptor_range",)},
    "cap": {"components": 32, "parts": ("descriptor", "descriptor_range"), "cap": 4.9},
}
FOREIGN_PER_SET = 300


def _images(folder: Path) -> list[Path]:
    from inference.domain_fit import images_under
    return sorted(images_under(folder))


def _descriptors(paths: list[Path]) -> np.ndarray:
    from inference.bundled import bundled_model_dir
    from inference.engine import InspectionEngine
    with InspectionEngine({"classifier": bundled_model_dir("classifier")}, device="cpu", half=False) as engine:
        feats, bad = engine.domain_features_files(paths, "classifier", ("descriptor",))
    if bad:
        raise SystemExit(f"unreadable: {bad[:3]}")
    return feats["descriptor"]


def _fit(x: np.ndarray, paths: list[Path], rule: dict, seed: int):
    from inference.domain import fit_domain
    from inference.domain_fit import family_descriptor_features
    from inference.image_descriptor import DESCRIPTOR_VERSION
    from inference.training.groups import path_groups
    groups, _ = path_groups(paths, rule="auto")
    k = rule["components"]
    components = max(1, len(paths) // 4) if k == "n/4" else int(k)
    from inference import domain
    kept = domain.MEDIAN_CAP
    domain.MEDIAN_CAP = rule.get("cap", float("inf"))  # the shipped cap (ADR 0063) or none, as before it
    try:
        stats = fit_domain({"descriptor": x}, components=min(components, 32), seed=seed, groups=groups,
                           descriptor=DESCRIPTOR_VERSION, parts=rule["parts"],
                           descriptor_features=family_descriptor_features("classifier"))
    finally:
        domain.MEDIAN_CAP = kept
    return stats


def _flagged(stats, x: np.ndarray) -> float:
    from inference.domain import is_out_of_domain
    scores = stats.scores({"descriptor": x})
    return float(np.mean([is_out_of_domain(float(s)) for s in scores]))


def _ratios(ds: Path) -> int:
    """Each whole training set fitted as ``fit_domain`` does (no cap): chosen threshold / median out-of-fold distance."""
    from inference.domain import _combined, out_of_fold_part_distances, select_descriptor
    frames = set((ds / "sirst" / "train.txt").read_text().split())
    sets = {"sirst (choosing)": [f for f in _images(ds / "sirst" / "images") if f.stem in frames],
            "bottle (choosing)": _images(ds / "mvtec_ad" / "bottle" / "train"),
            "neu (information)": _images(ds / "neu_cls" / "train"),
            "tile (information)": _images(ds / "magnetic_tile" / "train")}
    for name, paths in sets.items():
        x = _descriptors(paths)
        stats = _fit(x, paths, RULES["current"], 0)
        sel = select_descriptor(x, stats.descriptor_features) if stats.descriptor_features else x
        mixed = out_of_fold_part_distances({"descriptor": sel}, 32, seed=0, parts=RULES["current"]["parts"])
        median = float(np.median(_combined(mixed, stats.scales)))
        print(f"{name:20s} {len(paths):5d} images  threshold {stats.threshold:.2f} (q {stats.quantile})  "
              f"median {median:.3f}  ratio {stats.threshold / median:.2f}", flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--counts", default="20,40,80,160")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--test", action="store_true",
                   help="once, after the choice: score on the frozen splits (own: the line's val; foreign: the other "
                        "line's val, SIRST val frames, MVTec bottle test/good); the fit images stay training images")
    p.add_argument("--ratios", action="store_true",
                   help="print where CAP comes from: each training set's full fit, its chosen threshold over its "
                        "median out-of-fold distance (the choosing sets SIRST and bottle; NEU and tile for information)")
    args = p.parse_args()
    import torch
    torch.set_num_threads(1)
    started = time.time()
    ds = args.datasets
    if args.ratios:
        return _ratios(ds)
    lines = {"neu": _images(ds / "neu_cls" / "train"), "tile": _images(ds / "magnetic_tile" / "train")}
    split = "val.txt" if args.test else "train.txt"  # the segmenter's training split, or its frozen val once
    frames = set((ds / "sirst" / split).read_text().split())
    others = {"sirst": [f for f in _images(ds / "sirst" / "images") if f.stem in frames],
              "bottle": _images(ds / "mvtec_ad" / "bottle" / ("test/good" if args.test else "train"))}
    scored = {"neu": _images(ds / "neu_cls" / "val"), "tile": _images(ds / "magnetic_tile" / "val")} if args.test \
        else lines
    rules = {k: RULES[k] for k in ("current", "cap")} if args.test else RULES
    rng = np.random.default_rng(0)
    others = {k: [v[i] for i in sorted(rng.choice(len(v), min(FOREIGN_PER_SET, len(v)), replace=False))]
              for k, v in others.items()}
    feats = {k: _descriptors(v) for k, v in {**lines, **others}.items()}
    if args.test:
        held = {k: _descriptors(v) for k, v in scored.items()}  # the frozen val splits: scored, never fitted
    print(f"descriptors in {time.time() - started:.0f} s: " + ", ".join(f"{k} {len(v)}" for k, v in feats.items()),
          flush=True)
    counts = [int(c) for c in args.counts.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for line, paths in lines.items():
        foreign_sets = [k for k in feats if k != line]
        for n in counts:
            for seed in seeds:
                pick = np.sort(np.random.default_rng(1000 + seed).choice(len(paths), n, replace=False))
                rest = np.setdiff1d(np.arange(len(paths)), pick)
                x = feats[line][pick]
                for name, rule in rules.items():
                    stats = _fit(x, [paths[i] for i in pick], rule, seed)
                    if args.test:
                        foreign = {k: _flagged(stats, held[k] if k in held else feats[k]) for k in foreign_sets}
                        own = _flagged(stats, held[line])
                    else:
                        foreign = {k: _flagged(stats, feats[k]) for k in foreign_sets}
                        own = _flagged(stats, feats[line][rest])
                    row = {"line": line, "n": n, "seed": seed, "rule": name, "own": own,
                           "foreign": float(np.mean(list(foreign.values()))), "per_set": foreign,
                           "quantile": stats.quantile, "threshold": stats.threshold}
                    rows.append(row)
                    print(f"{line:4s} n={n:3d} seed {seed} {name:8s} own {row['own']:.3f} foreign {row['foreign']:.3f} "
                          + " ".join(f"{k} {v:.2f}" for k, v in foreign.items()) + f" (q {stats.quantile})", flush=True)

    def mean(rule: str, key: str, n: int | None = None) -> float:
        return float(np.mean([r[key] for r in rows if r["rule"] == rule and (n is None or r["n"] == n)]))

    print("\nrule      own    foreign   (means over lines, counts, seeds); own by n")
    for name in rules:
        by_n = " ".join(f"{n}:{mean(name, 'own', n):.3f}/{mean(name, 'foreign', n):.3f}" for n in counts)
        print(f"{name:8s} {mean(name, 'own'):.3f}  {mean(name, 'foreign'):.3f}   {by_n}")
    if args.test:
        print("runs with foreign < 0.95: " + ", ".join(
            f"{name} {sum(1 for r in rows if r['rule'] == name and r['foreign'] < 0.95)}" for name in rules))
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "test": True, "counts": counts, "seeds": seeds}, indent=1))
        return 0

    def short(rule: str) -> int:
        return sum(1 for r in rows if r["rule"] == rule and r["foreign"] < 0.95)
    print("runs with foreign < 0.95: " + ", ".join(f"{name} {short(name)}" for name in RULES))
    cap_ok = (short("cap") <= short("current") / 2 and mean("cap", "own") <= mean("current", "own") + 0.02
              and all(mean("cap", "own", n) <= mean("current", "own", n) + 0.05 for n in counts))
    print(f"cap (second rule): {'adopted' if cap_ok else 'not adopted'}")
    base_own, base_foreign = mean("current", "own"), mean("current", "foreign")
    winners = []
    for name in RULES:
        if name in ("current", "cap"):  # cap has its own rule (second run), above
            continue
        ok = (mean(name, "foreign") >= base_foreign + 0.05 and mean(name, "own") <= base_own + 0.02
              and all(mean(name, "own", n) <= mean("current", "own", n) + 0.05 for n in counts))
        print(f"{name}: {'wins' if ok else 'does not win'} by the rule")
        if ok:
            winners.append(name)
    chosen = max(winners, key=lambda r: mean(r, "foreign")) if winners else "current"
    print(f"chosen: {chosen} ({time.time() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "chosen": chosen, "counts": counts, "seeds": seeds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
