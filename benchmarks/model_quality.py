"""Re-scores the bundled models on the shared data sets: the quality figures of RESULTS.md in one run.

    PYTHONPATH=. python benchmarks/model_quality.py [--shared ../shared] [--families classifier,segmenter,anomaly]
                                                    [--threads 2] [--json benchmarks/results/model_quality.json]

- classifier: NEU val with the default (``classifier-neu-texture``, no test-time views: ADR 0039) and with
  MemoryMamba (``classifier-neu``) under each test-time augmentation (none, flips, d4; the card's is marked);
- segmenter: SIRST val as shipped (ensemble + verifier), without the verifier, and without the size
  limit, and on the held-out tenth of
  train.txt the card's four flipped views against all eight views (flips + transposes), the check
  behind not adopting the eight;
- anomaly: each bundled anomaly model on its category (bottle; magnetic tile converted to the
  MVTec layout in a temporary folder, its test split = the val split only, as issue 19 freezes it),
  image AUROC / pixel AUROC / PRO.

Everything goes through the same functions as ``python main.py evaluate …``, so the figures are
the commands' figures. Ratios are printed against the card's own setting in the same process.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inference import families  # noqa: E402  (after the path set-up; plain Python, no torch)

FAMILIES = tuple(families.NAMES)


def classifier_figures(neu: Path) -> dict[str, Any]:
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.classifier_predict import TTA_MODES, model_tta
    from inference.training.classifier_evaluate import evaluate_model

    default = load_model(bundled_model_dir("classifier"), family="classifier")
    rep = evaluate_model(default, neu).report
    out: dict[str, Any] = {"default": {"model": str(default.path), **{k: rep[k] for k in ("accuracy", "f1", "count")}}}
    print(f"classifier NEU val, default {default.path.name}: acc {rep['accuracy']:.4f}  F1 {rep['f1']:.4f}")
    loaded = load_model(bundled_model_dir("classifier", "classifier-neu"), family="classifier")
    out.update({"model": str(loaded.path), "card_tta": model_tta(loaded)})
    for mode in TTA_MODES:
        rep = evaluate_model(loaded, neu, tta=mode).report
        out[mode] = {k: rep[k] for k in ("accuracy", "f1", "count")}
    card = out[out["card_tta"]]["accuracy"]
    for mode in TTA_MODES:
        mark = "  <- card" if mode == out["card_tta"] else ""
        print(f"classifier-neu NEU val, tta {mode:<5s}: acc {out[mode]['accuracy']:.4f}  F1 {out[mode]['f1']:.4f}"
              f"  ({out[mode]['accuracy'] / card:.3f}x the card's){mark}")
    return out


def _eight_view_run(model, x, flips: bool):
    """Mean logits over flips and transposes (8 views): a check only, the product runs the card's four."""
    from inference.models.mim_istd import segment_logits

    acc = 0
    for transpose in (False, True):
        xx = x.transpose(-1, -2) if transpose else x
        views = segment_logits(model, xx)
        for dims in ((-1,), (-2,), (-2, -1)):
            views = views + segment_logits(model, xx.flip(dims)).flip(dims)
        views = views / 4
        acc = acc + (views.transpose(-1, -2) if transpose else views)
    return acc / 2


