"""Instance formats: COCO JSON with RLE masks and YOLO segmentation polygons.

A mask label is one binary image; detection-style tools want instances, so each 8-connected
component becomes one instance (the convention the small-target metrics count targets by). The
instance's category is its own class when the inspector gave it one (per-object classes, ADR 0017),
else the image's class when it has one (a crack mask on a "crack" image), else ``target``. COCO segmentations are RLE (``iscrowd`` 0) encoded by pycocotools, the reference
implementation every COCO reader decodes with, so a mask round-trips pixel for pixel.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from app.services.export_formats import FormatWriter, write_bytes
from app.services.export_items import TARGET_CATEGORY, Component, LoadedItem, components, instance_category


def category_names(class_order: Sequence[str], masked_classes: Iterable[str | None],
                   placeholder: str = TARGET_CATEGORY) -> list[str]:
    """Known classes in their model order, then other classes seen, then the no-class ``placeholder`` if needed."""
    names = list(dict.fromkeys(class_order))
    seen = {instance_category(c, placeholder) for c in masked_classes}
    names += sorted(seen - set(names) - {placeholder})
    # beside a class named "target", the placeholder is listed even unused: it tells a reader (this station's import)
    # that "target" is that class here, not "no class"
    if (placeholder in seen or placeholder != TARGET_CATEGORY) and placeholder not in names:
        names.append(placeholder)
    return names


def component_rle(comp: Component, height: int, width: int) -> dict[str, Any]:
    """COCO RLE of one component in the full image, built from its crop's pixels.

    COCO counts run column-major over the whole image, alternating background and foreground
    runs, starting with background; pycocotools compresses them into the standard string.
    """
    xs, ys = np.nonzero(comp.crop.T)  # column-major order of the crop = of the image
    flat = (xs + comp.x) * height + (ys + comp.y)
    breaks = np.flatnonzero(np.diff(flat) != 1) + 1
    starts = flat[np.r_[0, breaks]]
    ends = flat[np.r_[breaks - 1, len(flat) - 1]] + 1
    counts = np.empty(2 * len(starts) + 1, dtype=np.int64)
    counts[0::2] = np.r_[starts, height * width] - np.r_[0, ends]
    counts[1::2] = ends - starts
    if counts[-1] == 0:  # ends on the last pixel: pycocotools' own encoder writes no empty run
        counts = counts[:-1]
    rle: dict[str, Any] = mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    return rle


def rle_instances(mask: np.ndarray) -> list[dict[str, Any]]:
    """One COCO RLE (compressed counts as str), area and bbox per connected component."""
    h, w = mask.shape
    out = []
    for comp in components(mask):
        rle = component_rle(comp, h, w)
        out.append({
            "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        })
    return out


class CocoWriter(FormatWriter):
    """``coco/images/[part/]<file>`` and ``coco/annotations/instances[_<part>].json``."""

    name = "coco"

    def __init__(self, out: Path, categories: Sequence[str], placeholder: str = TARGET_CATEGORY) -> None:
        super().__init__(out)
        self.placeholder = placeholder
        self.category_ids = {name: i + 1 for i, name in enumerate(categories)}
        self.categories = [{"id": i, "name": n, "supercategory": "defect"} for n, i in self.category_ids.items()]
        self.docs: dict[str | None, dict[str, list[Any]]] = {}
        self.next_image_id = 1
        self.next_ann_id = 1

    def add(self, it: LoadedItem) -> None:
        if it.mask is None:
            return
        self.copy_image(it, self.part_dir(self.root / "images", it))
        doc = self.docs.setdefault(it.planned.split, {"images": [], "annotations": []})
        h, w = it.mask.shape
        image_id = self.next_image_id
        self.next_image_id += 1
        doc["images"].append({"id": image_id, "file_name": it.planned.file_name, "width": w, "height": h,
                              "source": it.item.display_path, "class": it.item.class_name,
                              **({"attributes": it.item.trace} if it.item.trace else {})})
        for inst, category in zip(rle_instances(it.mask), it.categories(self.placeholder)):
            doc["annotations"].append({"id": self.next_ann_id, "image_id": image_id,
                                       "category_id": self.category_ids[category], "iscrowd": 0, **inst})
            self.next_ann_id += 1

    def finish(self) -> dict[str, Any]:
        info = {"description": "Inspection review station export (reviewed labels)",
                "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        annotations = 0
        for part, doc in sorted(self.docs.items(), key=lambda kv: kv[0] or ""):
            name = f"instances_{part}.json" if part else "instances.json"
            body = {"info": info, "licenses": [], "categories": self.categories, **doc}
            write_bytes(self.root / "annotations" / name, json.dumps(body, indent=1).encode("utf-8"))
            annotations += len(doc["annotations"])
        return {"images": self.images, "annotations": annotations}


def yolo_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Per component, an (n >= 3, 2) polygon in [0, 1] image coordinates (x, y).

    Outlines run through pixel centres, so scaling back by (w, h) and truncating to integers
    (what YOLO loaders do before ``cv2.fillPoly``) redraws the component's pixels. A component's holes
    are joined to its outline by a slit (there and back along one segment), so the same fill leaves them
    empty: written as the outline alone, a ring came back a disc (a session-48 probe; on random holed
    shapes the slits left 175 pixels wrong where the outline alone left 77,522). A one-pixel line
    has an outline of no area; its pixel centres, out and back, are still a polygon the fill draws as
    exactly that line (its bounding box filled an 8-pixel diagonal scratch to 64 pixels, a session-49
    audit). Only a single dot, one point, gets its bounding box, inset a quarter pixel so the same
    truncation lands on the pixel: no small target is dropped.
    """
    h, w = mask.shape
    polys = []
    for comp in components(mask):
        crop = comp.crop.astype(np.uint8)
        contours, tree = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=(comp.x, comp.y))
        outer = max((i for i in range(len(contours)) if tree[0][i][3] == -1), key=lambda i: len(contours[i]))
        contour = contours[outer].reshape(-1, 2).astype(np.float64)
        if len(contour) >= 3 and cv2.contourArea(contour.astype(np.float32)) > 0:
            pts = _with_holes(contour, [contours[i].reshape(-1, 2).astype(np.float64)
                                        for i in range(len(contours)) if tree[0][i][3] == outer]) + 0.5
        elif len(contour) > 1:  # a line: its ends (two points) go out and back, so a reader sees three or more
            pts = (contour if len(contour) >= 3 else np.concatenate([contour, contour[:1]])) + 0.5
        else:
            bh, bw = crop.shape
            x0, y0, x1, y1 = comp.x + 0.25, comp.y + 0.25, comp.x + bw - 0.25, comp.y + bh - 0.25
            pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
        polys.append(np.clip(pts / (w, h), 0.0, 1.0))
    return polys


