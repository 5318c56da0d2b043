"""Which image-descriptor features describe an anomaly model's domain (issue 20 item 3, ADR 0038),
chosen on TRAINING images and synthetic changes of them only; no test split is read.

    PYTHONPATH=. python benchmarks/ood_anomaly_select.py [--datasets ../shared/datasets] [--seeds 0,1,2] [--json OUT]

An anomaly model exists to flag an image unlike every good image, so its domain description must
not move with what a defect changes (local detail, block contrast, grey-level tails) but must move
with what a different camera, product or sensor changes. Candidate feature sets (``CANDIDATES``,
acquisition-level features only, and all 31 as shipped before for the record) are scored for both
bundled anomaly models with the shipped threshold rule (``inference.domain.fit_domain``, group-CV
quantile, descriptor + range), refitted without one outer fold of whole capture groups (fold
seeds ``--seeds``) and scored on that fold:

- **own**: the held-out training images called out of domain (target <= 1 %);
- **synthetic defects** (``DEFECTS``): a large dark disc, a large bright disc and a dark scratch
  painted on 100 held-out training images; the dark disc and the scratch must stay in domain
  (target <= 2 % each, ``CONSTRAINED``; the bright disc is reported: see ``CONSTRAINED``);
- **camera changes**: the eight synthetic changes of ``benchmarks/ood_select.py`` of the same
  images (higher is better).

Rule (``choose``): among the candidate sets (not the all-31 record) meeting both targets on both models, the highest camera-change
detection averaged over the two models; within 1 point, the fewer features.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

MODELS = ("anomaly-magnetic_tile", "anomaly-bottle")
OWN_MAX = 0.01
DEFECT_MAX = 0.02
TIE = 0.01
_SIZE = ["log_long_side", "log_short_side", "file_channels"]
_COLOUR = ["colour_spread"]
_QUARTILES = ["grey_q25", "grey_q50", "grey_q75"]
_S8 = ["log_grad_x_s8", "log_grad_y_s8", "log_laplacian_s8"]
# Acquisition-level features only (a camera, product or sensor changes them; a local defect should
# not): the file's size and channels always, then colour spread, the grey median or quartiles
# (global grey levels, no tails) and the coarsest scale's detail (global texture scale). The 31
# features of every model before ADR 0038 for the record.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "size+channels": tuple(_SIZE),
    "size+channels, grey median": tuple(_SIZE + ["grey_q50"]),
    "size+channels, grey q25": tuple(_SIZE + ["grey_q25"]),
    "size+channels, grey quartiles": tuple(_SIZE + _QUARTILES),
    "size+channels, colour": tuple(_SIZE + _COLOUR),
    "size+channels, colour, grey median": tuple(_SIZE + _COLOUR + ["grey_q50"]),
    "size+channels, grey median, detail s8": tuple(_SIZE + ["grey_q50"] + _S8),
    "size+channels, grey quartiles, detail s8": tuple(_SIZE + _QUARTILES + _S8),
    "size+channels, colour, grey quartiles, detail s8": tuple(_SIZE + _COLOUR + _QUARTILES + _S8),
    "all 31 (before ADR 0038)": (),
}
RECORD_ONLY = {"all 31 (before ADR 0038)"}
# The synthetic defects a chosen set must leave in domain. The bright disc is reported, not a
# constraint: on the bottle, whose 209 training images are nearly alike, every set holding any
# grey-level statistic flags it (7 % of the area at white moves the median more than the training
# images differ), and a set without grey levels misses a global gain (half exposure, gamma).
CONSTRAINED = ("dark_disc", "dark_scratch")


def _disc(x: np.ndarray, value: float) -> np.ndarray:
    """A disc of radius 15 % of the short side (about 7 % of the area), off centre."""
    h, w = x.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (int(w * 0.55), int(h * 0.45)), max(1, int(0.15 * min(h, w))), 1, -1)
    out = x.copy()
    out[mask.astype(bool)] = value
    return out.astype(np.float32)


def _scratch(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.line(mask, (int(w * 0.2), int(h * 0.3)), (int(w * 0.8), int(h * 0.7)), 1, max(1, int(0.02 * min(h, w))))
    out = x.copy()
    out[mask.astype(bool)] = 0.02
    return out.astype(np.float32)


DEFECTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "dark_disc": lambda x: _disc(x, 0.02),
    "bright_disc": lambda x: _disc(x, 0.98),
    "dark_scratch": _scratch,
}


def _rules() -> dict[str, Callable[..., Any]]:
    from ood_group_cv import PARTS

    from inference.domain import fit_domain

    def rule(names: tuple[str, ...]) -> Callable[..., Any]:
        return lambda x, g: fit_domain({"descriptor": x}, groups=g, parts=PARTS, descriptor_features=names)

    return {name: rule(names) for name, names in CANDIDATES.items()}


def summarise(rules: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per candidate: own rate, camera-change detection and each defect kind's rate, seed means."""
    out = {}
    for name, r in rules.items():
        seeds = r["per_seed"]
        cams = [np.mean([v for c, v in s["changes"].items() if c not in DEFECTS]) for s in seeds]
        row = {"own": float(np.mean([s["own"] for s in seeds])), "camera": float(np.mean(cams))}
        row.update({d: float(np.mean([s["changes"][d] for s in seeds])) for d in DEFECTS})
        out[name] = row
    return out


