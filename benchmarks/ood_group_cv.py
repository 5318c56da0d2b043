"""Group cross-validated estimate of the out-of-domain threshold rule on each bundled model's
TRAINING images (issue 20 item 3, ADR 0036): the CV figure reported beside ``benchmarks/ood.py``'s
test figure. No test split is read.

    PYTHONPATH=. python benchmarks/ood_group_cv.py [--datasets ../shared/datasets] [--seeds 0,1,2] [--json OUT]

For each model, its training images exactly as ``python main.py domain fit`` reads them, their
groups by ``inference.training.groups.path_groups`` (``auto``: folder, prefix, then scene), and
three threshold rules (default parts, descriptor + range):

- ``mixed q0.99``: mixed folds only, the 0.99 quantile (ADR 0028 for data without name groups);
- ``grouped q0.99``: folds of whole groups beside mixed folds (the larger), the 0.99 quantile;
- ``group-CV q`` (ADR 0036, shipped): as above, q the smallest of 0.99/0.995/0.998/1 whose
  group-CV own-image rate is <= 1 %.

Each rule is refitted whole (its own choice of q included) without one outer fold of whole
groups, and scores that fold: **own** = share of held-out groups' training images called out of
domain (the estimate of a new scene's or session's rate), and, on choosing data never reported
as a test, the share of eight synthetic camera changes of those held-out images (the changes of
``benchmarks/ood_select.py``) and of 100 MVTec AD bottle images (not for the bottle model) called
out of domain by the full fit. Outer folds drawn with each of ``--seeds`` (mean and range).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

PARTS = ("descriptor", "descriptor_range")
PICK = 100  # training images per synthetic camera change
FOLDS = 5


def _specs(data: Path) -> dict[str, dict[str, Any]]:
    """The five bundled models' training images and data roots, as their domain fit commands read them."""
    from inference.domain_fit import images_under

    sirst_train = (data / "sirst" / "train.txt").read_text(encoding="utf-8").splitlines()
    fits = {
        "classifier-neu": ("classifier", data / "neu_cls" / "train", None),
        "segmenter-sirst": ("segmenter", data / "sirst" / "images", sirst_train),
        "anomaly-magnetic_tile": ("anomaly", data / "magnetic_tile" / "train" / "free", None),
        "anomaly-bottle": ("anomaly", data / "mvtec_ad" / "bottle" / "train" / "good", None),
        "classifier-magnetic_tile": ("classifier", data / "magnetic_tile" / "train", None),
    }
    return {name: {"family": fam, "root": root, "train": images_under(root, names)}
            for name, (fam, root, names) in fits.items()}


def _rules(family: str = "") -> dict[str, Callable[..., Any]]:
    """The threshold rules, each reading the descriptor features the family names (ADR 0038)."""
    from inference.domain import fit_domain
    from inference.domain_fit import family_descriptor_features

    names = family_descriptor_features(family)
    return {
        "mixed q0.99": lambda x, g: fit_domain({"descriptor": x}, quantile=0.99, parts=PARTS, descriptor_features=names),
        "grouped q0.99": lambda x, g: fit_domain({"descriptor": x}, quantile=0.99, groups=g, parts=PARTS,
                                                 descriptor_features=names),
        "group-CV q (shipped)": lambda x, g: fit_domain({"descriptor": x}, groups=g, parts=PARTS, descriptor_features=names),
    }


# Features: the descriptor alone as an (n, d) array, or per kind of feature (``fit_domain``'s dict).
Feats = np.ndarray | dict[str, np.ndarray]


def _rows(x: Feats, idx: np.ndarray) -> Feats:
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def _count(x: Feats) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _flag(stats: Any, x: Feats) -> np.ndarray:
    from inference.domain import OUT_OF_DOMAIN_BELOW

    return stats.scores(x if isinstance(x, dict) else {"descriptor": x}) < OUT_OF_DOMAIN_BELOW


