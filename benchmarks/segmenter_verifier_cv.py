"""The shipped segmenter pipeline under leave-scene-out CV, target verifier included (issue 19).

The fold networks of ``segmenter_scene_cv.py train`` score their left-out scenes over the shipped views
(the frame and its mirror image, ``segmenter_views_cv.view_maps``); fold k is then post-processed as the
shipped card does: threshold cross-fitted on the other folds' out-of-fold maps (``segmenter_cv.cross_fitted``,
with the size limit), the size limit by the card's rule on the training folds, the card's mask threshold, and
a target verifier trained **per fold** on that fold's training scenes only, with
``inference.training.segmenter_verifier``'s own functions and the card's options. Variants of the verifier:

* ``shipped``: the card's recipe; its candidates come from fold k's network on its own training frames
  (in-sample for that network, as the shipped verifier's are);
* ``scene_inner`` (candidate A): the same, its threshold set on inner folds of whole scenes
  (``groups.balanced_folds`` of ``segmenter_cv.frame_groups``) instead of frame index mod 3;
* ``nested`` (candidate B): candidates mined on maps from networks that never saw the frame nor fold k:
  for training folds {a, b}, fold a scored by the network trained on fold b alone
  (``segmenter_scene_cv.py train --alone``) and vice versa.

``--pipeline`` chooses whose card's settings are run (``PIPELINES``): ``shipped`` (today's bundle: the main
network over two views) or ``issue`` (the bundle when issue 21 was filed, commit 5584ce3: the main network and
the conv member, maps averaged, over four views); threshold, size limit, mask threshold and verifier recipe are
the same rules on that pipeline's own maps (heldout-21.md). ``--compare`` applies heldout-21.md's rule to two
``--mean-of`` summaries (today's, then the issue-time one).

Verifiers are kept under ``--out`` (safetensors + JSON) and reused. val.txt is never read.

    PYTHONPATH=. python benchmarks/segmenter_verifier_cv.py --data SIRST --work /tmp/scenecv40 --out /tmp/segverif \
        [--pipeline shipped|issue] [--variants shipped,scene_inner,nested] [--json FILE]
    PYTHONPATH=. python benchmarks/segmenter_verifier_cv.py --compare TODAY_MEAN.json ISSUE_MEAN.json [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.segmenter_scene_cv import recipe_dir  # noqa: E402
from benchmarks.segmenter_views_cv import view_maps  # noqa: E402

VIEWS = ["h"]  # the shipped profile's views besides the frame (resources/models/segmenter-sirst: test_time_flips)
MASK_THRESHOLD = 0.75  # the shipped card's mask threshold (the issue-time card's too)
VARIANTS = ("shipped", "scene_inner", "nested")


@dataclass(frozen=True)
class Pipeline:
    """One card's network settings under the CV: the ensemble members' recipes besides the main network's
    (``--recipe``), the map views (a card's ``test_time_flips``: ``"h"`` = frame + mirror, True = four flip
    views; ``segmenter_cv.MapViews``), the additions naming them for ``segmenter_cv.settings_for``, and the
    file-name prefix of its cached out-of-fold maps under ``--work/maps``."""

    label: str
    card: str
    members: tuple[str, ...]
    views: bool | str
    use: frozenset[str]
    flips_row: str
    oof_cache: str  # formatted with recipes ("base" or "base+conv") and folds

    def recipes(self, main: str) -> list[str]:
        return [main, *self.members]

    def rows(self) -> dict[str, str]:
        """Row names: the shipped pipeline's are those of segmenter-verifier-cv.md's reports."""
        return {"flips": self.flips_row, "none": f"{self.label} settings, no verifier",
                "shipped": f"{self.label} settings + verifier (shipped recipe, per fold)",
                "scene_inner": "candidate A: verifier threshold on scene-grouped inner folds",
                "nested": "candidate B: verifier on nested out-of-fold candidates"}


PIPELINES = {
    "shipped": Pipeline("shipped", "resources/models/segmenter-sirst", (), VIEWS[0], frozenset({"mirror", "size_limit"}),
                        "two views, flips only (segmenter-views.md)", "{recipes}_scene{folds}_views2h"),
    # 5584ce3 (= fc84308~1): ensemble ["member1"] (inner conv), test_time_flips true; threshold / size rule /
    # mask threshold / verifier as today's (heldout-21.md)
    "issue": Pipeline("issue-time", "5584ce3:resources/models/segmenter-sirst", ("conv",), True,
                      frozenset({"flips", "size_limit"}),
                      "two networks over four views, flips only (segmenter-scenes-4.md)", "{recipes}_scene{folds}"),
}


def pipeline_maps(networks_per_fold: Sequence[Sequence[Path]], frames_by_fold: Sequence[Sequence[Any]], views: bool | str,
                  cache: Path) -> dict[str, np.ndarray]:
    """Maps per frame stem, frames_by_fold[k] scored by the mean map of networks_per_fold[k] over ``views``
    (``segmenter_cv.scored_fold_maps``, kept beside ``cache`` and reused)."""
    from inference.training.segmenter_cv import scored_fold_maps

    return scored_fold_maps(networks_per_fold, frames_by_fold, cache, views=(views,))[views]


def adjusted(post: Any, verifier: Any = None) -> Any:
    """The shipped card's settings on a cross-fitted post-processing: its mask threshold where it lies above
    the threshold (below, shrinking does nothing), and the verifier rule if any."""
    mask = MASK_THRESHOLD if MASK_THRESHOLD > post.threshold else None
    return replace(post, mask_threshold=mask, verifier=verifier)


def train_rule(frames: Sequence[Any], maps: dict[str, np.ndarray], limit: float | None, opts: Any, config: Any,
               frame_fold: np.ndarray | None, store: Path, final: Any = None) -> tuple[Any, dict[str, Any]]:
    """The card's verifier recipe on ``frames`` with candidates from ``maps``: pool (``collect``), inner fold
    verifiers, threshold = the keep quantile of out-of-fold target scores, final verifier on all samples
    (``final`` reuses one already fitted on the same pool). Stored in ``store`` and reused from there."""
    from inference.checkpoints import load_model, save_model
    from inference.models.target_verifier import NAME, TargetVerifier
    from inference.segmenter_predict import VerifierRule
    from inference.training.segmenter_verifier import collect, fit, out_of_fold_scores

    if (store / "card.json").is_file():
        loaded = load_model(store)
        return VerifierRule(cast(TargetVerifier, loaded.model.eval()), float(loaded.card["threshold"])), loaded.card["record"]
    t0 = time.monotonic()
    x, y, idx = collect(list(frames), [maps[f.stem] for f in frames], limit, config)
    oof = out_of_fold_scores(x, y, idx, config, opts, frame_fold=frame_fold)
    threshold = float(np.quantile(oof[y == 1], opts.keep_quantile))
    model = final if final is not None else fit(x, y, config, opts, opts.seed + 100, desc="final verifier")
    record = {"samples": {"targets": int(y.sum()), "non_targets": int(len(y) - y.sum())}, "threshold": threshold,
              "inner_out_of_fold": {"targets_kept": float(np.mean(oof[y == 1] >= threshold)),
                                    "non_targets_dropped": float(np.mean(oof[y == 0] < threshold))},
              "final_reused": final is not None, "seconds": round(time.monotonic() - t0, 1)}
    save_model(store, NAME, model, config, {"model": NAME, "family": "segmenter", "threshold": threshold, "record": record})
    return VerifierRule(model, threshold), record


def left_out_components(frames: Sequence[Any], maps: dict[str, np.ndarray], post: Any) -> dict[str, Any]:
    """What the verifier rule of ``post`` keeps and drops of fold k's components at its threshold and size limit."""
    from inference.training.segmenter_verifier import operating_components, rule_summary, score_components

    probs = [maps[f.stem] for f in frames]
    comps = operating_components(list(frames), probs, post.threshold, post.max_fraction)
    scores = score_components(comps, list(frames), probs, [post.verifier.model])
    return {"targets": int(comps.target.sum()), "non_targets": int((~comps.target).sum()),
            "non_target_pixels": int(comps.pixels[~comps.target].sum()),
            **rule_summary(scores, comps, post.verifier.threshold, None)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from inference.checkpoints import load_model
    from inference.models.target_verifier import TargetVerifierConfig
    from inference.training.common import set_threads
    from inference.training.segmenter_cv import cross_fitted, cv_parts, settings_for, views_of, wins
    from inference.training.segmenter_data import SegTree, load_frames
    from inference.training.segmenter_verifier import VerifierOptions, inner_frame_folds

    set_threads(1)
    pipe = PIPELINES[args.pipeline]
    if views_of(pipe.use) != pipe.views:
        raise ValueError(f"pipeline {args.pipeline}: additions {sorted(pipe.use)} do not read its views {pipe.views!r}")
    recipes = pipe.recipes(args.recipe)
    tree = SegTree.open(args.data)
    parts = cv_parts(args.data, args.folds, "scene")
    frames_by_fold = [load_frames(tree, list(p), 1)[0] for p in parts]
    networks = [[recipe_dir(args.work, r, k) / "final" for r in recipes] for k in range(args.folds)]
    t0 = time.monotonic()
    oof = pipeline_maps(networks, frames_by_fold, pipe.views,
                        args.work / "maps" / pipe.oof_cache.format(recipes="+".join(recipes), folds=args.folds))
    maps = {pipe.views: oof}  # keyed by views as segmenter_cv's additions read them (MIRROR, or True: four views)
    config = TargetVerifierConfig()  # the shipped verifier's (resources/models/segmenter-sirst/verifier/config.json)
    # the card's: 800 steps, batch 64, lr 3e-3, 3 folds, 0.01, inner folds by frame index (group_by "none": the bundled
    # verifier was trained before scene inner folds became the default; candidate A takes them)
    opts = VerifierOptions(seed=args.seed, steps=args.steps, quiet=True, group_by="none")
    store = args.out / f"seed{args.seed}" if args.steps == VerifierOptions.steps else args.out / f"seed{args.seed}_steps{args.steps}"
    if args.pipeline != "shipped":
        store = store / args.pipeline
    names = pipe.rows()
    report: dict[str, Any] = {"pipeline": args.pipeline, "card": pipe.card, "recipe": args.recipe, "members": recipes,
                              "folds": args.folds,
                              "views": ["frame", *VIEWS] if pipe.views == VIEWS[0] else ["frame", "h", "v", "hv"],
                              "mask_threshold": MASK_THRESHOLD, "verifier_options": {k: v for k, v in opts.__dict__.items() if k != "quiet"},
                              "oof_maps_seconds": round(time.monotonic() - t0, 1)}
    rows: dict[str, Any] = {
        names["flips"]: cross_fitted(frames_by_fold, maps, pipe.use - {"size_limit"}),
        names["none"]: cross_fitted(frames_by_fold, maps, pipe.use, adjust=lambda k, post: adjusted(post)),
    }
    rules: dict[str, list[Any]] = {v: [] for v in args.variants}
    records: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for k in range(args.folds):
        train = [f for j, fold in enumerate(frames_by_fold) if j != k for f in fold]
        limit = settings_for(train, maps, pipe.use).max_fraction  # the card's rule on these frames
        final = None
        if "shipped" in args.variants or "scene_inner" in args.variants:
            t1 = time.monotonic()
            own = pipeline_maps([networks[k]], [train], pipe.views, args.out / "maps" / f"{'+'.join(recipes)}_insample{k}")
            own_seconds = round(time.monotonic() - t1, 1)
            rule, rec = train_rule(train, own, limit, opts, config, None, store / f"shipped{k}")
            final = rule.model
            if "shipped" in args.variants:
                rules["shipped"].append(rule)
                records["shipped"].append({**rec, "candidate_maps_seconds": own_seconds})
            if "scene_inner" in args.variants:
                inner, _ = inner_frame_folds(args.data, train, replace(opts, group_by="scene"))
                rule, rec = train_rule(train, own, limit, opts, config, inner,
                                       store / f"scene_inner{k}", final=final)
                rules["scene_inner"].append(rule)
                records["scene_inner"].append({**rec, "inner_fold_frames": np.bincount(inner).tolist()})
        if "nested" in args.variants:
            t1 = time.monotonic()
            nested: dict[str, np.ndarray] = {}
            others = [j for j in range(args.folds) if j != k]
            for a in others:  # fold a scored by the networks trained on one other training fold alone, averaged
                alone = [b for b in others if b != a]
                for b in alone:
                    found = view_maps([recipe_dir(args.out, args.recipe, b, alone=True) / "final"], [frames_by_fold[a]],
                                      VIEWS, args.out / "maps" / f"{args.recipe}_alone{b}_on{a}")
                    for s, p in found.items():
                        nested[s] = nested.get(s, 0) + p / len(alone)
            nested_seconds = round(time.monotonic() - t1, 1)
            rule, rec = train_rule(train, nested, limit, opts, config, None, store / f"nested{k}")
            rules["nested"].append(rule)
            records["nested"].append({**rec, "candidate_maps_seconds": nested_seconds})
        print(f"fold {k}: " + "  ".join(f"{v} thr {rules[v][k].threshold:.4f}" for v in args.variants), flush=True)
    for v in args.variants:
        def with_verifier(k: int, post: Any, v: str = v) -> Any:
            return adjusted(post, rules[v][k])

        row = cross_fitted(frames_by_fold, maps, pipe.use, adjust=with_verifier)
        for k, frames in enumerate(frames_by_fold):
            post = adjusted(settings_for([f for j, fold in enumerate(frames_by_fold) if j != k for f in fold], maps,
                                         pipe.use), rules[v][k])
            records[v][k]["left_out_components"] = left_out_components(frames, oof, post)
        rows[names[v]] = {**row, "verifier_per_fold": records[v]}
    for name, row in rows.items():
        m = row["pooled"]
        print(f"{name:60s} IoU {m['iou']:.4f} nIoU {m['niou']:.4f} Pd {m['pd']:.4f} ({m['detected']}/{m['targets']}) "
              f"Fa {m['fa']:.2f}  per-fold IoU " + " ".join(f"{f['iou']:.3f}" for f in row["per_fold"]), flush=True)
    report["rows"] = rows
    verdicts: dict[str, Any] = {}
    if "shipped" in args.variants:
        base = rows[names["shipped"]]
        verdicts["verifier_wins_against_none (information)"] = wins(base, rows[names["none"]])
        for v in ("scene_inner", "nested"):
            if v in args.variants:
                verdicts[f"{v}_wins_against_shipped"] = wins(rows[names[v]], base)
        if "scene_inner" in args.variants and "nested" in args.variants:
            verdicts["nested_wins_against_scene_inner"] = wins(rows[names["nested"]], rows[names["scene_inner"]])
    report["verdicts"] = verdicts
    report["load_average"] = os.getloadavg()
    report["networks"] = {"fold": [[str(n) for n in nets] for nets in networks] if pipe.members else [str(nets[0]) for nets in networks],
                          "training_seconds": [json.loads((n.parent / "seconds.json").read_text())["training_seconds"]
                                               for nets in networks for n in nets if (n.parent / "seconds.json").is_file()]}
    if "nested" in args.variants:
        alone_dirs = [recipe_dir(args.out, args.recipe, b, alone=True) for b in range(args.folds)]
        report["networks"]["alone_training_seconds"] = [json.loads((n / "seconds.json").read_text())["training_seconds"]
                                                        for n in alone_dirs if (n / "seconds.json").is_file()]
        report["networks"]["alone_seeds"] = [load_model(n / "final").card.get("training", {}).get("seed") for n in alone_dirs]
    print(json.dumps(verdicts))
    return report


FIGURES = ("iou", "niou", "pd", "fa", "detected")


def mean_of(files: Sequence[Path]) -> dict[str, Any]:
    """The rows every report holds (runs with other verifier seeds): mean and range of their pooled figures."""
    reports = [json.loads(Path(f).read_text(encoding="utf-8")) for f in files]
    pipelines = {r.get("pipeline", "shipped") for r in reports}  # reports before --pipeline were all "shipped"
    if len(pipelines) != 1:
        raise ValueError(f"--mean-of: reports of different pipelines {sorted(pipelines)}")
    names = [n for n in reports[0]["rows"] if all(n in r["rows"] for r in reports)]
    rows: dict[str, Any] = {}
    for n in names:
        pooled = [r["rows"][n]["pooled"] for r in reports]
        rows[n] = {k: {"mean": float(np.mean([p[k] for p in pooled])), "min": float(min(p[k] for p in pooled)),
                       "max": float(max(p[k] for p in pooled))} for k in FIGURES}
        m = rows[n]
        print(f"{n:60s} IoU {m['iou']['mean']:.4f} [{m['iou']['min']:.4f}-{m['iou']['max']:.4f}] nIoU {m['niou']['mean']:.4f} "
              f"Pd {m['pd']['mean']:.4f} (detected {m['detected']['min']:.0f}-{m['detected']['max']:.0f}) "
              f"Fa {m['fa']['mean']:.2f} [{m['fa']['min']:.2f}-{m['fa']['max']:.2f}]")
    return {"pipeline": pipelines.pop(), "files": [str(f) for f in files],
            "seeds": [r["verifier_options"]["seed"] for r in reports], "rows": rows}


POINTS = 0.005  # heldout-21.md: today's mean IoU, nIoU and Pd each >= the issue-time mean - 0.005
FA_RATIO = 1.10  # heldout-21.md: today's mean Fa <= 1.10 x the issue-time mean Fa


def held_out_rule(today: dict[str, Any], issue: dict[str, Any], points: float = POINTS,
                  fa_ratio: float = FA_RATIO) -> dict[str, Any]:
    """heldout-21.md's rule (fixed before any figure) on two ``mean_of`` rows (figure -> {"mean", ...}):
    met iff IoU, nIoU and Pd are each >= the issue-time mean - ``points`` and Fa <= ``fa_ratio`` x its mean."""
    checks: dict[str, Any] = {}
    for k in ("iou", "niou", "pd"):
        bound = issue[k]["mean"] - points
        checks[k] = {"today": today[k]["mean"], "issue_time": issue[k]["mean"], "difference": today[k]["mean"] - issue[k]["mean"],
                     "bound": bound, "met": bool(today[k]["mean"] >= bound)}
    bound = fa_ratio * issue["fa"]["mean"]
    checks["fa"] = {"today": today["fa"]["mean"], "issue_time": issue["fa"]["mean"],
                    "ratio": today["fa"]["mean"] / issue["fa"]["mean"], "bound": bound, "met": bool(today["fa"]["mean"] <= bound)}
    return {"checks": checks, "met": all(c["met"] for c in checks.values()),
            "rule": f"IoU, nIoU, Pd >= issue-time - {points:g}; Fa <= {fa_ratio:g} x issue-time (means over verifier seeds)"}


def compare(today_file: Path, issue_file: Path) -> dict[str, Any]:
    """``held_out_rule`` on the verifier rows of two ``--mean-of`` summaries: today's pipeline, then the issue-time one."""
    today, issue = (json.loads(Path(f).read_text(encoding="utf-8")) for f in (today_file, issue_file))
    if (today.get("pipeline", "shipped"), issue.get("pipeline")) != ("shipped", "issue"):
        raise ValueError(f"--compare wants a shipped then an issue summary, got {today.get('pipeline', 'shipped')} "
                         f"then {issue.get('pipeline')}")
    rows = [r["rows"][PIPELINES[r.get("pipeline", "shipped")].rows()["shipped"]] for r in (today, issue)]
    verdict = held_out_rule(*rows)
    for k, c in verdict["checks"].items():
        print(f"{k:5s} today {c['today']:.4f}  issue-time {c['issue_time']:.4f}  bound {c['bound']:.4f}  "
              f"{'met' if c['met'] else 'NOT met'}")
    print("met" if verdict["met"] else "not met")
    return {"files": [str(today_file), str(issue_file)], "seeds": [today["seeds"], issue["seeds"]], **verdict}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path)
    p.add_argument("--work", type=Path, help="segmenter_scene_cv.py's work folder (fold networks, maps)")
    p.add_argument("--out", type=Path, help="this run's folder (verifiers, in-sample maps, --alone networks)")
    p.add_argument("--pipeline", default="shipped", choices=tuple(PIPELINES),
                   help="whose card's settings: shipped (today's bundle) or issue (the bundle at 5584ce3, issue 21)")
    p.add_argument("--recipe", default="base", help="the main network's recipe (the issue pipeline adds its conv member)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="the verifiers' seed (the card's: 0)")
    p.add_argument("--steps", type=int, default=800, help="verifier training steps (the card's: 800; fewer: a smoke run)")
    p.add_argument("--variants", default=None, help=f"comma-separated, of {', '.join(VARIANTS)} (default: all; "
                                                    "the issue pipeline: shipped, scene_inner)")
    p.add_argument("--json", type=Path)
    p.add_argument("--mean-of", type=Path, nargs="+", metavar="JSON",
                   help="only summarise reports of this script run with other --seed values (mean and range)")
    p.add_argument("--compare", type=Path, nargs=2, metavar=("TODAY_MEAN", "ISSUE_MEAN"),
                   help="only apply heldout-21.md's rule to two --mean-of summaries (shipped, then issue)")
    args = p.parse_args(argv)
    if args.mean_of or args.compare:
        if args.mean_of and args.compare:
            p.error("--mean-of and --compare: one at a time")
        return args
    if None in (args.data, args.work, args.out):
        p.error("--data, --work and --out are needed (unless --mean-of or --compare)")
    allowed = VARIANTS if args.pipeline == "shipped" else ("shipped", "scene_inner")  # nested: only the main network's --alone nets
    args.variants = [v for v in (args.variants or ",".join(allowed)).split(",") if v]
    if not args.variants or any(v not in allowed for v in args.variants):
        p.error(f"--variants with --pipeline {args.pipeline}: choose from {', '.join(allowed)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mean_of:
        report = mean_of(args.mean_of)
    elif args.compare:
        report = compare(*args.compare)
    else:
        report = run(args)
    if args.json:
        from app.services.json_files import write_json_atomic

        write_json_atomic(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
