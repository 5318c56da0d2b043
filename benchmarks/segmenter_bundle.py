"""Make the bundled segmenter from a ``train segmenter --cv-folds`` run (issue 19; segmenter-bundle-clutter.md).

Why a script: the bundle is what every station runs first, and its card must say what the protocol
measured, nothing chosen by hand after the run. The steps, each rerunnable:

    # 1. the rule written before the run, then the bundle (weights as trained, the card completed)
    python benchmarks/segmenter_bundle.py build --trained RUN/final --old resources/models/segmenter-sirst --out DIR
    # 2. the frozen test, once per profile, after every choice is fixed (the station's own command)
    python main.py evaluate segmenter --model DIR --data <sirst> --threads 1 --profile P --json P.json
    # 3. the test figures into the card, beside the CV estimate
    python benchmarks/segmenter_bundle.py test --out DIR --accurate accurate.json [--fast fast.json]
    # 4. what it costs against the bundle it replaces, alternating in one process (one thread)
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/segmenter_bundle.py speed --old OLD --new DIR [--json F]
    # a run's view rows as segmenter_views_cv.py rows, to join other seeds in segmenter_seed_mean.py
    python benchmarks/segmenter_bundle.py rows --card RUN/final/card.json --json F

``build`` refuses (exit 3) when the old bundle's new-scene figure wins against the run's own CV
estimate by ``segmenter_cv.wins`` (the rule). What it takes from the old bundle is about the images,
not the network: the data set's name and licence, and the measured figures of the out-of-domain
description (ADR 0036) when the run's own fit is the same (its tensors to the byte; an image descriptor on the
same 341 train.txt frames).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

RESULTS = "benchmarks/results/segmenter-bundle-clutter.md"


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, card: dict[str, Any]) -> None:
    path.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _without_source(path: Path) -> dict[str, Any]:
    """A domain description without its ``source`` line (where the images were read, worded per command)."""
    return {k: v for k, v in _read(path).items() if k != "source"}


def old_new_scene_figure(old: dict[str, Any], targets: int) -> dict[str, Any]:
    """The old bundle's ``expected_on_new_data`` as a pooled row ``segmenter_cv.wins`` reads."""
    e = old["expected_on_new_data"]
    return {"pooled": {"iou": e["iou"], "fa": e["fa"], "detected": round(e["pd"] * targets)}}


