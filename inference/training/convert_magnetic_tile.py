"""Turn the magnetic-tile tree into an MVTec-layout anomaly category.

    python -m inference.training.convert_magnetic_tile SRC OUT [--copy] [--defects-by-split]

SRC holds ``{train,val}/<class>/<name>.png`` and ``masks/{train,val}/<class>/<name>.png``;
class ``free`` is defect-free. Result:

- ``OUT/train/good``  <- ``SRC/train/free`` (the only images trained on)
- ``OUT/test/good``   <- ``SRC/val/free``
- ``OUT/test/<class>`` <- every defect image of both splits (never trained on, so fair to
  test), named ``<split>_<name>.png`` so the splits cannot collide
- ``OUT/ground_truth/<class>/<split>_<name>_mask.png`` <- its mask, unless the mask is
  missing or empty (4 ``uneven`` masks are empty in the source): those images then count for
  the image score only, and evaluation lists them.

``--defects-by-split`` keeps the two splits apart, as issue 19's selection protocol needs (every
choice made on ``train`` only, ``val`` scored once): ``OUT/test`` then holds only ``val`` (its
``free`` tiles and its defect tiles, the frozen test split), and the ``train`` defect tiles go to
``OUT/validation/<class>/<name>.png`` with masks at
``OUT/validation_ground_truth/<class>/<name>_mask.png`` (the validation defects that settings and
thresholds are chosen on; the source name is kept so its capture-session prefix still groups it).

Files are symbolic links to SRC by default (nothing duplicated); ``--copy`` copies them.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..imageio import ImageReadError, is_image_file, read_mask
from .anomaly_data import VALIDATION, VALIDATION_GT

FREE = "free"


def _place(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if copy:
        shutil.copy2(src, dst)
    else:
        dst.symlink_to(src.resolve())


def convert(src: Path, out: Path, copy: bool = False, defects_by_split: bool = False) -> dict[str, int]:
    src, out = Path(src), Path(out)
    for need in ("train", "val"):
        if not (src / need / FREE).is_dir():
            raise ValueError(f"{src}: no {need}/{FREE} folder (expected magnetic_tile/{{train,val}}/<class>/)")
    counts = {"train_good": 0, "test_good": 0, "test_defect": 0, "masks": 0, "no_mask": 0}
    if defects_by_split:
        counts["validation_defect"] = 0
    for split in ("train", "val"):
        for cls_dir in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            for img in sorted(f for f in cls_dir.iterdir() if f.is_file() and is_image_file(f)):
                if cls_dir.name == FREE:
                    where = "train" if split == "train" else "test"
                    _place(img, out / where / "good" / img.name, copy)
                    counts["train_good" if split == "train" else "test_good"] += 1
                    continue
                held = defects_by_split and split == "train"
                # Validation keeps the source stem, so its capture-session prefix groups it (groups.py).
                name = img.stem if held else f"{split}_{img.stem}"
                where, gt_dir = (VALIDATION, VALIDATION_GT) if held else ("test", "ground_truth")
                _place(img, out / where / cls_dir.name / f"{name}{img.suffix}", copy)
                counts["validation_defect" if held else "test_defect"] += 1
                mask = src / "masks" / split / cls_dir.name / f"{img.stem}.png"
                try:
                    usable = mask.is_file() and read_mask(mask).any()
                except ImageReadError:
                    usable = False
                if usable:
                    _place(mask, out / gt_dir / cls_dir.name / f"{name}_mask.png", copy)
                    counts["masks"] += 1
                else:
                    counts["no_mask"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inference.training.convert_magnetic_tile", description=__doc__.split("\n")[0])
    p.add_argument("src", help="magnetic_tile folder ({train,val}/<class>, masks/{train,val}/<class>)")
    p.add_argument("out", help="output category folder (MVTec layout)")
    p.add_argument("--copy", action="store_true", help="copy files instead of linking them")
    p.add_argument("--defects-by-split", action="store_true",
                   help="test = val only (the frozen test split); train defects go to validation/ (issue 19 protocol)")
    args = p.parse_args(argv)
    try:
        counts = convert(Path(args.src), Path(args.out), args.copy, args.defects_by_split)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
