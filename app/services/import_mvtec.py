"""Reading MVTec AD trees: ``<category>/{train,test}/good``, ``test/<defect>``, ``ground_truth/<defect>``.

``good`` images are normal (and lose any region); images under ``test/<defect>`` are anomalous with
the defect as their class (the station's export writes ``anomalous`` when an image had no class:
that names none) and ``ground_truth/<defect>/<stem>_mask.png`` as their region. The folder may be a
single category or an export holding several.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from app.services.export_items import ANOMALY_ANOMALOUS, ANOMALY_NORMAL
from app.services.import_records import (
    UNCHANGED,
    ImportRecord,
    LabelImportError,
    exported_class_folders,
    files_under,
    hidden_class_folder,
    inside,
    load_mask,
    posix_rel,
)
from inference.imageio import IMAGE_SUFFIXES

GOOD = "good"


def categories(root: Path) -> list[Path]:
    if (root / "test").is_dir() or (root / "train").is_dir():
        return [root]
    return [d for d in sorted(root.iterdir()) if d.is_dir() and ((d / "test").is_dir() or (d / "train").is_dir())]


def read_category(cat: Path, root: Path, named: dict[str, str] | None = None) -> list[ImportRecord]:
    records = []
    named = named or {}
    for part in ("train", "test"):
        if not (cat / part).is_dir():
            continue
        for kind_dir in sorted(d for d in (cat / part).iterdir() if d.is_dir()):
            if kind_dir.name.startswith("."):
                records += hidden_class_folder(kind_dir, root)
                continue
            kind = kind_dir.name
            if part == "train" and kind != GOOD:
                raise LabelImportError(f"{kind_dir}: MVTec training images must all be good (train/good)")
            for path in files_under(kind_dir, IMAGE_SUFFIXES, root):
                ref = posix_rel(path, root)
                if kind == GOOD:
                    records.append(ImportRecord(label_file=path, image_ref=ref, image_file=path,
                                                anomaly_verdict=ANOMALY_NORMAL, anomaly_mask=None))
                    continue
                gt = cat / "ground_truth" / kind / posix_rel(path.with_name(f"{path.stem}_mask.png"), kind_dir)
                # exists, not is_file: a pipe there read as "no region" (a session-49 audit); read, it is refused
                region: Any = load_mask(inside(root, gt, str(path))) if gt.exists() else None
                records.append(ImportRecord(
                    label_file=gt if gt.exists() else path, image_ref=ref, image_file=path,
                    class_name=UNCHANGED if kind == ANOMALY_ANOMALOUS else named.get(kind, kind),
                    anomaly_verdict=ANOMALY_ANOMALOUS, anomaly_mask=region))
    return records


def read(root: Path) -> list[ImportRecord]:
    named = exported_class_folders(root, "mvtec")   # this station's export: "pit_dent" is "pit/dent"
    records = [r for cat in categories(root) for r in read_category(cat, root, named)]
    if not records:
        raise LabelImportError(f"{root}: no MVTec images (expected <category>/train/good, test/<defect>)")
    return records