def profiles_from_cv(cv: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """accurate = the additions the folds chose; fast = the same without test-time views (one pass),
    each with its own cross-fitted CV figures. Only ``accurate`` when the folds chose no view."""
    from inference.training.segmenter_cv import views_of

    chosen = set(cv["chosen_additions"])
    views = views_of(chosen)
    passes = 1 if views is False else 2 if isinstance(views, str) else 4
    named = {"accurate": {
        "network_passes_per_frame": passes, "settings": {},
        "runs": f"the card's own settings: the network over {passes} view(s) (chosen by leave-scene-out CV), no verifier",
        "cv": cv["variants"][_name(chosen)]}}
    if passes > 1:
        fast = chosen - {"mirror", "flips"}
        named["fast"] = {"network_passes_per_frame": 1, "settings": {"test_time_flips": False},
                         "runs": "the network alone, no test-time views (1 pass); fixed by cost before scoring",
                         "cv": cv["variants"][_name(fast)]}
    return named, "accurate"


def _name(use: set[str]) -> str:
    from inference.training.segmenter_cv import variant_name
    return variant_name(use)


def build(args: argparse.Namespace) -> int:
    from inference.training.segmenter_cv import wins

    trained, old_dir, out = Path(args.trained), Path(args.old), Path(args.out)
    new, old = _read(trained / "card.json"), _read(old_dir / "card.json")
    cv = new["cross_validation"]
    estimate = {"pooled": cv["variants"][_name(set(cv["chosen_additions"]))]}
    targets = round(estimate["pooled"]["detected"] / estimate["pooled"]["pd"])
    old_row = old_new_scene_figure(old, targets)
    # Which way the rule runs is fixed before the run: a simpler candidate replaces unless the old bundle wins;
    # a more complex one (``--candidate-must-win``) replaces only if it wins against the old bundle.
    verdict = not wins(estimate, old_row) if args.candidate_must_win else wins(old_row, estimate)
    print(f"CV estimate of the run: IoU {estimate['pooled']['iou']:.4f} detected {estimate['pooled']['detected']} "
          f"of {targets} Fa {estimate['pooled']['fa']:.2f}; the old bundle on new scenes: IoU "
          f"{old_row['pooled']['iou']:.4f} detected {old_row['pooled']['detected']} Fa {old_row['pooled']['fa']:.2f}")
    if verdict:
        print("by the rule the old bundle stays"
              + (" (the candidate does not win against it)" if args.candidate_must_win else " (it wins)")
              + ": nothing is built", file=sys.stderr)
        return 3
    print("by the rule the run replaces the old bundle")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(trained, out)
    # The run fitted its own out-of-domain description (an image descriptor, no network feature); when it is
    # the earlier bundle's to the byte, that bundle's measured figures describe it and are carried over.
    same_domain = ((trained / "domain.safetensors").read_bytes() == (old_dir / "domain.safetensors").read_bytes()
                   and _without_source(trained / "domain.json") == _without_source(old_dir / "domain.json"))
    profiles, default = profiles_from_cv(cv)
    cv_block = estimate["pooled"]
    card = dict(new)
    card.update(
        data={**old["data"], "fit_frames": new["data"]["fit_frames"], "held_out_frames": 0,
              "largest_target_fraction": new["data"]["largest_target_fraction"],
              "path": "SIRST developer copy (images/, masks/, train.txt 341 stems fitted, val.txt 86 stems never read "
                      "by training or selection)"},
        licence=old["licence"],
        out_of_domain={**old["out_of_domain"], "note": "an image descriptor (no network feature): the run's own fit on "
                       "the same 341 train.txt frames equals the earlier bundle's, whose figures are carried over"}
        if same_domain else {"note": "refit and measure with benchmarks/ood.py"},
        profiles=profiles, default_profile=default,
        hardware=args.hardware,
        selection=("the protocol's own command (docs/protocol.md): 3 folds of whole scenes inside train.txt chose the "
                   f"additions ({', '.join(cv['chosen_additions']) or 'none'}), the threshold and the mask threshold "
                   "on out-of-fold maps; no verifier (it lost detections on clutter-trained fold networks at both "
                   f"network seeds, segmenter-clutter.md); the bundle replaced the earlier one by the rule in {args.results}"),
        expected_on_new_data={
            "label": "new scenes", **{k: cv_block[k] for k in ("iou", "niou", "pd", "fa")}, "fa_unit": "1e-6",
            "detected": cv_block["detected"], "targets": targets,
            "protocol": "leave-scene-out cross-validation inside SIRST train.txt (3 folds of whole scenes): this "
                        "recipe's own fold networks, each scoring the scenes it never saw with settings cross-fitted "
                        "on the other folds (the card's metrics.cv)",
            "source": args.results},
        replaced={"name": args.old_name or old_dir.name, "expected_on_new_data": old["expected_on_new_data"],
                  "val": {k: old["metrics"][k] for k in ("iou", "niou", "pd", "fa", "detected", "targets")}},
    )
    card.pop("held_out_metrics", None)
    _write(out / "card.json", card)
    print(f"bundle written to {out}; next: the frozen test once per profile ({', '.join(profiles)})")
    return 0


# A card's cross-validation variants under the names of ``segmenter_views_cv.py``'s rows: the same
# cross-fitted scoring (threshold and mask threshold chosen on the other folds' maps, views the only addition).
VIEW_ROWS = {"one view": "plain", "two views: frame + h": "mirror", "four views": "flips"}


def rows(args: argparse.Namespace) -> int:
    """A ``train segmenter --cv-folds`` card's view rows as a ``segmenter_views_cv.py`` JSON, so that a bundle run
    joins other seeds' runs in ``segmenter_seed_mean.py``."""
    variants = _read(Path(args.card))["cross_validation"]["variants"]
    out = {"source": args.card, "rows": {name: {"pooled": variants[v]} for name, v in VIEW_ROWS.items() if v in variants}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"{len(out['rows'])} rows written to {args.json}")
    return 0


FIGURES = ("iou", "niou", "pd", "fa", "detected", "targets", "images")


def add_test(args: argparse.Namespace) -> int:
    out = Path(args.out)
    card = _read(out / "card.json")
    runs = {"accurate": args.accurate, "fast": args.fast}
    for name, path in runs.items():
        if path is None:
            continue
        if name not in card["profiles"]:
            print(f"the card names no {name} profile", file=sys.stderr)
            return 2
        got = _read(Path(path))
        card["profiles"][name]["val"] = {k: got[k] for k in FIGURES if k in got}
        card["profiles"][name]["val_command"] = ("python main.py evaluate segmenter --model <bundle> --data <sirst> "
                                                 f"--threads 1 --profile {name}")
    val = card["profiles"][card["default_profile"]].get("val")
    if val is None:
        print("the default profile's test figures are needed", file=sys.stderr)
        return 2
    card["metrics"] = {**val, "fa_unit": "1e-6", "split": "val (SIRST val.txt, 86 frames, never used for training, "
                       "selection or threshold; scored once per profile after every choice was fixed)",
                       "command": card["profiles"][card["default_profile"]]["val_command"],
                       "cv": card["metrics"]["cv"]}
    _write(out / "card.json", card)
    print(json.dumps({"cv": card["metrics"]["cv"], "val": val}, indent=1))
    return 0


def speed(args: argparse.Namespace) -> int:
    """Images/s at 256² through the bare engine (batch 8) and seconds per 512² frame, the old and the
    new bundle alternating round by round, per profile: a ratio against a baseline in the same run."""
    import os
    import statistics
    import tempfile
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.prelabel import images
    from benchmarks.speed_profiles import engine_rate, ir_frame
    from inference.checkpoints import load_model
    from inference.device import set_threads
    from inference.profiles import apply_profile
    from inference.segmenter_predict import predict_masks

    set_threads(1)
    dirs = {"old": Path(args.old), "new": Path(args.new)}
    frame = ir_frame(512)
    out: dict[str, Any] = {"load_average": [round(os.getloadavg()[0], 1)], "rounds": args.rounds, "rates_256": {},
                           "seconds_512": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = images(Path(tmp) / "images", args.images)
        for profile in ("accurate", "fast"):
            rates: dict[str, list[float]] = {k: [] for k in dirs}
            secs: dict[str, list[float]] = {k: [] for k in dirs}
            for _ in range(args.rounds):
                for name, d in dirs.items():
                    rates[name].append(engine_rate({"segmenter": d}, paths, profile, 8))
                    loaded = apply_profile(load_model(d, family="segmenter"), profile)
                    predict_masks(loaded, [frame])   # warm-up
                    t = time.perf_counter()
                    predict_masks(loaded, [frame])
                    secs[name].append(time.perf_counter() - t)
            out["rates_256"][profile] = {k: [round(v, 3) for v in vs] for k, vs in rates.items()}
            out["seconds_512"][profile] = {k: [round(v, 3) for v in vs] for k, vs in secs.items()}
            r_old, r_new = statistics.mean(rates["old"]), statistics.mean(rates["new"])
            print(f"{profile:>8}: 256² {r_old:.2f} -> {r_new:.2f} img/s ({r_new / r_old:.2f}x); 512² frame best "
                  f"{min(secs['old']):.2f} -> {min(secs['new']):.2f} s", flush=True)
    out["load_average"].append(round(os.getloadavg()[0], 1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
        write_speed(Path(args.new), out, args.json)
    return 0


def write_speed(bundle: Path, out: dict[str, Any], source: str) -> None:
    """The new bundle's rates into its card's profiles (``speed``), as the earlier cards carry theirs."""
    import statistics

    card = _read(bundle / "card.json")
    rates = {p: statistics.mean(v["new"]) for p, v in out["rates_256"].items()}
    for name, prof in card["profiles"].items():
        prof["speed"] = {
            "command": f"OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/segmenter_bundle.py speed --old "
                       f"resources/models/segmenter-sirst --new {bundle.as_posix()} --json {source}",
            "how": f"bare engine, this family alone, 256² images, batch 8, 1 thread, mean of {out['rounds']} rounds "
                   f"alternating with the earlier bundle (load {out['load_average'][0]}-{out['load_average'][-1]}): "
                   "compare ratios, not absolute rates",
            "images_per_second_256": round(rates[name], 2),
            "relative_to_accurate": round(rates[name] / rates["accurate"], 2),
            "seconds_512_best": min(out["seconds_512"][name]["new"])}
    _write(bundle / "card.json", card)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build")
    b.add_argument("--trained", required=True, help="the run's final model directory (train segmenter --cv-folds)")
    b.add_argument("--old", required=True, help="the bundle it may replace")
    b.add_argument("--out", required=True)
    b.add_argument("--results", default=RESULTS, help="the file whose rule the build follows (named in the card)")
    b.add_argument("--old-name", help="how the card names the bundle replaced (default: its folder's name)")
    b.add_argument("--candidate-must-win", action="store_true",
                   help="the run replaces the old bundle only if its CV estimate wins against the old figure "
                        "(for a candidate more complex than the bundle); default: unless the old figure wins")
    b.add_argument("--hardware", default="CPU only, 1 thread on the 2-core machine beside other work: 3 fold networks "
                                          "and the final one, 40 epochs each, about 40 minutes in all")
    t = sub.add_parser("test")
    t.add_argument("--out", required=True)
    t.add_argument("--accurate", help="evaluate --json of the accurate profile")
    t.add_argument("--fast", help="evaluate --json of the fast profile")
    r = sub.add_parser("rows", help="a run's card as segmenter_views_cv.py rows (for segmenter_seed_mean.py)")
    r.add_argument("--card", required=True)
    r.add_argument("--json", required=True)
    v = sub.add_parser("speed")
    v.add_argument("--old", required=True)
    v.add_argument("--new", required=True)
    v.add_argument("--images", type=int, default=16)
    v.add_argument("--rounds", type=int, default=3)
    v.add_argument("--json", help="also write the figures here, and the new bundle's rates into its card")
    args = p.parse_args()
    return {"build": build, "test": add_test, "rows": rows, "speed": speed}[args.action](args)


if __name__ == "__main__":
    raise SystemExit(main())
