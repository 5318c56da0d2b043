"""Label import: datasets other tools (or this station) wrote, into label revisions (Qt-free use case).

Two steps, so a person sees what will change before anything does: ``preview_import`` reads the
dataset (one reader module per format), matches every record to an indexed image and says per
image what the import would do; ``apply_import`` writes the planned revisions in ONE transaction,
so a failed import writes nothing. Imported labels are ordinary revisions (history kept, undo
works) whose note says where they came from; a human label newer than the imported one is left
alone unless the caller asks, and a label saved between preview and import stops the import.
"""
from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from app.services.counting_versions import rule_version
from app.services.export import FORMATS
from app.services.export_items import HIDDEN_FOLDER_WHY, folder_key, hidden_folder
from app.services.export_source import (
    FolderNotFound,
    confirms_prediction_only,
    prediction_label,
    resolve_folder,
)
from app.services.import_detect import export_formats
from app.services.import_match import ImageMatcher, Target
from app.services.import_records import ImportRecord, LabelImportError, Mask, Polygons
from app.services.object_classes import MAX_OBJECTS, as_json
from app.services.project_classes import TASK as CLASSIFIER_TASK
from app.services.project_classes import counting_version, line_of, offered, routed_classes, version_classes
from app.services.project_classes import read as read_class_list
from app.services.project_settings import readable_routing
from app.services.wording import agree, plural
from database.dto import UNCHANGED, ImageQuery, LabelChange, LabelRevisionInfo
from database.states import ReviewState
from inference.imageio import ImageReadError, exif_orientation, read_raw, stored_size

if TYPE_CHECKING:
    from database import Database
    from database.dto import ModelVersionInfo

IMPORT_FORMATS = (*FORMATS, "labelme")
FORMAT_TITLES = {
    "imagefolder": "ImageFolder class tree (<class>/<image>)",
    "masks": "PNG mask folder (masks/ beside images/)",
    "coco": "COCO JSON (polygons or RLE)",
    "mvtec": "MVTec AD (train/good, test/<defect>, ground_truth/)",
    "yolo": "YOLO segmentation (images/, labels/, data.yaml)",
    "csv": "CSV table (this station's summary.csv)",
    "labelme": "labelme JSON files",
}
READERS = {name: f"app.services.import_{name}" for name in IMPORT_FORMATS}
IMPORTED_NOTE = "imported from "
DEFAULT_STATE = ReviewState.CORRECTED  # a label a person made elsewhere, not a confirmed prediction

NEW, OVERWRITE, OVERWRITE_NEWER, SKIPPED_NEWER, UNCHANGED_LABEL = (
    "new", "overwrite", "overwrite newer", "skipped (newer label here)", "unchanged")
WRITTEN = (NEW, OVERWRITE, OVERWRITE_NEWER)

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ImportOptions:
    format: str
    folder: str | int | None = None  # match only images of this indexed folder (id, path or name)
    class_map: Mapping[str, str] = field(default_factory=dict)  # dataset class -> station class
    overwrite_newer: bool = False  # replace human labels saved after the imported one was made
    author: str = "import"


@dataclass(frozen=True)
class PlannedLabel:
    """What the import does to one image (plain data: the GUI shows these)."""

    image_id: int
    image: str  # folder/rel_path
    label_file: str
    action: str
    class_before: str | None
    class_after: str | None
    change: LabelChange
    expected_revision: int  # the current revision seen by the preview (0: none)


