"""Train a segmenter's target verifier (its second stage) and store it inside the model directory.

The verifier (``inference/models/target_verifier.py``) learns, from the training frames only,
to tell the segmenter's targets from its false alarms:

* positives: every ground-truth target of the fit frames (views centred on its centroid);
* negatives: the segmenter's own unmatched components on the fit frames (at a low threshold, so
  there are more of them than at the operating point) and bright top-hat blobs away from any
  target (``segmenter_data.clutter_points``), the clutter a small-target detector confuses.

Its decision threshold keeps a set share of real targets: the fit frames are split into folds of
whole scenes (``--group-by scene``, the default: a fold never holds frames of a scene another fold
has, so the scores are those of unseen scenes; ``none`` = frame index mod folds, as cards made
before it), a verifier trained on the other folds scores each fold's targets, and the threshold is the
``keep_quantile`` quantile of those out-of-fold target scores (0.01 = one target in a hundred may
be dropped). The final verifier is then trained on all fit frames. The held-out frames and val
are never used to train or choose it; the held-out metrics with and without it go on the card.

``--size-rule`` replaces the flat threshold by the pixel-cost rule (``segmentation.VerifierRule``:
keep a component of n pixels iff its score's odds are at least lambda * n). Its one parameter is fixed
by the same retention: the fold verifiers score the segmenter's own components at its operating
threshold on their held-out folds (what the application will see, with the pixel counts Fa will
charge), and log lambda is the ``keep_quantile`` quantile of logit(score) - log(pixels) over the
components that are targets. ``--refit-rule`` fits only that rule for a model that already has a
verifier: the fold verifiers are trained again with the card's options and seeds (so they are the
ones that set its threshold), the final verifier's weights are left as they are.

    python -m inference.training.segmenter_verifier --model DIR --data SIRST_DIR [--size-rule | --refit-rule | --flat-rule]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inference.checkpoints import CheckpointError, LoadedModel, load_model, save_model
from inference.models.target_verifier import NAME, TargetVerifier, TargetVerifierConfig, d4, score_views, views
from inference.segmenter_metrics import components, matched_components
from inference.segmenter_predict import (
    PostProcess,
    VerifierRule,
    drop_large_components,
    frame_plane,
    model_flips,
    model_mask_threshold,
    model_max_fraction,
    model_members,
    model_threshold,
    model_verifier,
    predict_probabilities,
    rejected_by,
    score_masks,
)
from inference.training.common import Progress, seed_everything, set_threads
from inference.training.segmenter_cv import SEGMENTER_GROUPINGS as GROUPINGS
from inference.training.segmenter_data import Frame, SegDataError, SegTree, clutter_points
from inference.training.segmenter_train import training_frames

log = logging.getLogger(__name__)

PART = "verifier"  # sub-directory of the segmenter's model directory
CANDIDATE_THRESHOLD = 0.3
CLUTTER_PER_FRAME = 15


@dataclass(frozen=True)
class VerifierOptions:
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    folds: int = 3
    keep_quantile: float = 0.01
    seed: int = 0
    quiet: bool = False
    # What an inner fold never splits (the protocol's group-aware folds): "scene" (segmenter_cv.frame_groups)
    # or "none" (frame index mod folds: frames of one scene on both sides, the rule of cards made before it).
    group_by: str = "scene"



def inner_frame_folds(data: Path, frames: list[Frame], opts: VerifierOptions) -> tuple[np.ndarray | None, str]:
    """Inner fold of each fit frame (None: frame index mod ``opts.folds``) and how it was made, for the card.

    Why scenes: the threshold is a quantile of "out-of-fold" target scores; with frames of one scene on both
    sides of a fold, those are scores of seen scenes, not of the new scene a station meets. Data with fewer
    scenes than folds fall back to frame folds, and the card says so."""
    if opts.group_by not in GROUPINGS:
        raise ValueError(f"unknown grouping {opts.group_by!r}; choose from {', '.join(GROUPINGS)}")
    by_index = f"frame index mod {opts.folds}"
    if opts.group_by == "none":
        return None, by_index
    from inference.training.groups import balanced_folds
    from inference.training.segmenter_cv import frame_groups

    groups = frame_groups(data, [f.stem for f in frames], "scene")
    scenes = len(set(groups))
    if scenes < opts.folds:
        log.warning("only %d scenes among the fit frames: the verifier's inner folds split frames instead", scenes)
        return None, f"{by_index} (only {scenes} scenes among the fit frames)"
    fold = np.full(len(frames), -1, np.int64)
    for k, idx in enumerate(balanced_folds(groups, opts.folds)):
        fold[idx] = k
    return fold, f"{opts.folds} folds of whole scenes ({scenes} scenes)"


def unmatched_centres(prob: np.ndarray, gt: np.ndarray, threshold: float, max_fraction: float | None) -> np.ndarray:
    """(n, 2) centres as (y, x) of the predicted components that match no target (the false alarms)."""
    mask = drop_large_components(prob > threshold, max_fraction)
    _, centres, matched, _, _ = matched_components(mask, gt)
    return centres[~matched][:, ::-1].copy()


def target_centres(mask: np.ndarray) -> np.ndarray:
    return components(mask)[1][:, ::-1].copy()


def clutter_centres(frame: Frame, limit: int = CLUTTER_PER_FRAME) -> np.ndarray:
    pts = clutter_points(frame)
    if not len(pts):
        return np.zeros((0, 2))
    m = np.zeros(frame.mask.shape, np.uint8)
    m[pts[:, 0], pts[:, 1]] = 1
    return target_centres(m)[:limit]


def collect(frames: list[Frame], probs: list[np.ndarray], max_fraction: float | None,
            config: TargetVerifierConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(views, labels, frame index per sample) from training frames and the segmenter's maps of them."""
    xs, ys, idx = [], [], []
    for i, (f, p) in enumerate(zip(frames, probs)):
        plane = frame_plane(f.image)
        false = unmatched_centres(p, f.mask, CANDIDATE_THRESHOLD, max_fraction)
        groups = ((target_centres(f.mask), 1.0), (false, 0.0), (clutter_centres(f), 0.0))
        for c, label in groups:
            if len(c):
                xs.append(views(plane, c, config, p))
                ys.append(np.full(len(c), label, np.float32))
                idx.append(np.full(len(c), i))
    if not xs:
        raise ValueError("no training samples: the frames hold no targets and no candidates")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(idx)


