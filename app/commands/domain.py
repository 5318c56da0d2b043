"""``python main.py domain fit --model DIR --data FOLDER [--list FILE]``: give an existing model
directory its out-of-domain statistics (``inference.domain``) from its training images."""
from __future__ import annotations

import argparse
from pathlib import Path

from app.cli import CommandError


def fit(args: argparse.Namespace) -> int:
    from inference.checkpoints import CheckpointError
    from inference.domain import PARTS, DomainError
    from inference.domain_fit import fit_directory, images_under, rate_note
    from inference.training.groups import check_path_rule, path_groups

    data = Path(args.data)
    if not data.is_dir():
        raise CommandError(f"{data} is not a folder")
    try:
        check_path_rule(args.group_by)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    names = None
    if args.list:
        try:
            names = Path(args.list).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CommandError(f"cannot read {args.list}: {exc}") from None
    images = images_under(data, names)
    if not images:
        raise CommandError(f"no images under {data}" + (f" listed in {args.list}" if args.list else ""))
    source = f"{data}" + (f" (listed in {args.list})" if args.list else "")
    given = getattr(args, "parts", None)
    parts = None if given is None else tuple(p.strip() for p in str(given).split(",") if p.strip())
    unknown = [p for p in parts or () if p not in PARTS]
    if unknown or parts == ():
        raise CommandError(f"--parts: {', '.join(unknown) or 'none given'}; choose from {', '.join(PARTS)}")
    try:
        result = fit_directory(args.model, images, device=args.device, quantile=args.quantile, seed=args.seed,
                               source=source, parts=parts,
                               grouping=lambda paths: path_groups(paths, data, args.group_by))
    except (CheckpointError, DomainError, ValueError, RuntimeError) as exc:  # (--device cuda here: one line)
        raise CommandError(str(exc)) from None
    s = result.stats
    described = ", ".join(f"{p} ({g.dim} features)" for p, g in s.parts.items())
    print(f"{result.directory}: domain statistics of {result.images} images: {described}; out-of-domain threshold "
          f"{s.threshold:.3f} ({rate_note(s)}; folds by {result.fold_groups})")
    if result.unreadable:
        print(f"{len(result.unreadable)} unreadable images left out")
    return 0


def after_train(args: argparse.Namespace, fit: bool = True) -> None:
    """After ``train FAMILY``: domain statistics for each model directory it wrote (``--out``, or the
    segmenter's ``final/`` and ``best/``) from the training images of ``--data``, folds grouped by
    the family's own ``--group-by`` (classifier: auto/folder/prefix/none; anomaly: prefix/none/regex;
    segmenter: scene/none), as its cross-validation groups them."""
    from inference.domain_fit import fit_after_training, forget_domain
    from inference.training.groups import path_groups

    out = Path(args.out)
    dirs = [d for d in (out, out / "final", out / "best") if (d / "config.json").is_file() and (d / "model.safetensors").is_file()]
    if not fit:   # --no-domain-fit: none, not an earlier training's of other data (a session-46 probe)
        for d in dirs:
            forget_domain(d)
        return
    rule = str(getattr(args, "group_by", "auto") or "auto")
    images = (_classifier_training_images(args) if getattr(args, "family", None) == "classifier" else
              _segmenter_training_frames(Path(args.data), 0.0 if getattr(args, "cv_folds", 0) else
                                         getattr(args, "held_out_fraction", None)))
    for line in fit_after_training(dirs, args.data, device=getattr(args, "device", "auto"),
                                   grouping=lambda paths: path_groups(paths, rule=rule), images=images):
        print(line)


def _classifier_training_images(args: argparse.Namespace) -> list[Path] | None:
    """The images ``train classifier`` fitted on (``classifier_data.fit_split``: a class-folder tree's held-out share
    is not among them without CV), or None where its split cannot be made. Every image of the class tree was
    described, the held-out ones too (a session-49 audit: 18 for a model trained on 15)."""
    from inference.training.classifier_data import DataTreeError, fit_split

    try:
        split = fit_split(Path(args.data), seed=int(getattr(args, "seed", 0)), cv_folds=int(getattr(args, "cv_folds", 0)),
                          check_copies=False)
    except (DataTreeError, ValueError, OSError):
        return None
    # in path order, as the images of the tree are read without a list (the fit's subsample and folds are seeded
    # by position: the split's class-by-class order moved a threshold 5.53 -> 4.32, the review of this fix)
    return sorted(item.path for item in split.train)


def _segmenter_training_frames(data: Path, held_out_fraction: float | None = None) -> list[Path] | None:
    """A segmentation tree's frames the trainer fits on (its own cut: train.txt, else its hash split of the frames
    with masks, less the tenth it holds out; ``segmenter_train.split_stems``), or None for another layout. The
    statistics described every frame, the held-out ones and frames without a mask too (the session-46 reviews)."""
    if not ((data / "images").is_dir() and (data / "masks").is_dir()):
        return None
    from inference.training.segmenter_data import SegDataError, SegTree
    from inference.training.segmenter_train import HELD_OUT_FRACTION, split_stems

    try:
        tree = SegTree.open(data)
        fraction = HELD_OUT_FRACTION if held_out_fraction is None else held_out_fraction
        return [tree.images[stem] for stem in split_stems(tree, fraction)[0]]
    except (SegDataError, ValueError):
        return None
