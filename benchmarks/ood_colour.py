"""Does the file's own colour in the image descriptor let a grey camera's model call a colour camera's images out of
domain, without flagging its own frames? (issue 20 item 3, ADR 0066; the rule is in results/ood-colour.md.)

    PYTHONPATH=. python benchmarks/ood_colour.py [--datasets ../shared/datasets] [--json OUT]

Training and choosing data only, for the default segmenter ``segmenter-sirst-v3`` (its domain rule, ADR 0036: the
descriptor as a Gaussian and a per-feature range, folds of whole scenes, the quantile by group CV), the 31 features
the bundled statistics were fitted on against the 32 with ``file_colour_spread``:

1. its SIRST training frames, group-CV own-image rate (``ood_group_cv.evaluate``, fold seeds 0, 1, 2);
2. the same frames written as colour JPEG files (quality 85, grey content: a grey camera's frames saved by another
   program), each scored by the fit that did not see its scene;
3. MVTec AD bottle train/good (a colour camera), scored by the full fit.

The frozen sets (SIRST val, the bottle test images, NEU, tiles) are not read here: ``benchmarks/ood.py`` scores them,
once, after the choice.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

MODEL = "segmenter-sirst-v3"
JPEG_QUALITY = 85
# The rule (results/ood-colour.md), on the mean of the fold seeds.
OWN_MAX, OWN_ABOVE_MAX, JPEG_MAX, BOTTLE_MIN = 0.01, 0.005, 0.02, 0.95


def _jpeg_copies(paths: list[Path], folder: Path) -> list[Path]:
    """Each frame written as a 3-channel JPEG of its grey content."""
    out = []
    for i, p in enumerate(paths):
        grey = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        target = folder / f"{i:04d}.jpg"
        cv2.imwrite(str(target), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        out.append(target)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--models", type=Path, default=ROOT / "resources" / "models")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from ood_group_cv import PARTS, _descriptors, evaluate

    from inference.domain import fit_domain
    from inference.domain_fit import images_under
    from inference.engine import InspectionEngine
    from inference.image_descriptor import FEATURES, LEGACY_FEATURES
    from inference.training.groups import path_groups

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    root = args.datasets / "sirst" / "images"
    paths = images_under(root, (args.datasets / "sirst" / "train.txt").read_text(encoding="utf-8").splitlines())
    bottle_paths = images_under(args.datasets / "mvtec_ad" / "bottle" / "train" / "good")
    with tempfile.TemporaryDirectory() as tmp, \
            InspectionEngine({"segmenter": args.models / MODEL}, device="cpu", half=False) as engine:
        x = _descriptors(engine, "segmenter", paths)
        jpeg = _descriptors(engine, "segmenter", _jpeg_copies(paths, Path(tmp)))
        bottle = _descriptors(engine, "segmenter", bottle_paths)
    groups, rule = path_groups(paths, root)
    rules = {
        f"{len(names)} features": (lambda names: lambda xx, g: fit_domain(
            {"descriptor": xx}, groups=g, parts=PARTS, descriptor_features=names))(names)
        for names in (LEGACY_FEATURES, FEATURES)}
    result = evaluate(x, groups, {"jpeg": (jpeg, np.arange(len(paths)))}, bottle, seeds, rules)
    report: dict[str, Any] = {"model": MODEL, "images": len(paths), "group_rule": rule,
                              "groups": len(set(groups)) if groups else 0, "bottle_images": len(bottle_paths),
                              "jpeg_quality": JPEG_QUALITY, "rules": result,
                              "seconds": round(time.perf_counter() - t0, 1)}
    base = result[f"{len(LEGACY_FEATURES)} features"]
    cand = result[f"{len(FEATURES)} features"]
    for name, r in result.items():
        jpeg_rate = float(np.mean([s["changes"]["jpeg"] for s in r["per_seed"]]))
        r["jpeg_mean"] = round(jpeg_rate, 4)
        print(f"{name}: threshold {r['threshold']:.3f} (q {r['quantile']:g}); group-CV own {r['own_mean']:.2%} "
              f"(seeds {r['own_range'][0]:.2%}-{r['own_range'][1]:.2%}); colour-JPEG copies {jpeg_rate:.2%}; "
              f"bottle train/good {r['mvtec_bottle']:.1%}", flush=True)
    adopt = (cand["own_mean"] <= OWN_MAX and cand["own_mean"] <= base["own_mean"] + OWN_ABOVE_MAX
             and cand["jpeg_mean"] <= JPEG_MAX and cand["mvtec_bottle"] >= BOTTLE_MIN)
    report["adopt"] = adopt
    print(f"rule (ood-colour.md): {'ADOPT' if adopt else 'do not adopt'} file_colour_spread "
          f"({report['seconds']} s, {len(paths)} frames in {report['groups']} {rule} groups)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
