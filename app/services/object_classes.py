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


@dataclass(frozen=True)
class Components:
    """A mask's 8-connected components: labels, boxes and sizes, and each one's first pixel."""

    labels: np.ndarray  # int32 (h, w): 0 background, 1..n-1 components
    stats: np.ndarray  # cv2 stats per label: x, y, w, h, area
    firsts: list[tuple[int, int]]  # (y, x) of component k's first pixel in reading order, at k - 1

    @classmethod
    def of(cls, mask: np.ndarray) -> Components:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        firsts = []
        for k in range(1, n):
            # The first pixel lies in the top row of the component's box: one short row read, not a sort.
            x, y, w = (int(v) for v in stats[k, :3])
            firsts.append((y, x + int(np.argmax(labels[y, x:x + w] == k))))
        return cls(labels, stats, firsts)

    def at(self, y: int, x: int) -> int:
        """The component label at (y, x); 0 off the mask or outside the image."""
        h, w = self.labels.shape
        return int(self.labels[y, x]) if 0 <= y < h and 0 <= x < w else 0

    def parts_over(self, before: Components, k: int) -> list[int]:
        """This mask's components overlapping component ``k`` of ``before`` (the mask an edit started from), in
        label order; only ``k``'s box is read."""
        x, y, w, h = (int(v) for v in before.stats[k, :4])
        inside = before.labels[y:y + h, x:x + w] == k
        return [int(p) for p in np.unique(self.labels[y:y + h, x:x + w][inside]) if p]

    def own_classes(self, objects: Sequence[ObjectClass]) -> dict[int, str]:
        """Component label -> class, the first seed lying in it winning; seeds on background are dropped."""
        chosen: dict[int, str] = {}
        for o in objects:
            k = self.at(o.y, o.x)
            if k and k not in chosen:
                chosen[k] = o.class_name
        return chosen


def resolve(mask: np.ndarray | None, objects: Sequence[ObjectClass],
            before: np.ndarray | None = None) -> tuple[ObjectClass, ...]:
    """Canonical seeds of ``objects`` on ``mask``: the component each seed lies in, at its first pixel.

    Seeds outside the mask (their object was erased) are dropped; of several seeds in one
    component the first listed keeps its class. Sorted in reading order.

    ``before``: the mask the seeds were placed on, when ``mask`` is an edit of it. A classified object then passes
    its class to every part of the new mask that overlaps it, not only to the one holding its old first pixel:
    erasing a few pixels at an object's top-left corner dropped the class the inspector gave it, and of an object
    cut in two only the top-left piece kept it (a session-45 probe). A seed still lying in a component wins.
    """
    if mask is None or not objects or not mask.any():
        return ()
    comps = Components.of(mask)
    chosen = comps.own_classes(objects)
    if before is not None and before.shape == mask.shape and before.any():
        old = Components.of(before.astype(bool))
        for o in objects:
            k = old.at(o.y, o.x)
            for part in comps.parts_over(old, k) if k else []:
                chosen.setdefault(part, o.class_name)
    return tuple(sorted(ObjectClass(*comps.firsts[k - 1], name) for k, name in chosen.items()))


@dataclass(frozen=True)
class LabelObject:
    """One object of an image as the label panel lists it (reading order, 1-based ``number``)."""

    number: int
    seed: ObjectClass  # its first pixel, with the class shown (its own or the image's)
    own_class: str | None  # None: it takes the image's class
    pixels: int
    box: tuple[int, int, int, int]  # x, y, w, h
    label: int = 0  # its label in the ``Components`` it was listed from

    @property
    def shown_class(self) -> str:
        """Its class in words, as the Objects list and the tag on the image both show it: its own, else
        the image's marked as such ("no class (image's)" on an image without one)."""
        return self.own_class or f"{self.seed.class_name or 'no class'} (image's)"


def objects_of(mask: np.ndarray | None, objects: Sequence[ObjectClass], image_class: str | None,
               comps: Components | None = None) -> list[LabelObject]:
    """Every component of ``mask`` with its class, in reading order of the first pixels."""
    if mask is None or not mask.any():
        return []
    comps = comps or Components.of(mask)
    own = comps.own_classes(objects)
    order = sorted(range(1, len(comps.firsts) + 1), key=lambda k: comps.firsts[k - 1])
    out = []
    for number, k in enumerate(order, start=1):
        y, x = comps.firsts[k - 1]
        name = own.get(k)
        bx, by, bw, bh, area = (int(v) for v in comps.stats[k, :5])
        out.append(LabelObject(number, ObjectClass(y, x, name or image_class or ""), name, area, (bx, by, bw, bh), k))
    return out


def with_class(mask: np.ndarray, objects: Sequence[ObjectClass], x: int, y: int,
               class_name: str | None) -> tuple[ObjectClass, ...]:
    """``objects`` with the component at (x, y) given ``class_name`` (None: the image's class again)."""
    comps = Components.of(mask)
    k = comps.at(y, x)
    if not k:
        raise ObjectClassError(f"no object at x {x}, y {y}")
    kept = {j: name for j, name in comps.own_classes(objects).items() if j != k}
    if class_name:
        kept[k] = class_name
    return tuple(sorted(ObjectClass(*comps.firsts[j - 1], name) for j, name in kept.items()))


def component_classes(component_seeds: Sequence[tuple[int, int]], mask: np.ndarray,
                      objects: Sequence[ObjectClass]) -> list[str | None]:
    """The own class (or None) of components named by one pixel each (y, x), as exporters walk them."""
    if not objects:
        return [None] * len(component_seeds)
    comps = Components.of(mask)
    own = comps.own_classes(objects)
    return [own.get(comps.at(y, x)) for y, x in component_seeds]
