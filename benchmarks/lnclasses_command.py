"""The real retrain command on the lnclasses train-only split, for one candidate (information only).

    PYTHONPATH=. python benchmarks/lnclasses_command.py --variant base|A|B|station --seed S [--per-class 40] \
        [--space texture|defect_bank] \
        [--order label-next|per-class] [--retrain-args "--keep-if-worse --class-mix folder"] [--unmarked] \
        --json benchmarks/results/lnclasses/command/B_s0.json

Why: lnclasses.md decides on the texture regression; whether the command itself follows is asked
here, still without reading ``val``. The seed's split of ``magnetic_tile/train`` (``lnclasses.split``:
two capture sessions scored) is copied to /tmp as a ``train`` (pool) and a ``val`` (scoring part)
class-folder tree, "label next" in ``retraining_loop.py`` is replaced by the candidate's chooser
(``base``: ``propose`` as it was before this branch; ``station``: ``propose`` as it is), and
``retraining_loop.py`` runs as on val. ``--space defect_bank`` (lnhead.md) gives "label next" each image's
``defect_bank`` vector, the retrain command's own features, instead of the ``texture`` embedding.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app.services.label_next as label_next  # noqa: E402
import benchmarks.retraining_loop as loop  # noqa: E402
from benchmarks.label_next import CHOOSERS, texture_embeddings, tree  # noqa: E402
from benchmarks.lnclasses import chooser, split  # noqa: E402
from inference.training.classifier_head import texture_matrix  # noqa: E402


def head_probabilities(x: np.ndarray, labels: Sequence[str | None]) -> tuple[np.ndarray, list[str]] | None:
    """lnunc.md's U: ``label_next.fitted_probabilities`` with the retrainer's head kind (class-balanced logistic
    regression, C 10: ``fit_linear_head``) in place of the ``logreg`` simple answer; the same fitting condition."""
    from app.services.labels_needed import HEAD_C
    from inference.training.classifier_head import fit_linear_head

    idx = [i for i, lab in enumerate(labels) if lab is not None]
    y = [str(labels[i]) for i in idx]
    if sum(1 for c in set(y) if y.count(c) >= label_next.MIN_FIT_PER_CLASS) < 2:
        return None
    classes = sorted(set(y))
    head = fit_linear_head(x[idx], np.searchsorted(classes, y), len(classes), HEAD_C)
    return head.proba(x), classes


def split_trees(data_root: Path, seed: int, out: Path) -> tuple[Path, Path]:
    """Copies of the seed's pool and scoring part as class-folder trees under ``out`` (scratch)."""
    paths, _ = tree(data_root / "magnetic_tile" / "train")
    scored = split("magnetic_tile", paths, seed)
    if out.exists():
        shutil.rmtree(out)
    for p, is_scored in zip(paths, scored):
        dest = out / ("val" if is_scored else "train") / p.parent.name / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    return out / "train", out / "val"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=("base", "A", "B", "station"), required=True,
                   help="station: the station's own propose, unchanged")
    p.add_argument("--space", choices=("texture", "defect_bank"), default="defect_bank",
                   help="the vectors label next chooses in (lnhead.md; defect_bank: the station's since ADR 0073; "
                        "runs before it chose in texture)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--root", type=Path, default=Path("/work/shared/datasets"))
    p.add_argument("--order", choices=("label-next", "per-class", "random"), default="label-next",
                   help="per-class: random images of each class; random: the pool in a seeded random order (the "
                        "variant's chooser is then not used)")
    p.add_argument("--uncertainty", choices=("logreg", "head"), default="logreg",
                   help="label next's margin: logreg (the station's simple answer) or head (the retrainer's "
                        "class-balanced C 10 regression, lnunc.md)")
    p.add_argument("--retrain-args", default="--keep-if-worse", help="options for the retrain command, one string")
    p.add_argument("--unmarked", action="store_true", help="label-next labels stored without their source (retraining_loop.py)")
    p.add_argument("--json", type=Path, required=True)
    a = p.parse_args()
    train, val = split_trees(a.root, a.seed, Path(f"/tmp/lnclasses_split_s{a.seed}"))
    if a.variant != "station":
        CHOOSERS["label_next"] = chooser(a.variant)
    loop.EMBED = texture_embeddings if a.space == "texture" else lambda paths: texture_matrix(paths, "defect_bank")
    if a.uncertainty == "head":
        label_next.fitted_probabilities = head_probabilities
    sys.argv = ["retraining_loop.py", "--train", str(train), "--val", str(val), "--per-class", str(a.per_class),
                "--order", a.order, "--seed", str(a.seed), "--threads", "1", f"--retrain-args={a.retrain_args}",
                "--json", str(a.json)] + (["--unmarked"] if a.unmarked else [])
    return loop.main()


if __name__ == "__main__":
    raise SystemExit(main())
