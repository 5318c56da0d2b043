"""A cross-validated ("CV-bagged") segmenter ensemble, with its settings chosen on out-of-fold maps.

Sessions 2-4 chose epoch, threshold, flips, mask threshold and members on 34 held-out frames,
which predicted val badly three times. Here all of train.txt is split into folds of whole scenes
(``cv_parts``; issue 19: session 5 split by frame, and frames of one scene on both sides of a fold
flattered the estimate); for each fold k one network per kind (by default a
Mamba one and a convolution one, ``cpu`` preset) is trained on the other folds with nothing held
out, keeping the final weights of a fixed schedule (no epoch selection). Every train.txt frame is
then scored by the networks that never saw it (their mean probability, as the ensemble averages
members), with and without test-time flips, and the project's calibration rules run on those
out-of-fold maps of all frames (``segmenter_train.choose_threshold_and_flips``, then
``segmenter_calibrate.choose_mask_threshold``), the size limit derived from all train.txt masks.
The model is all fold networks as one ensemble with the chosen settings (members stored as
float16). val.txt is never read here.

The same folds serve ``train segmenter --cv-folds K`` (``train_with_cv``): one network per fold,
each post-processing addition kept only if it wins cross-fitted (``choose_additions``), and one
network on all of train.txt as the model.

    python -m inference.training.segmenter_cv --data SIRST_DIR --work runs/cv --folds 4 --epochs 50 --out MODEL_DIR
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from inference.shell_words import shell_join
from inference.training.segmenter_fold_negatives import FOLD_SEED, fold_split, train_on_other_folds

if TYPE_CHECKING:
    from inference.segmenter_predict import Flips

MASK_THRESHOLDS = (0.70, 0.75, 0.80, 0.85, 0.90, 0.95)  # the candidates of session 4's mask-threshold rule
OOF_FILE = "oof_fold{}_flips{}.npz"


@dataclass(frozen=True)
class Kind:
    """One network per fold of this kind: inner block and seed base (fold k's network gets ``seed + k``)."""

    inner: str
    seed: int


KINDS = (Kind("mamba", 40), Kind("conv", 50))


log = logging.getLogger(__name__)
SEGMENTER_GROUPINGS = ("scene", "none")


def frame_groups(data: str | Path, stems: Sequence[str], group_by: str = "scene") -> list[str]:
    """Group id per frame: ``scene`` = frames whose backgrounds look alike (``groups.scene_groups`` on
    grey thumbnails), ``none`` = every frame its own group."""
    from inference.training.groups import file_scene_groups
    from inference.training.segmenter_data import SegTree

    if group_by == "none":
        return [f"image:{s}" for s in stems]
    if group_by != "scene":
        raise ValueError(f"unknown grouping {group_by!r}; choose from {', '.join(SEGMENTER_GROUPINGS)}")
    tree = SegTree.open(data)
    return file_scene_groups([Path(tree.images[s]) for s in stems])


def cv_parts(data: str | Path, folds: int, group_by: str = "scene") -> list[list[str]]:
    """All of train.txt split into ``folds`` disjoint folds of whole groups (``frame_groups``; val.txt is not read).

    ``group_by="frame"`` keeps sessions 4-5's split by frame (hash-ranked frames, not scenes)."""
    from inference.training.groups import balanced_folds
    from inference.training.segmenter_data import SegTree

    stems = SegTree.open(data).stems("train")
    if group_by == "frame":
        return fold_split(stems, folds, FOLD_SEED)
    return [[stems[i] for i in fold] for fold in balanced_folds(frame_groups(data, stems, group_by), folds)]


def network_dir(work: Path, kind: Kind, k: int) -> Path:
    return work / f"{kind.inner}{k}" / "final"


def train_cv_networks(data: Path, work: Path, parts: Sequence[Sequence[str]], epochs: int, kinds: Sequence[Kind] = KINDS,
                      threads: int | None = 1, preset: str = "cpu", quiet: bool = True) -> dict[Kind, list[Path]]:
    """Per kind, network k on every fold but k: all of those frames fitted, final weights kept (trained ones are reused)."""
    from inference.training.segmenter_train import TrainOptions

    def options(kind: Kind):
        return lambda k, tree: TrainOptions(
            data=str(tree), out=str(network_dir(work, kind, k).parent), preset=preset, inner=kind.inner, epochs=epochs,
            batch_size=8, crop=128, seed=kind.seed + k, threads=threads, held_out_fraction=0.0, quiet=quiet)

    return {kind: train_on_other_folds(data, parts, work, options(kind)) for kind in kinds}


def assigned_maps(assignment: Sequence[tuple[Sequence[torch.nn.Module], Sequence[Any]]], flips: "Flips",
                  device: str = "cpu") -> dict[str, np.ndarray]:
    """Maps of frames by the networks assigned to them: (networks, frames) pairs, each frame scored by the
    mean of its pair's networks (``predict_probabilities``, exactly as an ensemble's map); keyed by stem."""
    from inference.segmenter_predict import predict_probabilities

    out: dict[str, np.ndarray] = {}
    for networks, frames in assignment:
        for f, p in zip(frames, predict_probabilities(list(networks), [f.image for f in frames], device,
                                                      standardised=True, flips=flips)):
            if f.stem in out:
                raise ValueError(f"frame {f.stem} is assigned twice")
            out[f.stem] = p
    return out


def fold_maps(work: Path, k: int, frames: Sequence[Any], kinds: Sequence[Kind], flips: bool,
              device: str = "cpu") -> list[np.ndarray]:
    """Fold k's frames scored by fold k's networks; kept in ``work`` (``oof_fold<k>_flips<0|1>.npz``) and reused."""
    from inference.checkpoints import load_model

    cache = work / OOF_FILE.format(k, int(flips))
    if cache.is_file():
        with np.load(cache) as stored:
            if sorted(stored.files) == sorted(f.stem for f in frames):
                return [stored[f.stem] for f in frames]
    nets = [load_model(network_dir(work, kind, k), map_location=device, family="segmenter").model for kind in kinds]
    found = assigned_maps([(nets, frames)], flips, device)
    np.savez(cache, **found)  # type: ignore[arg-type]  # numpy's stub checks **arrays against its allow_pickle: bool
    return [found[f.stem] for f in frames]


def out_of_fold_maps(data: Path, work: Path, parts: Sequence[Sequence[str]], kinds: Sequence[Kind] = KINDS,
                     device: str = "cpu") -> tuple[list[Any], dict[bool, list[np.ndarray]]]:
    """(all train.txt frames in fold order, maps[flips] per frame): each frame scored by its fold's networks.

    The maps are kept in ``work`` per fold (``fold_maps``), so the rules can be rerun cheaply.
    """
    from inference.checkpoints import read_json
    from inference.training.segmenter_data import SegTree, load_frames

    tree = SegTree.open(data)
    in_chans = int(read_json(network_dir(work, kinds[0], 0) / "config.json")["config"]["in_chans"])
    per_fold = [load_frames(tree, list(stems), in_chans)[0] for stems in parts]
    frames = [f for fold in per_fold for f in fold]
    maps = {flips: [p for k, fold in enumerate(per_fold) for p in fold_maps(work, k, fold, kinds, flips, device)]
            for flips in (False, True)}
    return frames, maps


def select(frames: Sequence[Any], maps: dict[bool, list[np.ndarray]], parts: Sequence[Sequence[str]] = (),
           mask_thresholds: Sequence[float] = MASK_THRESHOLDS) -> dict[str, Any]:
    """The project's calibration rules on given maps of given frames: size limit from these frames' masks,
    threshold and flips (best IoU), then the mask threshold among the candidates above the threshold.
    With ``parts``, the chosen settings' figures per fold too (how much they vary between frame sets)."""
    from inference.segmenter_predict import PostProcess, score_masks
    from inference.training.segmenter_calibrate import choose_mask_threshold
    from inference.training.segmenter_train import LARGE_COMPONENT_FACTOR, choose_threshold_and_flips, size_limit

    largest, limit = size_limit(list(frames))
    thr, flips, at_threshold = choose_threshold_and_flips(maps, list(frames), limit)
    post = PostProcess(thr, limit)
    candidates = [c for c in mask_thresholds if thr < c < 1]
    entry: dict[str, Any] = (choose_mask_threshold(post, maps[flips], frames, candidates, label="out_of_fold") if candidates
             else {"chosen": None, "note": f"no candidate above the threshold {thr:g}"})
    chosen = replace(post, mask_threshold=entry["chosen"])

    def figures(keep: set[str] | None = None) -> dict[str, Any]:
        return score_masks(chosen, ((p, f.image, f.mask) for f, p in zip(frames, maps[flips]) if keep is None or f.stem in keep))

    return {
        "frames": len(frames), "threshold": thr, "test_time_flips": flips, "largest_target_fraction": largest,
        "max_target_fraction": limit,
        "max_target_fraction_rule": f"{LARGE_COMPONENT_FACTOR:g} x the largest train.txt target's share of its frame; "
                                    "larger predicted components are dropped from the mask",
        "at_threshold": at_threshold, "mask_threshold": entry["chosen"], "mask_threshold_calibration": entry,
        "out_of_fold_metrics": figures(), "per_fold": [figures(set(p)) for p in parts],
    }


# Leave-scene-out selection (issue 19): each post-processing addition is kept only if it wins under
# cross-fitted out-of-fold figures; tried greedily, simplest first.
# Simplest first. "mirror": two test-time views, the frame and its horizontal mirror (2 passes);
# "flips": all four flip views (4 passes; with it, "mirror" adds nothing). Maps are keyed by their views:
# False (the frame alone), MIRROR (two views), True (four views), as a card's ``test_time_flips`` says.
ADDITIONS = ("size_limit", "mirror", "flips", "hysteresis")
MIRROR = "h"
MapViews = bool | str


def views_of(use: set[str] | frozenset[str]) -> MapViews:
    """The maps an additions set reads (see ``ADDITIONS``)."""
    return True if "flips" in use else MIRROR if "mirror" in use else False


def card_flips(use: set[str] | frozenset[str]) -> bool | list[str]:
    """A card's ``test_time_flips`` for an additions set."""
    views = views_of(use)
    return [views] if isinstance(views, str) else views


def _map_tag(views: MapViews) -> str:
    return views if isinstance(views, str) else str(int(views))


def scored_fold_maps(networks_per_fold: Sequence[Sequence[Path]], frames_by_fold: Sequence[Sequence[Any]],
                     cache: Path | None = None, device: str = "cpu",
                     views: Sequence[MapViews] = (False, MIRROR, True)) -> dict[MapViews, dict[str, np.ndarray]]:
    """Out-of-fold maps per frame stem for each of ``views`` (False: the frame alone; ``MIRROR``: the frame and
    its mirror, two passes; True: all four flip views, four passes): fold k's frames scored by the mean map of
    fold k's networks (one network, or a k-th member of each kind: an ensemble). ``cache``: a file-name
    prefix; maps are kept as ``<cache>_fold<k>_flips<0|1|h>.npz`` and reused."""
    from inference.checkpoints import load_model

    out: dict[MapViews, dict[str, np.ndarray]] = {flips: {} for flips in views}
    for k, frames in enumerate(frames_by_fold):
        nets: list[torch.nn.Module] = []
        for flips in views:
            file = None if cache is None else cache.parent / f"{cache.name}_fold{k}_flips{_map_tag(flips)}.npz"
            if file is not None and file.is_file():
                with np.load(file) as stored:
                    if sorted(stored.files) == sorted(f.stem for f in frames):
                        out[flips].update({s: stored[s] for s in stored.files})
                        continue
            nets = nets or [load_model(n, map_location=device, family="segmenter").model for n in networks_per_fold[k]]
            found = assigned_maps([(nets, frames)], [flips] if isinstance(flips, str) else flips, device)
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                np.savez(file, **found)  # type: ignore[arg-type]  # numpy's stub checks **arrays against allow_pickle
            out[flips].update(found)
    return out


def settings_for(fit: Sequence[Any], maps: dict[MapViews, dict[str, np.ndarray]], use: set[str] | frozenset[str]) -> Any:
    """The post-processing chosen on ``fit`` frames' out-of-fold maps alone, with the ``use``d additions:
    size limit from their masks, threshold by best IoU (``pick_threshold``), then the mask-threshold rule
    (``choose_mask_threshold``) among ``MASK_THRESHOLDS`` above it. The views are those ``use`` names."""
    from inference.segmenter_predict import PostProcess
    from inference.training.segmenter_calibrate import choose_mask_threshold
    from inference.training.segmenter_train import pick_threshold, score_probabilities, size_limit

    frames = list(fit)
    limit = size_limit(frames)[1] if "size_limit" in use else None
    probs = [maps[views_of(use)][f.stem] for f in frames]
    post = PostProcess(pick_threshold(score_probabilities(probs, frames, max_fraction=limit)), limit)
    if "hysteresis" in use:
        candidates = [c for c in MASK_THRESHOLDS if post.threshold < c < 1]
        if candidates:
            post = replace(post, mask_threshold=choose_mask_threshold(post, probs, frames, candidates)["chosen"])
    return post


def cross_fitted(frames_by_fold: Sequence[Sequence[Any]], maps: dict[MapViews, dict[str, np.ndarray]],
                 use: set[str] | frozenset[str], adjust: Callable[[int, Any], Any] | None = None) -> dict[str, Any]:
    """Fold k scored with settings chosen on the other folds' out-of-fold maps (``settings_for``): no figure
    comes from settings fitted on the frames it scores. Pooled over all frames, and per fold.
    ``adjust(k, post)`` returns fold k's post-processing from the chosen one (e.g. with a verifier trained
    on the other folds only, or a fixed mask threshold); it must not look at fold k's frames."""
    from inference.segmenter_metrics import SegmentationMeter

    pooled, per_fold, chosen = SegmentationMeter(), [], []
    for k, frames in enumerate(frames_by_fold):
        post = settings_for([f for j, fold in enumerate(frames_by_fold) if j != k for f in fold], maps, use)
        if adjust is not None:
            post = adjust(k, post)
        meter = SegmentationMeter()
        for f in frames:
            mask = post(maps[views_of(use)][f.stem], f.image).mask
            meter.update(mask, f.mask)
            pooled.update(mask, f.mask)
        per_fold.append(meter.result())
        chosen.append({"threshold": post.threshold, "max_fraction": post.max_fraction, "mask_threshold": post.mask_threshold})
    return {"additions": sorted(use), "pooled": pooled.result(), "per_fold": per_fold, "settings_per_fold": chosen}


def wins(new: dict[str, Any], old: dict[str, Any], tolerance: float = 0.005) -> bool:
    """The rule, fixed before any figure was seen: an addition stays if it raises the cross-fitted IoU by at
    least ``tolerance`` without losing detections, or lowers Fa with IoU within ``tolerance`` and Pd not lower."""
    n, o = new["pooled"], old["pooled"]
    if n["detected"] < o["detected"]:
        return False
    return bool(n["iou"] >= o["iou"] + tolerance or (n["fa"] < o["fa"] and n["iou"] >= o["iou"] - tolerance))


def variant_name(use: set[str] | frozenset[str]) -> str:
    return "+".join(a for a in ADDITIONS if a in use) or "plain"


def choose_additions(frames_by_fold: Sequence[Sequence[Any]], maps: dict[MapViews, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Every combination of ``ADDITIONS`` scored cross-fitted, and the greedy choice (simplest first: an
    addition joins only if ``wins`` against the set without it; so four views must beat two when two
    were kept). Views whose maps are absent (``maps[MIRROR]``, ``maps[True]``) are not compared."""
    import itertools

    have = {"mirror": MIRROR in maps, "flips": True in maps}
    tried = [a for a in ADDITIONS if have.get(a, True)]
    variants = {variant_name(set(use)): cross_fitted(frames_by_fold, maps, set(use))
                for n in range(len(tried) + 1) for use in itertools.combinations(tried, n)}
    kept: set[str] = set()
    for addition in tried:
        if wins(variants[variant_name(kept | {addition})], variants[variant_name(kept)]):
            kept.add(addition)
    return {"variants": variants, "chosen_additions": [a for a in ADDITIONS if a in kept],
            "cv_estimate": variants[variant_name(kept)]}


NETWORKS = ("one", "pair")  # ``train segmenter --networks``


def pair_recipes(opts: Any) -> tuple[Any, Any]:
    """The two networks of ``--networks pair`` (benchmarks/results/segmenter-pair.md), each at ``opts``'s training
    cost: one that learns to reject clutter — the schedule's last tenth of epochs on crops 1.5 times as wide at half
    the batch (lr 1e-3), the epochs before it shortened by the same pixels (segmenter-context2phase.md: false alarms
    down, faint targets lost) — and one that learns faint targets — half its crops given a pasted training target
    (segmenter-paste.md: targets found, false alarms up). Their mean map won against one network at the same
    inference cost (two views each against four) under leave-scene-out CV."""
    late = max(1, round(opts.epochs / 10))
    wide = opts.crop * 3 // 2
    early = max(1, opts.epochs - round(late * (wide / opts.crop) ** 2))
    clutter = replace(opts, epochs=early, fine_tune_epochs=late, fine_tune_lr=1e-3, fine_tune_crop=wide,
                      fine_tune_batch_size=max(1, opts.batch_size // 2))
    return clutter, replace(opts, paste_prob=0.5, fine_tune_epochs=0)


FOLD_SIGNATURE = "signature.json"  # beside a fold network of ``train segmenter --cv-folds``: what it was trained from
RUN_ONLY = ("threads", "device", "resume")  # options that change how a fold network is trained, not what it learns


def fold_signature(data: str | Path, fit: Sequence[str], fold_opts: Any, stamp: str | None = None) -> str:
    """What fold network ``fold_opts.out`` learns from: the data (its files' sizes and times too, ``files_stamp``; a
    caller signing several folds of one tree passes its ``stamp``, read once), the frames it fits on and its recipe
    (epochs, seed and every other training option but ``RUN_ONLY``), as ``signature_text``."""
    from inference.training.common import files_stamp, signature_text
    from inference.training.segmenter_train import training_record

    recipe = {k: v for k, v in training_record(fold_opts).items() if k not in RUN_ONLY}
    return signature_text({"data": str(Path(data).resolve()), "files": files_stamp(data) if stamp is None else stamp,
                           "fit": list(fit), "recipe": recipe})


def reusable_fold(net: Path, signature: str, resume: bool) -> bool:
    """Whether fold network folder ``net`` may be kept (finished, it is reused; unfinished, ``--resume`` goes on with
    it): it was started for this ``signature``. A fresh run into an earlier run's --out reused its fold networks
    whatever data, epochs or seed they had (a session-49 audit). A folder from before signatures were written is
    kept under ``--resume`` alone, as then."""
    file = net / FOLD_SIGNATURE
    if file.is_file():
        return file.read_text(encoding="utf-8") == signature
    return resume or not net.exists()


def clear_fold(work: Path, k: int, net: Path) -> None:
    """Remove fold network ``net`` and fold k's data tree (its links may point into other data)."""
    import shutil

    for folder in (net, work / f"data{k}"):
        if folder.exists():
            shutil.rmtree(folder)


def train_with_cv(opts: Any, folds: int, group_by: str = "scene", compare_flips: bool = True,
                  networks: str = "one", only_fold: int | None = None) -> Path:
    """``train segmenter --cv-folds K``: the protocol (docs/protocol.md) for the segmenter.

    K networks, each on every fold of whole scenes but one (nothing held out, final weights of the
    fixed schedule), score their left-out fold; the additions (size limit, mirror view, flips, hysteresis) are
    chosen on those out-of-fold maps (``choose_additions``: cross-fitted, simplest first), then the
    threshold and mask threshold with the chosen additions on all out-of-fold maps (``settings_for``).
    The model is one network on all of train.txt with the same schedule; its card holds the settings,
    the CV estimate (cross-fitted figures) and what it rests on. val.txt / test.txt are never read.
    Finished fold networks under ``<out>/cv/`` are reused when trained from the same data, frames and recipe
    (``reusable_fold``; others are trained again), and their out-of-fold maps with them. ``compare_flips`` False
    skips the flipped maps (six sevenths of the scoring cost) and the model runs without flips.
    ``networks="pair"``: each fold, and the model, is the two networks of ``pair_recipes`` (the second stored as
    a member of the first, float16); the additions are chosen on their mean maps. ``only_fold`` k: train fold k's
    network(s) and stop (returns the first one's folder): folds run as parallel processes, then the whole command
    reuses them."""
    import time

    from inference.checkpoints import load_model, save_card
    from inference.training.common import files_stamp
    from inference.training.segmenter_data import SegTree, load_frames
    from inference.training.segmenter_fold_negatives import write_fold_tree
    from inference.training.segmenter_train import LARGE_COMPONENT_FACTOR, size_limit, train, training_record

    if networks not in NETWORKS:
        raise ValueError(f"--networks must be one of {', '.join(NETWORKS)}")
    if networks == "pair" and opts.verifier:
        raise ValueError("--verifier is for one network; --networks pair has none")
    recipes = pair_recipes(opts) if networks == "pair" else (opts,)
    out, t0 = Path(opts.out), time.monotonic()
    parts = cv_parts(opts.data, folds, group_by)
    if only_fold is not None and not 0 <= only_fold < folds:
        raise ValueError(f"--cv-fold must lie in 0..{folds - 1}")
    nets: list[list[Path]] = []
    stamp = files_stamp(opts.data)  # the tree every fold is cut from, walked once (not once per fold and network)
    for k in range(folds):
        nets.append([])
        if only_fold is not None and k != only_fold:
            continue
        fit = [s for j, p in enumerate(parts) if j != k for s in p]
        for r, recipe in enumerate(recipes):  # the second network's folds: pnet<k>, seeds 100 further on
            net = out / "cv" / f"{'p' * r}net{k}"
            fold_opts = replace(recipe, data=str(out / "cv" / f"data{k}"), out=str(net), held_out_fraction=0.0,
                                seed=opts.seed + 1 + k + 100 * r, verifier=False, resume=opts.resume)
            signature = fold_signature(opts.data, fit, fold_opts, stamp)
            if not reusable_fold(net, signature, opts.resume):
                clear_fold(out / "cv", k, net)
            if not (net / "final" / "card.json").is_file():
                net.mkdir(parents=True, exist_ok=True)
                (net / FOLD_SIGNATURE).write_text(signature, encoding="utf-8")
                for old in (out / "cv").glob(f"*maps_fold{k}_*.npz"):  # made by the network this one replaces
                    old.unlink()
                write_fold_tree(opts.data, fit, fold_opts.data)
                train(fold_opts)
            nets[k].append(net / "final")
    if only_fold is not None:
        return nets[only_fold][0]
    t_cv = time.monotonic() - t0
    tree = SegTree.open(opts.data)
    in_chans = int(load_model(nets[0][0], family="segmenter").config.in_chans)
    frames_by_fold = [load_frames(tree, list(p), in_chans)[0] for p in parts]
    maps = scored_fold_maps(nets, frames_by_fold, out / "cv" / ("maps" if networks == "one" else "pair_maps"),
                            views=(False, MIRROR, True) if compare_flips else (False,))
    choice = choose_additions(frames_by_fold, maps)
    use = set(choice["chosen_additions"])
    post = settings_for([f for fold in frames_by_fold for f in fold], maps, use)
    t_select = time.monotonic() - t0 - t_cv
    final = train(replace(recipes[0], held_out_fraction=0.0, verifier=False))
    partners = [train(replace(recipe, out=str(out / "partner"), held_out_fraction=0.0, seed=opts.seed + 100,
                              verifier=False)) for recipe in recipes[1:]]
    loaded = load_model(final, family="segmenter")
    card = {k: v for k, v in loaded.card.items() if k not in ("max_target_fraction", "max_target_fraction_rule", "mask_threshold")}
    card.update(threshold=post.threshold, test_time_flips=card_flips(use))
    if post.max_fraction is not None:
        card["max_target_fraction"] = post.max_fraction
        card["max_target_fraction_rule"] = (f"{LARGE_COMPONENT_FACTOR:g} x the largest train.txt target's share of its frame; "
                                            "larger predicted components are dropped from the mask")
    if post.mask_threshold is not None:
        card["mask_threshold"] = post.mask_threshold
    estimate = choice["cv_estimate"]
    card["metrics"] = {**card.get("metrics", {}), "cv": {**estimate["pooled"], "fa_unit": "1e-6"}}
    card["cross_validation"] = {
        "networks": networks, "folds": folds, "group_by": group_by,
        "groups": len(set(frame_groups(opts.data, [s for p in parts for s in p], group_by)))
        if group_by in SEGMENTER_GROUPINGS else None,
        "fold_frames": [len(p) for p in parts], "chosen_additions": choice["chosen_additions"],
        "flips_compared": compare_flips,
        "per_fold": estimate["per_fold"], "settings_per_fold": estimate["settings_per_fold"],
        "variants": {name: v["pooled"] for name, v in choice["variants"].items()},
        "largest_target_fraction": size_limit([f for fold in frames_by_fold for f in fold])[0],
        "note": "CV estimate: each fold scored by a network that never saw its scenes, with settings chosen on the other "
                "folds' out-of-fold maps; the model's own settings are chosen the same way on all out-of-fold maps",
        "seconds": {"fold_networks": round(t_cv, 1), "selection": round(t_select, 1),
                    "final_network": round(time.monotonic() - t0 - t_cv - t_select, 1)},
    }
    if partners:
        card["training_networks"] = [training_record(r) for r in recipes]
    save_card(final, card)
    if partners:
        from inference.training.segmenter_calibrate import add_members
        add_members(final, partners, storage_dtype=torch.float16)
    if opts.verifier:  # asked for on the command line; not one of the additions the folds choose
        from inference.training.common import pick_device
        from inference.training.segmenter_verifier import VerifierOptions, train_verifier

        inner = group_by if group_by in SEGMENTER_GROUPINGS else "scene"
        try:
            train_verifier(final, Path(opts.data), VerifierOptions(steps=opts.verifier_steps, seed=opts.seed,
                                                                   quiet=opts.quiet, group_by=inner),
                           device=str(pick_device(opts.device)))
        except ValueError as exc:  # the segmenter is trained and saved; say why it has no verifier
            log.warning("no target verifier trained: %s", exc)
    return final


def build_ensemble(out: Path, networks: Sequence[Path], selection: dict[str, Any], record: dict[str, Any],
                   storage_dtype: torch.dtype | None = torch.float16) -> Path:
    """A model directory: ``networks[0]`` as the main network (stored as trained), the others as members
    (``segmenter_calibrate.add_members``, at ``storage_dtype``), the selection's settings in the card."""
    import shutil

    from inference.checkpoints import load_model, save_model
    from inference.training.segmenter_calibrate import add_members

    main = load_model(networks[0], family="segmenter")
    card = {k: v for k, v in main.card.items() if k not in ("held_out_metrics", "parts", "ensemble", "verifier", "mask_threshold")}
    card.update({k: selection[k] for k in ("threshold", "test_time_flips", "max_target_fraction", "max_target_fraction_rule")})
    if selection["mask_threshold"] is not None:
        card["mask_threshold"] = float(selection["mask_threshold"])
    card["mask_threshold_calibration"] = selection["mask_threshold_calibration"]
    card["cross_validation"] = {**record, "selection": {k: v for k, v in selection.items() if k != "mask_threshold_calibration"}}
    card["data"] = {**record.get("data", {}), "largest_target_fraction": selection["largest_target_fraction"]}
    card["command"] = record.get("command", card.get("command"))
    if out.exists():
        shutil.rmtree(out)
    save_model(out, main.name, main.model, main.config, card)
    add_members(out, list(networks[1:]), storage_dtype=storage_dtype)
    return out


def storage_check(model_dir: Path, networks: Sequence[Path], frames: Sequence[Any], device: str = "cpu") -> dict[str, Any]:
    """How far the stored ensemble's maps (members at storage precision) are from the fold networks' own
    float32 maps on ``frames``, and how many mask pixels differ after the card's post-processing."""
    from inference.checkpoints import load_model
    from inference.segmenter_predict import model_flips, model_members, model_post_process, predict_probabilities

    loaded = load_model(model_dir, map_location=device, family="segmenter")
    flips, post = model_flips(loaded), model_post_process(loaded)
    images = [f.image for f in frames]
    stored = predict_probabilities(model_members(loaded), images, device, standardised=True, flips=flips)
    full = predict_probabilities([load_model(n, map_location=device).model for n in networks], images, device,
                                 standardised=True, flips=flips)
    return {"frames": len(frames), "max_abs_map_difference": float(max(np.abs(a - b).max() for a, b in zip(stored, full))),
            "mask_pixels_differing": int(sum((post(a, f.image).mask != post(b, f.image).mask).sum()
                                             for a, b, f in zip(stored, full, frames)))}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    from inference.checkpoints import CheckpointError, load_model, save_card
    from inference.training.common import set_threads
    from inference.training.segmenter_data import SegDataError

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="tree with images/, masks/ and train.txt (val.txt is not read)")
    p.add_argument("--work", required=True, type=Path, help="folder for fold trees, fold networks, out-of-fold maps, selection.json")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--group-by", default="scene", choices=(*SEGMENTER_GROUPINGS, "frame"),
                   help="what a fold never splits: scene (default), none, or frame (sessions 4-5's hash split by frame)")
    p.add_argument("--epochs", type=int, default=50, help="epochs per fold network (trained ones in --work are reused)")
    p.add_argument("--kinds", default=",".join(f"{k.inner}:{k.seed}" for k in KINDS),
                   help="network kinds per fold as inner:seed-base, comma-separated (default %(default)s)")
    p.add_argument("--out", type=Path, help="also write the ensemble of all fold networks here (a model directory)")
    p.add_argument("--only-kind", metavar="INNER",
                   help="with --out: only the networks of this inner block, same settings (figures for the record)")
    p.add_argument("--check-frames", type=int, default=16,
                   help="with --out: train.txt frames on which the float16-stored model is compared with the float32 networks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        kinds = [Kind(inner, int(seed)) for inner, seed in (s.split(":") for s in args.kinds.split(","))]
    except ValueError:
        print(f"error: --kinds wants inner:seed pairs, got {args.kinds!r}", file=sys.stderr)
        return 2
    if args.folds < 2 or args.epochs < 1 or not kinds or args.check_frames < 1:
        print("error: need --folds >= 2, --epochs >= 1, --check-frames >= 1 and at least one kind", file=sys.stderr)
        return 2
    set_threads(args.threads)
    # the program's three words apart, then its arguments quoted (it quoted "python -m …" as one word, a command no
    # shell could run, into every card: seen by a session-53 fixer)
    command = shell_join(["python", "-m", "inference.training.segmenter_cv",
                          *(argv if argv is not None else sys.argv[1:])])
    try:
        t0 = time.monotonic()
        parts = cv_parts(args.data, args.folds, args.group_by)
        networks = train_cv_networks(args.data, args.work, parts, args.epochs, kinds, args.threads)
        t1 = time.monotonic()
        frames, maps = out_of_fold_maps(args.data, args.work, parts, kinds, args.device)
        t2 = time.monotonic()
        selection = select(frames, maps, parts)
        selection["seconds"] = {"training": round(t1 - t0, 1), "out_of_fold_maps": round(t2 - t1, 1),
                                "selection": round(time.monotonic() - t2, 1)}
        selection["kinds"] = [f"{k.inner}:{k.seed}" for k in kinds]
        (args.work / "selection.json").write_text(json.dumps(selection, indent=1), encoding="utf-8")
        print(json.dumps({k: v for k, v in selection.items() if k != "mask_threshold_calibration"}, indent=1))
        if args.out:
            chosen = [k for k in kinds if args.only_kind in (None, k.inner)]
            if not chosen:
                raise ValueError(f"--only-kind {args.only_kind!r} is none of the kinds")
            record = {
                "folds": args.folds, "group_by": args.group_by, "fold_seed": FOLD_SEED, "epochs": args.epochs,
                "networks": [{"path": f"{k.inner}{i}", "inner": k.inner, "seed": k.seed + i, "fold_left_out": i,
                              "fit_frames": sum(len(p) for j, p in enumerate(parts) if j != i)}
                             for k in chosen for i in range(args.folds)],
                "data": {"path": str(args.data), "train_frames": len(frames), "fold_frames": [len(p) for p in parts], "held_out_frames": 0},
                "note": (f"threshold, flips and mask threshold were chosen on out-of-fold maps that average "
                         f"{len(kinds)} networks per frame (its fold's); this model's map averages all "
                         f"{len(chosen) * args.folds} fold networks, each fitted on {args.folds - 1}/{args.folds} of train.txt"),
                "command": command,
            }
            members = [networks[k][i] for k in chosen for i in range(args.folds)]
            build_ensemble(args.out, members, selection, record)
            check = storage_check(args.out, members, frames[::max(1, len(frames) // args.check_frames)][:args.check_frames],
                                  args.device)
            card = load_model(args.out, family="segmenter").card
            card["cross_validation"]["storage_check"] = {**check, "note": "members stored as float16, computed as float32; "
                                                         "maps compared with the fold networks' float32 files on train.txt frames"}
            save_card(args.out, card)
            print(json.dumps({"storage_check": check}))
            print(f"model written to {args.out}")
    except (CheckpointError, SegDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