def segmenter_figures(sirst: Path) -> dict[str, Any]:
    from inference import segmenter_predict as segmentation
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.training.segmenter_data import SegTree
    from inference.training.segmenter_eval import evaluate_tree
    from inference.training.segmenter_train import pick_threshold, score_probabilities, training_frames

    loaded = load_model(bundled_model_dir("segmenter"), family="segmenter")
    keys = ("iou", "niou", "pd", "fa", "threshold", "max_target_fraction")
    out: dict[str, Any] = {"model": str(loaded.path)}
    out["val"] = {k: v for k, v in evaluate_tree(loaded, sirst).items() if k in keys}
    out["val_without_verifier"] = {k: v for k, v in evaluate_tree(loaded, sirst, use_verifier=False).items() if k in keys}
    out["val_without_size_limit"] = {k: v for k, v in evaluate_tree(loaded, sirst, max_fraction=0).items() if k in keys}
    for name in ("val", "val_without_verifier", "val_without_size_limit"):
        r = out[name]
        print(f"segmenter SIRST {name:<22s}: IoU {r['iou']:.4f}  nIoU {r['niou']:.4f}  Pd {r['pd']:.4f}  Fa {r['fa']:.1f}e-6")

    _, held, _ = training_frames(SegTree.open(sirst), loaded.config.in_chans)
    limit = segmentation.model_max_fraction(loaded)
    four = segmentation._run
    held_out = {}
    try:
        for name, runner in (("card_views", four), ("eight_views", _eight_view_run)):
            segmentation._run = runner
            probs = segmentation.predict_probabilities(segmentation.model_members(loaded), [f.image for f in held], standardised=True,
                                                       flips=segmentation.model_flips(loaded))
            scores = score_probabilities(probs, held, max_fraction=limit)
            t = pick_threshold(scores)
            held_out[name] = {"threshold": t, **{k: scores[t][k] for k in ("iou", "pd", "fa")}}
    finally:
        segmentation._run = four
    out["held_out"] = held_out
    base = held_out["card_views"]["iou"]
    for name, r in held_out.items():
        print(f"segmenter held-out {name:<12s}: IoU {r['iou']:.4f} ({r['iou'] / base:.3f}x)  Pd {r['pd']:.4f}  "
              f"Fa {r['fa']:.1f}e-6  threshold {r['threshold']}")
    return out


def anomaly_figures(shared: Path) -> dict[str, Any]:
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.training.anomaly_data import scan_category
    from inference.training.anomaly_eval import evaluate_tree
    from inference.training.convert_magnetic_tile import convert

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mt-mvtec-") as tmp:
        categories = {"anomaly-bottle": shared / "datasets" / "mvtec_ad" / "bottle"}
        mt = shared / "datasets" / "magnetic_tile"
        if mt.is_dir():
            convert(mt, Path(tmp) / "magnetic_tile", defects_by_split=True)  # frozen test = val only (issue 19)
            categories["anomaly-magnetic_tile"] = Path(tmp) / "magnetic_tile"
        for name, data in categories.items():
            if not data.is_dir():
                print(f"anomaly {name}: {data} not found, skipped")
                continue
            loaded = load_model(bundled_model_dir("anomaly", name), family="anomaly")
            r = evaluate_tree(loaded.model, scan_category(data, need_train=False, need_test=True))
            out[name] = {k: r[k] for k in ("image_auroc", "pixel_auroc", "pro")}
            print(f"anomaly {name:<22s}: image AUROC {r['image_auroc']:.4f}  pixel AUROC {r['pixel_auroc']:.4f}  PRO {r['pro']:.4f}")
    return out


def main() -> int:
    from inference.training.common import set_threads

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "model_quality.json")
    args = ap.parse_args()
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        ap.error(f"unknown families: {', '.join(unknown)}")
    data = args.shared / "datasets"
    if not data.is_dir():
        print(f"error: {data} not found (the shared data sets); pass --shared", file=sys.stderr)
        return 2
    set_threads(args.threads)
    t0 = time.monotonic()
    result: dict[str, Any] = {}
    if "classifier" in families:
        result["classifier"] = classifier_figures(data / "neu_cls")
    if "segmenter" in families:
        result["segmenter"] = segmenter_figures(data / "sirst")
    if "anomaly" in families:
        result["anomaly"] = anomaly_figures(args.shared)
    result["seconds"] = round(time.monotonic() - t0, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    if args.json.is_file() and set(families) != set(FAMILIES):  # a partial run updates its families, keeps the others
        try:
            result = {**json.loads(args.json.read_text(encoding="utf-8")), **result}
        except (OSError, json.JSONDecodeError):
            pass
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written to {args.json} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