def _with_holes(outline: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """``outline`` with each hole spliced in at the closest pair of points: out along a slit, round the hole (OpenCV
    gives holes the opposite turn), back along the same slit."""
    pts = outline
    for hole in holes:
        d = ((pts[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
        a, b = np.unravel_index(int(d.argmin()), d.shape)
        pts = np.concatenate([pts[:a + 1], np.roll(hole, -b, axis=0), hole[b:b + 1], pts[a:]])
    return pts


class YoloWriter(FormatWriter):
    """``yolo/images/[part/]<file>``, ``yolo/labels/[part/]<stem>.txt`` and ``yolo/data.yaml``."""

    name = "yolo"

    def __init__(self, out: Path, categories: Sequence[str], parts: tuple[str, ...],
                 placeholder: str = TARGET_CATEGORY) -> None:
        super().__init__(out)
        self.placeholder = placeholder
        self.categories = list(categories)
        self.index = {name: i for i, name in enumerate(categories)}
        self.parts = parts
        self.instances = 0

    def add(self, it: LoadedItem) -> None:
        if it.mask is None:
            return
        self.copy_image(it, self.part_dir(self.root / "images", it))
        # The image's own class first: YOLO holds no image class, and the import gives an image the most frequent
        # line's, the first listed among equals; in reading order, one region of its own class ahead of one plain
        # region turned a crazing image into patches on re-import (a session-52 audit). Sorted stably, so each group
        # keeps reading order.
        image_category = instance_category(it.item.class_name, self.placeholder)
        pairs = sorted(zip(yolo_polygons(it.mask), it.categories(self.placeholder)), key=lambda p: p[1] != image_category)
        lines = [" ".join([str(self.index[category]), *(f"{v:.6f}" for v in poly.reshape(-1))]) for poly, category in pairs]
        self.instances += len(lines)
        text = "".join(f"{line}\n" for line in lines)
        write_bytes(self.part_dir(self.root / "labels", it) / f"{it.planned.stem}.txt", text.encode("utf-8"))

    def finish(self) -> dict[str, Any]:
        if not self.images:
            return {"images": 0, "instances": 0}
        # No ``path`` key: Ultralytics resolves a relative one against its own datasets folder or the
        # working directory, never the YAML's; without it, the folders are relative to data.yaml.
        lines = ["# Ultralytics segmentation dataset written by the inspection review station"]
        made = [p for p in self.parts if (self.root / "images" / p).is_dir()]  # parts that got a masked image
        if made:
            train = "train" if "train" in made else made[0]
            val = next(p for p in ("val", "test", train) if p in made)
            lines += [f"train: images/{train}", f"val: images/{val}"]
            if "test" in made and val != "test":
                lines.append("test: images/test")
        else:
            lines += ["train: images", "val: images"]
        lines.append("names:")
        # as written, not \u-escaped: a name beyond the basic plane ("𝛼-crack") became two lone surrogates for
        # YAML readers and this station's own import (a session-45 probe)
        lines += [f"  {i}: {json.dumps(name, ensure_ascii=False)}" for i, name in enumerate(self.categories)]
        write_bytes(self.root / "data.yaml", ("\n".join(lines) + "\n").encode("utf-8"))
        return {"images": self.images, "instances": self.instances}