@dataclass(frozen=True)
class ExtraNegatives:
    """Non-target centres mined outside this module, per frame stem, added to the verifier's negatives.

    ``segmenter_fold_negatives`` writes them: the false alarms of segmenters trained without the
    frame, which look like what the shipped segmenter does on unseen frames (it makes few false
    alarms on the frames it was fitted on). ``pixels`` is what each would cost Fa, for the record.
    """

    centres: dict[str, np.ndarray]  # stem -> (n, 2) as (y, x)
    pixels: dict[str, np.ndarray]  # stem -> (n,)
    source: str

    @classmethod
    def load(cls, path: str | Path) -> "ExtraNegatives":
        """The JSON of ``segmenter_fold_negatives`` (``negatives``: stem -> [[y, x, pixels, ...], ...])."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            rows = {str(k): np.asarray(v, np.float64).reshape(len(v), -1) if len(v) else np.zeros((0, 3))
                    for k, v in raw["negatives"].items()}
            if any(r.shape[1] < 3 for r in rows.values()):
                raise ValueError("each negative needs [y, x, pixels, ...]")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a negatives file ({exc})") from exc
        return cls({k: r[:, :2].copy() for k, r in rows.items()}, {k: r[:, 2].astype(np.int64) for k, r in rows.items()},
                   str(raw.get("source", Path(path).name)))

    def summary(self, stems: list[str]) -> dict[str, Any]:
        """How many of them fall on ``stems`` (the frames used) and their pixels."""
        used = [s for s in stems if s in self.centres]
        return {"source": self.source, "frames": sum(len(self.centres[s]) > 0 for s in used),
                "components": int(sum(len(self.centres[s]) for s in used)),
                "pixels": int(sum(self.pixels[s].sum() for s in used))}


def extra_samples(frames: list[Frame], probs: list[np.ndarray], extra: ExtraNegatives,
                  config: TargetVerifierConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(views, labels 0, frame index, pixels) of the extra negatives on ``frames`` (indexed as in ``collect``)."""
    xs, idx, px = [], [], []
    for i, (f, p) in enumerate(zip(frames, probs)):
        c = extra.centres.get(f.stem)
        if c is not None and len(c):
            xs.append(views(frame_plane(f.image), c, config, p))
            idx.append(np.full(len(c), i))
            px.append(extra.pixels[f.stem])
    if not xs:
        return (np.zeros((0, config.in_chans, config.patch, config.patch), np.float32), np.zeros(0, np.float32),
                np.zeros(0, int), np.zeros(0, np.int64))
    x = np.concatenate(xs)
    return x, np.zeros(len(x), np.float32), np.concatenate(idx), np.concatenate(px)