def evaluate(x: Feats, groups: list[str] | None, changed: dict[str, tuple[Feats, np.ndarray]],
             bottle: Feats | None, seeds: list[int],
             rules: dict[str, Callable[..., Any]] | None = None,
             foreign: dict[str, Feats] | None = None) -> dict[str, Any]:
    """Per rule (default ``_rules()``): full-fit threshold and q, the share of each ``foreign`` choosing set
    (and of ``bottle``) it flags, and per outer seed the held-out own rate and choosing detection."""
    from inference.domain import fold_of

    out: dict[str, Any] = {}
    n = _count(x)
    for name, rule in (rules if rules is not None else _rules()).items():
        full = rule(x, groups)
        row: dict[str, Any] = {"threshold": round(full.threshold, 4), "quantile": full.quantile,
                               "inner_own_rates": {f"{q:g}": round(r, 4) for q, r in full.own_rates.items()},
                               "per_seed": []}
        if bottle is not None:
            row["mvtec_bottle"] = round(float(_flag(full, bottle).mean()), 4)
        for fname, fx in (foreign or {}).items():
            row.setdefault("foreign", {})[fname] = round(float(_flag(full, fx).mean()), 4)
        for seed in seeds:
            fold = fold_of(n, FOLDS, seed, groups)
            own = np.zeros(n, bool)
            hits = {c: np.zeros(len(src), bool) for c, (_, src) in changed.items()}
            quantiles = []
            for f in range(int(fold.max()) + 1):
                rest, held = fold != f, fold == f
                sub_groups = [g for g, r in zip(groups, rest) if r] if groups is not None else None
                stats = rule(_rows(x, rest), sub_groups)
                quantiles.append(stats.quantile)
                own[held] = _flag(stats, _rows(x, held))
                for c, (cx, src) in changed.items():
                    mine = held[src]  # changes of held-out images, scored by the fit that did not see them
                    if mine.any():
                        hits[c][mine] = _flag(stats, _rows(cx, mine))
            row["per_seed"].append({"seed": seed, "own": round(float(own.mean()), 4), "own_count": int(own.sum()),
                                    "quantiles": quantiles,
                                    "changes": {c: round(float(h.mean()), 4) for c, h in hits.items()}})
        row["own_mean"] = round(float(np.mean([s["own"] for s in row["per_seed"]])), 4)
        row["own_range"] = [min(s["own"] for s in row["per_seed"]), max(s["own"] for s in row["per_seed"])]
        row["changes_mean"] = round(float(np.mean([np.mean(list(s["changes"].values())) for s in row["per_seed"]])), 4)
        out[name] = row
    return out


def _descriptors(engine: Any, family: str, paths: list[Path], transform: Any = None) -> np.ndarray:
    feats, bad = engine.domain_features_files(paths, family, ("descriptor",), transform=transform)
    if bad:
        raise SystemExit(f"unreadable: {bad[:3]}")
    return feats["descriptor"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--models", type=Path, default=ROOT / "resources" / "models")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--only", default="")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    import torch
    from ood_select import CAMERA_CHANGES, _subsample

    from inference.domain_fit import images_under
    from inference.engine import InspectionEngine
    from inference.training.groups import path_groups

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    bottle_paths = _subsample(images_under(args.datasets / "mvtec_ad" / "bottle"), PICK)
    report: dict[str, Any] = {"seeds": seeds, "folds": FOLDS, "parts": list(PARTS), "models": {}}
    for name, spec in _specs(args.datasets).items():
        if args.only and name not in args.only.split(","):
            continue
        t0 = time.perf_counter()
        paths = spec["train"]
        pick = np.sort(np.random.default_rng(1).choice(len(paths), min(PICK, len(paths)), replace=False))
        with InspectionEngine({spec["family"]: args.models / name}, device="cpu", half=False) as engine:
            x = _descriptors(engine, spec["family"], paths)
            changed = {c: (_descriptors(engine, spec["family"], [paths[i] for i in pick], fn), pick)
                       for c, fn in CAMERA_CHANGES.items()}
            bottle = None if name == "anomaly-bottle" else _descriptors(engine, spec["family"], bottle_paths)
        groups, rule = path_groups(paths, spec["root"])
        row = {"images": len(paths), "group_rule": rule, "groups": len(set(groups)) if groups else 0,
               "rules": evaluate(x, groups, changed, bottle, seeds, _rules(spec["family"]))}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        report["models"][name] = row
        print(f"\n{name}: {len(paths)} training images, folds by {rule} ({row['groups']} groups), {row['seconds']} s")
        for rname, r in row["rules"].items():
            bottle_txt = f", bottle {r['mvtec_bottle']:.0%}" if "mvtec_bottle" in r else ""
            print(f"  {rname:22s} threshold {r['threshold']:.3f} (q {r['quantile']:g}); group-CV own "
                  f"{r['own_mean']:.2%} (seeds {r['own_range'][0]:.2%}-{r['own_range'][1]:.2%}); "
                  f"camera changes {r['changes_mean']:.1%}{bottle_txt}", flush=True)
    from json_report import write_report

    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
