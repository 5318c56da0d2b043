"""Label import speed: 10,000 synthetic labels through the real readers, matcher and one transaction.

    PYTHONPATH=. python benchmarks/import_labels.py [--labels 10000] [--format masks]

A folder of small distinct images is written and indexed first (not timed), with a dataset of the
chosen format beside it: an ImageFolder tree (``imagefolder``: a class per image) or a mask folder
(``masks``: a class-less PNG mask per image, decoded and size-checked against the image). The
import is timed twice: the dry run (read, match, plan) and the full import (the same plus writing
every revision in one transaction). The target is under 30 s for 10,000 labels on the 2-core
machine; the figure is printed with the time per label.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from app.services.export_items import encode_mask
from app.services.importing import ImportOptions, import_labels
from app.services.indexing import index_folder
from database import open_database

H, W = 24, 32
TARGET_S = 30.0


def write_dataset(base: Path, n: int, fmt: str) -> tuple[Path, Path]:
    images, dataset = base / "station", base / "dataset"
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        img[0, 0] = (i % 256, i // 256 % 256, i // 65536)  # distinct files, distinct hashes
        ok, buf = cv2.imencode(".png", img)
        rel = f"line{i % 7}/part_{i:06d}.png"
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        (images / rel).write_bytes(buf.tobytes())
        if fmt == "imagefolder":
            dst = dataset / ("crack" if i % 3 else "good") / f"line{i % 7}__part_{i:06d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(buf.tobytes())
        else:
            mask = np.zeros((H, W), bool)
            mask[i % H, :] = True
            dst = dataset / "masks" / f"line{i % 7}__part_{i:06d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(encode_mask(mask))
    return images, dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=10_000)
    ap.add_argument("--format", choices=("masks", "imagefolder"), default="masks")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        t = time.perf_counter()
        images, dataset = write_dataset(base, args.labels, args.format)
        db = open_database(f"sqlite:///{(base / 'bench.sqlite').as_posix()}")
        index_folder(db, images)
        db.classes.set("classifier", ["good", "crack"])
        print(f"set-up (not timed): {args.labels} images written and indexed in {time.perf_counter() - t:.1f} s")
        options = ImportOptions(format=args.format, author="bench")
        t = time.perf_counter()
        dry = import_labels(db, dataset, options, dry_run=True)
        dry_s = time.perf_counter() - t
        t = time.perf_counter()
        result = import_labels(db, dataset, options)
        full_s = time.perf_counter() - t
        assert result.written == args.labels, result.preview.summary_lines()
        assert dry.preview.counts["new"] == args.labels
        db.close()
    verdict = "PASS" if full_s < TARGET_S else "FAIL"
    print(f"{args.format}: dry run {dry_s:.1f} s; import of {result.written} labels {full_s:.1f} s "
          f"({1000 * full_s / result.written:.2f} ms/label) — target < {TARGET_S:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