def fit(x: np.ndarray, y: np.ndarray, config: TargetVerifierConfig, opts: VerifierOptions, seed: int,
        desc: str = "verifier") -> TargetVerifier:
    """Train one verifier: random symmetries and ±2 px shifts, positives weighted up to balance the classes."""
    if y.min() == y.max():
        raise ValueError("the verifier needs both targets and non-targets to learn from")
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    model = TargetVerifier(config)
    optim = torch.optim.AdamW(model.parameters(), opts.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, opts.lr, total_steps=opts.steps)
    pos_weight = torch.tensor(float((1 - y).sum() / y.sum()))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    bar = Progress(opts.steps, desc, disable=opts.quiet)
    model.train()
    for _ in range(opts.steps):
        i = torch.from_numpy(rng.integers(len(x), size=opts.batch_size))
        dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
        xb = torch.roll(d4(xt[i], int(rng.integers(8))), (dy, dx), (-2, -1))
        loss = F.binary_cross_entropy_with_logits(model(xb), yt[i], pos_weight=pos_weight)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        bar.update(loss=loss.item())
    bar.close()
    return model.eval()


def sample_folds(frame_idx: np.ndarray, folds: int, frame_fold: np.ndarray | None = None) -> np.ndarray:
    """Inner fold of each sample: its frame's index modulo ``folds`` (the card's rule: frames of one scene may
    fall on both sides), or ``frame_fold[frame index]`` when given (e.g. folds of whole scenes, ``groups``)."""
    if frame_fold is None:
        return frame_idx % folds
    fold = np.asarray(frame_fold)[frame_idx]
    if len(fold) and (fold.min() < 0 or fold.max() >= folds):
        raise ValueError(f"frame_fold must hold fold numbers 0..{folds - 1}")
    return fold


def fold_verifiers(x: np.ndarray, y: np.ndarray, frame_idx: np.ndarray, config: TargetVerifierConfig,
                   opts: VerifierOptions, frame_fold: np.ndarray | None = None) -> list[TargetVerifier]:
    """One verifier per inner fold of frames (``sample_folds``), each trained without its fold."""
    fold = sample_folds(frame_idx, opts.folds, frame_fold)
    return [fit(x[fold != k], y[fold != k], config, opts, opts.seed + k, desc=f"fold {k + 1}/{opts.folds}")
            for k in range(opts.folds)]


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, frame_idx: np.ndarray, config: TargetVerifierConfig,
                       opts: VerifierOptions, models: list[TargetVerifier] | None = None,
                       frame_fold: np.ndarray | None = None) -> np.ndarray:
    """Each sample scored by a verifier that never saw its frame (inner folds as ``sample_folds``)."""
    models = models or fold_verifiers(x, y, frame_idx, config, opts, frame_fold)
    fold = sample_folds(frame_idx, opts.folds, frame_fold)
    out = np.zeros(len(x), np.float32)
    for k, model in enumerate(models):
        out[fold == k] = score_views(model, x[fold == k])
    return out


@dataclass(frozen=True)
class OperatingComponents:
    """The segmenter's components at its operating threshold (size limit applied), as the verifier meets them."""

    frame: np.ndarray  # (n,) index of the frame
    centres: np.ndarray  # (n, 2) as (y, x)
    pixels: np.ndarray  # (n,) pixel count: what Fa charges when the component is false
    target: np.ndarray  # (n,) bool: matches a ground-truth target as Pd counts it


