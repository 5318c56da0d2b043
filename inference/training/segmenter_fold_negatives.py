"""Out-of-fold hard negatives for the segmenter's target verifier.

The segmenter makes few false alarms on the frames it was fitted on, so the verifier's negatives
mined there are scarce and unlike what it does on unseen frames. Here the fit frames (exactly the
ones the bundled networks saw: train.txt minus the deterministic held-out share) are split into
folds by frame; a segmenter of the same kind is trained on the other folds only and run on its
own fold, and its unmatched components are realistic false alarms for the verifier to learn from.
The held-out frames and val.txt are never used.

    python -m inference.training.segmenter_fold_negatives --model DIR --data SIRST_DIR --work runs/fold_neg --folds 2 --epochs N
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import cv2
import numpy as np

from inference.training.common import stable_hash

if TYPE_CHECKING:
    from inference.training.segmenter_train import TrainOptions

FOLD_SEED = 7
# A false component this close to a real target may be a piece of it (a split detection): counted, not removed.
NEAR_TARGET = 10.0


def fold_split(stems: Sequence[str], folds: int, seed: int = FOLD_SEED) -> list[list[str]]:
    """Disjoint folds by frame: hash-ranked, dealt round-robin, so the same stem always lands in the same fold."""
    if folds < 2:
        raise ValueError("need at least 2 folds")
    ranked = sorted(stems, key=lambda s: stable_hash(s, seed))
    member = {s: i % folds for i, s in enumerate(ranked)}
    return [[s for s in stems if member[s] == k] for k in range(folds)]


def fit_stems(data: str | Path) -> list[str]:
    """The frames the bundled networks were fitted on (train.txt minus the training code's held-out share)."""
    from inference.training.common import deterministic_split
    from inference.training.segmenter_data import SegTree
    from inference.training.segmenter_train import HELD_OUT_FRACTION

    fit, _held = deterministic_split(SegTree.open(data).stems("train"), HELD_OUT_FRACTION, seed=1)
    return fit


def write_fold_tree(data: str | Path, train_stems: Sequence[str], out: str | Path) -> Path:
    """A data tree of symlinks to ``data``'s images/masks whose train.txt lists only ``train_stems`` (no val.txt)."""
    from inference.training.segmenter_data import SegTree

    tree, out = SegTree.open(data), Path(out)
    for sub, files in (("images", tree.images), ("masks", tree.masks)):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for s in train_stems:
            link = out / sub / files[s].name
            if not link.exists():
                try:
                    os.symlink(files[s].resolve(), link)
                except FileExistsError:  # two fold runs of the same split writing the tree at once (seen)
                    pass
    (out / "train.txt").write_text("".join(f"{s}\n" for s in train_stems), encoding="utf-8")
    return out


def near_target(centres_xy: np.ndarray, mask: np.ndarray, distance: float = NEAR_TARGET) -> int:
    """How many of the (x, y) centres lie within ``distance`` pixels of a ground-truth target's centroid."""
    from inference.segmenter_metrics import components

    gt = components(mask)[1]
    if not len(gt) or not len(centres_xy):
        return 0
    return int((np.linalg.norm(centres_xy[:, None] - gt[None], axis=2).min(1) < distance).sum())


def fold_tree_dir(work: Path, k: int) -> Path:
    return work / f"data{k}"


def fold_model_dir(work: Path, k: int) -> Path:
    return work / f"net{k}" / "final"


def train_on_other_folds(data: Path, parts: Sequence[Sequence[str]], work: Path,
                         options: Callable[[int, Path], "TrainOptions"]) -> list[Path]:
    """Network k is trained, with ``options(k, fold tree)``, on a tree of every fold but k's frames;
    networks whose ``<out>/final`` already exists are kept (re-running finishes an interrupted series)."""
    from inference.training.segmenter_train import train

    out = []
    for k in range(len(parts)):
        tree = fold_tree_dir(work, k)
        opts = options(k, tree)
        final = Path(opts.out) / "final"
        if not (final / "card.json").is_file():
            write_fold_tree(data, [s for j, p in enumerate(parts) if j != k for s in p], tree)
            train(opts)
        out.append(final)
    return out


def train_fold_networks(reference: Path, data: Path, work: Path, folds: int, epochs: int, seed: int = 0,
                        threads: int | None = 1, quiet: bool = True) -> list[Path]:
    """Network k is trained on every fold but k (same preset and inner block as ``reference``); trained ones are kept."""
    import json

    from inference.training.segmenter_train import TrainOptions

    card = json.loads((reference / "card.json").read_text(encoding="utf-8"))
    inner = (card.get("training") or {}).get("inner")
    return train_on_other_folds(
        data, fold_split(fit_stems(data), folds), work,
        lambda k, tree: TrainOptions(data=str(tree), out=str(work / f"net{k}"), preset=card.get("preset", "cpu"), inner=inner,
                                     epochs=epochs, batch_size=8, crop=128, eval_every=5, seed=seed, threads=threads,
                                     quiet=quiet))


def mine_negatives(reference: Path, data: Path, work: Path, folds: int, device: str = "cpu") -> dict:
    """Each fold network's unmatched components on its own (unseen) fold, at ``reference``'s threshold, flips and size limit.

    Returns plain data: per stem a list of [y, x, pixels at the threshold, pixels after the card's
    hysteresis shrink] and a summary. Nothing here looks at held-out or val frames.
    """
    from inference.checkpoints import load_model
    from inference.segmenter_metrics import matched_components
    from inference.segmenter_predict import (
        drop_large_components,
        model_flips,
        model_mask_threshold,
        model_max_fraction,
        model_threshold,
        predict_probabilities,
        shrink_components,
    )
    from inference.training.segmenter_data import SegTree, load_frames

    ref = load_model(reference, family="segmenter")
    thr, flips, limit, shrink = model_threshold(ref), model_flips(ref), model_max_fraction(ref), model_mask_threshold(ref)
    tree = SegTree.open(data)
    parts = fold_split(fit_stems(data), folds)
    per_stem: dict[str, list[list[float]]] = {}
    summary: dict[str, float] = {"components": 0, "pixels": 0, "pixels_after_shrink": 0, "frames_with_negatives": 0,
               f"within_{NEAR_TARGET:g}px_of_a_target": 0, "targets": 0, "detected": 0, "frames": 0}
    for k, stems in enumerate(parts):
        net = load_model(fold_model_dir(work, k), map_location=device, family="segmenter")
        frames, _problems = load_frames(tree, stems, net.config.in_chans)
        probs = predict_probabilities(net.model, [f.image for f in frames], device, standardised=True, flips=flips)
        for f, p in zip(frames, probs):
            mask = drop_large_components(p > thr, limit)
            area, cent, matched, targets, detected = matched_components(mask, f.mask)
            # same 8-connected labelling as matched_components: label i + 1 is its component i
            _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
            kept = np.bincount(labels[shrink_components(mask, p, shrink)], minlength=len(area) + 1)[1:]
            rows = [[float(cy), float(cx), int(a), int(s)]
                    for (cx, cy), a, s in zip(cent[~matched], area[~matched], kept[~matched])]
            per_stem[f.stem] = rows
            summary["components"] += len(rows)
            summary["pixels"] += int(area[~matched].sum())
            summary["pixels_after_shrink"] += sum(r[3] for r in rows)
            summary["frames_with_negatives"] += bool(rows)
            summary[f"within_{NEAR_TARGET:g}px_of_a_target"] += near_target(cent[~matched], f.mask)
            summary["targets"] += targets
            summary["detected"] += detected
            summary["frames"] += 1
    return {"source": "out-of-fold false alarms of fold segmenters", "reference": str(reference), "folds": folds,
            "threshold": thr, "flips": flips, "max_target_fraction": limit, "mask_threshold": shrink,
            "summary": summary, "negatives": per_stem}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys
    import time

    from inference.checkpoints import CheckpointError
    from inference.training.common import set_threads
    from inference.training.segmenter_data import SegDataError

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path,
                   help="the segmenter whose kind the fold networks copy and whose threshold, flips and size limit mining uses")
    p.add_argument("--data", required=True, type=Path, help="the tree that model was trained on (train.txt is used)")
    p.add_argument("--work", required=True, type=Path, help="folder for fold trees, fold networks and negatives.json")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=80, help="epochs per fold network (trained ones in --work are reused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.folds < 2 or args.epochs < 1:
        print("error: need --folds >= 2 and --epochs >= 1", file=sys.stderr)
        return 2
    set_threads(args.threads)
    try:
        t0 = time.monotonic()
        train_fold_networks(args.model, args.data, args.work, args.folds, args.epochs, args.seed, args.threads)
        t1 = time.monotonic()
        found = mine_negatives(args.model, args.data, args.work, args.folds, args.device)
    except (CheckpointError, SegDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found["seconds"] = {"training": round(t1 - t0, 1), "mining": round(time.monotonic() - t1, 1)}
    out = args.work / "negatives.json"
    out.write_text(json.dumps(found, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in found.items() if k != "negatives"}, indent=2))
    print(f"negatives written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