def choose(summary: dict[str, dict[str, dict[str, float]]]) -> str | None:
    """The candidate meeting the own and defect targets on every model with the highest mean
    camera-change detection; within ``TIE``, the fewer features (None: no candidate meets them)."""
    ok = [c for c in CANDIDATES if c not in RECORD_ONLY
          and all(s[c]["own"] <= OWN_MAX and all(s[c][d] <= DEFECT_MAX for d in CONSTRAINED) for s in summary.values())]
    if not ok:
        return None
    score = {c: float(np.mean([s[c]["camera"] for s in summary.values()])) for c in ok}
    best = max(score.values())
    near = [c for c in ok if score[c] >= best - TIE]
    return min(near, key=lambda c: len(CANDIDATES[c]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--models", type=Path, default=ROOT / "resources" / "models")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    import torch
    from ood_group_cv import PICK, _descriptors, _specs, evaluate
    from ood_select import CAMERA_CHANGES

    from inference.engine import InspectionEngine
    from inference.training.groups import path_groups

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    specs = _specs(args.datasets)
    report: dict[str, Any] = {"seeds": seeds, "candidates": {k: list(v) for k, v in CANDIDATES.items()}, "models": {}}
    summary = {}
    for name in MODELS:
        spec, t0 = specs[name], time.perf_counter()
        paths = spec["train"]
        pick = np.sort(np.random.default_rng(1).choice(len(paths), min(PICK, len(paths)), replace=False))
        with InspectionEngine({spec["family"]: args.models / name}, device="cpu", half=False) as engine:
            x = _descriptors(engine, spec["family"], paths)
            changed = {c: (_descriptors(engine, spec["family"], [paths[i] for i in pick], fn), pick)
                       for c, fn in {**CAMERA_CHANGES, **DEFECTS}.items()}
        groups, rule = path_groups(paths, spec["root"])
        rules = evaluate(x, groups, changed, None, seeds, _rules())
        summary[name] = summarise(rules)
        report["models"][name] = {"images": len(paths), "group_rule": rule, "summary": summary[name], "rules": rules,
                                  "seconds": round(time.perf_counter() - t0, 1)}
        print(f"\n{name}: {len(paths)} training images, folds by {rule}")
        for c, s in summary[name].items():
            print(f"  {c:34s} own {s['own']:.2%}  camera changes {s['camera']:.1%}  "
                  + "  ".join(f"{d} {s[d]:.0%}" for d in DEFECTS), flush=True)
    chosen = choose(summary)
    report["chosen"] = chosen
    print(f"\nchosen: {chosen} {list(CANDIDATES[chosen]) if chosen else ''}")
    from json_report import write_report

    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
