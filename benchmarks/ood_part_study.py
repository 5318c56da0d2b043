"""The loop the candidate-part studies of the segmenter's domain share (ood_bank.py, ood_symmetry.py): each rule
(a tuple of parts) fitted on the own training frames, scored on the foreign choosing set by the full fit, and by
group CV per fold seed on the own frames and on the synthetic camera changes of the picked frames (each scored by
the fit that did not see its frame's scene); then the rule written before the studies (``adopts``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import numpy as np
from json_report import write_report

OWN_MAX, OWN_ABOVE_MAX, FOREIGN_MIN, CHANGES_BELOW_MAX = 0.01, 0.005, 0.95, 0.02
MODEL = "segmenter-sirst-v3"  # the default segmenter, whose statistics every bundled one shares
SHIPPED = {"shipped (descriptor + range)": ("descriptor", "descriptor_range")}  # ADR 0028's parts, the baseline


def fit(feats: dict[str, np.ndarray], parts: tuple[str, ...], groups: list[str] | None) -> Any:
    """The shipped rule (ADR 0036) on the features the parts read."""
    from inference.domain import PARTS, fit_domain

    kinds = {PARTS[p][0] for p in parts}
    return fit_domain({k: v for k, v in feats.items() if k in kinds}, groups=groups, parts=parts)


def flag(stats: Any, feats: dict[str, np.ndarray]) -> np.ndarray:
    from inference.domain import OUT_OF_DOMAIN_BELOW

    return stats.scores({k: feats[k] for k in stats.features}) < OUT_OF_DOMAIN_BELOW


def compare(own: dict[str, np.ndarray], foreign: dict[str, np.ndarray], changed: dict[str, dict[str, np.ndarray]],
            pick: np.ndarray, groups: list[str] | None, rules: dict[str, tuple[str, ...]], seeds: list[int],
            foreign_name: str = "bottle_train_good") -> dict[str, Any]:
    """Per rule: threshold, quantile, the foreign set's flagged share, and per seed the group-CV own rate and the
    camera changes' flagged shares, with their means (printed as they come)."""
    from ood_group_cv import FOLDS

    from inference.domain import fold_of

    n = len(next(iter(own.values())))
    out: dict[str, Any] = {}
    for name, parts in rules.items():
        full = fit(own, parts, groups)
        row: dict[str, Any] = {"parts": list(parts), "threshold": round(full.threshold, 4), "quantile": full.quantile,
                               foreign_name: round(float(flag(full, foreign).mean()), 4), "per_seed": []}
        for seed in seeds:
            fold = fold_of(n, FOLDS, seed, groups)
            flagged = np.zeros(n, bool)
            hits = {c: np.zeros(len(pick), bool) for c in changed}
            for f in range(int(fold.max()) + 1):
                rest, held = fold != f, fold == f
                sub_groups = [g for g, r in zip(groups, rest) if r] if groups is not None else None
                stats = fit({k: v[rest] for k, v in own.items()}, parts, sub_groups)
                flagged[held] = flag(stats, {k: v[held] for k, v in own.items()})
                mine = held[pick]
                for c, cf in changed.items():
                    if mine.any():
                        hits[c][mine] = flag(stats, {k: v[mine] for k, v in cf.items()})
            row["per_seed"].append({"seed": seed, "own": round(float(flagged.mean()), 4),
                                    "changes": {c: round(float(h.mean()), 4) for c, h in hits.items()}})
        row["own_mean"] = round(float(np.mean([s["own"] for s in row["per_seed"]])), 4)
        row["changes_mean"] = round(float(np.mean([np.mean(list(s["changes"].values())) for s in row["per_seed"]])), 4)
        out[name] = row
        per_seed = ", ".join(f"{s['own']:.2%}" for s in row["per_seed"])
        print(f"{name}: threshold {row['threshold']:.3f} (q {row['quantile']:g}); group-CV own {row['own_mean']:.2%} "
              f"(seeds {per_seed}); camera changes {row['changes_mean']:.1%}; "
              f"{foreign_name.replace('_', ' ')} {row[foreign_name]:.1%}", flush=True)
    return out


