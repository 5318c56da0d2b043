"""The out-of-domain threshold's quantile by the point estimate of the group-CV own-image rate and an upper bound on
its count (ADR 0070, the second rule of results/ood-bound.md; the first, the bound alone, was this script with
``inference.domain._pick`` testing the bound instead of the point estimate), against the point estimate alone (ADR
0036), on every bundled description's training and choosing data only (issue 20 item 3).

    PYTHONPATH=. python benchmarks/ood_bound.py [--datasets ../shared/datasets] [--seeds 0,1,2] [--only NAMES] [--json OUT]

Per bundled description (the training images its ``domain fit`` command reads, the family's default parts and
descriptor features, groups by ``path_groups``): both rules refitted whole without one outer fold of whole groups
(``ood_group_cv.evaluate``), the held-out own rate per fold seed; the full fit's share of each foreign choosing set
flagged (the other data sets' *training* images, at most ``PER_SET`` each); the eight synthetic camera changes of
``ood_select.py`` on ``ood_group_cv.PICK`` training images. No frozen split is read.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

PER_SET = 200
FOREIGN_MIN, CHANGES_BELOW_MAX = 0.95, 0.02
SHIPPED, CANDIDATE = "shipped (point <= 1 %)", "point and bound (upper 95 % <= 2 %)"


def foreign_sets(data: Path) -> dict[str, tuple[str, list[Path]]]:
    """Each data set's training images (the data set's name, the paths): the foreign choosing sets."""
    from ood_select import _subsample

    from inference.domain_fit import images_under

    sirst = (data / "sirst" / "train.txt").read_text(encoding="utf-8").splitlines()
    sets = {"neu_cls train": images_under(data / "neu_cls" / "train"),
            "magnetic_tile train": images_under(data / "magnetic_tile" / "train"),
            "sirst train.txt": images_under(data / "sirst" / "images", sirst),
            "mvtec bottle train/good": images_under(data / "mvtec_ad" / "bottle" / "train" / "good")}
    return {name: (name.split()[0].split("/")[0], _subsample(paths, PER_SET, 1)) for name, paths in sets.items()}


OWN_SET = {"classifier-neu": "neu_cls", "segmenter-sirst": "sirst", "anomaly-magnetic_tile": "magnetic_tile",
           "anomaly-bottle": "mvtec", "classifier-magnetic_tile": "magnetic_tile"}


def rules(family: str) -> dict[str, Callable[..., Any]]:
    from inference.domain import fit_domain
    from inference.domain_fit import family_descriptor_features, family_parts

    parts, names = family_parts(family), family_descriptor_features(family)
    return {SHIPPED: lambda x, g: fit_domain(x, groups=g, parts=parts, descriptor_features=names, bound=False),
            CANDIDATE: lambda x, g: fit_domain(x, groups=g, parts=parts, descriptor_features=names, bound=True)}


def verdict(models: dict[str, Any]) -> dict[str, Any]:
    """The rule written first (ood-bound.md): not above anywhere and lower somewhere on the nested own rate; every
    foreign set at least 95 %; camera changes no fewer than the shipped minus 2 points."""
    lower = [m for m, r in models.items() if r["rules"][CANDIDATE]["own_mean"] < r["rules"][SHIPPED]["own_mean"]]
    above = [m for m, r in models.items() if r["rules"][CANDIDATE]["own_mean"] > r["rules"][SHIPPED]["own_mean"]]
    foreign = [f"{m}: {f}" for m, r in models.items() for f, v in r["rules"][CANDIDATE]["foreign"].items()
               if v < FOREIGN_MIN]
    changes = [m for m, r in models.items()
               if r["rules"][CANDIDATE]["changes_mean"] < r["rules"][SHIPPED]["changes_mean"] - CHANGES_BELOW_MAX]
    return {"lower": lower, "above": above, "foreign_below": foreign, "changes_below": changes,
            "adopt": bool(lower) and not above and not foreign and not changes}


def main() -> int:
    from json_report import write_report
    from ood_part_study import arguments

    args = arguments(__doc__ or "", ROOT, only=True)

    import torch
    from ood_group_cv import PICK, _specs, evaluate
    from ood_select import CAMERA_CHANGES

    from inference.domain import PARTS
    from inference.domain_fit import family_parts
    from inference.engine import InspectionEngine
    from inference.training.groups import path_groups

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    others = foreign_sets(args.datasets)
    report: dict[str, Any] = {"seeds": seeds, "per_set": PER_SET, "models": {}}
    for name, spec in _specs(args.datasets).items():
        if args.only and name not in args.only.split(","):
            continue
        t0 = time.perf_counter()
        family, paths = spec["family"], spec["train"]
        kinds = tuple(sorted({PARTS[p][0] for p in family_parts(family)}))

        def feats(engine: Any, files: list[Path], fn: Any = None, family: str = family,
                  kinds: tuple[str, ...] = kinds) -> dict[str, np.ndarray]:
            out, bad = engine.domain_features_files(files, family, kinds, transform=fn)
            if bad:
                raise SystemExit(f"unreadable: {bad[:3]}")
            return out

        pick = np.sort(np.random.default_rng(1).choice(len(paths), min(PICK, len(paths)), replace=False))
        with InspectionEngine({family: args.models / name}, device="cpu", half=False) as engine:
            own = feats(engine, paths)
            changed = {c: (feats(engine, [paths[i] for i in pick], fn), pick) for c, fn in CAMERA_CHANGES.items()}
            foreign = {f: feats(engine, fp) for f, (ds, fp) in others.items() if ds != OWN_SET[name]}
        groups, group_rule = path_groups(paths, spec["root"])
        row = {"images": len(paths), "parts": list(family_parts(family)), "group_rule": group_rule,
               "groups": len(set(groups)) if groups else 0,
               "rules": evaluate(own, groups, changed, None, seeds, rules(family), foreign)}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        report["models"][name] = row
        print(f"\n{name}: {len(paths)} training images, folds by {group_rule} ({row['groups']} groups), "
              f"{row['seconds']} s")
        for rname, r in row["rules"].items():
            fo = ", ".join(f"{f} {v:.0%}" for f, v in r["foreign"].items())
            per_seed = ", ".join(f"{s['own']:.2%}" for s in r["per_seed"])
            print(f"  {rname:26s} threshold {r['threshold']:.3f} (q {r['quantile']:g}); nested group-CV own "
                  f"{r['own_mean']:.2%} (seeds {per_seed}); camera changes {r['changes_mean']:.1%}; {fo}", flush=True)
    if not args.only:
        report["verdict"] = verdict(report["models"])
        print(f"\nrule (ood-bound.md): {'ADOPT' if report['verdict']['adopt'] else 'do not adopt'} "
              f"({json.dumps(report['verdict'])})")
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
