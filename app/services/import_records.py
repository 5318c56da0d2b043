"""What an import reader hands on: one record per labelled image, plus the checks every reader shares.

Readers only parse files; they never touch the database. Each record says which image it is about
(a dataset-relative path, the image file when the dataset holds one, and the station's own
``folder/rel_path`` when an export of this station names it) and the label parts its format
holds. Parts a format does not hold stay ``UNCHANGED``, so importing a class tree never clears a
mask drawn in the station. Everything a reader opens is bounded (file size, mask pixels) and every
path it follows must stay inside the import folder, so a hostile or broken dataset gives one
clear ``LabelImportError`` instead of a crash, a huge allocation or a read elsewhere on disk.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from app.services.export_items import TARGET_BESIDE_A_CLASS, TARGET_CATEGORY, encode_mask
from app.services.object_classes import ObjectClass, resolve
from database.dto import UNCHANGED as UNCHANGED  # re-exported for the format readers
from inference.imageio import MAX_PIXELS, ImageReadError, read_mask
from inference.model_limits import ModelLimitError, parse_json, regular_file_size

# A COCO file of ~100k polygon instances is below this. Its parsed form takes up to ~25 times the file in memory (a
# session-46 probe: a 20 MB file of empty annotations peaked at 606 MB), so 512 MiB could take 13 GB in the window.
MAX_LABEL_FILE_BYTES = 128 << 20


class LabelImportError(Exception):
    """An import that cannot be done, with a reason a person can act on; nothing was written."""


@dataclass(frozen=True)
class Mask:
    """A decoded binary mask kept as the lossless PNG the database stores (small in memory),
    with the classes its instances have of their own (canonical seeds, ADR 0017)."""

    png: bytes
    width: int
    height: int
    objects: tuple[ObjectClass, ...] = ()

    @classmethod
    def of(cls, mask: np.ndarray, objects: tuple[ObjectClass, ...] = ()) -> Mask:
        return cls(encode_mask(mask), int(mask.shape[1]), int(mask.shape[0]), resolve(mask, objects))


def no_class_in(categories: Iterable[str]) -> str:
    """The category a station export names a target on an image without a class: ``target (no class)`` where the
    export holds it (then ``target`` is a class of the project), else ``target``."""
    return TARGET_BESIDE_A_CLASS if TARGET_BESIDE_A_CLASS in set(categories) else TARGET_CATEGORY


def own_class(category: str, image_class: Any, no_class: str = TARGET_CATEGORY) -> str | None:
    """An instance's class of its own: None where it is the image's (or the no-class placeholder, ``no_class_in``)."""
    if category == no_class or (isinstance(image_class, str) and category == image_class):
        return None
    return category


def first_pixel(mask: np.ndarray) -> tuple[int, int] | None:
    """(y, x) of a mask's first pixel in reading order (None: empty). Found by ``argmax``: listing every pixel's
    index took 8 bytes a pixel (1.6 GB for one instance covering a 14000x14000 image, a session-49 audit)."""
    flat = mask.reshape(-1)
    at = int(np.argmax(flat)) if flat.size else 0
    return divmod(at, mask.shape[1]) if flat.size and flat[at] else None


Region = tuple[tuple[int, int], np.ndarray]  # (top, left) of an instance's bounding box and its mask inside it


def region_first_pixel(region: Region) -> tuple[int, int] | None:
    """(y, x) in the image of a region's first pixel in reading order (None: empty). Instances are measured inside
    their boxes (COCO, labelme): work the size of the box, not of the image."""
    (top, left), mask = region
    at = first_pixel(mask)
    return None if at is None else (top + at[0], left + at[1])


@dataclass(frozen=True)
class Polygons:
    """Outlines to fill at the matched image's size (YOLO's normalised coordinates need it).

    ``scale`` says whether the points are in [0, 1] (multiply by the image size) or in pixels.
    """

    points: tuple[np.ndarray, ...]  # each (n, 2) float x, y
    normalised: bool
    own_classes: tuple[str | None, ...] = ()  # per outline: its class of its own (None: the image's)

    def rasterise(self, width: int, height: int) -> Mask:
        """Scale, truncate to whole pixels and fill: what YOLO loaders do with a label file."""
        mask = np.zeros((height, width), np.uint8)
        objects: list[ObjectClass] = []
        for k, pts in enumerate(self.points):
            xy = (pts * (width, height) if self.normalised else pts).astype(np.int32)
            cv2.fillPoly(mask, [xy.reshape(-1, 1, 2)], 1)
            name = self.own_classes[k] if k < len(self.own_classes) else None
            if name:  # its first pixel, from the fill of its own bounding box
                x0, y0 = np.clip(xy.min(axis=0), 0, None)
                x1, y1 = np.minimum(xy.max(axis=0), (width - 1, height - 1))
                crop = np.zeros((max(0, y1 - y0 + 1), max(0, x1 - x0 + 1)), np.uint8)
                if crop.size:
                    cv2.fillPoly(crop, [(xy - (x0, y0)).reshape(-1, 1, 2)], 1)
                    at = region_first_pixel(((int(y0), int(x0)), crop))
                    if at is not None:
                        objects.append(ObjectClass(at[0], at[1], name))
        return Mask.of(mask > 0, tuple(objects))


@dataclass(frozen=True)
class ImportRecord:
    """One image's label as a dataset states it (``UNCHANGED`` parts: the format does not hold them)."""

    label_file: Path  # where the label was read from: provenance "imported from FILE"
    image_ref: str  # the image's path inside the dataset, '/'-separated, for matching by path
    image_file: Path | None = None  # the image copy in the dataset, for matching by content hash
    origin: str | None = None  # 'folder/rel_path' of the source image, where the dataset names it
    source_path: str | None = None  # the source image's full path, where the dataset names it (the station's CSV)
    content_hash: str | None = None  # the SHA-256 the dataset states for its image without a copy (the station's CSV)
    class_name: Any = UNCHANGED  # str, or None to clear
    mask: Any = UNCHANGED  # Mask, Polygons, or None to clear
    anomaly_verdict: Any = UNCHANGED  # 'normal' / 'anomalous' / None
    anomaly_mask: Any = UNCHANGED  # Mask or None
    review_state: str | None = None  # the station's own CSV says it; other formats: corrected
    labelled_at: datetime | None = None  # when the label was made, where the dataset says (else file time)
    hidden_in: str | None = None  # the hidden class folder holding the image (``hidden_class_folder``): passed over


