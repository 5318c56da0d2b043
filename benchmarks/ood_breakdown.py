"""Where the flagged held-out images of ``benchmarks/ood.py`` lie (issue 20 item 3, ADR 0036):
a count of the same once-scored test sets by sub-set, choosing nothing.

    PYTHONPATH=. python benchmarks/ood_breakdown.py [--datasets ../shared/datasets] [--json OUT]

- segmenter-sirst on val.txt: frames of scenes no train.txt frame shows (scene groups of all
  427 frames, ``inference.training.groups.file_scene_groups``) and of scenes it shows; flagged
  under the shipped threshold and under ``--old-threshold`` (ADR 0028's 3.053; comparable only while
  the parts and scales are those it was set with: since the symmetry part (ADR 0067) its "old_flagged"
  counts mean nothing, and ood-6-breakdown.json's are not read);
- anomaly-bottle on mvtec_ad/bottle/test and anomaly-magnetic_tile on magnetic_tile/val: per
  sub-folder (good / defect kinds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--models", type=Path, default=ROOT / "resources" / "models")
    p.add_argument("--old-threshold", type=float, default=3.0531848901544985)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    import torch

    from inference.domain_fit import images_under
    from inference.engine import InspectionEngine
    from inference.training.groups import file_scene_groups

    torch.set_num_threads(1)
    report: dict = {}
    sirst = args.datasets / "sirst"
    train = images_under(sirst / "images", (sirst / "train.txt").read_text(encoding="utf-8").splitlines())
    val = images_under(sirst / "images", (sirst / "val.txt").read_text(encoding="utf-8").splitlines())
    groups = file_scene_groups(train + val)
    seen = set(groups[:len(train)])
    unseen = np.array([g not in seen for g in groups[len(train):]])
    with InspectionEngine({"segmenter": args.models / "segmenter-sirst"}, device="cpu", half=False) as engine:
        stats = engine.model("segmenter").domain
        feats, _ = engine.domain_features_files(val, "segmenter", stats.features)
    d = stats.distances(feats)
    new, old = d > stats.threshold, d > args.old_threshold
    report["segmenter-sirst"] = {
        "val_frames": len(val), "unseen_scene_frames": int(unseen.sum()),
        "flagged": int(new.sum()), "flagged_unseen": int((new & unseen).sum()),
        "flagged_names": [val[i].name for i in np.flatnonzero(new)],
        "old_threshold": args.old_threshold, "old_flagged": int(old.sum()), "old_flagged_unseen": int((old & unseen).sum())}
    for name, family, root in (("anomaly-bottle", "anomaly", args.datasets / "mvtec_ad" / "bottle" / "test"),
                               ("anomaly-magnetic_tile", "anomaly", args.datasets / "magnetic_tile" / "val")):
        with InspectionEngine({family: args.models / name}, device="cpu", half=False) as engine:
            stats = engine.model(family).domain
            rows = {}
            for sub in sorted(q for q in root.iterdir() if q.is_dir()):
                paths = images_under(sub)
                feats, _ = engine.domain_features_files(paths, family, stats.features)
                rows[sub.name] = {"images": len(paths), "flagged": int((stats.distances(feats) > stats.threshold).sum())}
        report[name] = rows
    print(json.dumps(report, indent=1))
    from json_report import write_report

    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