@dataclass(frozen=True)
class ImportPreview:
    format: str
    source: Path
    records: int
    planned: tuple[PlannedLabel, ...]
    unmatched: tuple[str, ...]  # dataset image paths no indexed image matched
    per_class: dict[str, int]  # station class (after mapping) -> matched images
    class_map: dict[str, str]  # every dataset class seen -> the station class it becomes
    errors: tuple[str, ...]  # reasons the import is refused (unknown classes, masks of the wrong size)
    # Station classes (after mapping) the station offers not on the images they were given to, and no classifier
    # version the routing names has either: what "add them" (to the project's list, ``app.services.project_classes``)
    # would add. A routed version's class is left out: the list's classes are offered on every line, so adding it
    # put the tile classes on every steel image's keys (a session-50 audit). Empty when the project keeps no list.
    unknown_classes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what the person importing must know (masks on images an EXIF tag turns)
    # Classifier version -> its classes, for each routed version (not the active one) whose classes the station offers
    # on the matched images (``Planner.routed_offers``): valid mapping targets the project's list does not name.
    routed_offers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(p.action for p in self.planned)
        return {"records": self.records, "matched": len(self.planned), "unmatched": len(self.unmatched),
                "new": found[NEW], "would_overwrite": found[OVERWRITE] + found[OVERWRITE_NEWER],
                "skipped_newer": found[SKIPPED_NEWER], "unchanged": found[UNCHANGED_LABEL]}

    @property
    def writes(self) -> list[PlannedLabel]:
        return [p for p in self.planned if p.action in WRITTEN]

    def summary_lines(self, limit: int = 20) -> list[str]:
        c = self.counts
        lines = [f"{self.format} labels in {self.source}: {plural(c['records'], 'record')}, {c['matched']} matched, "
                 f"{c['unmatched']} unmatched",
                 f"  new {c['new']}, would overwrite {c['would_overwrite']}, skipped (newer label here) "
                 f"{c['skipped_newer']}, unchanged {c['unchanged']}"]
        if self.per_class:
            lines.append("  per class: " + ", ".join(f"{k} {v}" for k, v in sorted(self.per_class.items())))
        renamed = {k: v for k, v in self.class_map.items() if k != v}
        if renamed:
            lines.append("  class mapping: " + ", ".join(f"{k} -> {v}" for k, v in sorted(renamed.items())))
        lines += [f"  note: {n}" for n in self.notes]
        for title, rows in (("unmatched", self.unmatched), ("error", self.errors)):
            lines += [f"  {title}: {r}" for r in rows[:limit]]
            if len(rows) > limit:
                lines.append(f"  ... and {len(rows) - limit} more {title}")
        return lines


@dataclass(frozen=True)
class ImportResult:
    preview: ImportPreview
    written: int

    def summary_lines(self) -> list[str]:
        return [*self.preview.summary_lines(), f"imported {plural(self.written, 'label')}"]


def parse_class_map(pairs: Iterable[str]) -> dict[str, str]:
    """``["old=new", ...]`` (``--map``) -> {old: new}."""
    out: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise LabelImportError(f"class mapping {pair!r} must look like OLD=NEW")
        out[old.strip()] = new.strip()
    return out


def format_root(source: Path, fmt: str) -> Path:
    """The dataset itself, or the format's folder inside an export holding several formats."""
    sub = source / fmt
    if fmt == "masks":  # an export's masks/ holds masks/ and images/; a dataset's masks/ sits beside its images/
        return sub if (sub / "masks").is_dir() else source
    return sub if fmt not in ("csv", "labelme") and sub.is_dir() else source