def regular_size(path: Path) -> int:
    """The size of ``path``, refused unless it is a regular file (or a link to one); OSError when it cannot be
    stat'ed. Opening a named pipe waits for a writer for good: a pipe among a dataset's label, table or image files
    hung ``main.py import`` and the window (a session-49 audit), and one named data.yaml or a mask was taken for no
    class names or an empty mask. Every file a reader opens or hashes passes here or through ``files_under``."""
    try:
        return regular_file_size(path)
    except ModelLimitError as exc:
        raise LabelImportError(f"{exc}: nothing was imported; move it out of the import folder") from None


def check_size(path: Path, limit: int | None = None) -> int:
    limit = MAX_LABEL_FILE_BYTES if limit is None else limit
    try:
        size = regular_size(path)
    except OSError as exc:
        raise LabelImportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size > limit:
        raise LabelImportError(f"{path}: file too large to import ({size / 2**20:.0f} MiB; "
                               f"the limit is {limit / 2**20:.0f} MiB: read, it takes many times that in memory; "
                               "split it into parts, e.g. one file per folder)")
    return size


def read_text(path: Path) -> str:
    check_size(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LabelImportError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise LabelImportError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A bounded JSON file that must hold an object; a clear message names the file and the line."""
    try:
        doc = parse_json(read_text(path))
    except json.JSONDecodeError as exc:
        raise LabelImportError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:  # nested too deeply (a traceback, a session-45 probe)
        raise LabelImportError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise LabelImportError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    return doc


def load_mask(path: Path) -> Mask:
    """A mask image file (size-bounded by the image reader): any non-zero pixel is foreground."""
    try:
        return Mask.of(read_mask(path))
    except ImageReadError as exc:
        raise LabelImportError(f"mask {exc}") from None


def whole_number(value: Any) -> bool:
    """An integer a label file states, ``true`` and ``false`` not taken for 1 and 0 (JSON's booleans are Python's
    ``bool``, an ``int``: a COCO or labelme ``"width": true`` was a 1-pixel image that then failed with a bare
    TypeError, a session-49 audit)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_pixels(width: Any, height: Any, where: str) -> tuple[int, int]:
    """Image sizes stated in a label file, bounded before anything of that size is allocated."""
    if not (whole_number(width) and whole_number(height)) or width <= 0 or height <= 0:
        raise LabelImportError(f"{where}: image size must be positive whole numbers (got {width!r} x {height!r})")
    if width * height > MAX_PIXELS:
        raise LabelImportError(f"{where}: image size {width}x{height} is beyond the {MAX_PIXELS:,} pixel limit")
    return width, height


def dataset_path(name: Any, where: str) -> str:
    """A path a label file names, normalised to '/'-separated and refused if it leaves the dataset."""
    if not isinstance(name, str) or not name.strip():
        raise LabelImportError(f"{where}: missing image path")
    if "\0" in name:  # no file has such a name: following it raised "embedded null byte" (a session-49 audit)
        raise LabelImportError(f"{where}: image path {name!r} holds a NUL character")
    text = name.replace("\\", "/").strip()
    pure = PurePosixPath(text)
    if pure.is_absolute() or (len(text) > 1 and text[1] == ":") or ".." in pure.parts:
        raise LabelImportError(f"{where}: image path {name!r} is outside the import folder")
    return "/".join(p for p in pure.parts if p not in ("", "."))


def inside(root: Path, path: Path, where: str) -> Path:
    """``path`` resolved (links followed) and refused unless it lies under ``root``."""
    real = path.resolve()
    if real != root.resolve() and root.resolve() not in real.parents:
        raise LabelImportError(f"{where}: {path} leads outside the import folder {root}")
    return real


def files_under(folder: Path, suffixes: frozenset[str] | set[str], root: Path | None = None) -> list[Path]:
    """Files with these suffixes below ``folder``, sorted, hidden entries skipped; each must lie under ``root`` (the
    import folder; ``folder`` itself by default), links followed. A class folder linked out of the dataset was read
    as if inside, being its own bound (a session-48 probe labelled a file outside), and a folder that cannot be read
    was passed over without a word, a class's labels with it: both refuse the import now, as does a pipe or device
    of such a name (``regular_size``: reading or hashing it hung the import)."""
    bound = root or folder
    unreadable: list[OSError] = []
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable.append):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in suffixes:
                continue
            path = Path(dirpath) / name
            inside(bound, path, "import folder")
            try:
                regular_size(path)
            except OSError:  # a link whose target has gone: said where it is read, as before
                pass
            out.append(path)
    if unreadable:
        exc = unreadable[0]
        raise LabelImportError(f"{exc.filename or folder}: cannot be read ({exc.strerror or exc}); nothing was "
                               "imported: make it readable, or move it out of the import folder")
    return out


