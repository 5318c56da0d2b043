"""Reading YOLO segmentation datasets: ``labels/[part/]<stem>.txt`` beside ``images/[part/]<file>``.

Each line is ``<class> x1 y1 x2 y2 …`` in [0, 1]; the image's class is the most frequent one and an
outline of another class keeps it as its own (per-object classes, ADR 0017). The outlines are filled at the matched image's
size the way YOLO loaders do (scale, truncate, fill), which redraws the station's own export pixel
for pixel. An empty label file is a reviewed negative. A detection line (``<class> cx cy w h``)
carries a class but no outline. Class names come from ``data.yaml`` (the two ``names`` forms
Ultralytics writes, read without a YAML library); without it the index itself is the name, to be
mapped with ``--map 0=crack``.
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from app.services.export_split import SPLIT_NAMES
from app.services.import_records import (
    UNCHANGED,
    ImportRecord,
    LabelImportError,
    Polygons,
    files_under,
    no_class_in,
    own_class,
    posix_rel,
    read_text,
    whole_number,
)
from inference.imageio import IMAGE_SUFFIXES

MAPPING_LINE = re.compile(r"^\s+(\d+)\s*:\s*(.+?)\s*$")
LIST_LINE = re.compile(r"^\s*-\s*(.+?)\s*$")
TOLERANCE = 1e-3  # coordinates a hair outside [0, 1] from rounding are clipped, not refused


def scalar(text: str) -> str:
    """A YAML scalar: a quoted one whole (a class "defect #2" lost " #2" to the comment rule: a session-43 probe),
    else up to a comment."""
    text = text.strip()
    if text[:1] == "'":  # YAML's single quotes: '' is one quote, nothing else is escaped
        out, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1:i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(text[i])
            i += 1
        return "".join(out)
    if text[:1] == '"':
        end = text.find('"', 1)
        while end > 0 and text[end - 1] == "\\":  # an escaped quote inside
            end = text.find('"', end + 1)
        quoted = text[:end + 1] if end > 0 else text
        try:
            value = ast.literal_eval(quoted)
        except (ValueError, SyntaxError):
            value = quoted.strip('"')
        return str(value)
    return text.split(" #")[0].strip()


MAX_CLASS_INDEX = 1 << 20  # far above any dataset's classes; Python will not even read an int of 5,000 digits


def class_index(value: int | str, yaml_file: Path) -> int:
    """A class index ``names`` states, refused by name where it is no index a label could use."""
    index = value if isinstance(value, int) else int(value) if len(value) <= 9 else MAX_CLASS_INDEX
    if not 0 <= index < MAX_CLASS_INDEX:
        raise LabelImportError(f"{yaml_file}: class index {str(value)[:20]} in names is not one from 0 to "
                               f"{MAX_CLASS_INDEX - 1}")
    return index


def class_names(yaml_file: Path) -> dict[int, str]:
    """``names`` of a data.yaml: ``{0: a, 1: b}`` from either the mapping or the list form."""
    lines = read_text(yaml_file).splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("names:"):
            continue
        rest = line[len("names:"):].strip()
        # Python's parser on a hostile line: 200,000 signs ("[---…1]") ran it out of memory, a {None: 'x'} key or a
        # 5,000-digit index raised a bare TypeError or ValueError (a session-49 audit); each is refused by name
        if rest.startswith("["):
            try:
                items = ast.literal_eval(rest)
            except (ValueError, SyntaxError):  # unquoted YAML names: [crack, scratch]
                items = [scalar(x) for x in rest.strip("[]").split(",")]
            except (MemoryError, RecursionError):
                raise LabelImportError(f"{yaml_file}: cannot read the names list {rest[:80]!r}") from None
            if not isinstance(items, (list, tuple)):
                raise LabelImportError(f"{yaml_file}: cannot read the names list {rest[:80]!r}")
            return {k: str(v) for k, v in enumerate(items)}
        if rest.startswith("{"):
            try:
                mapping = ast.literal_eval(rest)
                # an index or its digits quoted ({'0': crack}, as a JSON-style dump writes it: the review of this fix)
                if not isinstance(mapping, dict) or not all(whole_number(k) or (isinstance(k, str) and k.isdigit())
                                                            for k in mapping):
                    raise ValueError("its keys must be class indexes")
                return {class_index(k, yaml_file): str(v) for k, v in mapping.items()}
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise LabelImportError(f"{yaml_file}: cannot read the names mapping {rest[:80]!r}") from None
        if rest and not rest.startswith("#"):  # a tag, a reference, a bare word: the indexes stood for the classes
            # without a word (a session-49 audit)
            raise LabelImportError(f"{yaml_file}: cannot read the names line {rest[:80]!r} (expected a list [a, b], "
                                   "a mapping {0: a}, or one '  0: a' or '  - a' line per class below it)")
        names: dict[int, str] = {}
        for nxt in lines[i + 1:]:
            if m := MAPPING_LINE.match(nxt):
                names[class_index(m[1], yaml_file)] = scalar(m[2])
            elif (m := LIST_LINE.match(nxt)) and nxt.startswith((" ", "-")):
                names[len(names)] = scalar(m[1])
            elif nxt.strip() and not nxt.startswith((" ", "\t")):
                break
        return names
    return {}


def listed_names(path: Path) -> dict[int, str]:
    """``classes.txt`` (Label Studio's YOLO export: one name per line, the line number the index); empty when
    absent. Without it a class came in as its index ("1" for "scratch"; a session-45 probe)."""
    if not path.exists():
        return {}
    return {i: name.strip() for i, name in enumerate(read_text(path).splitlines()) if name.strip()}


def parse_label(path: Path, names: dict[int, str], named_in: str = "data.yaml") -> tuple[Any, Polygons | None]:
    classes: Counter[str] = Counter()
    polys = []
    poly_classes: list[str] = []
    boxes: list[tuple[np.ndarray, str]] = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, values = int(fields[0]), np.array([float(v) for v in fields[1:]], dtype=np.float64)
        except ValueError:
            raise LabelImportError(f"{path}, line {n}: expected '<class> x1 y1 x2 y2 …' numbers") from None
        if cls < 0 or (names and cls not in names):
            raise LabelImportError(f"{path}, line {n}: class index {cls} is not in {named_in}'s names")
        if len(values) < 4 or len(values) % 2 or not np.all(np.isfinite(values)) \
                or values.min() < -TOLERANCE or values.max() > 1 + TOLERANCE:
            raise LabelImportError(f"{path}, line {n}: coordinates must be x, y pairs in [0, 1]")
        classes[names.get(cls, str(cls))] += 1
        if len(values) >= 6:
            polys.append(np.clip(values, 0.0, 1.0).reshape(-1, 2))
            poly_classes.append(names.get(cls, str(cls)))
        else:  # a box (centre x, y, width, height): drawn as its rectangle where the file holds outlines too
            boxes.append((values, names.get(cls, str(cls))))
    detection_only = bool(classes) and not polys
    if polys:  # dropped, the image's class named a region its mask did not hold (a session-45 probe)
        for (cx, cy, w, h), name in boxes:
            x0, y0, x1, y1 = (float(np.clip(v, 0.0, 1.0)) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            polys.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64))
            poly_classes.append(name)
    # The export's "target" is "a target on an image without a class": where one stands, the image had none, and its
    # own-classed objects do not give it theirs (it took the most frequent object's class: a session-43 probe).
    no_class = no_class_in(names.values())
    # the most frequent class, the first listed among equals (``Counter`` keeps the order lines came in): this
    # station's export lists an image's plain regions first, so a tie with its own-classed ones keeps the image's class
    class_name = UNCHANGED if not classes or no_class in classes else classes.most_common(1)[0][0]
    own = tuple(own_class(c, class_name, no_class) for c in poly_classes)
    return class_name, None if detection_only else Polygons(tuple(polys), normalised=True, own_classes=own)


def read(root: Path) -> list[ImportRecord]:
    labels_dir, images_dir = root / "labels", root / "images"
    if not labels_dir.is_dir():
        raise LabelImportError(f"{root}: no labels/ folder (expected a YOLO dataset: images/ and labels/)")
    # exists, not is_file: a pipe of that name was passed over and the index stood for the class (a session-49
    # audit); read, it is refused by name
    yaml_file = next((p for p in (root / "data.yaml", root / "dataset.yaml") if p.exists()), None)
    # Label Studio writes classes.txt beside labels/, labelImg inside it (that one was read as a label file and
    # refused the whole import: a session-47 audit)
    names_file = next((p for p in (root / "classes.txt", labels_dir / "classes.txt") if p.exists()), None)
    names = class_names(yaml_file) if yaml_file else listed_names(names_file) if names_file else {}
    images = {}
    if images_dir.is_dir():
        images = {posix_rel(p.with_suffix(""), images_dir): p for p in files_under(images_dir, IMAGE_SUFFIXES, root)}
    records = []
    for path in files_under(labels_dir, {".txt"}, root):
        stem_ref = posix_rel(path.with_suffix(""), labels_dir)
        image = images.get(stem_ref)
        if path == names_file and image is None:
            continue
        ref = posix_rel(image, images_dir) if image is not None else stem_ref
        first, _, rest = ref.partition("/")
        if rest and first in SPLIT_NAMES:
            ref = rest
        class_name, polys = parse_label(path, names, yaml_file.name if yaml_file else "classes.txt")
        records.append(ImportRecord(label_file=path, image_ref=ref, image_file=image, class_name=class_name,
                                    mask=polys if polys is not None else UNCHANGED))
    if not records:
        raise LabelImportError(f"{labels_dir}: no label files")
    return records
