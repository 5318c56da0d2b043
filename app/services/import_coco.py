"""Reading COCO instance files: polygons, uncompressed and compressed RLE, decoded by pycocotools.

Every instance of an image is painted into the image's one mask (the station's label is one
binary mask per image); an image listed without instances is a reviewed negative (an empty mask).
The image's class is the ``class`` this station's export writes, else the category covering the
most pixels; the placeholder category ``target`` names no class. An instance of another category
keeps it as its own class (per-object classes, ADR 0017). Sizes are bounded before a mask
is allocated and every file name must stay inside the dataset.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from app.services.import_records import (
    UNCHANGED,
    ImportRecord,
    LabelImportError,
    Mask,
    Region,
    check_pixels,
    dataset_path,
    inside,
    no_class_in,
    own_class,
    read_json_object,
    region_first_pixel,
)
from app.services.object_classes import ObjectClass

PART_FILE = re.compile(r"^instances_(?P<part>[^.]+)\.json$")


def annotation_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    folder = root / "annotations" if (root / "annotations").is_dir() else root
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if not files:
        raise LabelImportError(f"{root}: no COCO annotation file (expected annotations/instances*.json)")
    return files


def decode_segmentation(seg: Any, height: int, width: int, where: str) -> Region:
    """One annotation's segmentation, whatever COCO encoding it uses, as the bool mask of its bounding box and where
    that box lies: decoded to the whole image, each small outline on a 2048x2048 image cost 50 ms to decode, paint,
    count and search (a session-49 audit), so the work is now the size of the box."""
    try:
        if isinstance(seg, list):
            polys = [p for p in seg if isinstance(p, list)]
            if len(polys) != len(seg) or any(len(p) < 6 or len(p) % 2 or not all(
                    isinstance(v, (int, float)) for v in p) for p in polys):
                raise LabelImportError(f"{where}: a polygon must be a list of at least 3 x, y number pairs")
            # finite and near the image: NaN or a point at 4e8 crashed the process inside pycocotools (a session-45
            # probe: signal 11, or a hang tracing billions of edge points)
            if not all(math.isfinite(v) and -width <= v <= 2 * width for p in polys for v in p[0::2]) or not all(
                    math.isfinite(v) and -height <= v <= 2 * height for p in polys for v in p[1::2]):
                raise LabelImportError(f"{where}: a polygon point is not a number within reach of the {width}x{height} "
                                       "image")
            runs = rle_string_runs(mask_utils.merge(mask_utils.frPyObjects(polys, height, width))["counts"].decode())
            if runs is None:
                raise ValueError("pycocotools gave an outline no run lengths")
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), (list, str)):
            if list(seg.get("size", [])) != [height, width]:
                raise LabelImportError(f"{where}: RLE size {seg.get('size')} differs from the image's "
                                       f"[{height}, {width}]")
            if isinstance(seg["counts"], list):
                if not all(isinstance(v, int) and v >= 0 for v in seg["counts"]) or sum(seg["counts"]) != height * width:
                    raise LabelImportError(f"{where}: RLE counts do not cover the {width}x{height} image")
                runs = seg["counts"]
            else:
                runs = rle_string_runs(seg["counts"])
                if runs is None or sum(runs) != height * width:  # pycocotools read past a short one (a mask of
                    # memory never written, different at each run: a session-45 probe); it still says so
                    raise LabelImportError(f"{where}: RLE counts do not cover the {width}x{height} image")
        else:
            raise LabelImportError(f"{where}: segmentation is neither polygons nor RLE")
        return runs_region(runs, height)
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise LabelImportError(f"{where}: unreadable segmentation ({exc})") from None


def runs_region(runs: list[int], height: int) -> Region:
    """The pixels COCO run lengths mark, as the mask of the box holding them and the box's (top, left). The runs
    go down each column in turn, from the left, the first one background; they are checked to cover the image.
    A run that crosses into the next column makes the box the image's full height, so every run is one stretch of
    the box's own column-major order: its ends are painted into the box alone, never into the image."""
    lengths = np.asarray(runs, dtype=np.int64)
    ends = np.cumsum(lengths)
    first, last = (ends - lengths)[1::2], ends[1::2] - 1  # each marked run's first and last pixel
    first, last = first[last >= first], last[last >= first]  # (an empty run marks none)
    if not first.size:
        return (0, 0), np.zeros((0, 0), bool)
    x_first, y_first = np.divmod(first, height)
    x_last, y_last = np.divmod(last, height)
    crosses = bool((x_last > x_first).any())
    top, bottom = (0, height) if crosses else (int(y_first.min()), int(y_last.max()) + 1)
    left, right = int(x_first.min()), int(x_last.max()) + 1
    box_h, size = bottom - top, (bottom - top) * (right - left)
    starts = (x_first - left) * box_h + y_first - top
    stops = (x_last - left) * box_h + y_last - top + 1
    # One byte a pixel: each run's two ends toggle "inside", a run starting where the last ended (an empty gap)
    # toggling twice. Counted ends in int64 took 16 bytes a pixel, 3.2 GB for one RLE covering a 14000x14000 image
    # (a session-49 audit), the largest a COCO file of 251 bytes may declare.
    edges = np.zeros(size + 1, bool)
    edges[starts] = True
    edges[stops] ^= True
    inside_box = np.logical_xor.accumulate(edges[:size])
    del edges
    return (top, left), np.ascontiguousarray(inside_box.reshape(right - left, box_h).T)