def hidden_class_folder(folder: Path, root: Path) -> list[ImportRecord]:
    """The images of a class folder starting with a dot (``.5mm pit``), as records passed over: a hidden folder is no
    class to read (a tool's ``.thumbs``), but its images were left out without a word, and a class of that name lost
    its labels on the way back from the station's own export (a session-52 audit); the preview lists them unmatched
    and says why. Read leniently: a hidden folder that cannot be read, or links out, refuses nothing."""
    from inference.imageio import IMAGE_SUFFIXES
    try:
        found = files_under(folder, IMAGE_SUFFIXES, root)
    except LabelImportError:
        return []
    where = posix_rel(folder, root)
    return [ImportRecord(label_file=path, image_ref=posix_rel(path, root), hidden_in=where) for path in found]


def exported_class_folders(root: Path, fmt: str) -> dict[str, str]:
    """folder -> class, as this station's export wrote a class whose name is no folder name (``pit/dent`` as
    ``pit_dent``), from the ``export.json`` beside ``root`` or above it (the export's own folder); {} for any other
    tree. The manifest is read within the export's own bound."""
    from app.services.export import MANIFEST, MANIFEST_MAX_BYTES, WRITTEN_BY
    from app.services.export_formats import CLASS_FOLDERS
    for base in (root, root.parent, root.parent.parent):   # the export, a format's folder, or a split part in it
        manifest = base / MANIFEST
        try:
            if not manifest.is_file():
                continue
            if manifest.stat().st_size > MANIFEST_MAX_BYTES:
                return {}
            data = parse_json(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return {}
        formats = data.get("per_format") if isinstance(data, dict) else None
        part = formats.get(fmt) if isinstance(formats, dict) else None   # a hostile manifest: any shape
        if not isinstance(data, dict) or data.get("written_by") != WRITTEN_BY or not isinstance(part, dict):
            return {}
        folders = part.get(CLASS_FOLDERS)
        return {k: v for k, v in folders.items() if isinstance(k, str) and isinstance(v, str) and v.strip()} \
            if isinstance(folders, dict) else {}
    return {}


def posix_rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
