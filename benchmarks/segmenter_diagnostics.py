"""Why the segmenter's false-alarm rate stays high, and why held-out frames mis-rank networks (issue #5).

    PYTHONPATH=. python benchmarks/segmenter_diagnostics.py --shared ../shared [--model DIR] [--main-only]
        [--threshold T] [--compare DIR] [--quantiles 0.01,0.02,0.05] [--variants] [--threads 1] [--json FILE]

Sections (each printed, all written to ``--json``):

- false alarms on val: the model as its card applies it (``--main-only`` runs its main network
  alone, without ensemble members and verifier; ``--threshold`` overrides the card's): false
  components, their pixels and frames, the share with peak probability ≥ 0.95, the lowest peak
  of a detected target, and the frames holding most false pixels;
- coverage: for held-out and val frames, the largest correlation of a 32×32 thumbnail with any fit
  frame (near-duplicates of training frames would make held-out figures optimistic);
- ``--compare DIR``: the model against another one on 2,000 bootstrap resamples of frames, on the
  held-out and on the val frames: how often the other one has the higher IoU and the lower Fa;
- ``--quantiles``: the verifier's out-of-fold target scores on the fit frames (as its training
  computes them) and val figures of the model's own verifier at those quantiles as threshold;
- ``--variants``: verifier variants compared out of fold on the fit frames only (AUROC, share of
  non-targets dropped at the thresholds that keep 99 % and 98 % of targets);
- ``--rule-effect``: for a model whose verifier carries the pixel-cost rule, the components of the
  held-out and val frames on which the rule and the flat threshold disagree (target or not, pixels, score).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BOOTSTRAP = 2000


def _plain(loaded, threshold: float | None):
    """The model as scored: card settings, or main network only; with an optional threshold."""
    card = dict(loaded.card)
    if threshold is not None:
        card["threshold"] = threshold
    return dataclasses.replace(loaded, card=card)


def _main_only(loaded):
    card = {k: v for k, v in loaded.card.items() if k not in ("ensemble", "verifier")}
    return dataclasses.replace(loaded, card=card, parts={})


def _masks(loaded, frames) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(probability maps, final masks) of ``frames`` exactly as the application computes them."""
    from inference import segmenter_predict as seg

    probs = seg.predict_probabilities(seg.model_members(loaded), [f.image for f in frames], standardised=True,
                                      flips=seg.model_flips(loaded))
    post = seg.model_post_process(loaded)
    return probs, [post(p, f.image).mask for p, f in zip(probs, frames)]


def false_alarms(loaded, frames) -> dict[str, Any]:
    from inference.segmenter_metrics import matched_components

    probs, masks = _masks(loaded, frames)
    peaks_false, peaks_true, by_frame = [], [], {}
    for f, p, m in zip(frames, probs, masks):
        n, labels, _, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        area, _, matched, _, _ = matched_components(m, f.mask)
        for i in range(1, n):
            peak = float(p[labels == i].max())
            (peaks_true if matched[i - 1] else peaks_false).append(peak)
        if (~matched).any():
            by_frame[f.stem] = int(area[~matched].sum())
    top = sorted(by_frame.items(), key=lambda kv: -kv[1])[:8]
    return {
        "false_components": len(peaks_false), "false_pixels": int(sum(by_frame.values())), "frames_with_false": len(by_frame),
        "share_false_peak_ge_0.95": float(np.mean(np.array(peaks_false) >= 0.95)) if peaks_false else None,
        "lowest_detected_target_peak": min(peaks_true) if peaks_true else None,
        "top_frames": top,
    }


def coverage(fit, held, val) -> dict[str, Any]:
    def thumb(f):
        t = cv2.resize(f.image.mean(0), (32, 32), interpolation=cv2.INTER_AREA).ravel()
        t = t - t.mean()
        return t / (np.linalg.norm(t) + 1e-9)

    bank = np.stack([thumb(f) for f in fit])
    out = {}
    for name, frames in (("held_out", held), ("val", val)):
        best = np.array([(bank @ thumb(f)).max() for f in frames])
        out[name] = {"median": float(np.median(best)), "share_above_0.95": float(np.mean(best > 0.95)),
                     "share_above_0.9": float(np.mean(best > 0.9))}
    return out


def _frame_stats(masks, frames) -> np.ndarray:
    from inference.segmenter_metrics import matched_components

    rows = []
    for m, f in zip(masks, frames):
        area, _, matched, _, _ = matched_components(m, f.mask)
        rows.append((np.count_nonzero(m & f.mask), np.count_nonzero(m | f.mask), area[~matched].sum(), f.mask.size))
    return np.array(rows, float)


