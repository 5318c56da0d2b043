"""Reading an ImageFolder class tree (``[train|val|test/]<class>/<file>``): the folder is the class.

The layout torchvision's ``ImageFolder`` reads and this station's ``imagefolder`` export writes.
The split level is recognised by its names, so a tree exported with ``--split`` imports the same
way as one without.
"""
from __future__ import annotations

from pathlib import Path

from app.services.export_split import SPLIT_NAMES
from app.services.import_records import (
    ImportRecord,
    LabelImportError,
    exported_class_folders,
    files_under,
    hidden_class_folder,
    posix_rel,
)
from inference.imageio import IMAGE_SUFFIXES


def class_roots(root: Path) -> list[Path]:
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if subdirs and all(d.name in SPLIT_NAMES for d in subdirs):
        return subdirs
    return [root]


def read(root: Path) -> list[ImportRecord]:
    records = []
    named = exported_class_folders(root, "imagefolder")   # this station's export: "pit_dent" is "pit/dent"
    for base in class_roots(root):
        for class_dir in sorted(d for d in base.iterdir() if d.is_dir()):
            if class_dir.name.startswith("."):
                records += hidden_class_folder(class_dir, root)
                continue
            for path in files_under(class_dir, IMAGE_SUFFIXES, root):
                records.append(ImportRecord(label_file=path, image_ref=posix_rel(path, class_dir),
                                            image_file=path, class_name=named.get(class_dir.name, class_dir.name)))
    if not records:
        raise LabelImportError(f"{root}: no class folders with images (expected <class>/<image> or "
                               f"train/<class>/<image>)")
    return records