def adopts(base: dict[str, Any], cand: dict[str, Any], foreign_name: str = "bottle_train_good") -> bool:
    """The rule both studies wrote first: own rate at most 1 % and at most 0.5 points above the shipped
    description's, the foreign set at least 95 % flagged, camera changes no fewer than the shipped minus 2 points."""
    return (cand["own_mean"] <= OWN_MAX and cand["own_mean"] <= base["own_mean"] + OWN_ABOVE_MAX
            and cand[foreign_name] >= FOREIGN_MIN and cand["changes_mean"] >= base["changes_mean"] - CHANGES_BELOW_MAX)


def arguments(doc: str, root: Path, only: bool = False) -> argparse.Namespace:
    """The studies' common command line (data sets, bundled models, fold seeds, JSON report; with ``only``, a
    comma-separated list of the bundled models to run)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=root.parent / "shared" / "datasets")
    ap.add_argument("--models", type=Path, default=root / "resources" / "models")
    ap.add_argument("--seeds", default="0,1,2")
    if only:
        ap.add_argument("--only", default="")
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args()


def choosing_sets(datasets: Path) -> tuple[Path, list[Path], list[Path], np.ndarray]:
    """SIRST's image folder, its train.txt frames (own data), MVTec bottle train/good (the foreign choosing set) and
    the frames the camera changes are made of (``ood_group_cv.PICK`` of them, seed 1: the other studies' sample)."""
    from ood_group_cv import PICK

    from inference.domain_fit import images_under

    root = datasets / "sirst" / "images"
    paths = images_under(root, (datasets / "sirst" / "train.txt").read_text(encoding="utf-8").splitlines())
    bottles = images_under(datasets / "mvtec_ad" / "bottle" / "train" / "good")
    pick = np.sort(np.random.default_rng(1).choice(len(paths), min(PICK, len(paths)), replace=False))
    return root, paths, bottles, pick


# (engine, paths, camera change or None) -> the features each rule's parts read, per kind
FeatureFn = Callable[[Any, list[Path], Any], dict[str, np.ndarray]]


def run(doc: str, root: Path, candidate: tuple[str, tuple[str, ...]], features: FeatureFn, rule_file: str,
        part: str, extra: Callable[[Any, list[Path], dict[str, np.ndarray], dict[str, np.ndarray]], dict[str, Any]]
        | None = None, model: str = MODEL) -> int:
    """One study: the own frames, the bottles and the camera changes described by ``features`` with ``model``
    loaded (one torch thread), ``extra``'s figures (engine, own paths, own and bottle features: e.g. the candidate's
    cost per frame) added to the report, the shipped parts and the ``candidate`` (name, parts) compared, the
    written rule's verdict printed and the report written."""
    rules = {**SHIPPED, candidate[0]: candidate[1]}
    import time

    import torch
    from ood_select import CAMERA_CHANGES

    from inference.engine import InspectionEngine
    from inference.training.groups import path_groups

    args = arguments(doc, root)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    sirst, paths, bottle_paths, pick = choosing_sets(args.datasets)
    with InspectionEngine({"segmenter": args.models / model}, device="cpu", half=False) as engine:
        own = features(engine, paths, None)
        bottle = features(engine, bottle_paths, None)
        changed = {c: features(engine, [paths[i] for i in pick], fn) for c, fn in CAMERA_CHANGES.items()}
        report: dict[str, Any] = extra(engine, paths, own, bottle) if extra is not None else {}
    groups, group_rule = path_groups(paths, sirst)
    report = {"model": model, "images": len(paths), "group_rule": group_rule,
              "groups": len(set(groups)) if groups else 0, "bottle_images": len(bottle_paths), **report,
              "rules": compare(own, bottle, changed, pick, groups, rules, seeds)}
    report["adopt"] = adopts(*(report["rules"][k] for k in rules))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"rule ({rule_file}): {'ADOPT' if report['adopt'] else 'do not adopt'} the {part} ({report['seconds']} s)")
    write_report(report, args.json)
    return 0
