"""Writers for the folder-based dataset layouts: ImageFolder, images + masks, MVTec AD, CSV summary.

Each writer gets every loaded item once (``add``) and writes what its format holds of it, then
``finish`` writes the index files and returns counts for the export summary. Images are copied
byte for byte (never re-encoded): a dataset must hold exactly the pixels that were reviewed.
"""
from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from app.services.csv_rows import formula_safe_row
from app.services.export_items import (
    ANOMALY_ANOMALOUS,
    ANOMALY_NORMAL,
    TARGET_CATEGORY,
    LoadedItem,
    encode_mask,
    safe_name,
)
from app.services.wording import plural

NORMAL_CLASS_NAMES = frozenset({"good", "ok", "normal", "free", "none", "no_defect"})


# In the manifest's per-format part: folder -> class where a class's name is no folder name ("pit/dent" is written as
# "pit_dent"); the import reads it back (a session-48 probe: the round trip refused "unknown class pit_dent")
CLASS_FOLDERS = "class_folders"


class FormatWriter:
    """Base: a sub-folder of the export named after the format, and byte-exact copies into it."""

    name = ""

    def __init__(self, out: Path) -> None:
        self.root = out / self.name
        self.images = 0
        self.notes: list[str] = []  # what a reader of this format must know; the export's notes, set by ``finish``
        # Of those, advice only for readers outside the station (torchvision's ImageFolder), said after ``notes``: the
        # station's own training reads the files its own way and leaves them out (``ExportResult.reader_notes``)
        self.reader_notes: list[str] = []

    def copy_image(self, it: LoadedItem, folder: Path, file_name: str | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / (file_name or it.planned.file_name)
        shutil.copyfile(it.copy_from, dst)
        self.images += 1
        return dst

    def part_dir(self, base: Path, it: LoadedItem) -> Path:
        return base / it.planned.split if it.planned.split else base

    def add(self, it: LoadedItem) -> None:
        raise NotImplementedError

    def finish(self) -> dict[str, Any]:
        return {"images": self.images}


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class ImageFolderWriter(FormatWriter):
    """``imagefolder/[part/]<class>/<file>``: torchvision's ImageFolder reads it as is.

    ImageFolder numbers the sorted class folders of the root it is given, so a part that lacks a class numbers the
    others differently from the train part (a session-49 audit: a model trained on train was scored on val with
    shifted labels). The manifest therefore holds ``class_to_idx``, the numbering of every class folder of the export
    (what ImageFolder gives a part holding them all), and ``missing_classes`` per part, and a note names them.
    Empty class folders are not written instead: ImageFolder refuses a class folder without an image.
    """

    name = "imagefolder"

    def __init__(self, out: Path) -> None:
        super().__init__(out)
        self.per_class: dict[str, int] = {}
        self.renamed: dict[str, str] = {}   # folder -> class, where a class's name is no folder name
        self.part_folders: dict[str, set[str]] = {}  # split part -> the class folders it got

    def add(self, it: LoadedItem) -> None:
        cls = it.item.class_name
        if not cls:
            return
        folder = safe_name(cls)
        if folder != cls:
            self.renamed[folder] = cls
        self.copy_image(it, self.part_dir(self.root, it) / folder)
        self.per_class[cls] = self.per_class.get(cls, 0) + 1
        if it.planned.split:
            self.part_folders.setdefault(it.planned.split, set()).add(folder)

    def finish(self) -> dict[str, Any]:
        folders = sorted({safe_name(c) for c in self.per_class})  # torchvision's order: sorted folder names
        missing = {part: [self.renamed.get(f, f) for f in folders if f not in held]
                   for part, held in self.part_folders.items() if len(held) < len(folders)}
        if missing:
            self.reader_notes.append(  # the station's classifier training maps every part's folders by name
                "imagefolder class numbering: " + "; ".join(f"the {part} part has no image of {', '.join(names)}"
                                            for part, names in sorted(missing.items()))
                + ", so torchvision's ImageFolder numbers that part's classes by the folders it holds (its labels can "
                  "differ from the other parts'); use export.json's per_format.imagefolder.class_to_idx "
                  "(docs/export.md shows how)")
        return {"images": self.images, "classes": dict(sorted(self.per_class.items())),
                "class_to_idx": {f: i for i, f in enumerate(folders)},
                **({CLASS_FOLDERS: dict(sorted(self.renamed.items()))} if self.renamed else {}),
                **({"missing_classes": dict(sorted(missing.items()))} if missing else {})}


class MaskWriter(FormatWriter):
    """``masks/images/<file>`` + ``masks/masks/<stem>.png`` (0/255) + ``<part>.txt`` stem lists.

    The same layout as the SIRST copy the segmenter trains on; an empty mask (an image reviewed as
    holding no target) is a label too and is written.
    """

    name = "masks"

    def __init__(self, out: Path, parts: tuple[str, ...]) -> None:
        super().__init__(out)
        self.parts = parts
        self.stems: dict[str, list[str]] = {p: [] for p in parts}
        self.targets = 0

    def add(self, it: LoadedItem) -> None:
        if it.mask is None:
            return
        self.copy_image(it, self.root / "images")
        write_bytes(self.root / "masks" / f"{it.planned.stem}.png", encode_mask(it.mask))
        self.targets += it.target_count or 0
        if it.planned.split:
            self.stems[it.planned.split].append(it.planned.stem)

    def finish(self) -> dict[str, Any]:
        if self.images:
            for part in self.parts:
                lines = "".join(f"{s}\n" for s in sorted(self.stems[part]))
                write_bytes(self.root / f"{part}.txt", lines.encode("utf-8"))
        return {"images": self.images, "targets": self.targets}


def defect_type(class_name: str | None) -> str:
    """MVTec sub-folder for an anomalous image: its defect class, unless that names a good part."""
    if class_name and class_name.strip().lower() not in NORMAL_CLASS_NAMES:
        return safe_name(class_name)
    return ANOMALY_ANOMALOUS


class MvtecWriter(FormatWriter):
    """``mvtec/<category>/{train/good, test/good, test/<defect>, ground_truth/<defect>}``.

    The category is the image's folder. Normal images in the train part go to ``train/good``, the
    others to ``test/good`` (``normal_parts`` says which, for exports without a split); anomalous
    images always go to ``test/<defect>``, with ``ground_truth/<defect>/<stem>_mask.png`` when a
    region was drawn.
    """

    name = "mvtec"

    def __init__(self, out: Path, normal_parts: Mapping[str, str]) -> None:
        super().__init__(out)
        self.normal_parts = normal_parts
        self.counts: dict[str, int] = {}
        self.without_region = 0
        self.renamed: dict[str, str] = {}   # defect folder -> class, where a class's name is no folder name
        self.good: dict[str, Counter[str]] = {}   # category -> its normal images per part ("train", "test")

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def add(self, it: LoadedItem) -> None:
        verdict = it.item.anomaly_verdict
        base = self.root / safe_name(it.item.folder)
        if verdict == ANOMALY_NORMAL:
            part = "train" if self.normal_parts[it.planned.file_name] == "train" else "test"
            self.copy_image(it, base / part / "good")
            self._count(f"{part}/good")
            self.good.setdefault(base.name, Counter())[part] += 1
        elif verdict == ANOMALY_ANOMALOUS:
            kind = defect_type(it.item.class_name)
            if it.item.class_name and kind not in (it.item.class_name, ANOMALY_ANOMALOUS):
                self.renamed[kind] = it.item.class_name
            self.copy_image(it, base / "test" / kind)
            self._count(f"test/{kind}")
            if it.anomaly_mask is not None:
                write_bytes(base / "ground_truth" / kind / f"{it.planned.stem}_mask.png",
                            encode_mask(it.anomaly_mask))
            else:
                self.without_region += 1

    def finish(self) -> dict[str, Any]:
        # a category whose normal images all went to train/good has no test/good, which a reader of the layout
        # expects (a one-normal-image category's was missing with nothing said: a session-50 audit)
        for category, parts in sorted(self.good.items()):
            if not parts["test"]:
                n = parts["train"]
                self.notes.append(f"mvtec/{category} has no test/good: " + (
                    "its only normal image is in train/good (one image cannot be both trained on and held out)"
                    if n == 1 else f"its {plural(n, 'normal image')} are all in train/good (the split held none "
                                   "of them out)"))
        return {"images": self.images, "folders": dict(sorted(self.counts.items())),
                "anomalous_without_region": self.without_region,
                **({CLASS_FOLDERS: dict(sorted(self.renamed.items()))} if self.renamed else {})}


CSV_COLUMNS = ("path", "folder", "rel_path", "file_name", "split", "state", "class", "anomaly_verdict",
               "anomaly_region_pixels", "target_count", "target_classes", "reviewer", "reviewed_at", "serial", "lot", "station",
               "sha256")


class CsvTableWriter(FormatWriter):
    """A CSV file at the top of the export (beside the formats' folders, not in one): one row
    per exported image, in export order. Its text cells are written ``formula_safe`` (a class or file name
    "=HYPERLINK(...)" was a live formula in a spreadsheet: a session-51 audit); ``numbers`` names the columns
    holding numbers, written as they are."""

    file_name = ""
    columns: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()

    def __init__(self, out: Path) -> None:
        super().__init__(out)
        self.path = out / self.file_name
        self.rows: list[dict[str, Any]] = []

    def finish(self) -> dict[str, Any]:
        with self.path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(formula_safe_row(row, self.numbers) for row in self.rows)
        return {"rows": len(self.rows)}


def target_classes(it: LoadedItem, placeholder: str = TARGET_CATEGORY) -> str:
    """The CSV's count of targets per category, as COCO and YOLO name them (``crack:2;scratch:1``)."""
    found = Counter(it.categories(placeholder))
    return ";".join(f"{name}:{n}" for name, n in sorted(found.items()))


class CsvWriter(CsvTableWriter):
    """``summary.csv``: the label of every exported image."""

    name = "csv"
    file_name = "summary.csv"
    columns = CSV_COLUMNS
    numbers = ("anomaly_region_pixels", "target_count")

    def __init__(self, out: Path, placeholder: str = TARGET_CATEGORY) -> None:
        super().__init__(out)
        self.placeholder = placeholder

    def add(self, it: LoadedItem) -> None:
        item = it.item
        self.rows.append({
            "path": str(item.source),
            "folder": item.folder,
            "rel_path": item.rel_path,
            "file_name": it.planned.file_name,
            "split": it.planned.split or "",
            "state": item.review_state,
            "class": item.class_name or "",
            "anomaly_verdict": item.anomaly_verdict or "",
            "anomaly_region_pixels": "" if it.anomaly_mask is None else int(it.anomaly_mask.sum()),
            "target_count": "" if it.target_count is None else it.target_count,
            "target_classes": target_classes(it, self.placeholder),
            "reviewer": item.reviewer or "",
            "reviewed_at": item.reviewed_at.isoformat() if item.reviewed_at else "",
            "serial": item.serial or "", "lot": item.lot or "", "station": item.station or "",
            # the bytes the label is about: the table holds no copy of the image, and its import placed a row of one
            # folder on another folder's file of the same name (a session-52 audit)
            "sha256": item.content_hash or "",
        })


TRACE_COLUMNS = ("file_name", "folder", "rel_path", "serial", "lot", "station")


class TraceWriter(CsvTableWriter):
    """``trace.csv``, whatever the formats: each exported file's part serial, lot and station
    (written when at least one exported image has a trace)."""

    name = "trace"
    file_name = "trace.csv"
    columns = TRACE_COLUMNS

    def add(self, it: LoadedItem) -> None:
        item = it.item
        self.rows.append({"file_name": it.planned.file_name, "folder": item.folder, "rel_path": item.rel_path,
                          "serial": item.serial or "", "lot": item.lot or "", "station": item.station or ""})
