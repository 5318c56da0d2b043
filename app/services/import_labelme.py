"""Reading labelme JSON files: one per image, shapes in pixel coordinates, the image beside it.

Polygons, rectangles and circles are filled into the image's one mask; points and lines only
name a class. The image's class is the label covering the most pixels, or (a classification
project) the single image-level flag set to true; a filled shape of another label keeps it as its
own class (per-object classes, ADR 0017). ``imagePath`` is followed relative to the JSON
file; one that leaves the import folder (labelme writes ``../images/x.png`` when its JSON is saved
apart from the images) is matched by the path's own end (``images/x.png``, then ``x.png``: a name
shared by several indexed images never matches) and the file it names is never read.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from app.services.import_records import (
    UNCHANGED,
    ImportRecord,
    LabelImportError,
    Mask,
    Region,
    check_pixels,
    dataset_path,
    files_under,
    inside,
    own_class,
    posix_rel,
    read_json_object,
    region_first_pixel,
)
from app.services.object_classes import ObjectClass
from app.services.wording import plural

FILLED = ("polygon", "rectangle", "circle")
OUTLINES = ("point", "points", "line", "linestrip")  # no area: they name a class only


def paint(shape: dict[str, Any], width: int, height: int, where: str) -> Region:
    """A filled shape's pixels on a ``width`` x ``height`` image, as the mask of its bounding box (clipped to the
    image) and the box's (top, left). Painted on the whole image, each shape cost two sums of the image and one
    more image for a shape of its own class: 4,000 small shapes on a 4000x3000 image took 45 s to read (a
    session-49 audit); now the work is the size of the box."""
    kind = shape.get("shape_type") or "polygon"
    try:
        pts = np.asarray(shape.get("points"), dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise LabelImportError(f"{where}: shape points must be [x, y] pairs") from None
    if not np.all(np.isfinite(pts)):
        raise LabelImportError(f"{where}: shape points must be finite numbers")
    w, h = width, height
    if len(pts) and not (np.all(np.abs(pts[:, 0] - w / 2) <= 1.5 * w) and np.all(np.abs(pts[:, 1] - h / 2) <= 1.5 * h)):
        # far outside: OpenCV raised its own error, or a coordinate past 2^31 wrapped round and drew elsewhere
        raise LabelImportError(f"{where}: shape points lie far outside the {w}x{h} image")
    if (kind == "polygon" and len(pts) >= 3) or (kind == "rectangle" and len(pts) == 2):
        xy = np.round(pts).astype(np.int64)
        low, high = xy.min(axis=0), xy.max(axis=0)
    elif kind == "circle" and len(pts) == 2:
        radius = int(round(float(np.hypot(*(pts[1] - pts[0])))))
        centre = np.array([int(round(pts[0][0])), int(round(pts[0][1]))], np.int64)
        low, high = centre - radius, centre + radius
    else:
        raise LabelImportError(f"{where}: a {kind} with {plural(len(pts), 'point')} cannot be filled")
    left, top = max(0, int(low[0])), max(0, int(low[1]))
    box = np.zeros((max(0, min(h, int(high[1]) + 1) - top), max(0, min(w, int(high[0]) + 1) - left)), np.uint8)
    if box.size:  # OpenCV draws a shape moved by whole pixels pixel for pixel the same: its box is the image cut
        if kind == "polygon":
            cv2.fillPoly(box, [(xy - (left, top)).astype(np.int32).reshape(-1, 1, 2)], 1)
        elif kind == "rectangle":
            (x0, y0), (x1, y1) = xy - (left, top)
            cv2.rectangle(box, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness=-1)
        else:
            cv2.circle(box, (int(centre[0]) - left, int(centre[1]) - top), radius, 1, thickness=-1)
    return (top, left), box.astype(bool)


def outside_ref(name: str) -> str:
    """The part of an image path leaving the import folder that can still name an indexed image: its folders and
    file name without the root, drive and ``..`` steps ("../ir/a.png" -> "ir/a.png")."""
    text = name.replace("\\", "/").strip()
    if len(text) > 1 and text[1] == ":":
        text = text[2:]
    return "/".join(p for p in PurePosixPath(text).parts if p not in ("", ".", "..", "/"))


def read_file(path: Path, root: Path) -> ImportRecord:
    doc = read_json_object(path)
    where = str(path)
    try:
        rel = dataset_path(doc.get("imagePath"), where)
        image: Path | None = inside(root, path.parent / rel, where)
    except LabelImportError:
        raw = doc.get("imagePath")
        if not isinstance(raw, str) or "\0" in raw or not outside_ref(raw):
            raise
        image = None   # outside the import folder: matched by its path's end, never read
    width, height = check_pixels(doc.get("imageWidth"), doc.get("imageHeight"), where)
    shapes = doc.get("shapes", [])
    if not isinstance(shapes, list) or not all(isinstance(s, dict) for s in shapes):
        raise LabelImportError(f"{where}: 'shapes' must be a list of objects")
    canvas = np.zeros((height, width), bool)
    area: dict[str, int] = {}
    firsts: list[tuple[tuple[int, int] | None, str]] = []  # each filled shape's first pixel, not its mask
    for n, shape in enumerate(shapes):
        label = shape.get("label")
        if not isinstance(label, str) or not label:
            raise LabelImportError(f"{where}: shape {n} has no label")
        added = 0  # pixels no earlier shape covered: a label's area
        kind = shape.get("shape_type") or "polygon"
        if kind not in FILLED and kind not in OUTLINES:  # labelme's "mask", another tool's own kind: its pixels
            # were dropped without a word, the image's mask left as it was (a session-45 probe)
            raise LabelImportError(f"{where}: shape {n} ({label}) is a {kind!r} shape; the station reads polygons, "
                                   "rectangles and circles (points and lines give a class only)")
        if kind in FILLED:
            (top, left), m = region = paint(shape, width, height, f"{where}, shape {n} ({label})")
            window = canvas[top:top + m.shape[0], left:left + m.shape[1]]
            added = int(np.count_nonzero(m & ~window))
            window |= m
            firsts.append((region_first_pixel(region), label))
        area[label] = area.get(label, 0) + added
    flags = doc.get("flags") or {}
    set_flags = [k for k, v in flags.items() if v is True] if isinstance(flags, dict) else []
    if area:
        class_name: Any = max(area, key=lambda c: (area[c], c))
    else:
        class_name = set_flags[0] if len(set_flags) == 1 else UNCHANGED
    objects = tuple(ObjectClass(at[0], at[1], name) for at, label in firsts
                    if at is not None and (name := own_class(label, class_name)))
    mask = Mask.of(canvas, objects) if firsts or not (shapes or set_flags) else UNCHANGED
    if image is None:
        return ImportRecord(label_file=path, image_ref=outside_ref(str(doc.get("imagePath"))), image_file=None,
                            class_name=class_name, mask=mask)
    return ImportRecord(label_file=path, image_ref=posix_rel(image, root.resolve()),
                        image_file=image if image.is_file() else None, class_name=class_name, mask=mask)


def read(root: Path) -> list[ImportRecord]:
    files = files_under(root, {".json"})
    if not files:
        raise LabelImportError(f"{root}: no labelme .json files")
    return [read_file(p, root) for p in files]
