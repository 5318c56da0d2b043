"""Do the station's answers on a GPU agree with its answers on a CPU? The bundled demo images, each family.

    python benchmarks/gpu_agreement.py --out gpu_agreement.json [--folder resources/samples/demo]

An inspector who moves a station onto a GPU must get the same labels, masks and flags. Every image
of the folder goes through every family's bundled model three times: ``InspectionEngine`` on the
CPU (the reference, the station's numba scan), on the GPU in float32 (mamba-ssm's kernel where it
imports, else the torch scan) and on the GPU as a station runs it (half precision where the
engine's probe keeps it). Per family and GPU run: how many answers differ (class label; anomaly
flag against the card threshold; segmentation masks by pixel IoU and target count), the largest
score difference, non-finite values, and every Python warning raised (with its source line), since
a warning on the GPU alone is a finding. Needs only ``inference/`` (runs under the GPU image's own
Python); with no GPU it exits with a message.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference import families  # noqa: E402
from inference.bundled import bundled_model_dir  # noqa: E402
from inference.engine import InspectionEngine  # noqa: E402
from inference.imageio import IMAGE_SUFFIXES  # noqa: E402
from inference.results import ImageResult  # noqa: E402


def run(family: str, paths: list[str], device: str, half: bool | None) -> tuple[list[ImageResult], list[str], bool]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with InspectionEngine({family: bundled_model_dir(family)}, device=device, half=half) as engine:
            used_half = engine.loaded()[family].half
            results = engine.predict_paths(paths, 8)
    seen = sorted({f"{Path(w.filename).name}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught})
    return results, seen, used_half


def compare(family: str, ref: list[ImageResult], got: list[ImageResult]) -> dict[str, Any]:
    row: dict[str, Any] = {"images": len(ref), "errors": [g.error for g in got if g.error][:5], "non_finite": 0}
    differ, worst = 0, 0.0
    ious: list[float] = []
    for r, g in zip(ref, got):
        if r.error or g.error:
            continue
        if family == "classifier":
            a, b = r.classifier, g.classifier
            assert a is not None and b is not None
            row["non_finite"] += int(not np.isfinite(b.scores).all())
            differ += int(a.label != b.label)
            worst = max(worst, float(np.abs(a.scores - b.scores).max()))
        elif family == "segmenter":
            sa, sb = r.segmenter, g.segmenter
            assert sa is not None and sb is not None
            union = np.logical_or(sa.mask, sb.mask).sum()
            ious.append(1.0 if union == 0 else float(np.logical_and(sa.mask, sb.mask).sum() / union))
            differ += int(sa.target_count != sb.target_count)
        else:
            aa, ab = r.anomaly, g.anomaly
            assert aa is not None and ab is not None
            row["non_finite"] += int(not (np.isfinite(ab.anomaly_map).all() and np.isfinite(ab.score)))
            if aa.threshold is not None:
                differ += int((aa.score >= aa.threshold) != (ab.score >= aa.threshold))
            worst = max(worst, abs(aa.score - ab.score) / max(abs(aa.score), 1e-6))
    row["answers_differ"] = differ
    if family == "segmenter":
        row["mask_iou_min"] = round(min(ious), 4) if ious else None
        row["mask_iou_mean"] = round(float(np.mean(ious)), 4) if ious else None
    else:
        row["largest_score_difference" if family == "classifier" else "largest_relative_score_difference"] = worst
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--folder", default=str(Path(__file__).resolve().parent.parent / "resources/samples/demo"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: this check compares a GPU's answers with the CPU's")
    paths = sorted(str(p) for p in Path(args.folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    out: dict[str, Any] = {"folder": args.folder, "images": len(paths), "families": {}}
    for family in families.NAMES:
        ref, ref_warn, _ = run(family, paths, "cpu", False)
        fam: dict[str, Any] = {"model": bundled_model_dir(family).name, "cpu_warnings": ref_warn}
        for name, half in (("gpu_fp32", False), ("gpu_station", None)):
            got, got_warn, used_half = run(family, paths, "cuda", half)
            fam[name] = {"half_precision": used_half, "warnings": got_warn, **compare(family, ref, got)}
        out["families"][family] = fam
        print(json.dumps({family: fam}), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