def operating_components(frames: list[Frame], probs: list[np.ndarray], threshold: float,
                         max_fraction: float | None) -> OperatingComponents:
    rows: list[tuple[np.ndarray, ...]] = []
    for i, (f, p) in enumerate(zip(frames, probs)):
        area, cent, matched, _, _ = matched_components(drop_large_components(p > threshold, max_fraction), f.mask)
        rows.append((np.full(len(area), i), cent[:, ::-1].reshape(-1, 2), area, matched))
    cols = [np.concatenate(c) for c in zip(*rows)] if rows else [np.zeros(0, int), np.zeros((0, 2)), np.zeros(0, int), np.zeros(0, bool)]
    return OperatingComponents(*cols)


def score_components(comps: OperatingComponents, frames: list[Frame], probs: list[np.ndarray],
                     models: list[TargetVerifier]) -> np.ndarray:
    """Scores of ``comps``; with several models (the fold verifiers), frame i is scored by model i % len(models)."""
    out = np.zeros(len(comps.pixels), np.float32)
    for i, (f, p) in enumerate(zip(frames, probs)):
        sel = comps.frame == i
        if sel.any():
            model = models[i % len(models)]
            out[sel] = score_views(model, views(frame_plane(f.image), comps.centres[sel], model.config, p))
    return out


def fit_size_rule(scores: np.ndarray, pixels: np.ndarray, target: np.ndarray, keep_quantile: float) -> float:
    """log lambda: the ``keep_quantile`` quantile of logit(score) - log(pixels) over the target components."""
    if not target.any():
        raise ValueError("no target component at the operating threshold to fit the size rule on")
    s = np.clip(np.asarray(scores, np.float64), 1e-12, 1 - 1e-12)
    margin = np.log(s) - np.log1p(-s) - np.log(np.maximum(pixels, 1))
    return float(np.quantile(margin[target], keep_quantile))


def rule_summary(scores: np.ndarray, comps: OperatingComponents, threshold: float,
                 log_odds_per_pixel: float | None) -> dict[str, Any]:
    """What a rule keeps of the targets and drops of the non-target components and of their pixels."""
    rejected = rejected_by(scores, comps.pixels, threshold, log_odds_per_pixel)
    t, nt = comps.target, ~comps.target
    false_pixels = int(comps.pixels[nt].sum())
    return {
        "targets_kept": float(np.mean(~rejected[t])) if t.any() else None,
        "targets_lost": int(rejected[t].sum()),
        "non_targets_dropped": float(np.mean(rejected[nt])) if nt.any() else None,
        "non_target_pixels_dropped": float(comps.pixels[nt & rejected].sum() / false_pixels) if false_pixels else None,
    }


def held_out_metrics(loaded: LoadedModel, held: list[Frame], probs: list[np.ndarray],
                     rule: VerifierRule | None) -> dict[str, Any]:
    """Held-out metrics at the card's threshold and size limit, with or without the verifier ``rule``."""
    post = PostProcess(model_threshold(loaded), model_max_fraction(loaded), rule, model_mask_threshold(loaded))
    return score_masks(post, ((p, f.image, f.mask) for f, p in zip(held, probs)))


@dataclass
class _Stage:
    """The fit frames' maps and samples, the fold verifiers and their out-of-fold scores."""

    fit_frames: list[Frame]
    fit_probs: list[np.ndarray]
    held: list[Frame]
    held_probs: list[np.ndarray]
    x: np.ndarray
    y: np.ndarray
    frame_idx: np.ndarray
    models: list[TargetVerifier]
    oof: np.ndarray
    is_extra: np.ndarray  # which samples are the extra negatives (all False without them)
    extra_pixels: np.ndarray  # pixels of each extra negative, in sample order
    frame_fold: np.ndarray | None  # inner fold per fit frame (None: frame index mod folds)
    inner_folds: str  # how, in words (the card's)


