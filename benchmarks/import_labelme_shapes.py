"""labelme reading cost for many small shapes on a large image: each shape's box, not the image, sets it.

    PYTHONPATH=. python benchmarks/import_labelme_shapes.py [--shapes 4000] [--width 4000] [--height 3000]

One labelme JSON of small triangles (every fifth of another label, a class of its own) on one image is read by
the importer's labelme reader (``import_labelme.read``) as it reads now, and with every shape painted onto the
whole image as before session 49 (``whole_canvas_read``: two sums of the image per shape, one more image per
shape of its own class). No database or image files are needed. Printed: seconds for each, their ratio, and
whether both gave the same record.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.services import import_labelme
from app.services.import_records import Mask, first_pixel, own_class
from app.services.object_classes import ObjectClass


def whole_canvas_paint(shape: dict[str, Any], canvas: np.ndarray) -> None:
    """A shape filled onto the whole image, as the labelme reader did before session 49 (valid input only)."""
    kind = shape.get("shape_type") or "polygon"
    pts = np.asarray(shape.get("points"), dtype=np.float64).reshape(-1, 2)
    if kind == "polygon":
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], 1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = np.round(pts).astype(np.int64)
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness=-1)
    else:
        radius = int(round(float(np.hypot(*(pts[1] - pts[0])))))
        cv2.circle(canvas, (int(round(pts[0][0])), int(round(pts[0][1]))), radius, 1, thickness=-1)


def whole_canvas_read(doc: dict[str, Any]) -> tuple[Any, Mask]:
    """(class, mask) of a labelme document of filled shapes, read as before session 49: each shape's area the
    growth of the whole image's sum, each own-class shape painted again on an image of its own for its first
    pixel."""
    canvas = np.zeros((doc["imageHeight"], doc["imageWidth"]), np.uint8)
    area: dict[str, int] = {}
    for shape in doc["shapes"]:
        before = int(canvas.sum())
        whole_canvas_paint(shape, canvas)
        area[shape["label"]] = area.get(shape["label"], 0) + int(canvas.sum()) - before
    class_name = max(area, key=lambda c: (area[c], c))
    objects = []
    for shape in doc["shapes"]:
        if name := own_class(shape["label"], class_name):
            alone = np.zeros_like(canvas)
            whole_canvas_paint(shape, alone)
            if (at := first_pixel(alone)) is not None:
                objects.append(ObjectClass(at[0], at[1], name))
    return class_name, Mask.of(canvas > 0, tuple(objects))


def triangles(count: int, width: int, height: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    shapes = []
    for i in range(count):
        x, y = float(rng.integers(0, width - 4)), float(rng.integers(0, height - 4))
        shapes.append({"label": "pit" if i % 5 == 4 else "crack", "shape_type": "polygon",
                       "points": [[x, y], [x + 3, y], [x + 3, y + 3]]})
    return {"imagePath": "part.png", "imageWidth": width, "imageHeight": height, "shapes": shapes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", type=int, default=4000)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    args = ap.parse_args()
    doc = triangles(args.shapes, args.width, args.height)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "part.json").write_text(json.dumps(doc))
        start = time.perf_counter()
        (record,) = import_labelme.read(Path(tmp))
        now = time.perf_counter() - start
    start = time.perf_counter()
    before = whole_canvas_read(doc)
    then = time.perf_counter() - start
    print(f"{args.shapes} shapes on {args.width}x{args.height}: {now:.2f} s now, {then:.2f} s painted on the whole "
          f"image ({then / now:.0f} times); same record: {(record.class_name, record.mask) == before}")


if __name__ == "__main__":
    main()
