""""Label next" for anomaly verdicts against a random order: the folder's operating point after k verdicts.

    PYTHONPATH=. python benchmarks/label_next_anomaly.py [--data ../shared/datasets/magnetic_tile/val]
        [--model resources/models/anomaly-magnetic_tile] [--counts 10,20,40] [--seeds 0,1,2,3,4] [--json FILE]

Why: where no classifier runs (a new line), "label next" proposes anomaly verdicts (``app.services.
label_next_anomaly``, a product rule fixed before this script was written). What an inspector's first verdicts buy
on such a line is the folder's operating point (*Project ▸ Operating point…*): the threshold that costs least over
the reviewed scores. This measures how good that threshold is on the images not yet reviewed, after k verdicts in
the label-next order and in random orders (issue 20 item 2 asks for label next against random on learning curves).

Images: an ImageFolder whose ``free`` / ``good`` class is normal and every other class anomalous, each scored once by
the anomaly model (score and in-domain score) and embedded by the station's label-next embedding. Label next is
recomputed after every ``--step`` verdicts with the reviewed images as anchors, the model card's threshold as the
proposal's; random orders are seeded. After k verdicts: the cheapest threshold over the reviewed scores
(``operating_point``: an escape costs 10, a false call 1); where the k verdicts hold no normal or no anomalous
image, the card's threshold stands (counted). Reported on the rest: cost per image, escapes, false calls. Nothing
is chosen here; the label-next order's constants are the shipped ones.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NORMAL_CLASSES = ("free", "good")


def _score(model: Path, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, float]:
    import torch

    from inference.engine import InspectionEngine

    torch.set_num_threads(1)
    scores, in_domain = [], []
    threshold = float("nan")
    with InspectionEngine({"anomaly": model}, device="cpu", half=False) as engine:
        for r in engine.predict_paths(paths, 8):
            if r.anomaly is None:
                raise SystemExit(f"{r.path}: {r.error}")
            scores.append(r.anomaly.score)
            in_domain.append(r.in_domain.get("anomaly", 1.0))
            threshold = r.anomaly.threshold if r.anomaly.threshold is not None else threshold
    return np.asarray(scores), np.asarray(in_domain), threshold


def _threshold_after(scores: np.ndarray, anomalous: np.ndarray, reviewed: list[int], card: float) -> tuple[float, bool]:
    from app.services.operating_point import Costs, OperatingPointError, ReviewedScores, operating_point

    normal = tuple(float(scores[i]) for i in reviewed if not anomalous[i])
    anom = tuple(float(scores[i]) for i in reviewed if anomalous[i])
    try:
        return operating_point(ReviewedScores(0, 0, normal, anom), Costs()).best.threshold, True
    except OperatingPointError:
        return card, False


def _on_rest(scores: np.ndarray, anomalous: np.ndarray, reviewed: list[int], threshold: float) -> dict[str, float]:
    rest = np.setdiff1d(np.arange(len(scores)), np.asarray(reviewed, dtype=np.int64))
    flagged = scores[rest] > threshold
    escapes = int((~flagged & anomalous[rest]).sum())
    false_calls = int((flagged & ~anomalous[rest]).sum())
    return {"cost_per_image": (10 * escapes + false_calls) / max(1, len(rest)), "escapes": escapes,
            "false_calls": false_calls, "rest": int(len(rest))}


def _label_next_order(scores: np.ndarray, in_domain: np.ndarray, x: np.ndarray, card: float, k: int,
                      step: int) -> list[int]:
    from app.services.label_next_anomaly import AnomalyCandidate, propose_anomaly

    reviewed: list[int] = []
    while len(reviewed) < k:
        cands = [AnomalyCandidate(i, i in reviewed, float(scores[i]), card, float(in_domain[i]))
                 for i in range(len(scores))]
        batch = propose_anomaly(cands, x, min(step, k - len(reviewed))).image_ids
        if not batch:
            break
        reviewed += [int(i) for i in batch]
    return reviewed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "magnetic_tile" / "val")
    p.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "anomaly-magnetic_tile")
    p.add_argument("--counts", default="10,20,40")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--step", type=int, default=10, help="verdicts between two label-next batches")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from app.paths import cache_dir
    from app.services.image_embedding import EmbeddingCache, embedding_source
    from inference.domain_fit import images_under

    t0 = time.perf_counter()
    paths = images_under(args.data)
    anomalous = np.array([q.parent.name not in NORMAL_CLASSES for q in paths])
    scores, in_domain, card = _score(args.model, paths)
    cache = EmbeddingCache(cache_dir() / "embeddings", embedding_source())   # the station's own cache
    x, problems = cache.vectors([(str(q), None) for q in paths])
    if problems:
        raise SystemExit(f"unreadable: {problems[:3]}")
    counts = [int(c) for c in args.counts.split(",")]
    report: dict[str, Any] = {"data": str(args.data), "model": args.model.name, "images": len(paths),
                              "anomalous": int(anomalous.sum()), "card_threshold": card,
                              "out_of_domain": int((in_domain < 0.5).sum()), "rows": []}
    base = _on_rest(scores, anomalous, [], card)
    print(f"{len(paths)} images ({int(anomalous.sum())} anomalous), card threshold {card:.3g}: "
          f"cost per image {base['cost_per_image']:.3f} with no verdict")
    ln_order = _label_next_order(scores, in_domain, x, card, max(counts), args.step)
    for k in counts:
        reviewed = ln_order[:k]
        thr, set_ = _threshold_after(scores, anomalous, reviewed, card)
        ln = {"order": "label next", "k": k, "threshold": thr, "operating_point_set": set_,
              "anomalous_reviewed": int(anomalous[reviewed].sum()), **_on_rest(scores, anomalous, reviewed, thr)}
        rnd = []
        for seed in (int(s) for s in args.seeds.split(",")):
            order = list(np.random.default_rng(seed).permutation(len(paths))[:k])
            t, s = _threshold_after(scores, anomalous, order, card)
            rnd.append({"seed": seed, "threshold": t, "operating_point_set": s,
                        "anomalous_reviewed": int(anomalous[order].sum()), **_on_rest(scores, anomalous, order, t)})
        mean = {key: float(np.mean([r[key] for r in rnd])) for key in ("cost_per_image", "escapes", "false_calls")}
        report["rows"] += [ln, {"order": "random", "k": k, "mean": mean, "runs": rnd}]
        print(f"k={k}: label next cost/image {ln['cost_per_image']:.3f} (escapes {ln['escapes']}, false calls "
              f"{ln['false_calls']}, {ln['anomalous_reviewed']} anomalous reviewed, point set {set_}); random mean "
              f"{mean['cost_per_image']:.3f} (escapes {mean['escapes']:.1f}, false calls {mean['false_calls']:.1f}; "
              f"point set in {sum(r['operating_point_set'] for r in rnd)} of {len(rnd)})", flush=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    from json_report import write_report

    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