def _stage(loaded: LoadedModel, data: Path, config: TargetVerifierConfig, opts: VerifierOptions, device: str,
           extra: ExtraNegatives | None = None) -> _Stage:
    fit_frames, held, _ = training_frames(SegTree.open(data), loaded.config.in_chans)
    if not fit_frames:
        raise ValueError(f"{data}: no usable training frames")
    members, flips = model_members(loaded), model_flips(loaded)
    fit_probs = predict_probabilities(members, [f.image for f in fit_frames], device, standardised=True, flips=flips)
    held_probs = predict_probabilities(members, [f.image for f in held], device, standardised=True, flips=flips) if held else []
    x, y, frame_idx = collect(fit_frames, fit_probs, model_max_fraction(loaded), config)
    is_extra, ep = np.zeros(len(y), bool), np.zeros(0, np.int64)
    if extra is not None:
        ex, ey, ei, ep = extra_samples(fit_frames, fit_probs, extra, config)
        x, y, frame_idx = np.concatenate([x, ex]), np.concatenate([y, ey]), np.concatenate([frame_idx, ei])
        is_extra = np.concatenate([is_extra, np.ones(len(ey), bool)])
    frame_fold, how = inner_frame_folds(data, fit_frames, opts)
    models = fold_verifiers(x, y, frame_idx, config, opts, frame_fold)
    return _Stage(fit_frames, fit_probs, held, held_probs, x, y, frame_idx, models,
                  out_of_fold_scores(x, y, frame_idx, config, opts, models, frame_fold), is_extra, ep, frame_fold, how)


def size_rule_entry(loaded: LoadedModel, st: _Stage, verifier: TargetVerifier, threshold: float,
                    keep_quantile: float) -> dict[str, Any]:
    """Fit the pixel-cost rule out of fold on the fit frames; check it on the held-out frames with ``verifier``."""
    thr, limit = model_threshold(loaded), model_max_fraction(loaded)
    comps = operating_components(st.fit_frames, st.fit_probs, thr, limit)
    scores = score_components(comps, st.fit_frames, st.fit_probs, st.models)
    log_odds = fit_size_rule(scores, comps.pixels, comps.target, keep_quantile)
    entry: dict[str, Any] = {
        "log_odds_per_pixel": log_odds,
        "rule": f"a component of n pixels is kept iff the verifier's odds s/(1-s) >= exp({log_odds:.4f}) * n; "
                f"log lambda is the {keep_quantile:g} quantile of logit(s) - log(n) over out-of-fold target components "
                f"at the segmenter's threshold {thr:g} (fit frames only); replaces the flat threshold",
        "out_of_fold": {
            "components": {"targets": int(comps.target.sum()), "non_targets": int((~comps.target).sum()),
                           "non_target_pixels": int(comps.pixels[~comps.target].sum())},
            "size_rule": rule_summary(scores, comps, threshold, log_odds),
            "flat_threshold": rule_summary(scores, comps, threshold, None),
        },
    }
    if st.held:
        hc = operating_components(st.held, st.held_probs, thr, limit)
        hs = score_components(hc, st.held, st.held_probs, [verifier])
        entry["held_out_components"] = {
            "targets": int(hc.target.sum()), "non_targets": int((~hc.target).sum()),
            "non_target_pixels": int(hc.pixels[~hc.target].sum()),
            "size_rule": rule_summary(hs, hc, threshold, log_odds), "flat_threshold": rule_summary(hs, hc, threshold, None)}
        entry["held_out_with"] = held_out_metrics(loaded, st.held, st.held_probs, VerifierRule(verifier, threshold, log_odds))
    return entry


NEGATIVES_NOTE = (f"the segmenter's unmatched components at threshold {CANDIDATE_THRESHOLD:g} on the fit frames "
                  f"and up to {CLUTTER_PER_FRAME} top-hat clutter blobs per fit frame")


def extra_negatives_entry(st: _Stage, extra: ExtraNegatives, config: TargetVerifierConfig, opts: VerifierOptions,
                          threshold: float) -> dict[str, Any]:
    """The extra negatives scored out of fold by the fold verifiers trained with them and by ones trained without.

    "without" trains the fold verifiers on the pool without the extras (the same samples, seeds and
    threshold rule as a verifier that never had them), so the two can be compared on the same
    negatives, each scored by a verifier that never saw that frame.
    """
    base = ~st.is_extra
    y, oof, ex, px = st.y, st.oof, st.is_extra, st.extra_pixels

    def summary(scores: np.ndarray, thr: float, target_scores: np.ndarray) -> dict[str, Any]:
        dropped = scores < thr
        return {"threshold": float(thr), "targets_kept": float(np.mean(target_scores >= thr)),
                "extra_dropped": int(dropped.sum()), "extra_dropped_share": float(np.mean(dropped)) if len(dropped) else None,
                "extra_pixels_dropped": int(px[dropped].sum())}

    without_models = fold_verifiers(st.x[base], y[base], st.frame_idx[base], config, opts, st.frame_fold)
    without_oof = out_of_fold_scores(st.x[base], y[base], st.frame_idx[base], config, opts, without_models, st.frame_fold)
    without_thr = float(np.quantile(without_oof[y[base] == 1], opts.keep_quantile))
    fold = sample_folds(st.frame_idx[ex], opts.folds, st.frame_fold)
    without_extra = np.zeros(int(ex.sum()), np.float32)
    for k, m in enumerate(without_models):
        without_extra[fold == k] = score_views(m, st.x[ex][fold == k])
    return {**extra.summary([f.stem for f in st.fit_frames]),
            "out_of_fold": {"with": summary(oof[ex], threshold, oof[y == 1]),
                            "without": summary(without_extra, without_thr, without_oof[y[base] == 1])}}


