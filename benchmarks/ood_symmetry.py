"""The segmenter's domain description with a symmetry part, on training and choosing data only (issue 20 item 3;
the rule is in results/ood-symmetry.md, written before this script's first run).

    PYTHONPATH=. python benchmarks/ood_symmetry.py [--datasets ../shared/datasets] [--json OUT]

Own data: SIRST train.txt (scene groups, as ``domain fit`` makes them); foreign choosing data: MVTec bottle
train/good; the 8 synthetic camera changes of ``ood_select.py`` on 100 training frames. Two descriptions, each
refitted per fold with the shipped rule (ADR 0036): the shipped one (the image descriptor as a Gaussian and a range)
and the candidate (the same plus ``symmetry``, ``inference.image_descriptor.symmetry`` of the image as the segmenter
is handed it). The features come from the engine's own ``domain_features_files``. The frozen sets are not read.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

CANDIDATE = ("candidate (+ symmetry)", ("descriptor", "descriptor_range", "symmetry"))


def _features(engine: Any, paths: list[Path], transform: Any = None) -> dict[str, np.ndarray]:
    """The descriptor and the symmetry of each image as the segmenter is handed it (the engine's own path)."""
    feats, bad = engine.domain_features_files(paths, "segmenter", ("descriptor", "symmetry"), transform=transform)
    if bad:
        raise SystemExit(f"unreadable: {bad[:3]}")
    return feats


def _symmetry_facts(engine: Any, paths: list[Path], own: dict[str, np.ndarray], bottle: dict[str, np.ndarray]
                    ) -> dict[str, Any]:
    """What the part costs per frame, and the turn-by-90° correlations' extremes on both choosing sets."""
    from inference.image_descriptor import SYMMETRY_UNIT, symmetry_images
    from inference.imageio import decode

    model = engine.model("segmenter")
    views = [decode(p, {model.mode: model.max_side}).views[model.mode] for p in paths[:40]]
    t = time.perf_counter()
    symmetry_images(views)
    ms = 1000 * (time.perf_counter() - t) / len(views)
    return {"symmetry_ms_per_frame": round(ms, 2),
            "turn_90_own_max": round(float(own["symmetry"][:, 0].max() * SYMMETRY_UNIT), 3),
            "turn_90_bottle_min": round(float(bottle["symmetry"][:, 0].min() * SYMMETRY_UNIT), 3)}


def main() -> int:
    from ood_part_study import run

    return run(__doc__ or "", ROOT, CANDIDATE, _features, "ood-symmetry.md", "symmetry part", _symmetry_facts)


if __name__ == "__main__":
    raise SystemExit(main())
