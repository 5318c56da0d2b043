"""Dataset export: reviewed labels out to the layouts training tools read (Qt-free use case).

The export is written into a hidden sibling folder and renamed into place only when every file
is written, so a failure, a full disk or a cancel never leaves a half-written dataset where a
training run could pick it up; the database is only read. Which images go out and where is a
pure function of the labels (sorted names, hashed split), so two exports of the same labels are
the same dataset.
"""
from __future__ import annotations

import errno
import glob
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from app.services.export_formats import CsvWriter, FormatWriter, ImageFolderWriter, MaskWriter, MvtecWriter, TraceWriter
from app.services.export_instances import CocoWriter, YoloWriter, category_names
from app.services.export_items import (
    ANOMALY_ANOMALOUS,
    ANOMALY_NORMAL,
    EXPORTED_STATES,
    HIDDEN_FOLDER_WHY,
    MAX_FOLDER_BYTES,
    ExportItem,
    ItemSkipped,
    PlannedItem,
    folder_key,
    hidden_folder,
    load,
    no_class_category,
    safe_name,
    unique_file_names,
)
from app.services.export_split import SplitSpec, assign_splits, counts
from app.services.json_files import read_json_object
from app.services.wording import agree, plural
from inference.imageio import ImageReadError, exif_orientation, header_size, read_raw, refusal_before_decoding

if TYPE_CHECKING:
    from database import Database


log = logging.getLogger(__name__)
FORMATS = ("imagefolder", "masks", "coco", "mvtec", "yolo", "csv")
FORMAT_TITLES = {  # for choosers (the GUI's export dialog); details in docs/export.md
    "imagefolder": "ImageFolder: one folder per class",
    "masks": "PNG masks (0/255) with image and split lists",
    "coco": "COCO JSON, RLE instance masks",
    "mvtec": "MVTec AD layout from anomaly verdicts",
    "yolo": "YOLO segmentation polygons",
    "csv": "CSV summary of every exported image",
}
ALL_FORMATS = ("imagefolder", "masks", "coco", "mvtec", "csv")  # 'all': YOLO is asked for by name
MVTEC_DEFAULT_HOLDOUT = SplitSpec(0.8, 0.0, 0.2)  # MVTec needs good test images even without a split
MANIFEST = "export.json"
PARTIAL_OWNER = ".export-owner"   # in the temporary folder until its rename: "host pid" of the export writing it
STALE_PARTIAL_S = 2 * 24 * 3600   # an ownerless temporary folder (an older version's) this old is a killed export's
STAGE_NAME = ".image-being-copied"  # one image's bytes at a time, inside the temporary folder (never in the manifest)
MANIFEST_MAX_BYTES = 256 << 20  # read before an overwrite: a stray file of any size is not loaded whole
WRITTEN_BY = "inspection-review-station export"  # in the manifest: marks a folder --overwrite may replace
SPACE_MARGIN_BYTES = 16 << 20

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class ExportError(Exception):
    """An export that cannot be made, with a reason a person can act on; nothing was written."""


class ClassFolderError(ExportError):
    """Class folders an ImageFolder or MVTec export cannot write (two classes in one folder): what is wrong, how to
    mend the labels, and "or leave the format out", which an export can take and a retraining cannot
    (``problem_and_advice``; a session-49 audit: `retrain classifier` was told to leave imagefolder out)."""

    def __init__(self, problem: str, advice: str, formats: Sequence[str]) -> None:
        self.problem_and_advice = f"{problem}: {advice}"
        super().__init__(f"{self.problem_and_advice}; or leave {' and '.join(formats)} out; nothing was written")


class NothingToExport(ExportError):
    """No reviewed image with a readable file to export: a retraining says it has no training data (it said so of a
    full destination too: a session-51 audit)."""


class ExportCancelled(ExportError):
    """The user cancelled; the partial output was removed."""


@dataclass(frozen=True)
class ExportOptions:
    formats: tuple[str, ...] = ALL_FORMATS
    split: SplitSpec | None = None
    overwrite: bool = False  # replace a previous export (a folder holding export.json) in one swap
    class_order: tuple[str, ...] = ()  # the classifier's classes, in index order (COCO/YOLO ids)