def train_verifier(model_dir: Path, data: Path, opts: VerifierOptions = VerifierOptions(),
                   config: TargetVerifierConfig = TargetVerifierConfig(), device: str = "cpu",
                   size_rule: bool = False, extra: ExtraNegatives | None = None) -> dict[str, Any]:
    """Train the verifier of the segmenter in ``model_dir`` and store it there; returns the card's ``verifier`` entry.

    With ``extra``, those negatives join the pool (same folds by frame, same threshold rule) and the
    entry records them and how the verifiers with and without them treat them out of fold.
    """
    loaded = load_model(model_dir, family="segmenter")
    t0 = time.monotonic()
    st = _stage(loaded, data, config, opts, device, extra)
    y, oof = st.y, st.oof
    threshold = float(np.quantile(oof[y == 1], opts.keep_quantile))
    verifier = fit(st.x, y, config, opts, opts.seed + 100, desc="final verifier")
    entry: dict[str, Any] = {
        "dir": PART,
        "threshold": threshold,
        "rule": f"components scored below the {opts.keep_quantile:g} quantile of out-of-fold target scores "
                f"({st.inner_folds} of the fit frames) are dropped from the mask",
        "inner_folds": st.inner_folds,
        "samples": {"targets": int(y.sum()), "non_targets": int(len(y) - y.sum())},
        "out_of_fold": {"targets_kept": float(np.mean(oof[y == 1] >= threshold)),
                        "non_targets_dropped": float(np.mean(oof[y == 0] < threshold))},
        "options": {k: v for k, v in opts.__dict__.items() if k != "quiet"},
        "negatives": NEGATIVES_NOTE,
    }
    if extra is not None:
        entry["extra_negatives"] = extra_negatives_entry(st, extra, config, opts, threshold)
    if st.held:
        entry["held_out_without"] = held_out_metrics(loaded, st.held, st.held_probs, None)
        entry["held_out_with"] = held_out_metrics(loaded, st.held, st.held_probs, VerifierRule(verifier, threshold))
    if size_rule:
        entry["size_rule"] = size_rule_entry(loaded, st, verifier, threshold, opts.keep_quantile)
    entry["seconds"] = round(time.monotonic() - t0, 1)
    save_model(Path(model_dir) / PART, NAME, verifier, config, {
        "model": NAME, "family": "segmenter", "task": "second stage of the segmenter: accept or reject each predicted component",
        "threshold": threshold, "trained_for": Path(model_dir).name, "data": str(data),
        "negatives": NEGATIVES_NOTE if extra is None else
        f"{NEGATIVES_NOTE}; plus {entry['extra_negatives']['components']} extra negatives: {extra.source}",
    })
    card = dict(loaded.card)
    card["verifier"] = entry
    card["parts"] = {**card.get("parts", {}), "verifier": PART}
    save_model(model_dir, loaded.name, loaded.model, loaded.config, card)
    return entry


