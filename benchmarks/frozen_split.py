"""A frozen test split carved out of a class-folder ``train`` tree that has no untouched test split of its own.

    PYTHONPATH=. python benchmarks/frozen_split.py --src ../shared/datasets/neu_cls/train --out /tmp/neu_frozen

NEU-CLS ships train/ and val/ only, and val/ is not untouched for the bundled NEU model (its features were
designed with val learning curves in view; the card says so), so issue 19's "NEU test ≥ 0.99" had no clean
split to be scored on. This copies ``--src`` into ``OUT/train`` and ``OUT/test``: an image goes to test when
the SHA-1 of its file name, as an integer, is divisible by ``--every`` (5: about a fifth of each class),
so the split depends on nothing but the names and is the same on every machine. The recipe is then run on
``OUT/train`` only and ``OUT/test`` is scored once (benchmarks/results/neu-frozen.md).
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path


def is_test(name: str, every: int) -> bool:
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % every == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", required=True, type=Path, help="class-folder tree (one folder per class)")
    ap.add_argument("--out", required=True, type=Path, help="written: OUT/train/CLASS/..., OUT/test/CLASS/...")
    ap.add_argument("--every", type=int, default=5)
    a = ap.parse_args()
    if a.out.exists():
        shutil.rmtree(a.out)
    counts: dict[str, list[int]] = {}
    for cls in sorted(d for d in a.src.iterdir() if d.is_dir()):
        for f in sorted(p for p in cls.iterdir() if p.is_file()):
            part = "test" if is_test(f.name, a.every) else "train"
            dest = a.out / part / cls.name / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            counts.setdefault(cls.name, [0, 0])[part == "test"] += 1
    for cls, (tr, te) in counts.items():
        print(f"{cls}: train {tr}, test {te}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