@dataclass(frozen=True)
class ExportResult:
    out: Path
    exported: int
    skipped: tuple[str, ...]
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    split_counts: dict[str, int] | None = None
    held_out_ids: tuple[int, ...] = ()  # the exported images outside the train part (a retraining's held-out ones)
    held_out_files: dict[str, int] = field(default_factory=dict)  # their file names -> image ids
    notes: tuple[str, ...] = ()  # what a reader of the export must know (images an EXIF tag would turn)
    # Of ``notes``, those only for readers outside the station (``FormatWriter.reader_notes``)
    reader_notes: tuple[str, ...] = ()

    @property
    def station_notes(self) -> tuple[str, ...]:
        """The notes that hold for the station's own use of the export too (a retraining's): told apart by the writer
        that made them, not by their text (a retraining matched the ImageFolder numbering note's opening words)."""
        return tuple(n for n in self.notes if n not in self.reader_notes)

    def summary_lines(self) -> list[str]:
        held = {name: info.get("images") for name, info in self.formats.items() if isinstance(info.get("images"), int)}
        if all(n == self.exported for n in held.values()):
            lines = [f"exported {plural(self.exported, 'image')} to {self.out}"]
        else:  # a format holds only the images with what it stores: "exported 39" of a YOLO export holding 14 (a
            # session-48 probe)
            lines = [f"exported {plural(self.exported, 'reviewed image')} to {self.out}; the files hold "
                     + ", ".join(f"{n} in {name}" for name, n in held.items())
                     + " (a format holds only the images with what it stores: a mask, a class, a verdict)"]
        if self.split_counts:
            lines.append("split: " + ", ".join(f"{k} {v}" for k, v in self.split_counts.items()))
        for name, info in self.formats.items():
            lines.append(f"  {name}: " + ", ".join(f"{k.replace('_', ' ')} {_said(v)}" for k, v in info.items()))
        lines += [f"note: {n}" for n in self.notes]
        if self.skipped:
            lines.append(f"skipped {plural(len(self.skipped), 'image')}:")
            lines += [f"  {reason}" for reason in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more (see {MANIFEST})")
        return lines


def _said(value: object) -> str:
    """A summary value as words, not a Python literal (seen in the export dialog: "classes {}")."""
    if isinstance(value, dict):
        return "(" + (", ".join(f"{k} {_said(v)}" for k, v in value.items()) or "none") + ")"
    if isinstance(value, list):  # imagefolder's missing classes per part: "(val [scratch, dent])"
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """'all', 'coco,masks', or an iterable of names -> the canonical, de-duplicated tuple."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise ExportError("no export format given")
    chosen: set[str] = set()
    for n in names:
        if n == "all":
            chosen.update(ALL_FORMATS)
        elif n in FORMATS:
            chosen.add(n)
        else:
            raise ExportError(f"unknown export format {n!r} (choose from {', '.join(FORMATS)} or all)")
    return tuple(f for f in FORMATS if f in chosen)


def plan(items: Sequence[ExportItem], options: ExportOptions,
         notes: list[str] | None = None) -> tuple[list[PlannedItem], dict[str, str]]:
    """Names and split parts for every item, plus the train/test side of MVTec's good images; ``notes`` gets what a
    reader must know of the split."""
    ordered = sorted(items, key=lambda i: (i.folder, i.rel_path, str(i.source)))
    names = unique_file_names(ordered)
    by_name = dict(zip(names, ordered))
    parts: dict[str, str] = {}
    if options.split is not None:
        # a retraining's capture groups are cut over the images its one format writes (a segmenter's masks are not
        # every reviewed image's): cut over all of them, none of its own could be held out (the session-46 review:
        # 10 frames with masks among 20 labelled, none held out, said nowhere). A person's export keeps the cut over
        # every image, so two exports of the same images put each on the same side whatever their formats.
        writes = {n: i for n, i in by_name.items()
                  if options.split.group_rule is None or _written(i, options.formats)}
        strata = {n: stratum(i) for n, i in writes.items()}
        rank = {n: i.rel_path for n, i in writes.items()}
        # copies of one image (the same bytes under two names, hard links) go to one part, a person's export too: cut
        # image by image, 6 of 12 copied images had their copies on both sides of a split (a session-48 probe)
        captured = capture_groups(strata, options.split.group_rule)
        groups = same_bytes_together(captured, {n: i.content_hash for n, i in writes.items()})
        parts = assign_splits(rank, strata, options.split, groups)
        held = [part for part in options.split.used if part != "train"]
        if groups is not None and held and not any(parts[n] in held for n in parts) and len(parts) >= len(
                options.split.used):
            # whole groups could hold none out (too few of them, or each holds a class training would otherwise
            # lack: one defect per capture session): cut image by image rather than hold nothing out (the session-46
            # review), and said
            # (copies of one image stay together still: the review of that fallback)
            rule = options.split.group_rule
            if captured is None:   # no capture groups (no rule, or it found none): only copies
                # were joined, and that held nothing out: the plain cut, said so (the capture-group note was said of
                # the "none" rule too: the review of a session-48 fix)
                parts = assign_splits(rank, strata, options.split)
                if notes is not None:
                    notes.append(f"copies of one image (the same bytes under other names) are in the train and "
                                 f"{' and '.join(held)} parts: kept together, none of the {len(parts)} images could "
                                 "be held out")
            else:
                parts = assign_splits(rank, strata, options.split,
                                      same_bytes_together(None, {n: i.content_hash for n, i in writes.items()}))
                if notes is not None:
                    notes.append(f"the {' and '.join(held)} part is {IMAGE_BY_IMAGE}: whole capture groups "
                                 f"({len(set(groups.values()))} by the {rule} rule) could hold none "
                                 "out (too few of them, or each holds a class the training part would lack without it), "
                                 "so its figures are those of sessions the training part also saw")
        parts |= assign_splits({n: i.rel_path for n, i in by_name.items() if n not in writes},
                               {n: stratum(i) for n, i in by_name.items() if n not in writes}, options.split)
    planned = [PlannedItem(item, parts.get(name), name) for name, item in by_name.items()]
    normal = {p.file_name: p.item for p in planned if p.item.anomaly_verdict == ANOMALY_NORMAL}
    if options.split is not None:
        mvtec_parts = {n: parts[n] for n in normal}
    else:
        mvtec_parts = assign_splits({n: i.rel_path for n, i in normal.items()},
                                    {n: i.folder for n, i in normal.items()}, MVTEC_DEFAULT_HOLDOUT)
    return planned, mvtec_parts


IMAGE_BY_IMAGE = "cut image by image"  # said where capture groups would have held nothing out


def _written(item: ExportItem, formats: Sequence[str]) -> bool:
    """Whether an export of these formats writes ``item``: the one format of a retraining writes only its family's
    labels (a class for ImageFolder, a mask for the masks); several formats write every item somewhere."""
    if tuple(formats) == ("masks",):
        return item.mask_png is not None
    if tuple(formats) == ("imagefolder",):
        return bool(item.class_name)
    return True


def same_bytes_together(groups: Mapping[str, str] | None, hashes: Mapping[str, str | None]) -> dict[str, str] | None:
    """``groups`` (None: each image its own) with the groups of images holding the same bytes joined: a copy of a
    training image in the held-out part scored the new version on what it learnt (a session-46 probe: NEU's identical
    pair patches_101 and patches_105, one on each side). None when nothing is to be joined and there were none."""
    by_hash: dict[str, list[str]] = {}
    for name, digest in hashes.items():
        if digest:
            by_hash.setdefault(digest, []).append(name)
    copies = [names for names in by_hash.values() if len(names) > 1]
    if not copies:
        return None if groups is None else dict(groups)
    out = {n: (groups[n] if groups is not None else f"image:{n}") for n in hashes}
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.get(g, g) != g:
            g = parent[g]
        return g
    for names in copies:
        first = find(out[names[0]])
        for n in names[1:]:
            other = find(out[n])
            if other != first:
                parent[max(first, other)] = min(first, other)
                first = min(first, other)
    return {n: find(g) for n, g in out.items()}


def capture_groups(strata: Mapping[str, str], rule: str | None) -> dict[str, str] | None:
    """The capture group of each exported file name under ``rule`` (the retrain command's ``--groups``: the
    one rule of ``inference.training.groups``, so the held-out part and the cross-validation inside the
    training part keep the same sessions together); None: no rule, or it finds no usable groups (then images
    are cut one by one, as the cross-validation's ``none``)."""
    if rule is None or rule == "none":
        return None
    from inference.training.groups import assign_groups

    names = list(strata)
    found, made_by = assign_groups(names, [strata[n].removeprefix("class:") for n in names], rule)
    return None if made_by == "none" else dict(zip(names, found))


def stratum(item: ExportItem) -> str:
    if item.class_name:
        return f"class:{item.class_name}"
    if item.anomaly_verdict:
        return f"verdict:{item.anomaly_verdict}"
    return ""


def make_writers(tmp: Path, options: ExportOptions, planned: Sequence[PlannedItem],
                 mvtec_parts: dict[str, str]) -> list[FormatWriter]:
    parts = options.split.used if options.split else ()
    masked = [p.item for p in planned if p.item.mask_png]
    named = [*(i.class_name for i in masked), *(o.class_name for i in masked for o in i.objects)]
    placeholder = no_class_category([*options.class_order, *named])
    categories = category_names(options.class_order, named, placeholder)
    factories: dict[str, Callable[[], FormatWriter]] = {
        "imagefolder": lambda: ImageFolderWriter(tmp),
        "masks": lambda: MaskWriter(tmp, parts),
        "coco": lambda: CocoWriter(tmp, categories, placeholder),
        "mvtec": lambda: MvtecWriter(tmp, mvtec_parts),
        "yolo": lambda: YoloWriter(tmp, categories, parts, placeholder),
        "csv": lambda: CsvWriter(tmp, placeholder),
    }
    writers = [factories[f]() for f in options.formats]
    if any(p.item.trace for p in planned):
        writers.append(TraceWriter(tmp))
    return writers


def estimated_bytes(planned: Sequence[PlannedItem], formats: Sequence[str]) -> int:
    """Image bytes the chosen formats will copy (masks and JSON are small next to them)."""
    total = 0
    for p in planned:
        size = p.item.source.stat().st_size
        copies = sum((
            "imagefolder" in formats and bool(p.item.class_name),
            "mvtec" in formats and bool(p.item.anomaly_verdict),
            sum(f in formats for f in ("masks", "coco", "yolo")) * (p.item.mask_png is not None),
        ))
        total += size * copies + len(p.item.mask_png or b"") + len(p.item.anomaly_mask_png or b"")
    return total


def os_error_message(exc: OSError, out: Path) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"the destination is full: no space left to write the export to {out}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {out}: the destination is read-only or not writable ({exc.strerror})"
    where = f" ({exc.filename})" if exc.filename else ""
    return f"cannot write the export to {out}: {exc.strerror or exc}{where}"


def check_destination(out: Path, overwrite: bool, indexed_roots: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Refuse a destination an export could damage, before anything is written.

    An output inside an indexed folder would be indexed back as new images, and ``overwrite``
    replaces the whole folder: it is allowed only for a folder this station exported before, in
    which every file is one its manifest lists, so source images (or anything a person put
    there) are never deleted, even next to a stray ``export.json``.
    """
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    real_out = out.resolve()
    for root in indexed_roots:
        real_root = Path(root).expanduser().resolve()
        if real_out == real_root or real_out.is_relative_to(real_root):
            raise ExportError(f"{out} is inside the indexed folder {root}: the exported copies would be indexed "
                              "as new images; choose a folder outside every indexed folder")
        if real_root.is_relative_to(real_out):  # replacing it would delete that folder's images (a session-44 probe:
            # an earlier export's imagefolder/ opened and labelled in the station, then the export replaced)
            raise ExportError(f"{out} holds the indexed folder {root}: an export there would replace or mix with its "
                              "images; choose a folder outside every indexed folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} is not empty: choose a new or empty folder (or overwrite a previous export)")
        refusal = not_a_previous_export(out)
        if refusal:
            raise ExportError(f"{out} is not empty and {refusal}: only a previous export is overwritten "
                              f"(one this station wrote, every file listed in its {MANIFEST}); nothing was changed")


def not_a_previous_export(out: Path) -> str | None:
    """Why ``out`` is not a previous export of this station (None when it is one, whole)."""
    if not (out / MANIFEST).is_file():
        return f"holds no {MANIFEST}"
    if (out / MANIFEST).stat().st_size > MANIFEST_MAX_BYTES:
        return f"its {MANIFEST} is larger than any manifest this station writes"
    try:
        manifest = read_json_object(out / MANIFEST)
    except (OSError, ValueError) as exc:
        return f"its {MANIFEST} cannot be read ({exc})"
    listed = manifest.get("files")
    if manifest.get("written_by") != WRITTEN_BY or not isinstance(listed, list):
        return f"its {MANIFEST} was not written by this station (or by a version that did not list its files)"
    unlisted = sorted(set(files_under(out)) - {MANIFEST} - {str(f) for f in listed})
    if unlisted:
        more = f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
        return f"holds files the export did not write ({', '.join(unlisted[:3])}{more})"
    return None


def files_under(folder: Path) -> list[str]:
    """Every file and link below ``folder`` as a '/'-separated relative path (links not followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(dirpath)
        links = [d for d in dirnames if (base / d).is_symlink()]  # a linked folder counts as an entry
        found += [(base / name).relative_to(folder).as_posix() for name in (*filenames, *links)]
    return sorted(found)


def make_temp_dir(out: Path) -> Path:
    """The folder an export is written into before it is renamed onto ``out``, with the permissions a folder made
    by ``mkdir`` gets (``mkdtemp`` makes it 0700: a session-44 probe found every export folder readable by its
    owner alone, so a training service or a colleague on the share could not read the dataset)."""
    from app.services.child_command import owner_tag
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        sweep_dead_partials(out)
        while True:  # os.mkdir honours the umask; changing the process's umask would race the other threads
            tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.partial"
            try:
                tmp.mkdir()
            except FileExistsError:
                continue
            (tmp / PARTIAL_OWNER).write_text(owner_tag(), encoding="utf-8")
            return tmp
    except OSError as exc:
        raise ExportError(os_error_message(exc, out.parent)) from None


def sweep_dead_partials(out: Path) -> list[Path]:
    """Remove the hidden folders that exports into ``out`` killed with SIGKILL (or a power cut) left beside it: the
    copies stayed for good, and their space then refused the next export as "the destination is full" without a
    word about them (a session-49 audit). A living export's folder, another machine's and one with no owner file
    younger than ``STALE_PARTIAL_S`` are left alone. Returns what was removed."""
    from app.services.child_command import abandoned
    removed = []
    for partial in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
        if not partial.is_dir() or partial.is_symlink():
            continue
        if abandoned(partial, PARTIAL_OWNER, STALE_PARTIAL_S):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    if removed:
        log.info("removed %d folder(s) a killed export into %s left: %s", len(removed), out,
                 ", ".join(p.name for p in removed))
    return removed


def move_into_place(tmp: Path, out: Path, overwrite: bool = False,
                    indexed_roots: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Rename the finished export onto ``out``; a replaced export is deleted only once the new one is there.

    ``out`` is looked at again here, not only before the copies: whatever reached it while they were written (a file
    a person saved there, another export into the same new folder) was moved aside and deleted, also without
    ``overwrite`` (a session-49 audit). Without ``overwrite`` the rename itself refuses a folder that is no longer
    empty (POSIX renames a folder only onto an empty one), so nothing can slip in between a check and the rename."""
    (tmp / PARTIAL_OWNER).unlink(missing_ok=True)
    if not overwrite or not (out.is_dir() and any(out.iterdir())):
        try:
            os.rename(tmp, out)
        except OSError:
            if out.is_dir() and not any(out.iterdir()):  # Windows renames nothing onto a folder, even an empty one
                out.rmdir()
                os.rename(tmp, out)
                return
            if out.exists():
                raise ExportError(f"{out} was written to during the export and is not empty now: nothing was "
                                  "changed there; choose a new or empty folder") from None
            raise
        return
    check_destination(out, overwrite, indexed_roots)  # still only a previous export, whole
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / "previous")
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old / "previous", out)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_database(db: Database, out: str | os.PathLike[str], options: ExportOptions = ExportOptions(),
                    folder: str | int | None = None, progress: ProgressFn | None = None,
                    cancel: CancelFn | None = None, within: AbstractSet[int] | None = None) -> ExportResult:
    """Export the current labels of reviewed images (of one folder: id, path or name; or all;
    ``within``: only these images)."""
    from app.services.export_source import FolderNotFound, class_order, items_from_database, resolve_folder
    from database import DatabaseError

    try:
        chosen = resolve_folder(db, folder)
        items, skipped = items_from_database(db, chosen.id if chosen else None, within)
        indexed_roots = [f.root_path for f in db.folders.list()]
        if not options.class_order:
            options = replace(options, class_order=class_order(db))
    except FolderNotFound as exc:
        raise ExportError(str(exc)) from None
    except DatabaseError as exc:
        raise ExportError(f"cannot read the labels: {exc}") from exc
    return export_items(items, out, options, progress, cancel, skipped=skipped, indexed_roots=indexed_roots)


def readable_file(path: Path) -> bool:
    """A regular file this process may read. ``Path.is_file`` raised on a folder that cannot be entered (EACCES): an
    export whose labelled images included one there ended in a traceback (a session-48 probe)."""
    try:
        return path.is_file() and os.access(path, os.R_OK)
    except OSError:
        return False


STAGE_CHUNK = 1 << 20


def stage_source(item: ExportItem, stage: Path) -> None:
    """Copy the image's bytes into ``stage`` (inside the export's temporary folder) before any writer takes them: a
    file gone or unreadable by then is that image skipped, with its reason, not the whole export failed as a fault of
    the destination (a session-48 probe deleted one file mid-export: "cannot write the export to …"), and no format
    holds the image while another lacks it. An error writing ``stage`` is the destination's and is raised as is."""
    try:
        src = open(item.source, "rb")
    except OSError as exc:
        raise ItemSkipped(f"{item.display_path}: image file missing or unreadable ({exc.strerror or exc})") from None
    with src, open(stage, "wb") as dst:
        while True:
            try:
                chunk = src.read(STAGE_CHUNK)
            except OSError as exc:
                raise ItemSkipped(f"{item.display_path}: the image file could not be read "
                                  f"({exc.strerror or exc})") from None
            if not chunk:
                break
            dst.write(chunk)


def changed_since_indexed(item: ExportItem) -> bool:
    """True when the file holds other bytes than the ones indexed (its size differs, or its hash where its time
    moved; an unchanged size and time are trusted, as the indexer trusts them, so an export reads each file once). Found by a session-43 probe: a labelled 32 x 24 image replaced by a 64 x 48 frame was exported, not
    yet re-indexed, with its old 32 x 24 mask and COCO size, and nothing said so."""
    if item.size_bytes is None:
        return False
    try:
        st = item.source.stat()
    except OSError:
        return False  # unreadable: the copy says so
    if st.st_size != item.size_bytes:
        return True
    if item.content_hash is None or st.st_mtime_ns == item.mtime_ns:
        return False
    from app.services.file_scan import hash_file
    try:
        return hash_file(item.source) != item.content_hash
    except OSError:
        return False


def unreadable_image(item: ExportItem) -> str | None:
    """Why the station cannot read the image (``read_raw``'s reason), or None. A session-52 audit: an empty file, a
    truncated PNG and a 20000 x 20000 one, labelled in the window, were exported as good data (imagefolder/free/zero.png,
    0 bytes, and rows in summary.csv), the export checking only that the file could be opened. What ``read_raw``
    checks before decoding is checked first (``refusal_before_decoding``: a PNG's chunks too, since the export reads
    the file to copy it anyway; a later audit saw a truncated PNG and a 12000 x 12000 16-bit RGBA one pass the header
    check alone); a file whose header gives a size and with no error stored (``read_error``: the pre-labelling's, a
    file it could not read or a model that failed on it) is then taken as readable without decoding it; any other is
    decoded."""
    if (reason := refusal_before_decoding(item.source, chunks=True)) is not None:
        return reason
    if item.read_error is None and header_size(item.source) != (0, 0):
        return None
    try:
        read_raw(item.source)
    except ImageReadError as exc:
        return exc.reason
    return None


def export_items(items: Sequence[ExportItem], out: str | os.PathLike[str], options: ExportOptions = ExportOptions(),
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                 skipped: Sequence[str] = (), indexed_roots: Sequence[str | os.PathLike[str]] = ()) -> ExportResult:
    """Write every exportable item to ``out`` in the chosen formats; see docs/export.md.

    ``skipped`` carries reasons found before (images the database knows are missing) into the
    result and the manifest; ``out`` may not lie inside any of ``indexed_roots``.
    """
    out = Path(out).expanduser().absolute()
    if not options.formats:
        raise ExportError("no export format chosen")
    skipped = list(skipped)
    usable = []
    for item in items:
        if item.review_state not in EXPORTED_STATES:
            continue
        if not readable_file(item.source):
            skipped.append(f"{item.display_path}: image file missing or unreadable ({item.source})")
            continue
        if changed_since_indexed(item):
            skipped.append(f"{item.display_path}: the file changed on disk since it was indexed, so its label was "
                           "given for other pixels (open its folder in the station to index it again)")
            continue
        if (reason := unreadable_image(item)) is not None:
            skipped.append(f"{item.display_path}: {reason}")
            continue
        usable.append(item)
    if not usable:
        raise NothingToExport("nothing to export: no accepted or corrected image with a readable file"
                          + (f" ({len(skipped)} skipped)" if skipped else ""))
    check_destination(out, options.overwrite, indexed_roots)
    check_class_folders(usable, options.formats, options.class_order)
    split_notes: list[str] = []
    planned, mvtec_parts = plan(usable, options, split_notes)
    need = estimated_bytes(planned, options.formats) + SPACE_MARGIN_BYTES
    free = shutil.disk_usage(next(p for p in (out, *out.parents) if p.exists())).free
    if need > free:
        raise ExportError(f"the destination is full: the export needs about {need / 2**20:.0f} MiB "
                          f"and {out.parent} has {free / 2**20:.0f} MiB free")

    tmp = make_temp_dir(out)
    try:
        result = write_all(tmp, out, planned, mvtec_parts, options, skipped, progress, cancel, split_notes)
        move_into_place(tmp, out, options.overwrite, indexed_roots)
        return result
    except OSError as exc:
        raise ExportError(os_error_message(exc, out)) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_class_folders(items: Iterable[ExportItem], formats: Sequence[str], offered: Sequence[str] = ()) -> None:
    """Formats whose folders are class names (ImageFolder, MVTec's defect types) need one folder per class: two
    classes whose names give the same folder ("pit/dent" and "pit_dent") were written into one, the summary still
    counting them apart, and a reader saw one class (a session-45 probe); a class too long to name a folder failed
    half-way. Refused before anything is written, saying how to move the labels (``offered``: the classes on the
    keys, the one to keep)."""
    used = [f for f in formats if f in ("imagefolder", "mvtec")]
    if not used:
        return
    by_folder: dict[str, Counter[str]] = {}
    for item in items:
        if not item.class_name:
            continue
        if hidden_folder(item.class_name):
            raise ClassFolderError(f"the class {item.class_name[:40]!r} starts with a dot, and {' and '.join(used)} name "
                                   f"a folder by each class: {HIDDEN_FOLDER_WHY}", "give its labels another name: "
                                   + relabel_advice((item.class_name,), None, offered, "whose name starts with no dot"),
                                   used)
        size = len(safe_name(item.class_name).encode("utf-8"))
        if size > MAX_FOLDER_BYTES:  # a session-49 audit: "File name too long" half-way through the export, or the
            # retraining
            raise ClassFolderError(f"the class {item.class_name[:40]!r}… is {size} bytes long in UTF-8, more than the "
                                   f"{MAX_FOLDER_BYTES} a folder name holds, and {' and '.join(used)} name a folder by "
                                   "each class", "give its labels a shorter name: "
                                   + relabel_advice((item.class_name,), None, offered), used)
        # folders differing only by case or by the spelling of an accent are one folder on Windows and macOS (a
        # session-46 probe: "patches" and "Patches" after a rename by case)
        by_folder.setdefault(folder_key(item.class_name), Counter())[item.class_name] += 1
    clashes = {folder: names for folder, names in by_folder.items() if len(names) > 1}
    if clashes:
        _key, names = sorted(clashes.items())[0]
        folders = sorted({safe_name(n) for n in names})
        where = (f"the folder {folders[0]!r}" if len(folders) == 1 else
                 f"one folder on Windows and macOS ({' and '.join(map(repr, folders))} differ only by case or accent "
                 "spelling)")
        listed = " and ".join(f"{n!r} ({c} image{'s' if c != 1 else ''})" for n, c in sorted(names.items()))
        raise ClassFolderError(f"the classes {listed} would share {where} in {' and '.join(used)}",
                               one_name_advice(names, offered), used)


def one_name_advice(labelled: Counter[str], offered: Sequence[str]) -> str:
    """How an inspector moves the labels of classes that share a folder onto one of them: the one a class key offers,
    else the most used. Saving the class list again changes no label (a session-49 audit: following "rename one
    (Project ▸ Classes…)" left both spellings on the labels, and the export was refused again and again)."""
    keep = next((n for n in offered if n in labelled), None) or min(labelled, key=lambda n: (-labelled[n], n))
    return "give their labels one name: " + relabel_advice(sorted(n for n in labelled if n != keep), keep, offered)


def relabel_advice(move: Sequence[str], onto: str | None, offered: Sequence[str], new: str = "of a shorter name") -> str:
    """The window's way to move the labels of the classes ``move`` onto ``onto`` (None: a class ``new`` describes,
    added)."""
    names = " and ".join(repr(n if len(n) <= 40 else n[:40] + "…") for n in move)
    target = (f"a class {new} (add one on Project ▸ Classes…)" if onto is None else
              repr(onto) + ("" if onto in offered else " (add it on Project ▸ Classes… if no key offers it)"))
    return (f"in the review window filter each folder's queue by class {names} (the filter also shows images only "
            f"predicted so), select the images labelled so and press the class key of {target}")


def write_all(tmp: Path, out: Path, planned: Sequence[PlannedItem], mvtec_parts: dict[str, str],
              options: ExportOptions, skipped: list[str], progress: ProgressFn | None,
              cancel: CancelFn | None, plan_notes: Sequence[str] = ()) -> ExportResult:
    writers = make_writers(tmp, options, planned, mvtec_parts)
    total = len(planned)
    if progress:
        progress(0, total)
    exported: list[PlannedItem] = []
    stage = tmp / STAGE_NAME
    for done, p in enumerate(planned, start=1):
        if cancel is not None and cancel():
            raise ExportCancelled("export cancelled; nothing was written")
        try:
            loaded = load(p)
            stage_source(p.item, stage)
        except ItemSkipped as exc:
            skipped.append(str(exc))
        else:
            for w in writers:
                w.add(replace(loaded, staged=stage))
            exported.append(p)
        if progress:
            progress(done, total)
    stage.unlink(missing_ok=True)
    if not exported:
        raise NothingToExport("nothing to export: every image was skipped (" + "; ".join(skipped[:3]) + ")")
    per_format = {w.name: w.finish() for w in writers}
    split_counts = counts(p.split for p in exported if p.split is not None) if options.split else None
    notes = [*plan_notes, *turned_notes(exported), *(n for w in writers for n in (*w.notes, *w.reader_notes))]
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "formats": list(options.formats),
        "split": None if options.split is None else {**options.split.fractions, "seed": options.split.seed},
        "split_counts": split_counts,
        "exported": len(exported),
        "per_format": per_format,
        "skipped": skipped,
        "notes": notes,
        "written_by": WRITTEN_BY,
        "files": [f for f in files_under(tmp) if f != PARTIAL_OWNER],  # what a later --overwrite may delete, and nothing else
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    held = tuple(p.item.image_id for p in exported
                 if p.split is not None and p.split != "train" and p.item.image_id is not None)
    if options.split is None and "mvtec" in options.formats:  # MVTec's own test side: its good images held out, and
        # every anomalous one (an anomaly retraining is compared on them; they went unnamed, a session-43 probe)
        held = tuple(p.item.image_id for p in exported if p.item.image_id is not None and (
            p.item.anomaly_verdict == ANOMALY_ANOMALOUS
            or (p.item.anomaly_verdict == ANOMALY_NORMAL and mvtec_parts.get(p.file_name, "train") != "train")))
    held_set = set(held)
    files = {p.file_name: p.item.image_id for p in exported if p.item.image_id in held_set}
    return ExportResult(out, len(exported), tuple(skipped), per_format, split_counts, held, files, tuple(notes),
                        tuple(n for w in writers for n in w.reader_notes))


def turned_notes(exported: Sequence[PlannedItem]) -> list[str]:
    """A note for the JPEGs (EXIF) and TIFFs whose orientation tag asks readers to turn them: the station, its models
    and their labels use the pixels as stored, and the export copies the bytes, so a reader that honours the tag
    (OpenCV's default, PIL's exif_transpose) sees the image turned against its mask (a session-43 probe; TIFFs: 47)."""
    turned = [p.item.display_path for p in exported  # read from the bytes: a JPEG named .png turns as well
              if exif_orientation(p.item.source) not in (None, 1)]
    if not turned:
        return []
    return [f"{plural(len(turned), 'image')} {agree(len(turned), 'carries', 'carry')} an orientation tag (JPEG EXIF, TIFF) that the station ignores (labels are "
            f"on the pixels as stored); read them without turning them by it (JPEG: cv2.IMREAD_IGNORE_ORIENTATION), "
            f"e.g. {', '.join(turned[:3])}"]