def refit_size_rule(model_dir: Path, data: Path, device: str = "cpu", quiet: bool = False) -> dict[str, Any]:
    """Fit (or fit again) only the pixel-cost rule of a model that has a verifier; its weights stay as they are.

    The fold verifiers are retrained with the options and seeds on the card, so on the same machine
    they are the ones that set the card's threshold (``flat_threshold_recomputed`` says whether).
    """
    loaded = load_model(model_dir, family="segmenter")
    current = model_verifier(loaded)
    if current is None:
        raise ValueError(f"{model_dir}: the model has no target verifier to fit a rule for (train one first)")
    entry = dict(loaded.card["verifier"])
    saved = {k: v for k, v in (entry.get("options") or {}).items() if k in VerifierOptions.__dataclass_fields__}
    # A card without "group_by" was made when inner folds were frame index mod folds: refit with those.
    opts = VerifierOptions(**{"group_by": "none", **saved, "quiet": quiet})
    t0 = time.monotonic()
    verifier = current.model
    st = _stage(loaded, data, verifier.config, opts, device)
    rule = size_rule_entry(loaded, st, verifier, current.threshold, opts.keep_quantile)
    rule["flat_threshold_recomputed"] = float(np.quantile(st.oof[st.y == 1], opts.keep_quantile))
    rule["command"] = "python -m inference.training.segmenter_verifier --refit-rule"
    rule["seconds"] = round(time.monotonic() - t0, 1)
    entry["size_rule"] = rule
    card = dict(loaded.card)
    card["verifier"] = entry
    save_model(model_dir, loaded.name, loaded.model, loaded.config, card)
    return entry


def remove_size_rule(model_dir: Path) -> dict[str, Any]:
    """Go back to the verifier's flat threshold: the card's ``size_rule`` is removed (kept under ``removed_size_rule``)."""
    loaded = load_model(model_dir, family="segmenter")
    if model_verifier(loaded) is None:
        raise ValueError(f"{model_dir}: the model has no target verifier")
    entry = dict(loaded.card["verifier"])
    if "size_rule" in entry:
        entry["removed_size_rule"] = entry.pop("size_rule")
    card = dict(loaded.card)
    card["verifier"] = entry
    save_model(model_dir, loaded.name, loaded.model, loaded.config, card)
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="segmenter model directory (the verifier is stored inside)")
    p.add_argument("--data", required=True, type=Path, help="the tree the segmenter was trained on (train.txt is used)")
    p.add_argument("--steps", type=int, default=VerifierOptions.steps)
    p.add_argument("--folds", type=int, default=VerifierOptions.folds)
    p.add_argument("--keep-quantile", type=float, default=VerifierOptions.keep_quantile,
                   help="share of out-of-fold targets the threshold may drop (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--group-by", default=VerifierOptions.group_by, choices=GROUPINGS,
                   help="what an inner fold (which sets the threshold) never splits: scene (default; frames whose "
                        "backgrounds look alike) or none (frame index mod --folds, as cards before it)")
    p.add_argument("--map-channel", action="store_true",
                   help="the verifier also reads the segmenter's probability map around each component")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--size-rule", action="store_true",
                      help="decide by the pixel-cost rule (odds >= lambda * pixels) instead of a flat threshold")
    rule.add_argument("--refit-rule", action="store_true",
                      help="only fit the pixel-cost rule of the model's existing verifier (its weights stay)")
    rule.add_argument("--flat-rule", action="store_true",
                      help="only remove the pixel-cost rule from the card: the verifier's flat threshold decides again")
    p.add_argument("--extra-negatives", type=Path, metavar="FILE",
                   help="more negatives for the pool (the JSON of segmenter_fold_negatives: out-of-fold false alarms)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.folds < 2 or not 0.0 <= args.keep_quantile < 0.5 or args.steps < 1:
        print("error: need --folds >= 2, --steps >= 1 and 0 <= --keep-quantile < 0.5", file=sys.stderr)
        return 2
    set_threads(args.threads)
    opts = VerifierOptions(steps=args.steps, folds=args.folds, keep_quantile=args.keep_quantile, seed=args.seed,
                           quiet=args.quiet, group_by=args.group_by)
    try:
        if args.refit_rule:
            entry = refit_size_rule(args.model, args.data, quiet=args.quiet)
        elif args.flat_rule:
            entry = remove_size_rule(args.model)
        else:
            extra = ExtraNegatives.load(args.extra_negatives) if args.extra_negatives else None
            entry = train_verifier(args.model, args.data, opts, TargetVerifierConfig(map_channel=args.map_channel),
                                   size_rule=args.size_rule, extra=extra)
    except (CheckpointError, SegDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
