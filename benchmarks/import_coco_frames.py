"""COCO reading cost per annotation at two image sizes: the annotation's box, not the image, sets it.

    PYTHONPATH=. python benchmarks/import_coco_frames.py [--images 20] [--objects 50] [--sizes 256 2048]

A COCO file of square images, each with small outlines (12x9 pixels; every tenth a compressed
``iscrowd`` RLE instead), is read by the importer's COCO reader (``import_coco.read``: decode,
paint, areas, first pixels, the image's mask PNG) at each size, twice in one process: as it reads
now, and with each annotation decoded to the whole image as before session 49
(``full_frame_decode``, pycocotools' ``decode``; its checks of the input are left out, so the old
figure is if anything low). No database or image files are needed. Printed: ms per annotation for
each, their ratio, and whether both gave the same records.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from pycocotools import mask as mask_utils

from app.services import import_coco


def full_frame_decode(seg: Any, height: int, width: int, where: str) -> tuple[tuple[int, int], np.ndarray]:
    """An annotation decoded as the COCO reader did before session 49: pycocotools' mask of the whole image, placed
    at (0, 0), so the reader paints, counts and searches the whole frame for it (valid input only: no checks)."""
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = {"size": [height, width], "counts": seg["counts"].encode("ascii")}
    return (0, 0), np.asarray(mask_utils.decode(rle), dtype=bool)


def write_doc(path: Path, images: int, objects: int, size: int) -> int:
    rng = np.random.default_rng(0)
    imgs, anns = [], []
    for i in range(images):
        imgs.append({"id": i + 1, "file_name": f"part_{i:04d}.png", "width": size, "height": size})
        for k in range(objects):
            x, y = float(rng.integers(10, size - 30)), float(rng.integers(10, size - 30))
            ann: dict[str, Any] = {"id": len(anns) + 1, "image_id": i + 1, "category_id": 1 + k % 2,
                                   "bbox": [x, y, 12, 9], "area": 108, "iscrowd": 0}
            if k % 10 == 9:
                blob = np.zeros((size, size), np.uint8, order="F")
                blob[int(y):int(y) + 9, int(x):int(x) + 12] = 1
                ann.update(iscrowd=1, segmentation={"size": [size, size],
                                                    "counts": mask_utils.encode(blob)["counts"].decode()})
            else:
                ann["segmentation"] = [[x, y, x + 12, y, x + 12, y + 9, x, y + 9]]
            anns.append(ann)
    path.write_text(json.dumps({"images": imgs, "annotations": anns,
                                "categories": [{"id": 1, "name": "crack"}, {"id": 2, "name": "pit"}]}))
    return len(anns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--objects", type=int, default=50, help="annotations per image")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 2048], help="image sides in pixels")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            doc = Path(tmp) / f"instances_{size}.json"
            n = write_doc(doc, args.images, args.objects, size)
            t = time.perf_counter()
            new = import_coco.read(doc)
            new_s = time.perf_counter() - t
            with mock.patch.object(import_coco, "decode_segmentation", full_frame_decode):
                t = time.perf_counter()
                old = import_coco.read(doc)
                old_s = time.perf_counter() - t
            print(f"{size}x{size}: {n} annotations on {args.images} images ({doc.stat().st_size // 1024} KB): "
                  f"now {new_s:.2f} s ({1000 * new_s / n:.2f} ms/annotation), whole-image decode {old_s:.2f} s "
                  f"({1000 * old_s / n:.2f} ms/annotation): {old_s / new_s:.1f}x; "
                  f"same records: {'yes' if new == old else 'NO'}")


if __name__ == "__main__":
    main()
