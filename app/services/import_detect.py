"""Which import formats a dataset holds, told from its layout (a few directory listings, no label read).

Seen under Xvfb (session 36): the import dialog opened on "ImageFolder class tree" and, given one of this station's
export folders, read its ``coco/`` and ``masks/`` folders as classes: "per class: coco 12". The dialog and
``python main.py import`` (``--format auto``, the default) now start from what the folder holds; a person can still
choose another format.
"""
from __future__ import annotations

from collections.abc import Set as AbstractSet
from itertools import islice
from pathlib import Path
from typing import Any

from app.services.export_split import SPLIT_NAMES
from app.services.import_records import LabelImportError, check_size
from inference.imageio import IMAGE_SUFFIXES
from inference.model_limits import parse_json

# Most telling first: the first format found is the one proposed. COCO before masks (it holds the classes and each
# object's own class as well as the masks); the CSV last (it holds no mask).
PREFERENCE = ("coco", "yolo", "mvtec", "labelme", "masks", "imagefolder", "csv")
_LISTED = 200            # entries looked at per folder: a dataset's layout shows in its first ones
_JSON_LOOKED_AT = 3      # labelme: the first few .json files are read to tell them from other JSON


_LOTS_LOOKED_AT = 8  # sub-folders of a class folder looked into for images


def _dirs(folder: Path) -> list[Path]:
    try:
        return [d for d in islice(folder.iterdir(), _LISTED) if d.is_dir() and not d.name.startswith(".")]
    except OSError:
        return []


def _files(folder: Path, suffixes: AbstractSet[str]) -> list[Path]:
    try:
        return [p for p in islice(folder.iterdir(), _LISTED) if p.is_file() and p.suffix.lower() in suffixes]
    except OSError:
        return []


def _json_object(path: Path) -> dict[str, Any]:
    """A (size-checked) JSON object file; empty when it is not one or cannot be read: it tells nothing."""
    try:
        check_size(path)
        doc = parse_json(path.read_text(encoding="utf-8-sig"))  # nested too deeply: a ValueError
    except (LabelImportError, OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _json_keys(path: Path) -> set[str]:
    return set(_json_object(path))


def export_formats(folder: Path) -> list[str] | None:
    """The formats this station's export wrote there (its ``export.json``), None when it is not an export. A format
    the export wrote no image into (``per_format``: images 0) is not one it holds."""
    manifest = _json_object(folder / "export.json") if (folder / "export.json").is_file() else {}
    formats, per = manifest.get("formats"), manifest.get("per_format")
    if not isinstance(formats, list):
        return None
    per = per if isinstance(per, dict) else {}
    return [f for f in formats if isinstance(f, str)
            and not (isinstance(per.get(f), dict) and per[f].get("images") == 0)]


def foreign_layout(folder: Path) -> str | None:
    """A dataset layout the station does not read, by name: its sub-folders are not classes (a Pascal VOC set was
    taken for an ImageFolder tree and every image labelled "JPEGImages", a session-45 probe)."""
    if (folder / "Annotations").is_dir() and (folder / "JPEGImages").is_dir():
        return "a Pascal VOC dataset (Annotations/ and JPEGImages/)"
    if (folder / "obj.names").is_file() or any(d.name.startswith("obj_") and d.name.endswith("_data")
                                               for d in _dirs(folder)):
        return "CVAT's YOLO 1.1 layout (obj.names and obj_*_data/)"
    return None


def foreign_here(source: str | Path) -> str | None:
    """``foreign_layout`` of a folder given as text (None for a file or nothing)."""
    path = Path(source).expanduser()
    return foreign_layout(path) if path.is_dir() else None


def no_layout_message(source: str | Path) -> str:
    """What to say when ``detect_formats`` found nothing."""
    foreign = foreign_here(source)
    if foreign:
        return (f"{source} holds {foreign}, which the station does not read: export it from its tool as COCO, "
                "or as YOLO with a data.yaml (docs/import.md)")
    return f"{source}: no known dataset layout found; give --format (see docs/import.md)"


def _own_layout(folder: Path) -> set[str]:
    """The formats whose layout ``folder`` itself has."""
    if foreign_layout(folder):
        return set()
    found = set()
    if _files(folder / "annotations", {".json"}):
        found.add("coco")
    if (folder / "labels").is_dir() and ((folder / "images").is_dir() or (folder / "data.yaml").is_file()
                                         or (folder / "dataset.yaml").is_file()):
        found.add("yolo")
    if (folder / "masks").is_dir():
        found.add("masks")
    if (folder / "summary.csv").is_file():
        found.add("csv")
    subdirs = _dirs(folder)
    def mvtec_category(d: Path) -> bool:
        return (d / "train" / "good").is_dir() or ((d / "test").is_dir() and (d / "ground_truth").is_dir())
    if mvtec_category(folder) or any(mvtec_category(d) for d in subdirs):
        found.add("mvtec")
    json_files = _files(folder, {".json"})
    if any("shapes" in _json_keys(p) for p in json_files[:_JSON_LOOKED_AT]):
        found.add("labelme")
    elif any({"images", "annotations"} <= _json_keys(p) for p in json_files[:_JSON_LOOKED_AT]):
        found.add("coco")
    named = {"annotations", "labels", "images", "masks", "ground_truth"}
    class_roots = subdirs if subdirs and all(d.name in SPLIT_NAMES for d in subdirs) else [folder]  # train/<class>/
    def images_in(d: Path) -> bool:  # <class>/<image>, or <class>/<lot>/<image> as the reader walks it (a session-47
        # audit: a class tree of lots imported with --format imagefolder, and auto said "no known dataset layout")
        # (a split part's <class>/<image>, an MVTec category's train/good/, is no class of lots)
        return bool(_files(d, IMAGE_SUFFIXES)) or (d.name not in SPLIT_NAMES and any(
            _files(lot, IMAGE_SUFFIXES) for lot in _dirs(d)[:_LOTS_LOOKED_AT]))
    if any(images_in(d) for root in class_roots for d in _dirs(root) if d.name not in named):
        found.add("imagefolder")
    return found


def detect_formats(source: str | Path) -> list[str]:
    """The import formats ``source`` (a folder, or a COCO .json / CSV file) holds, most telling first
    (``PREFERENCE``); empty when its layout is none of them."""
    path = Path(source).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return ["csv"]
        return ["coco"] if suffix == ".json" and {"images", "annotations"} <= _json_keys(path) else []
    if not path.is_dir():
        return []
    exported = export_formats(path)
    if exported is not None:
        found = set(exported)
    else:
        found = _own_layout(path)
        found |= {d.name for d in _dirs(path) if d.name in PREFERENCE and d.name != "csv"
                  and (_own_layout(d) or d.name == "imagefolder")}
    return [f for f in PREFERENCE if f in found]
