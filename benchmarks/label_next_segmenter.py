"""How many of the frames "label next" proposes on a segmenter-only line the segmenter has wrong, against random
orders (issue 20 item 2, ADR 0071; the protocol is in results/label-next-segmenter.md, written before the run).

    PYTHONPATH=. python benchmarks/label_next_segmenter.py [--datasets ../shared/datasets] [--json OUT]

Nothing is chosen here: the order's constants are the product's (``label_next_segmenter``, ``label_next``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "segmenter-sirst-v3"
FIRST = (10, 20, 40)
RANDOM_SEEDS = 20


def corrections(truth: np.ndarray, predicted: np.ndarray) -> int:
    """Missed ground-truth components plus predicted components touching no ground truth (8-connected)."""
    nt, lt = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
    npd, lp = cv2.connectedComponents(predicted.astype(np.uint8), connectivity=8)
    missed = sum(1 for k in range(1, nt) if not predicted[lt == k].any())
    false = sum(1 for k in range(1, npd) if not truth[lp == k].any())
    return missed + false


def walk(cands: list[Any], x: np.ndarray, batch: Callable[[list[Any], np.ndarray, int], Any], size: int = 20,
         total: int = max(FIRST)) -> list[int]:
    """Rows in the order an inspector walks them: a batch, reviewed, the next batch with those as anchors."""
    from dataclasses import replace

    order: list[int] = []
    cands = list(cands)
    while len(order) < total:
        got = batch(cands, x, min(size, total - len(order)))
        rows = [next(i for i, c in enumerate(cands) if c.image_id == image_id) for image_id in got.image_ids]
        if not rows:
            break
        order += rows
        for i in rows:
            cands[i] = replace(cands[i], reviewed=True)
    return order


def summary(order: list[int], need: np.ndarray) -> dict[str, Any]:
    return {str(k): {"frames": int((need[order[:k]] > 0).sum()), "corrections": int(need[order[:k]].sum())}
            for k in FIRST}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--models", type=Path, default=ROOT / "resources" / "models")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from json_report import write_report

    from app.services.image_embedding import EmbeddingCache, embedding_source
    from app.services.label_next_segmenter import SegmenterCandidate, propose_segmenter
    from inference.engine import InspectionEngine

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sirst = args.datasets / "sirst"
    names = (sirst / "val.txt").read_text(encoding="utf-8").split()
    paths = [sirst / "images" / f"{n}.png" for n in names]
    with InspectionEngine({"segmenter": args.models / MODEL}, device="cpu", half=False) as engine:
        results = engine.predict_paths(paths)
    need, cands = [], []
    for i, (p, r) in enumerate(zip(paths, results)):
        truth = cv2.imread(str(sirst / "masks" / p.name), cv2.IMREAD_GRAYSCALE) > 0
        seg = r.segmenter
        need.append(corrections(truth, seg.mask))
        cands.append(SegmenterCandidate(i, False, seg.confidence, seg.target_count, r.in_domain.get("segmenter")))
    needs = np.asarray(need)
    with tempfile.TemporaryDirectory() as cache:
        x, problems = EmbeddingCache(Path(cache), embedding_source()).vectors([(str(p), None) for p in paths])
    if problems:
        raise SystemExit(f"unreadable: {problems[:3]}")
    blind = [SegmenterCandidate(c.image_id, False, None, None, None) for c in cands]   # every frame alike
    orders = {"label next": walk(cands, x, propose_segmenter),
              "confidence alone": list(np.argsort([c.confidence for c in cands], kind="stable")[:max(FIRST)]),
              "diversity alone": walk(blind, x, propose_segmenter)}
    report: dict[str, Any] = {"model": MODEL, "frames": len(paths), "frames_needing_correction": int((needs > 0).sum()),
                              "corrections": int(needs.sum()),
                              "confidence_below_1": int(sum(c.confidence < 1 for c in cands)),
                              "orders": {k: summary(v, needs) for k, v in orders.items()}}
    rand = [summary(list(np.random.default_rng(s).permutation(len(paths))), needs) for s in range(RANDOM_SEEDS)]
    report["orders"]["random (mean of 20)"] = {
        k: {m: round(float(np.mean([r[k][m] for r in rand])), 2) for m in ("frames", "corrections")} for k in map(str, FIRST)}
    report["random_range"] = {k: {m: [min(r[k][m] for r in rand), max(r[k][m] for r in rand)]
                                  for m in ("frames", "corrections")} for k in map(str, FIRST)}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{len(paths)} frames, {report['frames_needing_correction']} need a correction "
          f"({report['corrections']} corrections); confidence below 1 on {report['confidence_below_1']}")
    for name, row in report["orders"].items():
        print(f"  {name:22s} " + "; ".join(f"first {k}: {v['frames']} frames / {v['corrections']} corrections"
                                           for k, v in row.items()))
    print(f"  random range: {json.dumps(report['random_range'])}")
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