def bootstrap(a, b, frames, seed: int = 0) -> dict[str, Any]:
    """How often ``b`` beats ``a`` (IoU higher, Fa lower) over resamples of ``frames``."""
    sa, sb = _frame_stats(_masks(a, frames)[1], frames), _frame_stats(_masks(b, frames)[1], frames)
    rng = np.random.default_rng(seed)
    iou = fa = 0
    for _ in range(BOOTSTRAP):
        i = rng.integers(len(frames), size=len(frames))
        ta, tb = sa[i].sum(0), sb[i].sum(0)
        iou += tb[0] / max(tb[1], 1) > ta[0] / max(ta[1], 1)
        fa += tb[2] / tb[3] < ta[2] / ta[3]
    return {"iou_model": float(sa[:, 0].sum() / sa[:, 1].sum()), "iou_other": float(sb[:, 0].sum() / sb[:, 1].sum()),
            "other_higher_iou": iou / BOOTSTRAP, "other_lower_fa": fa / BOOTSTRAP}


def _fit_samples(loaded, fit, config):
    from inference import segmenter_predict as seg
    from inference.training.segmenter_verifier import collect

    probs = seg.predict_probabilities(seg.model_members(loaded), [f.image for f in fit], standardised=True,
                                      flips=seg.model_flips(loaded))
    return probs, collect(fit, probs, seg.model_max_fraction(loaded), config)


def verifier_quantiles(loaded, fit, val, quantiles: list[float]) -> dict[str, Any]:
    from inference.models.target_verifier import TargetVerifierConfig
    from inference.segmenter_metrics import evaluate_masks
    from inference.segmenter_predict import model_verifier
    from inference.training.segmenter_verifier import VerifierOptions, out_of_fold_scores

    part = model_verifier(loaded)
    if part is None:
        raise ValueError("the model has no verifier")
    config: TargetVerifierConfig = part[0].config
    opts = VerifierOptions(**{k: v for k, v in loaded.card["verifier"].get("options", {}).items()
                              if k in VerifierOptions.__dataclass_fields__}, quiet=True)
    _, (x, y, idx) = _fit_samples(loaded, fit, config)
    oof = out_of_fold_scores(x, y, idx, config, opts)
    out = {}
    for q in quantiles:
        thr = float(np.quantile(oof[y == 1], q))
        flat = {k: v for k, v in loaded.card["verifier"].items() if k != "size_rule"}  # rows are flat thresholds
        card = {**loaded.card, "verifier": {**flat, "threshold": thr}}
        r = evaluate_masks(_masks(dataclasses.replace(loaded, card=card), val)[1], [f.mask for f in val])
        out[f"{q:g}"] = {"threshold": thr, **{k: r[k] for k in ("iou", "niou", "pd", "fa", "detected")}}
    return out


def verifier_variants(loaded, fit) -> list[dict[str, Any]]:
    from sklearn.metrics import roc_auc_score

    from inference.models.target_verifier import TargetVerifierConfig
    from inference.training import segmenter_verifier as sv

    variants = [("shipped: 800 steps, context 2, candidates at 0.3", 800, 2, 0.3),
                ("context 3", 800, 3, 0.3), ("2000 steps", 2000, 2, 0.3), ("candidates at 0.1", 800, 2, 0.1)]
    probs = None
    out = []
    for name, steps, context, cand in variants:
        config = TargetVerifierConfig(context=context)
        sv.CANDIDATE_THRESHOLD = cand
        if probs is None:
            probs, (x, y, idx) = _fit_samples(loaded, fit, config)
        else:
            from inference.segmenter_predict import model_max_fraction

            x, y, idx = sv.collect(fit, probs, model_max_fraction(loaded), config)
        oof = sv.out_of_fold_scores(x, y, idx, config, sv.VerifierOptions(steps=steps, quiet=True))
        drop = {f"drop_at_{q:g}": float(np.mean(oof[y == 0] < np.quantile(oof[y == 1], q))) for q in (0.01, 0.02)}
        out.append({"variant": name, "targets": int(y.sum()), "non_targets": int(len(y) - y.sum()),
                    "auroc": float(roc_auc_score(y, oof)), **drop})
        print(f"  {name:<48s} AUROC {out[-1]['auroc']:.4f}  drop at 1 % {drop['drop_at_0.01']:.3f}  "
              f"at 2 % {drop['drop_at_0.02']:.3f}  ({out[-1]['non_targets']} non-targets)", flush=True)
    sv.CANDIDATE_THRESHOLD = 0.3
    return out


