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

import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

CANDIDATE = ("candidate (+ texture bank)", ("embedding", "descriptor", "descriptor_range"))


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


def _bank_cost(engine: Any, paths: list[Path], *_: Any) -> dict[str, Any]:
    t = time.perf_counter()
    _features(engine, paths[:20])
    return {"descriptor_and_bank_ms_per_frame": round(1000 * (time.perf_counter() - t) / 20, 1)}


def main() -> int:
    from ood_part_study import run

    return run(__doc__ or "", ROOT, CANDIDATE, _features, "ood-bank.md", "texture part", _bank_cost)


if __name__ == "__main__":
    raise SystemExit(main())
