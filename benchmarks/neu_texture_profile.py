"""Where the ``defect_bank`` vector's time goes, part by part, before (the reference) and after (ADR 0039).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/neu_texture_profile.py --data /work/shared/datasets/neu_cls/val \\
        [--images 24] [--rounds 3]

One thread (``cv2.setNumThreads(1)``), NEU val images (200 x 200 gray, decoded once, not timed); each
part is timed over the images, best of ``--rounds``, in ms per image. The parts of the reference
(``tests/inference/texture_reference.py``) are called as the reference calls them; "of which" rows
time a piece of a part alone. The load average is printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import cv2

    from inference import texture_bank as fast_bank
    from inference import texture_features as fast
    from inference.imageio import read_image
    from tests.inference import texture_reference as ref

    cv2.setNumThreads(1)
    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".bmp"))
    paths = paths[:: max(1, len(paths) // args.images)][: args.images]
    grays = [fast.gray_of(read_image(p, "gray")) for p in paths]

    def standardised(g: np.ndarray) -> np.ndarray:
        s, med, mad = ref.shrunk_with_spread(g, ref.BANK_SIDE)
        return np.clip((s - med) / mad, -20, 20).astype(np.float32)

    zs = [standardised(g) for g in grays]

    def timed(fn: Callable[[int], object]) -> float:
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for i in range(len(grays)):
                fn(i)
            best = min(best, (time.perf_counter() - t0) / len(grays))
        return best * 1000

    def glcm(i: int) -> None:
        edges = np.quantile(zs[i], np.linspace(0, 1, ref.GLCM_LEVELS + 1)[1:-1])
        q = np.searchsorted(edges, zs[i]).astype(np.int64)
        for d in ref.GLCM_DISTANCES:
            ref._glcm(q, d)

    def defect_summaries(i: int) -> None:
        r = zs[i]
        for sigma in ref.DEFECT_SIGMAS:
            dog = cv2.GaussianBlur(r, (0, 0), sigma) - cv2.GaussianBlur(r, (0, 0), 2 * sigma)
            for _ in range(5):
                ref._summary(np.maximum(dog, 0))

    def band_stats_only(i: int) -> None:
        r = ref._inner(zs[i]).reshape(-1).astype(np.float64)
        for _ in ref.BAND_SIGMAS:
            sd = r.std() + 1e-6
            c = (r - r.mean()) / sd
            _ = [(c ** 3).mean(), (c ** 4).mean()]

    def fast_glcm(i: int) -> None:
        q = fast_bank._levels(zs[i])
        for d in fast_bank.GLCM_DISTANCES:
            fast_bank._glcm(q, d)

    def fast_band(i: int) -> None:
        sigmas = sorted({*fast_bank.BAND_SIGMAS, *(2 * s for s in fast_bank.BAND_SIGMAS)})
        blurred = {s: cv2.GaussianBlur(zs[i], (0, 0), s) for s in sigmas}
        for sigma in fast_bank.BAND_SIGMAS:
            fast_bank._band(blurred, sigma)

    rows = [
        ("reference: the whole defect_bank vector", lambda i: ref.image_defect_bank(grays[i])),
        ("  defect_vector (small-defect statistics)", lambda i: ref.defect_vector(grays[i])),
        ("    of which 20 summaries (np.percentile + np.partition; with 8 blurs)", defect_summaries),
        ("  bank_vector (LBP, Gabor, GLCM, band-pass)", lambda i: ref.bank_vector(grays[i])),
        ("    shrink + two medians (done again by defect_vector)", lambda i: ref.shrunk_with_spread(grays[i], 256)),
        ("    LBP, 4 radii (8 warpAffine each, var, percentiles)", lambda i: [ref._lbp(zs[i], r) for r in ref.LBP_RADII]),
        ("    Gabor, 3 wavelengths x 6 orientations (36 filter2D)",
         lambda i: [ref._gabor(zs[i], lam) for lam in ref.GABOR_WAVELENGTHS]),
        ("    GLCM (np.quantile, searchsorted, 12 bincounts)", glcm),
        ("    band-pass, 4 scales (8 blurs, float64 moments)", lambda i: [ref._band(zs[i], s) for s in ref.BAND_SIGMAS]),
        ("      of which the moments alone (c ** 3, c ** 4 by pow)", band_stats_only),
        ("    z percentiles", lambda i: np.percentile(ref._inner(zs[i]), ref.Z_PERCENTILES)),
        ("fast: the whole defect_bank vector", lambda i: fast.image_defect_bank(grays[i])),
        ("  defect part (defect_of_shrunk)", lambda i: fast.defect_of_shrunk(*fast_bank.shrunk_with_spread(grays[i], 256))),
        ("  bank part (bank_of_shrunk)", lambda i: fast_bank.bank_of_shrunk(*fast_bank.shrunk_with_spread(grays[i], 256))),
        ("    LBP, 4 radii", lambda i: [fast_bank._lbp(zs[i], r) for r in fast_bank.LBP_RADII]),
        ("    Gabor by one DFT + 18 inverse", lambda i: fast_bank._gabor_all(zs[i])),
        ("    GLCM", fast_glcm),
        ("    band-pass, 4 scales (5 blurs, moments by dot products)", fast_band),
        ("    shrink + two medians (once for both parts)", lambda i: fast_bank.shrunk_with_spread(grays[i], 256)),
    ]
    load = os.getloadavg()[0]
    print(f"{len(grays)} NEU images {grays[0].shape}, one thread, best of {args.rounds}, load {load:.2f}")
    print("| part | ms / image |\n|---|---|")
    for name, fn in rows:
        print(f"| {name} | {timed(fn):.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