def rule_effect(loaded, frames) -> list[dict[str, Any]]:
    """Components (at the operating threshold, size limit applied) the pixel-cost rule and the flat threshold decide differently."""
    from inference import segmenter_predict as seg
    from inference.models.target_verifier import verify
    from inference.segmenter_metrics import matched_components

    rule = seg.model_verifier(loaded)
    if rule is None or rule.log_odds_per_pixel is None:
        raise ValueError("the model's verifier has no pixel-cost rule")
    probs = seg.predict_probabilities(seg.model_members(loaded), [f.image for f in frames], standardised=True,
                                      flips=seg.model_flips(loaded))
    rows = []
    for f, p in zip(frames, probs):
        mask = seg.drop_large_components(p > seg.model_threshold(loaded), seg.model_max_fraction(loaded))
        area, cent, matched, _, _ = matched_components(mask, f.mask)
        if not len(area):
            continue
        scores = verify(rule.model, seg.frame_plane(f.image), cent[:, ::-1], p)
        flat = seg.rejected_by(scores, area, rule.threshold)
        size = seg.rejected_by(scores, area, rule.threshold, rule.log_odds_per_pixel)
        rows += [{"frame": f.stem, "target": bool(matched[j]), "pixels": int(area[j]), "score": float(scores[j]),
                  "removed_by": "size rule" if size[j] else "flat threshold"} for j in np.flatnonzero(flat != size)]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--model", type=Path, help="segmenter model directory (default: the bundled one)")
    ap.add_argument("--main-only", action="store_true", help="its main network alone (no members, no verifier)")
    ap.add_argument("--threshold", type=float, help="override the card's threshold")
    ap.add_argument("--compare", type=Path, help="another segmenter model directory to bootstrap against")
    ap.add_argument("--quantiles", help="comma-separated out-of-fold target-score quantiles for the verifier threshold")
    ap.add_argument("--variants", action="store_true", help="compare verifier variants out of fold (slow: 12 trainings)")
    ap.add_argument("--rule-effect", action="store_true", help="where the verifier's pixel-cost rule and its flat threshold disagree")
    ap.add_argument("--skip-false-alarms", action="store_true", help="skip the false-alarm and coverage sections")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.training.common import set_threads
    from inference.training.segmenter_data import SegTree, load_frames
    from inference.training.segmenter_train import training_frames

    sirst = args.shared / "datasets" / "sirst"
    if not sirst.is_dir():
        print(f"error: {sirst} not found (pass --shared)", file=sys.stderr)
        return 2
    set_threads(args.threads)
    t0 = time.monotonic()
    loaded = load_model(args.model or bundled_model_dir("segmenter"), family="segmenter")
    if args.main_only:
        loaded = _main_only(loaded)
    loaded = _plain(loaded, args.threshold)
    tree = SegTree.open(sirst)
    fit, held, _ = training_frames(tree, loaded.config.in_chans)
    val, _ = load_frames(tree, tree.stems("val"), loaded.config.in_chans)
    result: dict[str, Any] = {"model": str(loaded.path), "main_only": args.main_only, "threshold": loaded.card.get("threshold")}

    if not args.skip_false_alarms:
        result["false_alarms_val"] = fa = false_alarms(loaded, val)
        print(f"val false alarms: {fa['false_components']} components, {fa['false_pixels']} pixels in "
              f"{fa['frames_with_false']} frames; peak >= 0.95: {fa['share_false_peak_ge_0.95']:.0%}; lowest detected "
              f"target peak {fa['lowest_detected_target_peak']:.2f}; top frames {fa['top_frames'][:4]}")
        result["coverage"] = cov = coverage(fit, held, val)
        for name, c in cov.items():
            print(f"coverage {name:<8s}: best thumbnail correlation with a fit frame, median {c['median']:.2f}, "
                  f"share > 0.95 {c['share_above_0.95']:.2f}, > 0.9 {c['share_above_0.9']:.2f}")
    if args.rule_effect:
        result["rule_effect"] = {}
        for name, frames in (("held_out", held), ("val", val)):
            rows = result["rule_effect"][name] = rule_effect(loaded, frames)
            for r in rows:
                print(f"rule effect {name:<8s}: {r['frame']:<12s} {'target' if r['target'] else 'false':<6s} "
                      f"{r['pixels']:4d} px  score {r['score']:.3f}  removed by the {r['removed_by']}")
    if args.compare:
        other = load_model(args.compare, family="segmenter")
        result["bootstrap"] = {}
        for name, frames in (("held_out", held), ("val", val)):
            r = result["bootstrap"][name] = bootstrap(loaded, other, frames)
            print(f"bootstrap {name:<8s}: IoU {r['iou_model']:.3f} vs other {r['iou_other']:.3f}; other higher IoU in "
                  f"{r['other_higher_iou']:.0%}, lower Fa in {r['other_lower_fa']:.0%} of {BOOTSTRAP} resamples")
    if args.quantiles:
        qs = [float(q) for q in args.quantiles.split(",")]
        result["verifier_quantiles_val"] = vq = verifier_quantiles(loaded, fit, val, qs)
        for q, r in vq.items():
            print(f"verifier at quantile {q}: threshold {r['threshold']:.3f}  val IoU {r['iou']:.4f}  Pd {r['pd']:.4f} "
                  f"({r['detected']})  Fa {r['fa']:.1f}")
    if args.variants:
        result["verifier_variants"] = verifier_variants(loaded, fit)
    result["seconds"] = round(time.monotonic() - t0, 1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"{result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
