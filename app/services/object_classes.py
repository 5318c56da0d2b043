"""Per-object classes: a class of its own for one region (8-connected component) of a label mask.

The label mask stays one binary image (every reader of masks — training, the masks export,
metrics, import — is unchanged); a revision adds a short list of *seeds*: one pixel inside a
component and that component's class (ADR 0017). A component without a seed has the image's
class (or the task's single class), which is what every revision saved before per-object classes
means, so old revisions need no rewrite.

Seeds are kept canonical: one per component, at its first pixel in reading order (top row, then
leftmost). Canonical seeds make "did the label change" a plain comparison and let an export →
import round trip store exactly what it read. After a mask edit, ``resolve`` keeps each class on
the component its old seed now lies in: an erased object loses its class, a grown one keeps it,
and when two classified objects are painted into one, the first in the list wins.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

MAX_OBJECTS = 10_000  # a revision's list is read whole: a tampered row of millions is refused


@dataclass(frozen=True, order=True)
class ObjectClass:
    """A component's class, anchored at one of its pixels (image coordinates)."""

    y: int  # first: sorting gives reading order
    x: int
    class_name: str

    def as_json(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "class": self.class_name}


class ObjectClassError(ValueError):
    """A stored or supplied list of object classes the station cannot use."""


def parse(value: Any) -> tuple[ObjectClass, ...]:
    """The JSON a revision stores (None: none) as seeds; anything malformed raises."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or len(value) > MAX_OBJECTS:
        raise ObjectClassError(f"object classes must be a list of at most {MAX_OBJECTS} entries")
    out = []
    for entry in value:
        if isinstance(entry, ObjectClass):
            out.append(entry)
            continue
        if not isinstance(entry, dict):
            raise ObjectClassError("an object class must be an object with x, y and class")
        x, y, name = entry.get("x"), entry.get("y"), entry.get("class")
        if not (type(x) is int and type(y) is int and x >= 0 and y >= 0):
            raise ObjectClassError(f"object class position must be whole numbers >= 0 (got {x!r}, {y!r})")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise ObjectClassError(f"object class name must be 1 to 255 characters (got {name!r})")
        out.append(ObjectClass(y, x, name))
    return tuple(out)


def as_json(objects: Iterable[ObjectClass]) -> list[dict[str, Any]] | None:
    """What a revision stores: None when no object has a class of its own."""
    out = [o.as_json() for o in objects]
    return out or None


def _labels(mask: np.ndarray) -> tuple[int, np.ndarray]:
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return int(n), labels


def first_pixels(labels: np.ndarray, n: int) -> list[tuple[int, int]]:
    """(y, x) of each component's first pixel in reading order, for labels 1..n-1."""
    flat = labels.ravel()
    # np.unique's return_index gives the first occurrence in raster order of each label.
    values, index = np.unique(flat, return_index=True)
    w = labels.shape[1]
    first = {int(v): (int(i) // w, int(i) % w) for v, i in zip(values, index)}
    return [first[k] for k in range(1, n)]


def resolve(mask: np.ndarray | None, objects: Sequence[ObjectClass]) -> tuple[ObjectClass, ...]:
    """Canonical seeds of ``objects`` on ``mask``: the component each seed lies in, at its first pixel.

    Seeds outside the mask (their object was erased) are dropped; of several seeds in one
    component the first listed keeps its class. Sorted in reading order.
    """
    if mask is None or not objects or not mask.any():
        return ()
    n, labels = _labels(mask)
    h, w = labels.shape
    chosen: dict[int, str] = {}
    for o in objects:
        if 0 <= o.y < h and 0 <= o.x < w:
            k = int(labels[o.y, o.x])
            if k and k not in chosen:
                chosen[k] = o.class_name
    firsts = first_pixels(labels, n)
    return tuple(sorted(ObjectClass(*firsts[k - 1], name) for k, name in chosen.items()))


@dataclass(frozen=True)
class LabelObject:
    """One object of an image as the label panel lists it (reading order, 1-based ``number``)."""

    number: int
    seed: ObjectClass  # its first pixel, with the class shown (its own or the image's)
    own_class: str | None  # None: it takes the image's class
    pixels: int
    box: tuple[int, int, int, int]  # x, y, w, h


def objects_of(mask: np.ndarray | None, objects: Sequence[ObjectClass],
               image_class: str | None) -> list[LabelObject]:
    """Every component of ``mask`` with its class, in reading order of the first pixels."""
    if mask is None or not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    own = {(o.y, o.x): o.class_name for o in resolve(mask, objects)}
    firsts = first_pixels(labels, n)
    order = sorted(range(1, n), key=lambda k: firsts[k - 1])
    out = []
    for number, k in enumerate(order, start=1):
        y, x = firsts[k - 1]
        name = own.get((y, x))
        bx, by, bw, bh = (int(v) for v in stats[k, :4])
        out.append(LabelObject(number, ObjectClass(y, x, name or image_class or ""), name, int(stats[k, 4]),
                               (bx, by, bw, bh)))
    return out


def with_class(mask: np.ndarray, objects: Sequence[ObjectClass], x: int, y: int,
               class_name: str | None) -> tuple[ObjectClass, ...]:
    """``objects`` with the component at (x, y) given ``class_name`` (None: the image's class again)."""
    kept = [o for o in resolve(mask, objects)]
    n, labels = _labels(mask)
    k = int(labels[y, x]) if 0 <= y < labels.shape[0] and 0 <= x < labels.shape[1] else 0
    if not k:
        raise ObjectClassError(f"no object at x {x}, y {y}")
    kept = [o for o in kept if int(labels[o.y, o.x]) != k]
    if class_name:
        kept.append(ObjectClass(y, x, class_name))
    return resolve(mask, kept)


def component_classes(component_seeds: Sequence[tuple[int, int]], mask: np.ndarray,
                      objects: Sequence[ObjectClass]) -> list[str | None]:
    """The own class (or None) of components named by one pixel each (y, x), as exporters walk them."""
    if not objects:
        return [None] * len(component_seeds)
    n, labels = _labels(mask)
    by_label: dict[int, str] = {}
    for o in objects:
        if 0 <= o.y < labels.shape[0] and 0 <= o.x < labels.shape[1]:
            by_label.setdefault(int(labels[o.y, o.x]), o.class_name)
    by_label.pop(0, None)
    return [by_label.get(int(labels[y, x])) for y, x in component_seeds]
