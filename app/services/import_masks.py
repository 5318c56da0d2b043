"""Reading PNG mask folders: ``masks/<stem>.png`` beside ``images/<stem>.<ext>`` (or masks alone).

The station's ``masks`` export and the SIRST-style copies the segmenter trains on. Any non-zero
pixel is target. Without an ``images/`` folder the mask's path minus its suffix names the image,
and the station matches it by stem.
"""
from __future__ import annotations

from pathlib import Path

from app.services.import_records import ImportRecord, LabelImportError, files_under, load_mask, posix_rel
from inference.imageio import IMAGE_SUFFIXES

MASK_SUFFIXES = frozenset({".png", ".bmp", ".tif", ".tiff"})  # lossless only: a JPEG mask is not a label


def layout(root: Path) -> tuple[Path, Path | None]:
    if (root / "masks").is_dir():
        images = root / "images"
        return root / "masks", images if images.is_dir() else None
    return root, None


def read(root: Path) -> list[ImportRecord]:
    mask_dir, image_dir = layout(root)
    images: dict[str, list[Path]] = {}
    if image_dir is not None:
        for path in files_under(image_dir, IMAGE_SUFFIXES, root):
            images.setdefault(posix_rel(path.with_suffix(""), image_dir), []).append(path)
    records = []
    for path in files_under(mask_dir, MASK_SUFFIXES, root):
        stem_ref = posix_rel(path.with_suffix(""), mask_dir)
        found = images.get(stem_ref, [])
        if len(found) > 1:  # x.jpg and x.png beside masks/x.png: the mask went to the first by name, unsaid
            raise LabelImportError(f"{path}: {len(found)} images share its name "
                                   f"({', '.join(p.name for p in found)}); which one it is for cannot be told")
        image = found[0] if found else None
        ref = posix_rel(image, image_dir) if image is not None and image_dir is not None else stem_ref
        records.append(ImportRecord(label_file=path, image_ref=ref, image_file=image, mask=load_mask(path)))
    if not records:
        raise LabelImportError(f"{root}: no mask files (expected masks/<name>.png, or PNG masks in the folder)")
    return records
