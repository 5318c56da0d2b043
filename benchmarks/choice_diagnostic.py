"""Does the retrain command's choice among its 32 light candidates (4 feature sets x 4 C x 2 priors, by group CV
inside the reviewed labels) help at a few labels, or would one fixed candidate do better? A diagnostic on runs the
retrain command already made on ``lnclasses.split``'s train-only splits (their ``labelled_files`` and the
candidate their card records), nothing chosen (session 30, information for issue 20 item 1).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/choice_diagnostic.py benchmarks/results/provenance/*_P_pc*_s*.json

For each run, on its scored sessions, every head refitted on all the run's labels with the command's kind of prior
(the folder's mix by adjusted classify-and-count from 200 unlabelled images and the out-of-fold predictions by
capture-session folds, both made by the candidate's own heads — a ``mix`` candidate's carry its labels' mix, which
``with_prior`` takes out again):

- ``chosen``: the candidate the run's card records (feature set, C, prior) — what the command picked by CV;
- ``fixed``: ``defect_bank``, C 10, balanced — the command's most frequent pick at 40 per class;
- ``best``: the best of all 32 on the scored sessions (an oracle: how much any choice could give);

and, per order and count, the fixed candidate's confusion on the scored sessions (where its errors are).

The independent val is not read. A rule built on this would still be decided on fresh seeds with the real command.
"""
from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import (  # noqa: E402
    arguments,
    folder_prior_predictions,
    out_of_fold,
    run_labels,
    tile_matrix,
    tiles,
)

FIXED = ("defect_bank", 10.0, False)


def chosen_of(card: dict) -> tuple[str, float, bool]:
    """(feature set, C, mix prior) of the candidate a run's card records."""
    head = card["head"]
    m = re.search(r"\d+ (\w+) features", head["features"])
    if m is None:
        raise ValueError(f"cannot read the feature set of {head['features']!r}")
    return m.group(1), float(head["C"]), "class mix" in head.get("prior", "")


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "lnclasses_command.py JSON files")
    warnings.filterwarnings("ignore")
    from sklearn.metrics import f1_score

    from inference.imageio import read_image
    from inference.texture_features import DEFECT_DIM, image_texture
    from inference.training.classifier_head import HEAD_C, LinearHead, fit_linear_head, with_label_mix

    t = tiles(args.data, args.cache)
    y, x = t.y, t.x
    tex = tile_matrix(t, args.cache, "_texture",
                      lambda paths: np.stack([image_texture(read_image(q, "gray")) for q in paths]).astype(np.float32))
    sets = {"texture": tex, "defect": x[:, :DEFECT_DIM], "bank": x[:, DEFECT_DIM:], "defect_bank": x}
    k = len(t.classes)
    res: dict[tuple[str, int], dict[str, list[tuple[float, float]]]] = {}
    agree: dict[tuple[str, int], int] = {}
    confusion: dict[tuple[str, int], np.ndarray] = {}  # the fixed candidate's (true class, predicted class) counts

    for f in args.runs:
        d = json.loads(Path(f).read_text())
        r = run_labels(t, d)
        lab = r.labelled
        every: dict[tuple[str, float, bool], tuple[float, float]] = {}
        for fs, feats in sets.items():
            for c in HEAD_C:
                head = fit_linear_head(feats[lab], y[lab], k, c)
                for mix in (False, True):
                    # A mix candidate's out-of-fold and pool predictions come from its mixed heads, as in the command.
                    def fit(idx: np.ndarray, feats: np.ndarray = feats, c: float = c, mix: bool = mix) -> LinearHead:
                        h = fit_linear_head(feats[idx], y[idx], k, c)
                        return with_label_mix(h, y[idx]) if mix else h
                    fitted = with_label_mix(head, y[lab]) if mix else head
                    pred = folder_prior_predictions(fitted, feats, t, r, out_of_fold(fit, feats, r),
                                                    y[lab] if mix else None)
                    every[(fs, c, mix)] = (float((pred == y[r.scored]).mean()),
                                           float(f1_score(y[r.scored], pred, average="macro")))
                    if (fs, c, mix) == FIXED:
                        fixed_pred = pred
        pick = chosen_of(d["card_training"])
        key = (r.order, r.per_class)
        np.add.at(confusion.setdefault(key, np.zeros((k, k), int)), (y[r.scored], fixed_pred), 1)
        row = res.setdefault(key, {"chosen": [], "fixed": [], "best": []})
        row["chosen"].append(every[pick])
        row["fixed"].append(every[FIXED])
        row["best"].append(max(every.values(), key=lambda v: (v[1], v[0])))
        agree[key] = agree.get(key, 0) + int(pick == FIXED)
        print(f"{Path(f).name}: chosen {pick} {every[pick][0]:.3f}/{every[pick][1]:.3f}, "
              f"fixed {every[FIXED][0]:.3f}/{every[FIXED][1]:.3f}", flush=True)

    print("\n| order | labels per class | runs | chosen (the command's pick) | fixed defect_bank C10 | best of 32 (oracle) "
          "| fixed above chosen in (accuracy) | chosen = fixed |\n|---|---|---|---|---|---|---|---|")
    for (order, per), row in sorted(res.items()):
        cells = [f"{np.mean([a for a, _ in v]):.3f} / {np.mean([b for _, b in v]):.3f}" for v in row.values()]
        above = sum(a[0] > b[0] for a, b in zip(row["fixed"], row["chosen"]))
        print(f"| {order} | {per} | {len(row['chosen'])} | " + " | ".join(cells)
              + f" | {above} of {len(row['chosen'])} | {agree[(order, per)]} |")
    free = t.classes.index("free")
    for (order, per), cm in sorted(confusion.items()):
        off = cm - np.diag(np.diag(cm))
        print(f"\nfixed candidate, {order} at {per} per class, rows true / columns predicted ({', '.join(t.classes)}):\n"
              f"{cm}\nerrors {int(off.sum())} of {int(cm.sum())}: free called a defect {int(off[free].sum())} "
              f"({', '.join(f'{n} {int(off[free, i])}' for i, n in enumerate(t.classes) if i != free)}), "
              f"a defect called free {int(off[:, free].sum())}, "
              f"a defect called another {int(off.sum() - off[free].sum() - off[:, free].sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
