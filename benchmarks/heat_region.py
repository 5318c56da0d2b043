"""How fast the heatmap → region tools answer on big images (issue 23, item 2).

    PYTHONPATH=. QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/heat_region.py [--sizes 1024,4096,8192]

One slider step is ``threshold_region`` plus redrawing the region layer (``MaskLayer.reset``,
what ``ImageViewer.preview_threshold`` does); one grow click is ``grow_region`` plus the same
redraw. The slider previews once per pass of the event loop, so a step slower than a frame makes
the preview trail the handle, never pile up. Median of ``--repeat`` runs per size, in ms.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def smooth_heat(size: int, seed: int = 0) -> np.ndarray:
    """A model-like map: a few Gaussian hot spots over low noise, at the image's size."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.random((size // 16, size // 16)).astype(np.float32) * 0.2
    for _ in range(6):
        y, x = rng.integers(0, small.shape[0], 2)
        cv2.circle(small, (int(x), int(y)), max(1, small.shape[0] // 20), 1.0, -1)
    return cv2.GaussianBlur(cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR), (0, 0), size / 200)


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,4096,8192")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from PySide6.QtWidgets import QApplication

    from app.gui.layers import MaskLayer
    from app.services.heat_region import grow_region, threshold_region

    _app = QApplication([])
    print("| image | threshold | + region layer redraw (one slider step) | grow | + redraw (one click) |")
    print("|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        heat = smooth_heat(size)
        layer = MaskLayer(3, (255, 0, 255))
        y, x = np.unravel_index(int(heat.argmax()), heat.shape)
        level = float(np.quantile(heat, 0.97))
        t_thr = timed(lambda: threshold_region(heat, level), args.repeat)  # noqa: B023 - timed now
        t_step = timed(lambda: layer.reset(size, size, threshold_region(heat, level)), args.repeat)  # noqa: B023 - timed now
        t_grow = timed(lambda: grow_region(heat, int(x), int(y)), args.repeat)  # noqa: B023 - timed now
        t_click = timed(lambda: layer.reset(size, size, layer.to_bool() | grow_region(heat, int(x), int(y))),  # noqa: B023 - timed now
                        args.repeat)
        print(f"| {size}×{size} | {t_thr:.1f} ms | {t_step:.1f} ms | {t_grow:.1f} ms | {t_click:.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
