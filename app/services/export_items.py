"""What an export works on: one frozen record per reviewed image, independent of the database.

The format writers only ever see these records, so they can be tested (and reused by a job
running in another process) without a session, and the database query that builds them is the
one place that knows how a current label is stored.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from app.services.display import encode_mask_png
from app.services.object_classes import ObjectClass, component_classes
from inference.imageio import stored_size

ANOMALY_NORMAL = "normal"
ANOMALY_ANOMALOUS = "anomalous"
EXPORTED_STATES = frozenset({"accepted", "corrected"})
TARGET_CATEGORY = "target"  # the instance category of a target on an image without a class
# ... where a class of the project is itself named "target": the two shared one COCO id and YOLO index, and the import
# then read the real class as "no class" (a session-45 probe; docs/export.md)
TARGET_BESIDE_A_CLASS = "target (no class)"


def no_class_category(classes: Iterable[str | None]) -> str:
    """The category an export gives a target on an image without a class, apart from every class it names."""
    return TARGET_BESIDE_A_CLASS if TARGET_CATEGORY in set(classes) else TARGET_CATEGORY


def instance_category(class_name: str | None, placeholder: str = TARGET_CATEGORY) -> str:
    return class_name or placeholder


class ItemSkipped(Exception):
    """An image whose label or file cannot be exported; the export goes on without it."""


@dataclass(frozen=True)
class ExportItem:
    """One reviewed image with its current label (masks as the lossless PNG bytes stored)."""

    source: Path  # the image file on disk, copied byte for byte
    rel_path: str  # folder-relative, '/'-separated: names the files and seeds the split
    folder: str  # the indexed folder's name (MVTec category, CSV column)
    review_state: str  # 'accepted' or 'corrected'
    class_name: str | None = None
    mask_png: bytes | None = None  # segmentation label: non-zero pixels are target
    anomaly_verdict: str | None = None  # 'normal' or 'anomalous'
    anomaly_mask_png: bytes | None = None  # the anomalous region, when one was drawn
    reviewer: str | None = None
    reviewed_at: datetime | None = None
    width: int | None = None  # as indexed; a mask of another size is refused
    height: int | None = None
    image_id: int | None = None
    serial: str | None = None  # traceability (app/services/trace.py): the part, its lot, the station
    lot: str | None = None
    station: str | None = None
    objects: tuple[ObjectClass, ...] = ()  # classes of the mask's own components (the rest: class_name)
    size_bytes: int | None = None  # the file as indexed: one that changed since is not exported with this label
    mtime_ns: int | None = None
    content_hash: str | None = None
    # the image's stored error: the pre-labelling could not read the file, or a model failed on it (decoded to check)
    read_error: str | None = None

    @property
    def display_path(self) -> str:
        return f"{self.folder}/{self.rel_path}"

    @property
    def trace(self) -> dict[str, str]:
        """The known trace fields (empty: none), as every format writes them."""
        return {k: v for k, v in (("serial", self.serial), ("lot", self.lot), ("station", self.station)) if v}


@dataclass(frozen=True)
class PlannedItem:
    """An item with its place in the dataset: the split part and a collision-free file name."""

    item: ExportItem
    split: str | None
    file_name: str  # e.g. 'lot3__part_17.png' (original extension kept)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.file_name).stem


@dataclass(frozen=True)
class LoadedItem:
    """A planned item with its masks decoded once, shared by every format writer."""

    planned: PlannedItem
    mask: np.ndarray | None  # bool (h, w)
    anomaly_mask: np.ndarray | None  # bool (h, w)
    target_count: int | None  # connected components of ``mask``
    object_classes: tuple[str | None, ...] = ()  # per component of ``mask`` (``components`` order): its own class
    staged: Path | None = None  # the image's bytes, read once into the export's own folder: what every writer copies

    @property
    def copy_from(self) -> Path:
        """The file a writer copies: the staged bytes where there are, so every format gets the same ones."""
        return self.staged or self.item.source

    @property
    def item(self) -> ExportItem:
        return self.planned.item

    def categories(self, placeholder: str = TARGET_CATEGORY) -> list[str]:
        """Each component's instance category (COCO, YOLO, the CSV): its own class, else the image's, else
        ``placeholder`` (``no_class_category``)."""
        return [instance_category(own or self.item.class_name, placeholder) for own in self.object_classes]


_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def safe_name(text: str, fallback: str = "unnamed") -> str:
    """A single path component that every common filesystem accepts (class and category folders)."""
    cleaned = _UNSAFE.sub("_", text).strip().rstrip(".")
    return cleaned if cleaned and cleaned not in (".", "..") else fallback


def disk_key(text: str) -> str:
    """``text`` as a case-insensitive file system that keeps one Unicode spelling sees it (Windows, macOS): two names
    with one key are one file or folder there. ``lower()``, not ``casefold()``: "Maße" and "Masse" stay two."""
    return unicodedata.normalize("NFC", text).lower()


def folder_key(class_name: str) -> str:
    """The class folder ``class_name`` is written to, as every disk compares it: classes with one key share a folder
    in ImageFolder and MVTec exports and in retraining (the export's check), so the class list refuses a new name
    whose key another class of the project has (``project_classes.validate``)."""
    return disk_key(safe_name(class_name))


MAX_FOLDER_BYTES = 255  # the longest file or folder name ext4 and APFS take (UTF-8 bytes; NTFS: 255 UTF-16 units)

HIDDEN_FOLDER_WHY = "its folder would be hidden, and training and imports pass hidden folders over"


def hidden_folder(class_name: str) -> bool:
    """Whether ``class_name``'s class folder starts with a dot: hidden, so the trainer and the station's ImageFolder
    and MVTec imports pass it over. The class list refuses such a name (``project_classes.validate``), an import
    refuses one the project does not have, and the class-folder export refuses one it holds (a session-52 audit:
    ".5mm pit", brought in by a CSV import, was exported to a hidden folder and its label lost on re-import)."""
    return safe_name(class_name).startswith(".")


def flat_name(item: ExportItem, with_folder: bool) -> str:
    """Flatten sub-folders into the file name so every format can use one flat directory."""
    parts = [p for p in PurePosixPath(item.rel_path.replace("\\", "/")).parts if p not in ("", ".", "..")]
    if with_folder:
        parts.insert(0, item.folder)
    return "__".join(safe_name(p) for p in parts) or "image"


def _stem_key(name: str) -> str:
    """A file stem as a case-insensitive file system sees it, one Unicode spelling for both (a session-46 probe:
    "défaut.png" written precomposed and decomposed were two files here and one on a Mac, the export counting two)."""
    return disk_key(PurePosixPath(name).stem)


def unique_file_names(items: list[ExportItem]) -> list[str]:
    """Flat names whose stems are unique even case-insensitively (masks are named by stem).

    Colliding names get a short hash of their full path, so the outcome does not depend on the
    order the items come in.
    """
    with_folder = len({i.folder for i in items}) > 1
    names = [flat_name(i, with_folder) for i in items]
    stems: dict[str, int] = {}
    for n in names:
        key = _stem_key(n)
        stems[key] = stems.get(key, 0) + 1
    out = []
    for item, name in zip(items, names):
        p = PurePosixPath(name)
        if stems[_stem_key(name)] > 1:
            # The source path, not folder/rel_path: two indexed folders may share a name.
            digest = hashlib.sha256(str(item.source).encode("utf-8")).hexdigest()[:8]
            name = f"{p.stem}-{digest}{p.suffix}"
        out.append(name)
    return out


def decode_mask(png: bytes, what: str, item: ExportItem) -> np.ndarray:
    """PNG bytes -> bool (h, w); any non-zero channel is foreground."""
    try:
        img = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise ItemSkipped(f"{item.display_path}: stored {what} is not a readable PNG")
    mask = img.max(axis=2) > 0 if img.ndim == 3 else img > 0
    # an image no model has read has no indexed size: its header's (the check passed every mask there, and the
    # station's own import then refused the export whole; a session-47 audit)
    width, height = (item.width, item.height) if item.width and item.height else stored_size(item.source) or (0, 0)
    if width and height and mask.shape != (height, width):
        raise ItemSkipped(f"{item.display_path}: {what} is {mask.shape[1]}x{mask.shape[0]} but the image is "
                          f"{width}x{height}")
    return mask


def encode_mask(mask: np.ndarray) -> bytes:
    """bool/0-1 (h, w) -> 8-bit PNG with 0 and 255 (the value standard loaders threshold): the station's one mask
    encoder (``display.encode_mask_png``), so an exported mask is the stored label's bytes."""
    return encode_mask_png(mask)


@dataclass(frozen=True)
class Component:
    """One 8-connected component (the small-target metrics' convention) as a crop of its box."""

    crop: np.ndarray  # bool (h, w): this component's pixels inside its bounding box
    x: int
    y: int

    def first_pixel(self) -> tuple[int, int]:
        """(y, x) of its first pixel in reading order: where a per-object class is anchored."""
        r, c = divmod(int(np.flatnonzero(self.crop)[0]), self.crop.shape[1])
        return self.y + r, self.x + c


def components(mask: np.ndarray) -> list[Component]:
    """Work per bounding box, so a mask with many specks costs its pixels, not specks x image."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = []
    for k in range(1, n):
        x, y, w, h = (int(v) for v in stats[k, :4])
        out.append(Component(labels[y:y + h, x:x + w] == k, x, y))
    return out


def load(planned: PlannedItem) -> LoadedItem:
    item = planned.item
    mask = decode_mask(item.mask_png, "mask", item) if item.mask_png is not None else None
    region = None
    if item.anomaly_mask_png is not None:
        region = decode_mask(item.anomaly_mask_png, "anomaly region", item)
    if mask is not None and region is not None and mask.shape != region.shape:
        raise ItemSkipped(f"{item.display_path}: mask and anomaly region differ in size")
    comps = components(mask) if mask is not None else []
    own: tuple[str | None, ...] = ()
    if mask is not None:
        own = tuple(component_classes([c.first_pixel() for c in comps], mask, item.objects))
    return LoadedItem(planned, mask, region, len(comps) if mask is not None else None, own)
