"""The segmenter's domain description with a texture part, on training and choosing data only (issue 20 item 3;
the rule is in results/ood-bank.md, written before this script's first run).

    PYTHONPATH=. python benchmarks/ood_bank.py [--datasets ../shared/datasets] [--json OUT]

Own data: SIRST train.txt (scene groups, as ``domain fit`` makes them); foreign choosing data: MVTec bottle
train/good; the 8 synthetic camera changes of ``ood_select.py`` on 100 training frames, each scored by the fit that
did not see its frame's scene. Two descriptions, each refitted per fold with the shipped rule (ADR 0036: quantile
by group CV, parts combined by the largest scaled distance): the shipped one (the image descriptor as a Gaussian
and a range) and the candidate (the same plus a Gaussian of the texture bank, ``inference.texture_bank``, of the
image as the segmenter is handed it). For this study the bank rides in the description's ``embedding`` slot (a
Gaussian of whatever features it is given); nothing in the station reads it there. The frozen sets are not read.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

MODEL = "segmenter-sirst-v3"
OWN_MAX, OWN_ABOVE_MAX, BOTTLE_MIN, CHANGES_BELOW_MAX = 0.01, 0.005, 0.95, 0.02
RULES = {"shipped (descriptor + range)": ("descriptor", "descriptor_range"),
         "candidate (+ texture bank)": ("embedding", "descriptor", "descriptor_range")}


def _features(engine: Any, paths: list[Path], transform: Callable[[np.ndarray], np.ndarray] | None = None
              ) -> dict[str, np.ndarray]:
    """The descriptor and the texture bank of each image as the segmenter is handed it."""
    from inference.imageio import decode
    from inference.texture_features import image_bank

    model = engine.model("segmenter")
    desc, bad = engine.domain_features_files(paths, "segmenter", ("descriptor",), transform=transform)
    if bad:
        raise SystemExit(f"unreadable: {bad[:3]}")
    bank = []
    for p in paths:
        view = decode(p, {model.mode: model.max_side}).views[model.mode]
        bank.append(image_bank(transform(view) if transform is not None else view))
    return {"descriptor": desc["descriptor"], "embedding": np.stack(bank).astype(np.float32)}


def _fit(feats: dict[str, np.ndarray], parts: tuple[str, ...], groups: list[str] | None) -> Any:
    from inference.domain import fit_domain

    return fit_domain({k: v for k, v in feats.items() if k in {("embedding" if p == "embedding" else "descriptor")
                                                                  for p in parts}}, groups=groups, parts=parts)


def _flag(stats: Any, feats: dict[str, np.ndarray]) -> np.ndarray:
    from inference.domain import OUT_OF_DOMAIN_BELOW

    return stats.scores({k: feats[k] for k in stats.features}) < OUT_OF_DOMAIN_BELOW


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--models", type=Path, default=ROOT / "resources" / "models")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from ood_group_cv import FOLDS, PICK  # the same choosing sample and folds as the other OOD studies
    from ood_select import CAMERA_CHANGES

    from inference.domain import fold_of
    from inference.domain_fit import images_under
    from inference.engine import InspectionEngine
    from inference.training.groups import path_groups

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    root = args.datasets / "sirst" / "images"
    paths = images_under(root, (args.datasets / "sirst" / "train.txt").read_text(encoding="utf-8").splitlines())
    bottle_paths = images_under(args.datasets / "mvtec_ad" / "bottle" / "train" / "good")
    pick = np.sort(np.random.default_rng(1).choice(len(paths), min(PICK, len(paths)), replace=False))
    with InspectionEngine({"segmenter": args.models / MODEL}, device="cpu", half=False) as engine:
        own = _features(engine, paths)
        t_bank = time.perf_counter()
        _features(engine, paths[:20])
        ms_per_frame = 1000 * (time.perf_counter() - t_bank) / 20
        bottle = _features(engine, bottle_paths)
        changed = {c: _features(engine, [paths[i] for i in pick], fn) for c, fn in CAMERA_CHANGES.items()}
    groups, group_rule = path_groups(paths, root)
    report: dict[str, Any] = {"model": MODEL, "images": len(paths), "group_rule": group_rule,
                              "groups": len(set(groups)) if groups else 0, "bottle_images": len(bottle_paths),
                              "descriptor_and_bank_ms_per_frame": round(ms_per_frame, 1), "rules": {}}
    for name, parts in RULES.items():
        full = _fit(own, parts, groups)
        row: dict[str, Any] = {"parts": list(parts), "threshold": round(full.threshold, 4), "quantile": full.quantile,
                               "bottle_train_good": round(float(_flag(full, bottle).mean()), 4), "per_seed": []}
        for seed in seeds:
            fold = fold_of(len(paths), FOLDS, seed, groups)
            flagged = np.zeros(len(paths), bool)
            hits = {c: np.zeros(len(pick), bool) for c in changed}
            for f in range(int(fold.max()) + 1):
                rest, held = fold != f, fold == f
                sub_groups = [g for g, r in zip(groups, rest) if r] if groups is not None else None
                stats = _fit({k: v[rest] for k, v in own.items()}, parts, sub_groups)
                flagged[held] = _flag(stats, {k: v[held] for k, v in own.items()})
                mine = held[pick]
                for c, cf in changed.items():
                    if mine.any():
                        hits[c][mine] = _flag(stats, {k: v[mine] for k, v in cf.items()})
            row["per_seed"].append({"seed": seed, "own": round(float(flagged.mean()), 4),
                                    "changes": {c: round(float(h.mean()), 4) for c, h in hits.items()}})
        row["own_mean"] = round(float(np.mean([s["own"] for s in row["per_seed"]])), 4)
        row["changes_mean"] = round(float(np.mean([np.mean(list(s["changes"].values())) for s in row["per_seed"]])), 4)
        report["rules"][name] = row
        per_seed = ", ".join(f"{s['own']:.2%}" for s in row["per_seed"])
        print(f"{name}: threshold {row['threshold']:.3f} (q {row['quantile']:g}); group-CV own {row['own_mean']:.2%} "
              f"(seeds {per_seed}); camera changes {row['changes_mean']:.1%}; "
              f"bottle train/good {row['bottle_train_good']:.1%}", flush=True)
    base, cand = (report["rules"][k] for k in RULES)
    adopt = (cand["own_mean"] <= OWN_MAX and cand["own_mean"] <= base["own_mean"] + OWN_ABOVE_MAX
             and cand["bottle_train_good"] >= BOTTLE_MIN and cand["changes_mean"] >= base["changes_mean"] - CHANGES_BELOW_MAX)
    report["adopt"] = adopt
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"rule (ood-bank.md): {'ADOPT' if adopt else 'do not adopt'} the texture part "
          f"(descriptor + bank {ms_per_frame:.0f} ms per frame; {report['seconds']} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
