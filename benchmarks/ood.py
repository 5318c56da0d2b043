"""Out-of-domain flags of the bundled models on each other's data (issue 20, item 3).

    PYTHONPATH=. python benchmarks/ood.py [--datasets ../shared/datasets] [--per-set 200] [--json OUT]

Each model is scored with the domain statistics stored beside it (``domain.safetensors``, fitted
on its TRAINING images only by ``python main.py domain fit``; the threshold is a quantile of the
training images' out-of-fold distances, chosen by group cross-validation (ADR 0036); the parts it
holds were chosen by ``benchmarks/ood_select.py`` on training and choosing data), on:

- its own held-out images (never used for the statistics): the share flagged out of domain
  must be at most 2 %;
- the other data sets: the share flagged must be at least 95 %.

| model | fitted on | in-domain set (held out) | foreign sets |
|---|---|---|---|
| classifier-neu | neu_cls/train | neu_cls/val | sirst frames, magnetic tiles (train + val), bottle test |
| classifier-neu-texture | neu_cls/train | neu_cls/val | the same (the default NEU classifier) |
| segmenter-sirst | sirst train.txt | sirst val.txt | neu_cls (train + val), magnetic tiles, bottle test |
| anomaly-magnetic_tile | magnetic_tile/train/free | magnetic_tile/val/free | neu_cls, sirst frames, bottle test |
| anomaly-bottle | mvtec_ad/bottle/train/good | mvtec_ad/bottle/test (all) | neu_cls, sirst, magnetic tiles |
| classifier-magnetic_tile | magnetic_tile/train | magnetic_tile/val (all classes) | neu_cls, sirst frames, bottle test |

``segmenter-sirst``'s statistics are those of every bundled segmenter (``-v2`` and the default ``-v3`` hold the same
files). The MVTec bottle test images (``mvtec_ad/bottle/test``, all four folders: the anomaly model's data) are a
foreign set of every other model since session 34: issue 20 asks for the segmenter and the anomaly models "on each
other's data", and a station user's folder of bottles showed the segmenter calling them in domain.

Foreign sets larger than ``--per-set`` are subsampled evenly with a fixed seed (runtime); the
in-domain sets are used whole. Exit status 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_DOMAIN_MAX = 0.02
FOREIGN_MIN = 0.95


def _sets(data: Path) -> dict[str, dict]:
    from inference.domain_fit import images_under

    sirst_val = (data / "sirst" / "val.txt").read_text().splitlines()
    neu = images_under(data / "neu_cls")
    sirst = images_under(data / "sirst" / "images")
    tiles = images_under(data / "magnetic_tile" / "train") + images_under(data / "magnetic_tile" / "val")
    bottle = images_under(data / "mvtec_ad" / "bottle" / "test")
    return {
        "classifier-neu": {"family": "classifier", "fitted_on": "neu_cls/train",
                           "in": ("neu_cls/val", images_under(data / "neu_cls" / "val")),
                           "foreign": {"sirst": sirst, "magnetic_tile": tiles, "mvtec_bottle": bottle}},
        # The default NEU classifier since session 12 (its own statistics: it is handed the image at another size).
        "classifier-neu-texture": {"family": "classifier", "fitted_on": "neu_cls/train",
                                   "in": ("neu_cls/val", images_under(data / "neu_cls" / "val")),
                                   "foreign": {"sirst": sirst, "magnetic_tile": tiles, "mvtec_bottle": bottle}},
        "segmenter-sirst": {"family": "segmenter", "fitted_on": "sirst train.txt",
                            "in": ("sirst val.txt", images_under(data / "sirst" / "images", sirst_val)),
                            "foreign": {"neu_cls": neu, "magnetic_tile": tiles, "mvtec_bottle": bottle}},
        "anomaly-magnetic_tile": {"family": "anomaly", "fitted_on": "magnetic_tile/train/free",
                                  "in": ("magnetic_tile/val/free", images_under(data / "magnetic_tile" / "val" / "free")),
                                  "foreign": {"neu_cls": neu, "sirst": sirst, "mvtec_bottle": bottle}},
        # The two other bundled models (since ADR 0036): their held-out images, defects included
        # (the same camera: in domain whatever the finding).
        "anomaly-bottle": {"family": "anomaly", "fitted_on": "mvtec_ad/bottle/train/good",
                           "in": ("mvtec_ad/bottle/test", images_under(data / "mvtec_ad" / "bottle" / "test")),
                           "foreign": {"neu_cls": neu, "sirst": sirst, "magnetic_tile": tiles}},
        "classifier-magnetic_tile": {"family": "classifier", "fitted_on": "magnetic_tile/train",
                                     "in": ("magnetic_tile/val", images_under(data / "magnetic_tile" / "val")),
                                     "foreign": {"neu_cls": neu, "sirst": sirst, "mvtec_bottle": bottle}},
    }


def _subsample(paths: list[Path], n: int, seed: int = 0) -> list[Path]:
    if len(paths) <= n:
        return paths
    keep = np.sort(np.random.default_rng(seed).choice(len(paths), n, replace=False))
    return [paths[i] for i in keep]


def _flagged(engine, family: str, paths: list[Path]) -> dict:
    from inference.domain import OUT_OF_DOMAIN_BELOW

    stats = engine.model(family).domain
    feats, unreadable = engine.domain_features_files(paths, family, stats.features)
    scores = stats.scores(feats)
    out = scores < OUT_OF_DOMAIN_BELOW
    return {"images": int(len(scores)), "unreadable": len(unreadable), "out_of_domain": int(out.sum()),
            "fraction": round(float(out.mean()), 4),
            "median_distance_over_threshold": round(float(np.median(stats.distances(feats)) / stats.threshold), 3)}


def _cost(engine, family: str, paths: list[Path]) -> dict:
    """Milliseconds per image to decode and compute each kind of feature (same process, same
    images, one after the other): what the in-domain score adds to a prediction."""
    out = {}
    for kinds in (("descriptor",), ("embedding",)):
        t = time.perf_counter()
        engine.domain_features_files(paths, family, kinds)
        out["+".join(kinds)] = round(1000 * (time.perf_counter() - t) / max(1, len(paths)), 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--models", type=Path, default=ROOT / "resources" / "models")
    p.add_argument("--per-set", type=int, default=200, help="foreign images per set (subsampled, seed 0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--only", default="", help="comma-separated model names (default: all)")
    args = p.parse_args()

    import torch

    from inference.engine import InspectionEngine

    torch.set_num_threads(1)
    report: dict = {"per_set": args.per_set, "device": args.device, "models": {}}
    ok = True
    for name, spec in _sets(args.datasets).items():
        if args.only and name not in args.only.split(","):
            continue
        t0 = time.perf_counter()
        with InspectionEngine({spec["family"]: args.models / name}, device=args.device, half=False) as engine:
            stats = engine.model(spec["family"]).domain
            if stats is None:
                print(f"{name}: no domain statistics (run python main.py domain fit)", file=sys.stderr)
                return 2
            label, own = spec["in"]
            row = {"fitted_on": spec["fitted_on"], "fit_images": stats.images, "threshold": round(stats.threshold, 4),
                   "parts": list(stats.parts),
                   "quantile": stats.quantile, "in_domain": {label: _flagged(engine, spec["family"], own)},
                   "foreign": {k: _flagged(engine, spec["family"], _subsample(v, args.per_set))
                               for k, v in spec["foreign"].items()}}
            row["cost_ms_per_image"] = _cost(engine, spec["family"], own[:64])
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["pass"] = (row["in_domain"][label]["fraction"] <= IN_DOMAIN_MAX
                       and all(f["fraction"] >= FOREIGN_MIN for f in row["foreign"].values()))
        ok &= row["pass"]
        report["models"][name] = row
        foreign = ", ".join(f"{k} {v['fraction']:.1%}" for k, v in row["foreign"].items())
        print(f"{name}: held-out {label} flagged {row['in_domain'][label]['fraction']:.1%} "
              f"({row['in_domain'][label]['out_of_domain']}/{row['in_domain'][label]['images']}); "
              f"foreign flagged: {foreign}; {'PASS' if row['pass'] else 'FAIL'} ({row['seconds']} s; "
              f"ms per image: {row['cost_ms_per_image']})", flush=True)
    from json_report import write_report

    write_report(report, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