MAX_RUN_BITS = 40  # a run of more pixels than 2**40 covers no image the station reads (inference.imageio.MAX_PIXELS)


def rle_string_runs(counts: str) -> list[int] | None:
    """The run lengths a compressed COCO RLE string holds, or None when it is not one: each run is a little-endian
    number in 5-bit groups, one character each (48 added), the 0x20 bit saying another group follows and the last
    group's 0x10 bit its sign; from the third run on, a run is stored as its difference from the run two before
    (COCO's ``rleToString``)."""
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                return None
            c = ord(counts[pos]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if shift > MAX_RUN_BITS:  # a run past any image: a long string of continuation characters grew one
                return None           # number without bound, the work quadratic in its length (a session-46 probe)
            if not more and c & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return None
        runs.append(value)
    return runs


def image_location(doc_file: Path, root: Path, file_name: str) -> Path | None:
    part = PART_FILE.match(doc_file.name)
    base = root if root.is_dir() else doc_file.parent
    candidates = [base / "images" / part["part"] / file_name] if part else []
    candidates += [base / "images" / file_name, base / file_name]
    for path in candidates:
        if path.is_file():
            return inside(base, path, str(doc_file))
    return None


def read_document(doc_file: Path, root: Path) -> list[ImportRecord]:
    doc = read_json_object(doc_file)
    images, anns, cats = doc.get("images"), doc.get("annotations", []), doc.get("categories", [])
    if not isinstance(images, list) or not isinstance(anns, list) or not isinstance(cats, list):
        raise LabelImportError(f"{doc_file}: not a COCO file ('images', 'annotations' and 'categories' must be lists)")
    for c in cats:  # a category without a name came in as the class "None" (a session-49 audit)
        if isinstance(c, dict) and not (isinstance(c.get("name"), str) and c["name"].strip()):
            raise LabelImportError(f"{doc_file}: category {c.get('id')!r:.40} has no name")
    names = {_id(c.get("id"), "category id", doc_file): c["name"] for c in cats if isinstance(c, dict)}
    no_class = no_class_in(names.values())
    per_image: dict[Any, list[dict[str, Any]]] = {}
    for a in anns:
        if not isinstance(a, dict) or "image_id" not in a:
            raise LabelImportError(f"{doc_file}: an annotation without image_id")
        where = f"{doc_file}, annotation {a.get('id')!r:.40}"
        _id(a["image_id"], "image_id", where)
        if _id(a.get("category_id"), "category_id", where) not in names:
            raise LabelImportError(f"{doc_file}: annotation {a.get('id')} has unknown category_id {a.get('category_id')!r}")
        _finite_box(a.get("bbox"), where)
        per_image.setdefault(a["image_id"], []).append(a)
    records: list[ImportRecord] = []
    seen_ids: dict[Any, Any] = {}
    for img in images:
        if not isinstance(img, dict):
            raise LabelImportError(f"{doc_file}: an image entry is not an object")
        where = f"{doc_file} (image {img.get('id')!r:.40})"
        if _id(img.get("id"), "image id", where) in seen_ids:  # its annotations would go to every entry of the id (found by a probe)
            raise LabelImportError(f"{where}: the id is given to two images ({seen_ids[img.get('id')]!r} and "
                                   f"{img.get('file_name')!r}); an annotation's image_id must name one image")
        seen_ids[img.get("id")] = img.get("file_name")
        ref = dataset_path(img.get("file_name"), where)
        width, height = check_pixels(img.get("width"), img.get("height"), where)
        own = per_image.get(img.get("id"), [])
        with_seg = [a for a in own if a.get("segmentation")]
        mask: Any = UNCHANGED
        area: dict[str, int] = {}
        painted = np.zeros((height, width), bool) if with_seg or not own else None
        firsts: list[tuple[tuple[int, int] | None, str]] = []  # each instance's first pixel, not its mask
        # On an image with outlines, a box-only annotation (CVAT and datumaro write rectangles so) is drawn as its
        # box: dropped, the image's class named a region its mask did not hold (a session-45 probe). An image of
        # boxes alone stays a detection label: its mask is left as it is.
        boxes = {id(a): box for a in own if with_seg and not a.get("segmentation")
                 and (box := _box(a, width, height)) is not None}
        for a in with_seg + [a for a in own if id(a) in boxes]:
            box = boxes.get(id(a))
            if box is None:
                (top, left), m = decode_segmentation(a["segmentation"], height, width,
                                                     f"{where}, annotation {a.get('id')!r}")
            else:
                (top, left), m = (box[1], box[0]), np.ones((box[3] - box[1], box[2] - box[0]), bool)
            assert painted is not None  # made for every image with outlines, the only ones drawn
            painted[top:top + m.shape[0], left:left + m.shape[1]] |= m
            cat = names[a["category_id"]]
            area[cat] = area.get(cat, 0) + int(m.sum())
            firsts.append((region_first_pixel(((top, left), m)), cat))
        for a in own:  # an object without a polygon (a detection set's box) weighs by its box or stated area: the
            # class was the alphabetically last category where every area was 0 (a session-43 probe)
            if not a.get("segmentation") and id(a) not in boxes:
                area[names[a["category_id"]]] = area.get(names[a["category_id"]], 0) + _box_area(a)
            area.setdefault(names[a["category_id"]], 0)
        if "class" in img:
            class_name = img["class"] if isinstance(img["class"], str) and img["class"] else UNCHANGED
        else:
            best = max(area, key=lambda c: (area[c], c), default=None)
            class_name = best if best and best != no_class else UNCHANGED
        if painted is not None:
            objects = tuple(ObjectClass(at[0], at[1], name) for at, cat in firsts
                            if at is not None and (name := own_class(cat, class_name, no_class)))
            mask = Mask.of(painted, objects)
        source = img.get("source")
        records.append(ImportRecord(label_file=doc_file, image_ref=ref, image_file=image_location(doc_file, root, ref),
                                    origin=source if isinstance(source, str) else None,
                                    class_name=class_name, mask=mask))
    orphans = sorted({repr(k) for k in per_image if k not in seen_ids})
    if orphans:  # their labels would be lost without a word (a session-45 probe)
        ids = "image id" if len(orphans) == 1 else "image ids"
        raise LabelImportError(f"{doc_file}: annotations for {ids} {', '.join(orphans[:5])} that 'images' does "
                               "not list")
    return records


def read(root: Path) -> list[ImportRecord]:
    return [r for f in annotation_files(root) for r in read_document(f, root)]


def _id(value: Any, what: str, where: object) -> Any:
    """An id a COCO file states: a number or a name. A list there raised a bare "unhashable type" TypeError, and
    ``true`` stood for the id 1 (a session-49 audit)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LabelImportError(f"{where}: {what} {value!r:.40} is not a number or a name")
    return value


def _finite_box(box: Any, where: str) -> None:
    """Refuse a ``bbox`` of four numbers that reaches no finite pixel: [1, 1, 1e308, 1e308] overflowed to infinity
    when its far corner or its area was taken, a traceback (a session-49 audit). A bbox of another shape is no box,
    as before (``_box``)."""
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        return
    try:
        x, y, w, h = (float(v) for v in box)
    except OverflowError:  # an integer of hundreds of digits
        x = y = w = h = math.inf
    if not all(math.isfinite(v) for v in (x, y, w, h, x + w, y + h, w * h)):
        raise LabelImportError(f"{where}: bbox {box!r:.80} is not four finite numbers of a box")


def _box(annotation: dict[str, Any], width: int, height: int) -> tuple[int, int, int, int] | None:
    """An annotation's ``bbox`` as pixel bounds (x0, y0, x1, y1) inside the image, covering every pixel it touches;
    None when it has none, or it is not finite numbers or covers no pixel."""
    box = annotation.get("bbox")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
            and all(math.isfinite(v) for v in box)):
        return None
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _box_area(annotation: dict[str, Any]) -> int:
    """An annotation's ``area``, else its ``bbox`` width times height; 0 when neither is a usable number."""
    value = annotation.get("area")
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return int(value)
    box = annotation.get("bbox")
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
        return max(0, int(box[2] * box[3]))
    return 0