def read_records(source: str | Path, fmt: str) -> list[ImportRecord]:
    if fmt not in READERS:
        raise LabelImportError(f"unknown import format {fmt!r} (choose from {', '.join(IMPORT_FORMATS)})")
    path = Path(source).expanduser().absolute()
    if not path.exists():
        raise LabelImportError(f"{path}: not found")
    if not path.is_dir() and fmt not in ("csv", "coco"):
        raise LabelImportError(f"{path}: the {fmt} format is read from a folder")
    exported = export_formats(path) if path.is_dir() else None
    if exported is not None and fmt not in exported:  # seen: ImageFolder read an export's coco/ as a class
        raise LabelImportError(f"{path} is an export holding {', '.join(exported) or 'no format'}, not {fmt}: "
                               "choose one of those")
    try:
        records: list[ImportRecord] = importlib.import_module(READERS[fmt]).read(format_root(path, fmt))
        return records
    except OSError as exc:
        raise LabelImportError(f"cannot read {exc.filename or path}: {exc.strerror or exc}") from None
    except (TypeError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        # A value no reader's check foresaw (each known one is refused where it is read, with its file): a bare
        # TypeError in the window, a traceback from the command (a session-49 audit); said as the dataset's fault.
        raise LabelImportError(f"{path}: unreadable ({type(exc).__name__}{f': {exc}' if str(exc) else ''}); "
                               "nothing was imported") from None


def utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


OfferKey = tuple[bool, Any, Any]  # (the rule runs a classifier, answering version id | folder id, named version | line)


class Planner:
    """Turns matched records into planned revisions; collects every refusal instead of stopping."""

    def __init__(self, db: Database, options: ImportOptions) -> None:
        self.db, self.options = db, options
        # The project's own list ([]: none, and every class is accepted). Where it has one, a class is known where the
        # station offers it on the image its record matched (``project_classes.offered``, as the label panel's keys).
        self.own = list(db.classes.names(CLASSIFIER_TASK))
        self.routing = readable_routing(db)
        self.answered: dict[int, int] = {}  # image id -> the classifier version whose answer counts there
        self.offers: dict[OfferKey, tuple[str, ...]] = {}
        self.keys: dict[int, OfferKey] = {}  # image id -> where it stands for its classes (``offer``)
        self.versions: dict[int, ModelVersionInfo | None] = {}
        self.errors: list[str] = []
        self.turned: list[str] = []  # images given a mask whose file an EXIF orientation tag asks readers to turn
        self.unknown: set[str] = set()
        self.unknown_mapped: set[str] = set()
        self.unknown_at: dict[OfferKey, set[str]] = {}  # where ``offers[key]`` stands -> lines (lot/tiles/) given others
        self.hidden: set[str] = set()  # dataset classes (mapped) whose class folder would be hidden (``hidden_folder``)
        self.class_map: dict[str, str] = {}
        self.file_times: dict[Path, datetime] = {}

    def read_answers(self, image_ids: Sequence[int]) -> None:
        """The classifier versions whose answers count for the matched images: an answered tile offers its answering
        version's classes (the class check where the project keeps a list, and the dialog's chooser: ``routed_offers``)."""
        found = self.db.predictions.current_for_images(list(image_ids), CLASSIFIER_TASK)
        self.answered = {image_id: p.model_version_id for image_id, p in found.items()}

    def version(self, version_id: int) -> ModelVersionInfo | None:
        if version_id not in self.versions:
            self.versions[version_id] = self.db.model_versions.get(version_id)
        return self.versions[version_id]

    def stand(self, target: Target) -> OfferKey:
        """Where ``target`` stands for its classes (read once per image: the image's class and each of its objects'
        ask): its rule runs a classifier, with the version whose answer counts and the one the rule names, or runs
        none, on its folder's line."""
        image = target.image
        if image.id not in self.keys:
            runs, named = rule_version(self.routing, CLASSIFIER_TASK, image.rel_path, target.folder.name)
            self.keys[image.id] = ((True, self.answered.get(image.id), named) if runs
                                   else (False, image.folder_id, line_of(image.rel_path)))
        return self.keys[image.id]

    def offer(self, target: Target) -> OfferKey:
        """``stand``, with what the station offers there read into ``offers`` (once per routed version, or per line
        where no classifier runs: not per image)."""
        key = self.stand(target)
        if key not in self.offers:
            runs, answered, named = key
            image, line = target.image, line_of(target.image.rel_path)
            self.offers[key] = offered(self.db, self.own, runs, answered, named,
                                       lambda: self.db.images.label_class_counts(image.folder_id, line), self.version)
        return key

    def routed_offers(self, targets: Iterable[Target]) -> dict[str, tuple[str, ...]]:
        """Classifier version name -> its classes, for each version other than the active one whose classes the
        station offers on ``targets`` (``counting_version``, as ``offered`` reads it): the Import dialog's class
        chooser lists them beside the project's. Why: such a class ("crack" on tiles routed to the tile classifier)
        is a valid target the chooser did not list, so the person had to know and type its spelling (a session-51
        audit). Read once per routed version, not per image."""
        active = self.db.model_versions.active(CLASSIFIER_TASK)
        out: dict[str, tuple[str, ...]] = {}
        for runs, answered, named in dict.fromkeys(self.stand(t) for t in targets):
            version = counting_version(self.db, answered, named, self.version) if runs else None
            if version is None or (active is not None and version.id == active.id):
                continue
            classes = version_classes(version)
            if classes:
                out.setdefault(version.name, classes)
        return dict(sorted(out.items()))

    def station_class(self, name: Any, target: Target) -> Any:
        if not isinstance(name, str):
            return name
        mapped = self.options.class_map.get(name, name)
        self.class_map[name] = mapped
        if self.own:
            key = self.offer(target)
            if mapped not in self.offers[key]:
                self.unknown.add(name)
                self.unknown_mapped.add(mapped)
                self.unknown_at.setdefault(key, set()).add(target.display.rsplit("/", 1)[0] + "/")
        elif hidden_folder(mapped) and mapped not in self.taken:
            # without a list every class is taken, but not one the list would refuse for its hidden folder: ".5mm pit"
            # from a CSV was exported to a hidden folder that the station's own import passed over (a session-52
            # audit); one the project's labels or models have already passes, as the list keeps it
            self.hidden.add(mapped)
        return mapped

    def hidden_error(self) -> str:
        """Why classes starting with a dot refuse the import, and the way in."""
        names = ", ".join(repr(n) for n in sorted(self.hidden))
        return (f"{agree(len(self.hidden), 'class', 'classes')} {names}: a class name cannot start with a dot "
                f"({HIDDEN_FOLDER_WHY}); map {agree(len(self.hidden), 'it', 'them')} onto another name (--map OLD=NEW, "
                "or the Import dialog's class mapping)")

    def source(self, key: OfferKey) -> str:
        """Which classifier the classes ``offers[key]`` go with, in words."""
        runs, answered, named = key
        if not runs:
            return "where no classifier runs: the classes the project's list adds, then those the line's labels use"
        version = self.version(answered) if answered is not None else None
        name = version.name if version is not None else named
        return f"where {name} runs" if name else "where the active classifier runs"

    def unknown_error(self) -> str:
        """(Read once planning is done: the unknowns' standing — ``routed_only``, ``listed``, ``twins``, ``addable`` —
        is read from the database once, then kept.) Why unknown classes refuse the import: what the station offers on the lines given them (per routed version),
        and a way in for each. "Add them to the project's classes" only for a class no routed classifier version has:
        the list's classes are offered on every line (a session-50 audit: the advice, followed for the tile classifier's
        "crack", put it on every steel image's keys)."""
        named = sorted(n if self.class_map.get(n, n) == n else f"{self.class_map[n]} (mapped from {n})"
                       for n in self.unknown)  # "--map good=god" named good unknown, listing good as known
        where = []
        for key, lines in sorted(self.unknown_at.items(), key=lambda kv: sorted(kv[1])):
            shown = ", ".join(sorted(lines)[:3]) + (f" and {plural(len(lines) - 3, 'more line')}" if len(lines) > 3 else "")
            where.append(f"{', '.join(self.offers[key]) or 'no class'} on {shown} ({self.source(key)})")
        text = (f"unknown {'class' if len(named) == 1 else 'classes'} {', '.join(named)}: the station offers "
                f"{'; '.join(where)}; map them onto those (--map OLD=NEW, or the Import dialog's class mapping)")
        routed = self.routed_only
        addable = self.addable
        if addable:
            them = "them" if len(addable) == len(self.unknown_mapped) else ", ".join(addable)
            text += f", or add {them} to the project's classes (Project ▸ Classes…, main.py classes add NAME)"
        listed = self.listed
        for name, versions in sorted(routed.items()):
            if name not in listed:
                text += (f"; {name} is {' and '.join(versions)}'s class, offered only on the images the model routing "
                         "sends there (Project ▸ Model routing…): on the project's list it would be offered on every "
                         "line")
        if listed:
            spelt = [n if listed[n] == n else f"{n} (listed as {listed[n]})" for n in sorted(listed)]
            differs = any(listed[n] != n for n in listed)
            text += (f"; {', '.join(spelt)} {agree(len(listed), 'is', 'are')} on the project's list already, not offered on "
                     "those lines' images: the model routing runs another classifier there, or none (Project ▸ Model "
                     "routing…)" + (f", or the name differs from the listed one (map {agree(len(listed), 'it', 'them')} onto "
                                    "that)" if differs else ""))
        for name, twin in sorted(self.twins.items()):
            if name not in listed and name not in routed:
                text += f"; {name} is another spelling of {twin}, a class the project's models or labels use: map it"
        return text

    @cached_property
    def listed(self) -> dict[str, str]:
        """Unknown class -> the project's listed class it is (the same name, or one the class list would take for it:
        ``folder_key``, its case and spelling rule; a name listed as written is itself, beside a twin of another
        spelling that an older list may hold)."""
        keys = {folder_key(n): n for n in self.own}
        return {n: n if n in self.own else keys[folder_key(n)] for n in self.unknown_mapped if folder_key(n) in keys}

    @cached_property
    def twins(self) -> dict[str, str]:
        """Unknown class -> the other spelling of it a model's classes or the labels use: the class list refuses to
        add it (``ClassList.taken``; a session-50 review: "Crack" beside a routed classifier's "crack" was offered for
        adding, and the list refused it)."""
        keys = {folder_key(t): t for t in self.taken}
        return {n: keys[folder_key(n)] for n in self.unknown_mapped if n not in self.taken and folder_key(n) in keys}

    @cached_property
    def taken(self) -> dict[str, int]:
        """The classes the project's models or labels use (``ClassList.taken``), read once."""
        return read_class_list(self.db).taken()

    @cached_property
    def addable(self) -> list[str]:
        """The unknown classes adding to the project's list would make known: not a routed classifier's (the routing
        offers those where it runs them), not on the list already, in any spelling the list takes for the same class
        (a session-50 review: a listed class given to an image where another classifier runs, or "Crazing" beside a
        listed "crazing", was advised and offered for adding; the dialog's button added nothing, or was refused)."""
        return sorted(n for n in self.unknown_mapped - set(self.routed_only) - set(self.listed) - set(self.twins)
                      if not hidden_folder(n))  # the list refuses a name starting with a dot

    @cached_property
    def routed_only(self) -> dict[str, list[str]]:
        """Unknown class -> the classifier versions the routing names (not the active one) that have it."""
        active = self.db.model_versions.active(CLASSIFIER_TASK)
        out: dict[str, list[str]] = {}
        for version, classes in routed_classes(self.db, leave_out=active.name if active else None).items():
            for name in self.unknown_mapped.intersection(classes):
                out.setdefault(name, []).append(version)
        return out

    def sized(self, mask: Any, rec: ImportRecord, target: Target) -> Any:
        """A mask at the image's size (polygons filled), refused (noted in errors) unless it has it."""
        if mask is UNCHANGED or mask is None:
            return mask
        size = self.image_size(target)
        if size is None:
            return UNCHANGED
        turn = exif_orientation(target.path)
        if turn not in (None, 1):
            # The station labels the pixels as stored; a tool that turns the image by its tag (Ultralytics, CVAT,
            # labelme) drew on the turned picture, and fractional coordinates fit either way: the masks went onto
            # the wrong pixels without a word (a session-45 probe). Said, as the export says it.
            self.turned.append(target.display)
        if isinstance(mask, Polygons):
            mask = mask.rasterise(*size)
        if (mask.width, mask.height) != size:
            swapped = (mask.width, mask.height) == (size[1], size[0]) and turn in (5, 6, 7, 8)
            self.errors.append(f"{rec.label_file}: mask is {mask.width}x{mask.height} but {target.display} "
                               f"is {size[0]}x{size[1]}" + (" as stored (the size it has turned by its orientation "
                                                            "tag: the tool that drew it turned the image)"
                                                            if swapped else ""))
            return UNCHANGED
        return mask

    def object_part(self, mask: Any, rec: ImportRecord, target: Target) -> Any:
        """The per-object classes that go with an imported mask (mapped like the image's class): a
        new mask replaces the old objects, so a mask without own classes clears them."""
        if not isinstance(mask, Mask):
            return mask  # UNCHANGED, or None (a cleared mask)
        if len(mask.objects) > MAX_OBJECTS:
            self.errors.append(f"{rec.label_file}: {len(mask.objects)} regions with a class of their own on "
                               f"{rec.image_ref}; the station keeps at most {MAX_OBJECTS} per image")
            return UNCHANGED
        return as_json(replace(o, class_name=self.station_class(o.class_name, target)) for o in mask.objects)

    def image_size(self, target: Target) -> tuple[int, int] | None:
        img = target.image
        if img.width and img.height:
            return img.width, img.height
        size = stored_size(target.path)  # the header's, as the export checks it; decoded only where it says nothing
        if size is not None:
            return size
        try:
            raw = read_raw(target.path)
        except ImageReadError as exc:
            self.errors.append(f"cannot check a mask against {target.display}: {exc.reason}")
            return None
        return int(raw.shape[1]), int(raw.shape[0])

    def labelled_at(self, rec: ImportRecord) -> datetime:
        if rec.labelled_at is not None:
            return utc(rec.labelled_at)
        if rec.label_file not in self.file_times:
            try:
                mtime = rec.label_file.stat().st_mtime
            except OSError as exc:  # deleted or moved after it was read: a FileNotFoundError traceback (a session-49 audit)
                raise LabelImportError(f"{rec.label_file}: gone during the import ({exc.strerror or exc}); nothing was "
                                       "imported: import again once the dataset is left as it is") from None
            self.file_times[rec.label_file] = datetime.fromtimestamp(mtime, timezone.utc)
        return self.file_times[rec.label_file]

    def plan(self, rec: ImportRecord, target: Target, current: LabelRevisionInfo | None) -> PlannedLabel:
        mask, region = self.sized(rec.mask, rec, target), self.sized(rec.anomaly_mask, rec, target)
        change = LabelChange(
            review_state=ReviewState(rec.review_state) if rec.review_state else DEFAULT_STATE,
            class_name=self.station_class(rec.class_name, target),
            mask_png=mask.png if isinstance(mask, Mask) else mask,
            anomaly_verdict=rec.anomaly_verdict,
            anomaly_mask_png=region.png if isinstance(region, Mask) else region,
            note=f"{IMPORTED_NOTE}{rec.label_file}",
            object_classes=self.object_part(mask, rec, target),
        )
        filled: dict[str, Any] = {}
        if current is not None and confirms_prediction_only(current):
            filled = prediction_label(current, self.db.predictions.for_image(current.image_id))
            change = self.keep_confirmed_prediction(change, current, filled)
        before = current.class_name if current else None
        action = self.action(change, rec, current, filled)
        # a skipped row keeps the station's class: its "after" and the per-class counts said the dataset's (a probe)
        after = before if change.class_name is UNCHANGED or action == SKIPPED_NEWER else change.class_name
        return PlannedLabel(target.image.id, target.display, str(rec.label_file), action, before, after, change,
                            current.revision if current else 0)

    def keep_confirmed_prediction(self, change: LabelChange, current: LabelRevisionInfo,
                                  confirmed: Mapping[str, Any]) -> LabelChange:
        """An accepted prediction is a label too: the parts the dataset does not set keep its values."""
        kept: dict[str, Any] = {f: v for f, v in confirmed.items() if getattr(change, f) is UNCHANGED}
        return replace(change, from_prediction_id=current.from_prediction_id, **kept)

    def action(self, change: LabelChange, rec: ImportRecord, current: LabelRevisionInfo | None,
               filled: Mapping[str, Any] | None = None) -> str:
        """``filled``: a label accepted from a prediction holds its parts there; the station's own CSV of such a
        label was counted "would overwrite" and written again, unchanged (a session-43 probe)."""
        if current is None or current.review_state == ReviewState.UNREVIEWED:
            return NEW
        held = dict(filled or {})
        # a format without review states (all but the CSV) says nothing of accepted vs corrected: the station's own
        # export of an accepted label re-imported read "would overwrite" and turned it "corrected" (a session-47 audit)
        same_state = change.review_state == current.review_state or (
            not rec.review_state and current.review_state in (ReviewState.ACCEPTED, ReviewState.CORRECTED))
        same = same_state and all(
            getattr(change, f) is UNCHANGED or getattr(change, f) == held.get(f, getattr(current, f))
            for f in ("class_name", "mask_png", "anomaly_verdict", "anomaly_mask_png", "object_classes"))
        if same:
            return UNCHANGED_LABEL
        imported_before = (current.note or "").startswith(IMPORTED_NOTE)
        if imported_before or utc(current.created_at) <= self.labelled_at(rec):
            return OVERWRITE
        return OVERWRITE_NEWER if self.options.overwrite_newer else SKIPPED_NEWER


def preview_import(db: Database, source: str | Path, options: ImportOptions,
                   progress: ProgressFn | None = None) -> ImportPreview:
    """Read, match and plan without writing: the dry run, and the GUI's preview."""
    records = read_records(source, options.format)
    try:
        chosen = resolve_folder(db, options.folder)
    except FolderNotFound as exc:
        raise LabelImportError(str(exc)) from None
    folders = db.folders.list()
    images = db.images.query(ImageQuery(folder_id=chosen.id if chosen else None, include_missing=True, sort="id"))
    if not images:
        raise LabelImportError("no indexed images to import labels for: open (index) the folder of these images first")
    matcher = ImageMatcher(images, folders, chosen=chosen is not None)
    planner = Planner(db, options)
    matched: dict[int, tuple[ImportRecord, Target]] = {}
    unmatched: list[str] = []
    differ: list[str] = []
    refused = 0
    hidden: Counter[str] = Counter()
    for n, rec in enumerate(records, 1):
        if rec.hidden_in is not None:  # passed over, not matched: said in a note
            hidden[rec.hidden_in] += 1
            unmatched.append(rec.image_ref)
        elif (target := matcher.match(rec)) is None:
            unmatched.append(rec.image_ref)
        elif target.image.id in matched:
            refused += 1
            planner.errors.append(f"{target.display} is labelled twice: in {matched[target.image.id][0].label_file} "
                                  f"and in {rec.label_file}")
        else:
            matched[target.image.id] = (rec, target)
            if target.other_bytes:
                differ.append(target.display)
        if progress is not None and n % 200 == 0:
            progress(n, len(records))
    current = db.labels.current_many(list(matched))
    planner.read_answers(list(matched))
    planned = []
    for image_id, (rec, target) in matched.items():
        errors = len(planner.errors)
        plan = planner.plan(rec, target, current.get(image_id))
        if len(planner.errors) > errors:  # its mask or objects refused: not counted as "unchanged" (a session-47 audit)
            refused += 1
            continue
        planned.append(plan)
    addable: tuple[str, ...] = ()
    if planner.unknown:
        planner.errors.insert(0, planner.unknown_error())
        addable = tuple(planner.addable)
    if planner.hidden:
        planner.errors.insert(0, planner.hidden_error())
    per_class = Counter(p.class_after for p in planned if p.class_after)
    if progress is not None:
        progress(len(records), len(records))
    return ImportPreview(options.format, Path(source), len(records), tuple(sorted(planned, key=lambda p: p.image)),
                         tuple(unmatched), dict(per_class), dict(planner.class_map), tuple(planner.errors),
                         addable,
                         (*turned_note(planner.turned), *differ_note(differ),
                          *absent_note(matcher.absent, matcher.absent_unstated), *hidden_note(hidden),
                          *refused_note(refused)),
                         planner.routed_offers(target for _rec, target in matched.values()))


def differ_note(differ: Sequence[str]) -> tuple[str, ...]:
    """Images matched by their whole path although the dataset's image (its copy, or the SHA-256 the station's table
    states) is of other bytes."""
    if not differ:
        return ()
    return (f"{plural(len(differ), 'image')} matched by name although the dataset's image holds other bytes (its copy, or "
            "the sha256 its table states: re-encoded, changed here since, or "
            f"another part under the same name): check them before importing, e.g. {', '.join(differ[:3])}",)


def _first_three(names: Iterable[str]) -> str:
    """The first three of ``names`` in sorted order, then ", ..." where there are more: a note names a few folders
    without running on for a dataset of hundreds."""
    listed = sorted(names)
    return f"{', '.join(listed[:3])}{', ...' if len(listed) > 3 else ''}"


def absent_note(absent: Mapping[str, int], unstated: Mapping[str, int]) -> tuple[str, ...]:
    """Records left unmatched because the folder they name is not indexed here (``ImageMatcher.match``): another line's
    labels, or a copy of the folder under another name, which the person can choose. ``unstated``: those of them that
    give no bytes of their image (no copy, no sha256: a summary.csv written before the column came), said apart: they
    were said to have "matched no image here with their bytes", untrue of records that state none, and they can
    never match there (a session-52 audit)."""
    notes: list[str] = []
    if absent:
        n = sum(absent.values())
        notes.append(f"{plural(n, 'record')} {agree(n, 'names', 'name')} a folder no indexed folder is named "
                     f"({_first_three(absent)}) and matched no image here with {agree(n, 'its', 'their')} bytes, so "
                     f"{agree(n, 'it is', 'they are')} left unmatched; to import into a folder of another name, choose "
                     "it (--folder, or the Import dialog's \"this folder\")")
    if unstated:
        n = sum(unstated.values())
        notes.append(f"{plural(n, 'record')} {agree(n, 'names', 'name')} a folder no indexed folder is named "
                     f"({_first_three(unstated)}), and the dataset neither states a hash of {agree(n, 'its image', 'their images')} "
                     "nor holds a copy (a summary.csv written by an earlier version has no sha256 column), so "
                     f"{agree(n, 'it is', 'they are')} left unmatched: choose the folder {agree(n, 'it belongs', 'they belong')} "
                     "to (--folder, or the Import dialog's \"this folder\")")
    return tuple(notes)


def hidden_note(hidden: Mapping[str, int]) -> tuple[str, ...]:
    """Images in hidden class folders (``import_records.hidden_class_folder``), listed unmatched: why."""
    if not hidden:
        return ()
    n = sum(hidden.values())
    return (f"{plural(n, 'image')} in {agree(len(hidden), 'a hidden folder', 'hidden folders')} "
            f"({_first_three(hidden)}) passed over: a folder whose name starts with a "
            "dot is no class (a class name cannot start with one); to import "
            f"{agree(n, 'it', 'them')}, rename the folder",)


def refused_note(refused: int) -> tuple[str, ...]:
    """Records left out because their image is labelled twice, or a part of them is refused (the counts said nothing
    of the first, and counted the second "unchanged")."""
    return (f"{plural(refused, 'record')} not counted above: refused for the reasons listed (an image labelled twice, a mask "
            "that does not fit its image)",) if refused else ()


def turned_note(turned: Sequence[str]) -> tuple[str, ...]:
    if not turned:
        return ()
    return (f"{plural(len(turned), 'image')} given a mask {agree(len(turned), 'carries', 'carry')} an orientation tag that the station ignores (it labels the "
            "pixels as stored); a mask drawn in a tool that turned them lies on other pixels: check them, e.g. "
            f"{', '.join(turned[:3])}",)


def apply_import(db: Database, preview: ImportPreview, author: str = "import") -> ImportResult:
    """Write the preview's planned revisions in one transaction; refuse a preview with errors."""
    from database import ConflictError, DatabaseError

    if preview.errors:
        raise LabelImportError("nothing imported: " + "; ".join(preview.errors[:5])
                               + (f" (and {len(preview.errors) - 5} more)" if len(preview.errors) > 5 else ""))
    writes = preview.writes
    try:
        db.labels.append_many([(p.image_id, p.change, p.expected_revision) for p in writes], author)
    except ConflictError as exc:
        raise LabelImportError(f"nothing imported: a label changed since the preview ({exc}); preview again") from None
    except DatabaseError as exc:
        raise LabelImportError(f"nothing imported: {exc}") from None
    return ImportResult(preview, len(writes))


def import_labels(db: Database, source: str | Path, options: ImportOptions, dry_run: bool = False,
                  progress: ProgressFn | None = None) -> ImportResult:
    preview = preview_import(db, source, options, progress)
    if dry_run:
        return ImportResult(preview, 0)
    return apply_import(db, preview, options.author)


def plain_preview_rows(preview: ImportPreview) -> Sequence[tuple[str, str, str, str]]:
    """(image, action, class before, class after) rows for a table view."""
    return [(p.image, p.action, p.class_before or "", p.class_after or "") for p in preview.planned]
