"""The review station's use cases, Qt-free: queue, image detail, label revisions, history.

Everything the GUI shows or changes about labels goes through ``ReviewService``; it speaks the
database repositories' DTOs on one side and the plain records of ``review_types`` on the other
(numpy masks instead of PNG bytes, one merged prediction instead of one row per model family).
A failed write raises and leaves the caller's label untouched, so the GUI can keep it and retry.
"""
from __future__ import annotations

import getpass
import logging
import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from app.paths import data_dir
from app.services.display import DisplayError, decode_mask_png, encode_mask_png, resize_to
from app.services.flags import (
    OUT_OF_DOMAIN_BELOW,
    FolderThreshold,
    answer_stands,
    find_folder_threshold,
    is_out_of_domain,
    over_threshold,
)
from app.services.heat_region import threshold_region
from app.services.json_files import write_json_atomic
from app.services.object_classes import ObjectClass, ObjectClassError, as_json, parse, resolve
from app.services.review_types import (
    MISSING,
    SORT_KEYS,
    FlagDecision,
    FolderChange,
    FolderInfo,
    ImageDetail,
    LabelState,
    PredictionView,
    QueueFilter,
    QueueItem,
    QueuePage,
    RevisionInfo,
    Saved,
    StateMove,
)
from database.engine import sqlite_file
from database.labels import trace_of
from inference import families
from inference.model_limits import read_json_bounded

if TYPE_CHECKING:
    from collections.abc import Callable

    from app.services.artifacts import ArtifactStore
    from database.dto import LabelRevisionInfo, PredictionInfo, RevisionSummary
    from database.engine import Database
    from database.review_queue import Found, QueueQuery, QueueRow

log = logging.getLogger(__name__)

FAMILIES = families.NAMES
DEFAULT_ANOMALY_THRESHOLD = 0.5
SUBFOLDER_CLASSES_S = 10.0  # how long the classes a subfolder's labels use are kept before they are read again


class ReviewError(Exception):
    """A review action that could not be done, in one sentence for the user."""


class LabelConflict(ReviewError):
    """A save refused because the image's label was saved elsewhere (another station or window)
    after the revision this edit was made on; ``revision`` and ``author`` are that newer save's."""

    def __init__(self, image_id: int, revision: int, author: str | None, file_changed: bool = False) -> None:
        self.image_id, self.revision, self.author, self.file_changed = image_id, revision, author, file_changed
        by = f"by {author} " if author else ""
        if file_changed:  # the station set the label aside: no person saved it (a session-48 probe blamed "station
            # at another station or window")
            super().__init__(f"the image's file changed on disk after this edit, so its label was set aside (revision "
                             f"{revision}; the earlier one is in the history)")
        else:
            super().__init__(f"the label was changed {by}at another station or window meanwhile (revision {revision})")

    next_step = "The image now shows that label; make your change again if it still holds."


def set_aside_by_station(author: str | None, note: str | None) -> bool:
    """Whether a label revision is the station's setting aside of a label whose file changed on disk (no person's)."""
    from app.services.indexing import CONTENT_CHANGED_NOTE, INDEXER
    return author == INDEXER and note == CONTENT_CHANGED_NOTE


class LabelGone(LabelConflict):
    """A save refused for good: the model answer it takes from (or the image) is no longer stored. The file changed
    and was indexed again meanwhile, at another station or window, which drops the old picture's answers: a retry
    can never succeed, and the label it holds was made on the old picture (a session-44 probe: Accept said "kept
    and will be saved" and was retried every few seconds for good)."""

    next_step = "The image is read again as it is stored now: look at it anew and make your change again if it holds."

    def __init__(self, image_id: int, image_gone: bool, name: str | None = None) -> None:
        self.image_id, self.revision, self.author = image_id, 0, None
        self.image_gone = image_gone   # (else the model answer it took from is gone)
        self.name = name
        ReviewError.__init__(self, f"{name or 'this image'} is no longer in the database" if image_gone else
                             "the image's file changed and was indexed again meanwhile, at another station or window, "
                             "so the model answer this label took from (the old picture's) is gone")

    def naming(self, name: str | None) -> LabelGone:
        """The same refusal, the image named ``name`` (its file as the window lists it; None: "this image"). Why: its
        row deleted, the service can no longer read the image's path, and "image 7 is no longer in the database"
        named a database id no screen shows (a session-52 audit); the window still knows the file it listed."""
        return LabelGone(self.image_id, self.image_gone, name)


class StorageBusy(ReviewError):
    """A save refused because another program held the database's lock longer than the save
    would wait: nothing was written, the same save may succeed later (the window keeps and retries it)."""


class UnreadableImage(ReviewError):
    """A label that keeps an image (accepted, or corrected: a class, a verdict, a mask) refused because the station
    cannot read its file (``unreadable_file``): no export or retraining could use it. Final: the same save is refused
    again until the file is replaced; X (reject) and clearing the label are saved."""

    def __init__(self, image_id: int, name: str, reason: str) -> None:
        super().__init__(f"{name} cannot be read ({reason}), so no export or retraining could use a label on it. "
                         "X rejects it.")
        self.image_id = image_id
        self.reason = reason


def unreadable_file(path: str | None, chunks: bool = False) -> str | None:
    """Why the station cannot read the image's file, from what ``read_raw`` checks before decoding (cheap: the file's
    size and header, no pixel decoded), or None; a missing file is not said here (its row says "file is missing", and
    its label is kept for when it is back). One home for the window's key refusal and ``ReviewService.save``'s.

    ``chunks``: a PNG's chunks are checked too (``refusal_before_decoding``: read from the file a piece at a time, no
    larger than the reader's file bound, and not read again while the file is unchanged). ``ReviewService.save`` asks
    for it, off the GUI thread: a truncated PNG whose header was sound passed the header check, and a key pressed
    before the viewer's read failed saved "accepted" on it (a session-52 audit). The detail's check (the window's key
    refusal) stays on the header: the viewer reads the file anyway and says a broken one."""
    from inference.imageio import refusal_before_decoding

    if path is None:
        return None
    reason = refusal_before_decoding(path, chunks=chunks)
    return None if reason == "file not found" else reason


def map_missing_reason(exc: BaseException) -> str:
    """What the window says when a prediction's anomaly map cannot be read here, and what to do."""
    from app.services.artifacts import MapUnavailable
    if isinstance(exc, MapUnavailable):
        where = " or ".join(str(w) for w in exc.where)
        return (f"The anomaly map is not on this station (looked in {where}): the worker that made it keeps "
                "its maps in another folder, e.g. another station's own. Set a maps folder every station "
                "reaches (Settings ▸ Project ▸ Anomaly maps folder; each worker then copies its maps there as "
                "it pre-labels). Meanwhile Pre-label selection makes the map again when this station's "
                "worker runs the image.")
    return f"The anomaly map cannot be read ({exc}); pre-label the image again to make it anew."


@dataclass(frozen=True)
class ReviewSettings:
    """The reviewer's own choices (persisted by the GUI, passed in here)."""

    reviewer: str = ""
    anomaly_threshold: float | None = None  # None: the anomaly model card's threshold
    min_confidence: float = 0.6             # below: a prediction counts as uncertain
    auto_advance: bool = True               # accept/reject move on to the next unreviewed image
    folder_thresholds: tuple[FolderThreshold, ...] = ()  # the project's per-folder, per-version ones

    @property
    def author(self) -> str:
        if self.reviewer.strip():
            return self.reviewer.strip()
        try:
            return getpass.getuser()
        except (OSError, KeyError, ImportError):  # no login name: a container, a service account
            return "inspector"


class ReviewService:
    def __init__(self, db: "Database", settings: ReviewSettings | None = None,
                 artifacts: Any | None = None) -> None:
        self.db = db
        self.settings = settings or ReviewSettings()
        self._artifacts = artifacts
        self._fixed_artifacts = artifacts is not None
        self._maps_folder = ""
        self._classes: list[str] | None = None
        self._last_classes: list[str] | None = None   # kept across refresh_models (cached_classes)
        self._own_classes: list[str] | None = None   # the project's saved list ([]: none), until refresh_models
        # moves with every refresh_models: a list read before it is not cached after it (a detail read on the reader
        # thread while another station's new list arrived kept the list from before for good: seen under Xvfb,
        # session 46, the old class name offered on key 1 and taken by Accept)
        self._generation = 0
        # (folder id, subfolder) -> (when read, the classes its labels use): 3 ms a read at 20,000 images, and the
        # panel reads the shown image's and its neighbours' details on every move (benchmarks/detail_classes.py)
        self._subfolder_classes: dict[tuple[int, str | None], tuple[float, dict[str, int]]] = {}
        self._versions: dict[int, Any] = {}

    # -- settings and models --------------------------------------------------------------
    def update_settings(self, settings: ReviewSettings) -> None:
        self.settings = settings

    def refresh_models(self) -> None:
        """Forget cached classes/model versions (after a pre-label run or a retraining)."""
        self._generation += 1
        self._classes = None
        self._own_classes = None
        self._subfolder_classes.clear()
        self._versions.clear()

    def _version(self, version_id: int) -> Any:
        """A model version (None: gone), cached until ``refresh_models``: a page of details asks often.
        Helper threads read details while the GUI thread may clear the cache: only ``get`` and a
        single store touch it, never a lookup after a check (a clear between the two raised KeyError
        and lost the detail read)."""
        mv = self._versions.get(version_id)
        if mv is None:
            mv = self.db.model_versions.get(version_id)
            if mv is not None:
                self._versions[version_id] = mv
        return mv

    def _version_name(self, version_id: int) -> str:
        mv = self._version(version_id)
        return mv.name if mv is not None else f"version {version_id}"

    def cached_classes(self) -> list[str] | None:
        """The project's classes as last read, kept across ``refresh_models`` until the next read replaces them (what
        the window's class buttons show until its folder's facts are read again); None before any read."""
        classes = self._classes if self._classes is not None else self._last_classes
        return None if classes is None else list(classes)

    def classes(self) -> list[str]:
        """The project's class names in hotkey order (1 = first): its own list, else the active
        classifier's (``app.services.project_classes``)."""
        classes = self._classes  # (read once: ``refresh_models`` on another thread may clear it meanwhile)
        if classes is None:
            from app.services import project_classes
            generation = self._generation
            classes = project_classes.names(self.db)
            if generation == self._generation:
                self._classes = classes
            self._last_classes = classes
        return list(classes)

    def anomaly_threshold(self, folder_id: int | None = None, version_id: int | None = None) -> float:
        """Image-level threshold of an anomaly version (default: the active one; an image's own is the
        version whose answer counts for it): the folder's own for that version (Operating point), else
        the project's, else the version's card's, else 0.5."""
        mv = self._anomaly_version(version_id)
        if folder_id is not None and self.settings.folder_thresholds:
            own = find_folder_threshold(self.settings.folder_thresholds, folder_id, mv.id if mv else None)
            if own is not None:
                return float(own.threshold)
        if self.settings.anomaly_threshold is not None:
            return float(self.settings.anomaly_threshold)
        return self._card_threshold("image", mv)

    def folder_anomaly_threshold(self, folder_id: int) -> float:
        """The threshold a folder's scores are read against as a whole (where the queue's score filter starts, the
        gallery's fallback): that of the one anomaly version whose answers count for its images, where one does;
        else the active version's. Seen in session 39: a line of bottles under ``anomaly-bottle`` (9.7) started the
        filter at the active tile model's 0.484, so ticking it listed every bottle."""
        counting = self.db.predictions.counting_versions(folder_id, "anomaly")
        if len(counting) == 1:
            return self.anomaly_threshold(folder_id, next(iter(counting)))
        return self.anomaly_threshold(folder_id)

    def anomaly_thresholds(self, folder_id: int) -> dict[int, float]:
        """Version id -> its image-level threshold in ``folder_id`` (``anomaly_threshold``), for the versions whose
        answers may count there: the active one and those the routing rules name. The gallery colours a score by
        the threshold of the version that gave it: a folder's bottles under the bottle model (9.7) were marked over
        the tile model's 0.484 (seen under Xvfb, session 39)."""
        from app.services.counting_versions import resolve_named
        from app.services.project_settings import readable_routing
        from app.services.routing import RoutingError

        try:
            named = resolve_named(self.db, readable_routing(self.db))
        except RoutingError as exc:   # a rule naming a version the project lacks: its images keep the active one's
            log.warning("anomaly thresholds of folder %s: %s", folder_id, exc)
            named = {}
        versions = [v for (family, _name), v in named.items() if family == "anomaly"]
        active = self.db.model_versions.active("anomaly")
        out = {v.id: self.anomaly_threshold(folder_id, v.id) for v in versions}
        if active is not None:
            out[active.id] = self.anomaly_threshold(folder_id, active.id)
        return out

    def region_threshold(self, version_id: int | None = None) -> float:
        """Pixel-level threshold turning a heatmap into a region: the version card's "pixel" one (else its image one).
        Never the project's image threshold (Settings ▸ Project): image scores and map values are in other units (the
        tile model's 0.484 against 2.80); a session-44 probe's project threshold of 0.5 turned the tile map solid red
        and Accept saved the whole image as the anomaly region, exported as ground truth."""
        return self._card_threshold("pixel", self._anomaly_version(version_id))

    def _anomaly_version(self, version_id: int | None) -> Any:
        if version_id is None:
            return self.db.model_versions.active("anomaly")
        return self._version(version_id)

    def _card_threshold(self, level: str, mv: Any) -> float:
        card = (mv.card if mv else None) or {}
        for source in (card, card.get("metrics", {}) or {}, (mv.metrics if mv else None) or {}):
            thr = source.get("threshold") if isinstance(source, dict) else None
            if isinstance(thr, dict):  # {"image": t, "pixel": t'}
                thr = thr.get(level, thr.get("image"))
            if isinstance(thr, (int, float)):
                return float(thr)
        return DEFAULT_ANOMALY_THRESHOLD

    def _artifact_store(self) -> ArtifactStore:
        if self._artifacts is None:
            from app.services.artifacts import store_for
            self._artifacts = store_for(self.db.url, self._maps_folder)
        return self._artifacts

    def use_maps_folder(self, folder: str) -> None:
        """The project's maps folder (``ProjectSettings.maps_folder``; ADR 0061): maps are read there, and
        in this station's own folder."""
        if folder != self._maps_folder:
            self._maps_folder = folder
            if not self._fixed_artifacts:
                self._artifacts = None

    # -- folders --------------------------------------------------------------------------
    def folders(self) -> list[FolderInfo]:
        out = []
        for f in self.db.folders.list():
            n = sum(self.db.images.state_counts(f.id).values())
            out.append(FolderInfo(f.id, f.name, f.root_path, n))
        return out

    def open_folder(self, path: str | Path, progress: Callable[[int, int, str], None] | None = None,
                    on_first: Callable[[FolderInfo], None] | None = None) -> FolderInfo:
        """Add (or re-scan) a folder: new files are indexed, labels of known ones are kept.
        ``on_first(FolderInfo)``: a large new folder's first page is in the database (the rest
        is still indexing)."""
        from app.services.indexing import FolderIndexError, index_folder, renamed_away_note, renamed_note
        first = None if on_first is None else (lambda folder_id: on_first(self._folder_info(folder_id)))
        try:
            report = index_folder(self.db, path, progress, on_first=first)
        except FolderIndexError as exc:
            raise ReviewError(str(exc)) from None
        info = self._folder_info(report.folder_id)
        notes = [report.trace.summary()] if report.trace is not None and report.trace.problems else []
        if report.renamed_from is not None:
            notes.append(renamed_note(info.name, report.renamed_from))
        if report.renamed_away is not None:
            notes.append(renamed_away_note(report.renamed_away))
        if report.skipped:  # a folder or a name the walk could not read: said, not passed over in silence
            notes.append(f"{len(report.skipped)} not indexed: " + "; ".join(report.skipped[:3])
                         + (" …" if len(report.skipped) > 3 else ""))
        if notes:
            info = replace(info, note=" · ".join(notes))
        return info

    def rescan_folder(self, folder_id: int) -> FolderChange:
        """Bring an open folder's rows up to date with the disk (files a line added, replaced or took
        away) and say what changed; an unchanged folder costs one walk of its directory entries."""
        from app.services.indexing import FolderIndexError, index_folder
        f = self.db.folders.get(folder_id)
        if f is None:
            raise ReviewError(f"folder {folder_id} does not exist")
        try:
            report = index_folder(self.db, f.root_path, changes_only=True)
        except FolderIndexError as exc:
            raise ReviewError(str(exc)) from None
        return FolderChange(folder_id, f.name, len(report.added), len(report.changed), report.restored,
                            report.missing, len(report.unreadable), report.seconds,
                            new_ids=tuple(sorted({*report.added, *report.changed})), moved_ids=report.moved,
                            set_aside=len(report.set_aside),
                            renamed_to=report.root if report.renamed_from is not None else None)

    def _folder_info(self, folder_id: int) -> FolderInfo:
        f = self.db.folders.get(folder_id)
        if f is None:  # removed meanwhile by another station
            raise ReviewError(f"folder {folder_id} does not exist")
        return FolderInfo(f.id, f.name, f.root_path, sum(self.db.images.state_counts(f.id).values()))

    def folder_by_path(self, path: str | Path) -> FolderInfo | None:
        f = self.db.folders.by_path(str(Path(path).expanduser().resolve()))
        return None if f is None else self._folder_info(f.id)

    # -- queue ----------------------------------------------------------------------------
    def queue(self, flt: QueueFilter = QueueFilter()) -> list[QueueItem]:
        """Every image matching ``flt``, in its order (badges merged from every active model).
        Reads the whole queue: the gallery uses ``queue_page`` instead."""
        from database.review_queue import queue_rows
        return [_queue_item(r) for r in queue_rows(self.db, self.queue_query(flt))]

    def queue_page(self, flt: QueueFilter, limit: int, offset: int = 0, after: Any = None) -> QueuePage:
        """``limit`` items of the queue from position ``offset``, or right after the cursor
        ``after`` that an earlier page returned (cheaper: no walk to the position)."""
        from database.review_queue import queue_page
        page = queue_page(self.db, self.queue_query(flt), limit, offset=offset, after=after)
        return QueuePage([_queue_item(r) for r in page.rows], page.cursor)

    def queue_count(self, flt: QueueFilter, at_most: int | None = None) -> int:
        """How many images ``flt`` selects (the gallery's exact row count); with ``at_most``,
        min(that, ``at_most``), which costs only the rows up to the bound."""
        from database.review_queue import queue_count
        return queue_count(self.db, self.queue_query(flt), at_most)

    def next_unreviewed(self, flt: QueueFilter, after: QueueItem | None = None, backward: bool = False,
                        placed_state: str | None = None) -> Found | None:
        """The next (``backward``: previous) unreviewed image of the whole queue after the row
        ``after`` shows, wrapping once, with its row (a ``Found``: image id, position); without
        ``after`` the first (last) one. ``placed_state``: the state that placed ``after``'s row
        (by state; default its own). None: the database holds no unreviewed image in this
        view. Any thread: indexed walks and counts, never the whole queue."""
        from database.review_queue import next_unreviewed
        if after is None:
            return next_unreviewed(self.db, self.queue_query(flt), backward=backward)
        return next_unreviewed(self.db, self.queue_query(flt), after.image_id,
                               placed_state or after.review_state, backward)

    def page_of(self, flt: QueueFilter, found: Any, size: int) -> QueuePage:
        """The page of ``size`` rows holding what ``next_unreviewed`` found (read from its
        keys: no walk from the queue's start)."""
        from database.review_queue import page_of
        page = page_of(self.db, self.queue_query(flt), found, size)
        return QueuePage([_queue_item(r) for r in page.rows], page.cursor)

    def queue_query(self, flt: QueueFilter) -> QueueQuery:
        """The database's form of ``flt`` (each image with its predictions that count)."""
        from database.review_queue import QueueQuery
        if flt.sort not in SORT_KEYS:
            raise ReviewError(f"unknown sort key {flt.sort!r}")
        return QueueQuery(folder_id=flt.folder_id, states=tuple(sorted(flt.states)),
                          flagged=True if flt.flagged_only else None, path_contains=flt.text or None,
                          class_name=flt.class_name, score_min=flt.score_min, score_max=flt.score_max,
                          domain_below=OUT_OF_DOMAIN_BELOW, out_of_domain_only=flt.out_of_domain_only,
                          sort=flt.sort, descending=flt.descending,
                          ranking=tuple(flt.ranking) if flt.sort == "label_next" else ())

    def item(self, image_id: int) -> QueueItem:
        """One image's queue item, fetched by id (after a save: never the whole queue)."""
        from database.review_queue import queue_row
        row = queue_row(self.db, image_id)  # with the predictions that count for it
        if row is None:
            raise ReviewError("this image is no longer in the database")   # (no id: no screen shows it; the caller
            # names the image it asked for)
        return _queue_item(row)

    def counts(self, folder_id: int | None = None) -> dict[str, int]:
        raw = self.db.images.state_counts(folder_id)
        out = {s: 0 for s in ("unreviewed", "accepted", "corrected", "rejected")}
        out.update({str(k.value if hasattr(k, "value") else k): v for k, v in raw.items()})
        return out

    # -- one image ------------------------------------------------------------------------
    def detail(self, image_id: int) -> ImageDetail:
        item = self.item(image_id)
        im = self.db.images.get(image_id)
        prediction = self._prediction(image_id, im.folder_id if im is not None else None)
        failure = None if prediction is not None else self.db.jobs.last_failures([image_id]).get(image_id)
        trace = (trace_of(im.trace_serial, im.trace_lot, im.trace_station) if im else None) or {}
        classes, runs = self._classes_here(im, prediction)
        from inference.imageio import page_count
        return ImageDetail(item, im.width if im else None, im.height if im else None,
                           prediction, self._label(image_id), failure, trace, classes, runs, page_count(item.path),
                           unreadable_file(item.path))

    def _classes_here(self, im: Any, prediction: PredictionView | None) -> tuple[tuple[str, ...], bool]:
        """The class buttons for one image, and whether the model routing runs a classifier on it.

        Why per image: the buttons are what an inspector labels with, and the active classifier's classes
        are only right where its answer counts. A bottle no classifier runs on showed the steel classes, also
        when an answer from before the rules was still there (seen under Xvfb, session 35); a tile not yet
        pre-labelled by the tile classifier its rule names showed them too (found in the code). The rule is
        ``project_classes.offered`` (the import's class check follows it too); this reads its facts, with the
        project's list, the versions and the subfolders' classes cached."""
        from app.services import project_classes
        own = self._own_classes
        if own is None:
            generation = self._generation
            own = list(self.db.classes.names(project_classes.TASK))
            if generation == self._generation:
                self._own_classes = own
        if im is None:
            return tuple(own), True
        from app.services.counting_versions import rule_version
        from app.services.project_settings import readable_routing
        folder = self.db.folders.get(im.folder_id)
        runs, named = rule_version(readable_routing(self.db), "classifier", im.rel_path,
                                   folder.name if folder is not None else "")
        classifier = prediction.version_ids.get("classifier") if prediction is not None else None
        return project_classes.offered(self.db, own, runs, classifier, named, lambda: self._line_counts(im),
                                       self._version), runs

    def _line_counts(self, im: Any) -> dict[str, int]:
        """The classes the labels of the image's subfolder (its line) use, and how many."""
        from app.services.project_classes import line_of
        return self._labelled_classes(im.folder_id, line_of(im.rel_path))

    def _labelled_classes(self, folder_id: int, under: str | None) -> dict[str, int]:
        """The classes the labels of a subfolder use, read again after ``SUBFOLDER_CLASSES_S`` or any save here
        (a class an inspector gives one bottle is offered on the next at once; another station's, within seconds)."""
        key = (folder_id, under)
        hit = self._subfolder_classes.get(key)   # (get, never a lookup after a check: refresh_models may clear)
        if hit is not None and time.monotonic() - hit[0] < SUBFOLDER_CLASSES_S:
            return hit[1]
        counts = self.db.images.label_class_counts(folder_id, under)
        self._subfolder_classes[key] = (time.monotonic(), counts)
        return counts

    def filter_classes(self) -> list[str]:
        """The classes the queue's class filter offers (``project_classes.filter_names``: with routing that
        names a classifier version, its classes too)."""
        from app.services import project_classes
        return project_classes.filter_names(self.db)

    def classes_for(self, classifier_version_id: int) -> list[str]:
        """The class buttons for an image whose classifier answer is this version's
        (``project_classes.names_for_version``: the active one's the project's list, else its own; another's its
        own, then what the project's list adds)."""
        from app.services import project_classes
        return project_classes.names_for_version(self.db, self._version(classifier_version_id))

    def _prediction(self, image_id: int, folder_id: int | None = None) -> PredictionView | None:
        # The predictions that count for the image, one per family (``database/current_predictions``).
        current = {p.current_family: p for p in self.db.predictions.for_image(image_id) if p.current_family}
        fam_pred = {f: current[f] for f in FAMILIES if f in current}
        if not fam_pred:
            return None
        # A PredictionView has one field per built-in kind of result.
        c, s, a = fam_pred.get("classifier"), fam_pred.get("segmenter"), fam_pred.get("anomaly")
        mask = heat = missing = None
        if s is not None:
            mask = self._mask_of(s)
        if a is not None and a.anomaly_map_ref:
            try:
                heat = np.asarray(self._artifact_store().get_map(a.anomaly_map_ref), np.float32)
            except Exception as exc:  # noqa: BLE001 - the cache can be recomputed; a missing map is not fatal
                log.warning("anomaly map %s unavailable: %s", a.anomaly_map_ref, exc)
                missing = map_missing_reason(exc)
        anomaly_version = a.model_version_id if a is not None else None
        thr = self.anomaly_threshold(folder_id, anomaly_version)
        flags = tuple(dict.fromkeys(f for p in fam_pred.values() for f in p.flags))
        return PredictionView(
            prediction_ids={f: p.id for f, p in fam_pred.items()},
            predicted_class=c.predicted_class if c else None,
            confidence=c.confidence if c else None,
            class_scores=dict(c.class_scores or {}) if c else {},
            mask=mask, target_count=s.target_count if s else None,
            anomaly_score=a.anomaly_score if a else None, heatmap=heat,
            heat_range=(0.0, 2.0 * self.region_threshold(anomaly_version)) if heat is not None else None,
            # above the threshold, as the model, the flags and the operating point count it: at a threshold equal to
            # a score the panel said "anomalous" and Accept saved it while the queue said "not flagged" (a probe)
            anomalous=None if a is None or a.anomaly_score is None else over_threshold(a.anomaly_score, thr),
            threshold=thr if a is not None else None,
            flags=flags, models={f: self._version_name(p.model_version_id) for f, p in fam_pred.items()},
            out_of_domain=tuple(f for f, p in fam_pred.items() if is_out_of_domain(p.in_domain)),
            in_domain={f: p.in_domain for f, p in fam_pred.items() if p.in_domain is not None},
            domain_notes={f: p.domain_note for f, p in fam_pred.items() if p.domain_note and is_out_of_domain(p.in_domain)},
            version_ids={f: p.model_version_id for f, p in fam_pred.items()},
            heatmap_missing=missing,
            answered_at={f: p.created_at for f, p in fam_pred.items()},
        )

    def _mask_of(self, pred: PredictionInfo) -> np.ndarray | None:
        data = pred.mask_png
        if data is None and pred.mask_ref:
            try:
                data = self._artifact_store().get_bytes(pred.mask_ref)
            except Exception as exc:  # noqa: BLE001 - the mask is optional; logged
                log.warning("mask %s unavailable: %s", pred.mask_ref, exc)
        if data is None:
            return None
        try:
            return decode_mask_png(data)
        except DisplayError as exc:
            log.warning("prediction %s: %s", pred.id, exc.reason)
            return None

    def _label(self, image_id: int) -> LabelState:
        rev = self.db.labels.current(image_id)
        return LabelState() if rev is None else _label_from_revision(rev)

    # -- label changes --------------------------------------------------------------------
    def save_label(self, image_id: int, state: LabelState, changed: str = "") -> LabelState:
        """Store ``state`` as the image's newest revision (the whole label, never a diff).

        Object classes are stored canonical: one seed per classified object of the mask (ADR 0017)."""
        return self.save(image_id, state, changed).label

    def save(self, image_id: int, state: LabelState, changed: str = "", expected_revision: int | None = None,
             source: str | None = None, wait_s: float | None = None, author: str | None = None) -> Saved:
        """``save_label``, with the review-state move the save made (read under its lock: the
        shown counts move by it at once, no recount of the folder). ``expected_revision``: the
        revision the edit was made on; a newer one saved meanwhile raises ``LabelConflict`` and
        nothing is saved (their label is never replaced unseen). ``source``: how the image came to be
        labelled (``database.LabelSource``: "label_next" for a proposal of "label next"; ADR 0049).
        ``wait_s``: how long to wait for another program's write lock before failing (``StorageBusy``;
        None: the database's busy timeout): the review window keeps a refused label and retries it, so it
        waits briefly rather than standing still for the whole busy timeout."""
        if state.review_state in ("accepted", "corrected"):
            # A session-52 audit: a key held while the label of an empty file was read, and A on a gallery selection
            # holding it, saved "accepted" (the window's refusal waited for its viewer's decode); the export then
            # had a label it could not use. Refused here whatever asked for it; a reject or a cleared label is saved.
            path = self.db.images.path_of(image_id)
            if (reason := unreadable_file(path, chunks=True)) is not None:
                assert path is not None
                raise UnreadableImage(image_id, Path(path).name, reason)
        self._subfolder_classes.clear()   # a new class on this subfolder's labels is offered on its next image
        from database import LabelSource, LockedError, RowGoneError, StaleLabelError
        from database.dto import LabelChange
        from database.states import AnomalyVerdict, ReviewState
        objects = resolve(state.mask, state.objects)
        change = LabelChange(
            review_state=ReviewState(state.review_state),
            class_name=state.class_name,
            # an empty mask is an answer (the inspector erased every target), stored as such: None is "not set"
            mask_png=None if state.mask is None else encode_mask_png(state.mask),
            anomaly_verdict=None if state.anomaly_verdict is None else AnomalyVerdict(state.anomaly_verdict),
            anomaly_mask_png=(None if state.anomaly_region is None or not state.anomaly_region.any()
                              else encode_mask_png(state.anomaly_region)),
            from_prediction_id=state.from_prediction_id,
            from_model_version_id=state.from_model_version_id,
            note=changed or None,
            object_classes=as_json(objects),
            source=None if source is None else LabelSource(source),
        )
        try:
            with self.db.waiting_at_most(wait_s):
                rev = self.db.labels.append(image_id, change, author or self.settings.author, expected_revision)
        except StaleLabelError as exc:
            landed = self.landed_already(image_id, state)  # this author's own write landed without its answer
            if landed is not None:
                return landed
            now = self.db.labels.current(image_id)
            set_aside = now is not None and set_aside_by_station(now.author, now.note)
            raise LabelConflict(image_id, exc.current, exc.author, file_changed=set_aside) from None
        except RowGoneError as exc:
            raise LabelGone(image_id, exc.image_gone) from None
        except LockedError as exc:
            raise StorageBusy(str(exc)) from exc
        m = rev.moved
        moved = None if m is None else StateMove(m.image_id, m.folder_id, str(m.before.value), str(m.after.value),
                                                 m.counted)
        return Saved(replace(state, revision=rev.revision, author=rev.author, note=rev.note, objects=objects), moved)

    def landed_already(self, image_id: int, state: LabelState) -> Saved | None:
        """The image's stored label as a ``Saved`` when it is this author's and holds ``state``'s content: a save
        refused as stale had itself landed (``save`` takes it as saved; session-44 probes: the connection dropped after
        the server committed the label, and the retry then called the inspector's own label "changed by tester at
        another station", writing a conflict file; a recovery file replayed a label that had landed, a second
        revision changing nothing). None otherwise."""
        rev = self.db.labels.current(image_id)
        if rev is None or rev.author != self.settings.author:
            return None
        label = _label_from_revision(rev)
        return Saved(label, None) if label.same_content(state) else None

    def accepted_label(self, detail: ImageDetail, current: LabelState,
                       size: tuple[int, int] | None = None) -> LabelState:
        """The label Accept saves (not saved here): what is on screen, marked accepted.

        Accept must never turn an inspector's correction back into the model's answer (issue 16:
        ``D``, paint a region, ``A`` used to save the prediction's verdict and no region). So every
        part the current label holds — class, mask, verdict with its region — is kept as it is,
        and only a part it lacks is taken from the prediction. Once a label has taken the
        prediction (``from_prediction_id`` set), an empty part is the inspector's own erasure and
        stays empty. ``size`` (width, height) is the image's: a heatmap at model resolution
        becomes a region at image resolution; None: the size the worker recorded when it decoded the image (a probe:
        A on a gallery selection, which has no pixels on screen, stored 32 × 32 regions for 80 × 50 images, which the
        export then skipped).
        """
        if detail.prediction is None or current.from_prediction_id is not None:
            return current.with_(review_state="accepted")
        if size is None and detail.width and detail.height:
            size = (detail.width, detail.height)
        model = self._prediction_label(detail.prediction, size)
        has_verdict = current.anomaly_verdict is not None or current.anomaly_region is not None
        taken = None if self.unlisted_class(detail, current) else model.class_name
        # The answer the revision is saved from (the audit's model, docs/traceability.md): the first family whose part
        # Accept takes (a model's part is there only where its answer stands, in domain); none taken, none. The first
        # family present credited the classifier for a mask the segmenter gave, its own answer out of domain, hidden
        # and not taken (a session-50 audit).
        took = {"classifier": current.class_name is None and taken is not None,
                "segmenter": current.mask is None and model.mask is not None,
                "anomaly": not has_verdict and model.anomaly_verdict is not None}
        ids = detail.prediction.prediction_ids
        from_id = next((ids[f] for f in FAMILIES if took.get(f) and f in ids), None)
        return current.with_(
            class_name=current.class_name if current.class_name is not None else taken,
            mask=current.mask if current.mask is not None else model.mask,
            anomaly_verdict=current.anomaly_verdict if has_verdict else model.anomaly_verdict,
            anomaly_region=current.anomaly_region if has_verdict else model.anomaly_region,
            review_state="accepted", from_prediction_id=from_id)

    @staticmethod
    def unlisted_class(detail: ImageDetail | None, current: LabelState) -> str | None:
        """The classifier's class an Accept leaves out because this image's classes (``ImageDetail.classes``, what an
        inspector labels it with) no longer hold it: the project renamed or removed it, the model still answers it.
        Saved, it split the labels between the old name and the new (export, counts, retraining) and nothing was
        said (a session-46 probe). None where the label has a class of its own, or nothing is left out."""
        p = detail.prediction if detail is not None else None
        if p is None or current.class_name is not None or current.from_prediction_id is not None:
            return None
        cls = p.predicted_class
        return cls if cls is not None and detail is not None and detail.classes and cls not in detail.classes else None

    @staticmethod
    def withheld_from(detail: ImageDetail | None, accepted: LabelState) -> tuple[str, ...]:
        """The families whose answer an Accept left out because their model calls the image out of its domain, where
        the accepted label has nothing of its own in their place. Seen under Xvfb (session 37): A on an infrared frame
        the segmenter called foreign, two targets plainly visible, saved "accepted" with no mask and said nothing; the
        frame then did not count for the segmenter's retraining."""
        p = detail.prediction if detail is not None else None
        if p is None:
            return ()
        lacks = {"classifier": accepted.class_name is None and p.predicted_class is not None,
                 "segmenter": accepted.mask is None and p.target_count is not None,
                 "anomaly": accepted.anomaly_verdict is None and p.anomaly_score is not None}
        return tuple(f for f in p.out_of_domain if lacks.get(f, False))

    @staticmethod
    def region_to_draw(detail: ImageDetail | None, before: LabelState, accepted: LabelState) -> float | None:
        """The model's region threshold, where Accept took its "anomalous" from a map that reaches that threshold
        nowhere (the label then has a verdict and no region, which the inspector must draw); else None.

        Why said, not filled in: a session-52 audit saw A on such a tile save "anomalous" with no region and say
        nothing, and the export then held an anomalous image without a mask. A region made from the map's strongest
        area would be ground truth the model itself does not vouch for (every pixel under its own threshold),
        exported and scored as if an inspector had drawn it, and never shown before it was saved: the viewer's
        slider applies no region on such a map either (docs/heatmap_region.md). A demanding inspector wants the
        verdict kept and to be told, on the image, that the region is theirs to draw (W on the hot spot, or B)."""
        p = detail.prediction if detail is not None else None
        if (p is None or p.heatmap is None or before.anomaly_verdict is not None or before.anomaly_region is not None
                or accepted.anomaly_verdict != "anomalous" or accepted.anomaly_region is not None):
            return None
        return p.pixel_threshold

    def mask_start(self, detail: ImageDetail | None, current: LabelState | None) -> np.ndarray | None:
        """What the first brush, eraser or polygon edit of the mask starts from: the predicted targets Accept would
        take, where the label holds no mask of its own; None: the label's layer. Seen under Xvfb (session 36): on
        a frame with three predicted targets one brush stroke saved a mask of that stroke alone, and the eraser on a
        false target erased nothing (the label's layer was empty), so Accept then saved the target the inspector
        had erased. The anomaly region has no such start: the model's region is not drawn, only its heatmap."""
        if (detail is None or current is None or detail.prediction is None or current.mask is not None
                or current.from_prediction_id is not None):
            return None
        return _prediction_mask(detail.prediction)

    def _prediction_label(self, p: PredictionView, size: tuple[int, int] | None) -> LabelState:
        """The prediction as a label: class, mask, verdict and the heatmap's region over threshold;
        a family whose model calls the image out of domain gives nothing (the panel shows "out of
        domain" there, and Accept takes what the panel shows)."""
        verdict = region = None
        ood = p.out_of_domain
        if p.anomaly_score is not None and answer_stands("anomaly", ood):
            verdict = "anomalous" if p.anomalous else "normal"
            if p.anomalous and p.heatmap is not None:
                heat = p.heatmap
                if size is None and p.mask is not None:
                    size = (p.mask.shape[1], p.mask.shape[0])
                if size is not None:
                    heat = resize_to(heat.astype(np.float32), *size)
                pixel = p.pixel_threshold   # the image's anomaly version's, mid-scale of its heat range
                if pixel is None:
                    pixel = self.region_threshold()
                region = threshold_region(heat, pixel)
                region = region if region.any() else None
        return LabelState(class_name=p.predicted_class if answer_stands("classifier", ood) else None,
                          mask=_prediction_mask(p), anomaly_verdict=verdict, anomaly_region=region)

    def revision_label(self, image_id: int, revision: int) -> LabelState:
        """An earlier revision's label (to bring it back as a new revision)."""
        for rev in self.db.labels.history(image_id):
            if rev.revision == revision:
                label = _label_from_revision(rev)
                self._check_fits(image_id, revision, label)
                return label
        raise ReviewError(f"image {image_id} has no label revision {revision}")

    def _check_fits(self, image_id: int, revision: int, label: LabelState) -> None:
        """A revision whose mask or region is not the image's size now (made for a file's earlier content that had
        another size) is refused: restored, it was stretched on screen, the Objects list and Accept kept the old size,
        and the export skipped the image (a session-48 probe)."""
        shapes = {m.shape[:2] for m in (label.mask, label.anomaly_region) if m is not None}
        if not shapes:
            return
        row = self.db.images.get(image_id)
        shape = (row.height, row.width) if row is not None and row.width and row.height else self._file_shape(image_id)
        if shape is None:
            return
        h, w = shape
        if shapes != {(h, w)}:
            mh, mw = next(iter(shapes - {(h, w)}))
            raise ReviewError(f"its mask is {mw} x {mh} px, made for the file's earlier content, and the image is now "
                              f"{w} x {h} px: it cannot be put back on it (give its class or verdict again by hand)")

    @property
    def _author(self) -> str | None:
        """Who decides at this station (the reviewer setting; None where it is empty): one rule for the flag's
        decision and its audit record."""
        return self.settings.author or None

    def inspector_flag(self, flagged: bool) -> FlagDecision:
        """This inspector's flag decision, kept over the models' (F: the window's and ``set_flag``'s one author rule)."""
        return FlagDecision.inspector(flagged, self._author)

    def set_flag(self, image_id: int, flagged: bool, wait_s: float | None = None) -> QueueItem:
        """This inspector's flag, kept over the models' (``wait_s`` as for ``save``)."""
        return self.put_flag(image_id, self.inspector_flag(flagged), wait_s)

    def put_flag(self, image_id: int, decision: FlagDecision, wait_s: float | None = None) -> QueueItem:
        """Store ``decision`` as it says (F, its undo and redo; ``wait_s`` as for ``save``). One that leaves the flag
        to the models clears the inspector's and flags the image as the models do from its predictions that count:
        F's undo wrote an inspector's decision instead, which no later model flag changed (a session-51 audit).

        The models' flag is written with the clear (no reader sees the inspector's flag under their name), and then
        once more by ``reflag_images``, worked out after the clear with the thresholds read after it: written only
        with the clear, from an answer worked out before it, a re-flag by another process in between (a worker's after
        a batch, another station's threshold change) skipped the image, its override still set, and the undo wrote
        the earlier answer, which nothing corrected (a session-51 review). Now a re-flag after the clear lands on the
        image, and one before it is read by the undo's second write."""
        from app.services.project_settings import load_project_settings
        from app.services.reflag import models_flag, reflag_images, stored_thresholds

        with self.db.waiting_at_most(wait_s):
            if decision.override is not None:
                # recorded as this station's inspector's (an undo puts back another's decision, with its name)
                self.db.images.set_inspector_flag([image_id], decision.override, decision.by, self._author)
            else:
                try:   # before anything is written: unreadable, the flag stays as it was
                    read = load_project_settings(self.db).flags
                except ValueError as exc:
                    raise ReviewError(f"the project's flag settings cannot be read ({exc}), so the models' flag "
                                      "cannot be worked out; the flag is left as it is") from exc
                folder_id = self.db.images.folders_of([image_id]).get(image_id)
                self.db.images.clear_inspector_flag([image_id], models_flag(self.db, folder_id, image_id, read),
                                                    self._author)
                if folder_id is not None:   # with a change saved before the clear, whose re-flag skipped it
                    reflag_images(self.db, folder_id, [image_id], stored_thresholds(self.db, read))
        return self.item(image_id)

    def history(self, image_id: int) -> list[RevisionInfo]:
        return [RevisionInfo(r.revision, r.author, r.created_at, r.note or ",".join(r.changed),
                             str(r.review_state.value), r.class_name,
                             r.anomaly_verdict.value if r.anomaly_verdict else None,
                             r.has_mask, r.has_anomaly_mask, r.note,
                             {str(k): str(v) for k, v in r.trace.items()} if isinstance(r.trace, dict) else {},
                             tuple(o.class_name for o in _objects(r)), r.source)
                for r in self.db.labels.history_summary(image_id)]

    # -- labels the database refused -------------------------------------------------------
    def write_recovery(self, labels: dict[int, LabelState], folder: Path | None = None,
                       bases: dict[int, int | None] | None = None, landing: dict[int, list[str]] | None = None,
                       images: dict[int, tuple[str | None, str | None]] | None = None,
                       decided: Mapping[int, datetime] | None = None,
                       sources: Mapping[int, str | None] | None = None) -> str:
        """Write labels that could not be saved to files, to be replayed by ``recover``. ``bases``: the label
        revision each was made on (0: none; absent or None: not known), so that ``recover`` never replaces a
        label someone saved after it unseen; ``landing``, ``images`` and ``sources``: see ``recovery_files``."""
        root = folder or recovery_dir()
        self.recovery_files(labels, bases, root, landing=landing, images=images, decided=decided, sources=sources)
        return str(root)

    def recovery_files(self, labels: dict[int, LabelState], bases: dict[int, int | None] | None = None,
                       folder: Path | None = None, tag: str = "",
                       landing: dict[int, list[str]] | None = None,
                       images: dict[int, tuple[str | None, str | None]] | None = None,
                       decided: Mapping[int, datetime] | None = None,
                       sources: Mapping[int, str | None] | None = None) -> list[Path]:
        """``write_recovery``'s files, returned (``tag`` goes into their names): the window writes the labels
        waiting when it starts closing at once, so a station killed during the last try loses none, and
        removes them once that try has answered. ``landing``: per image, the ``content_digest`` of this window's
        labels still on their way, which may land after the file is written (``recover`` then replays on them).
        ``images``: per image, its file's path and content hash as the label was made on them: ``recover`` sets a
        label aside whose image now has another file or other bytes (a session-46 probe: a label kept for one image
        was saved on whatever image had its id in a database replaced at the same path, or on new pixels). Each file
        name is this window's alone (two stations sharing a home wrote one name in the same second, the second file
        replacing the first) and the JSON, which ``recover`` looks for, is written whole or not at all. ``decided``:
        when each label was made (else now: the file's ``decided_at`` said the window's close, a session-48 probe).
        ``sources``: how each image came to be labelled (``save``'s ``source``): a "label next" label replayed from
        its file was saved without it, so "label next" no longer counted it as chosen (a session-51 audit).

        It reads nothing from the database: the window writes them on the GUI thread as it closes, when the database
        may be what fails (a session-52 audit: the id read here per file stood the window still 25 s and more on a
        PostgreSQL server gone silent). The SQLite database's id is the one read when it was opened
        (``Database.identity``); a server database's files record none, being matched by its URL."""
        root = folder or recovery_dir()
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        written: list[Path] = []
        for image_id, st in labels.items():
            base = root / f"{stamp}{tag}-image{image_id}-{secrets.token_hex(4)}"
            path, digest = (images or {}).get(image_id, (None, None))
            meta = {"image_id": image_id, "class_name": st.class_name, "anomaly_verdict": st.anomaly_verdict,
                    "review_state": st.review_state, "from_prediction_id": st.from_prediction_id,
                    "from_model_version_id": st.from_model_version_id,
                    "object_classes": as_json(st.objects),
                    # when it was decided: the replay at the next start, maybe days later, is dated then (a
                    # session-47 audit); the revision's note keeps this time
                    "decided_at": (decided or {}).get(image_id, datetime.now(timezone.utc)).isoformat(
                        timespec="seconds"),
                    "author": self.settings.author, "db": self.db.url,
                    "db_file": self._db_file(), "db_id": self.db.identity,   # (``_this_database``)
                    "db_inode": None if self.db.file_inode is None else list(self.db.file_inode),
                    "base_revision": (bases or {}).get(image_id),
                    "may_land": list((landing or {}).get(image_id, [])),
                    "path": path, "content_hash": digest, "source": (sources or {}).get(image_id)}
            arrays = {k: v.astype(bool) for k, v in (("mask", st.mask), ("region", st.anomaly_region))
                      if v is not None}
            masks, part = base.with_suffix(".npz"), base.with_suffix(".npz.tmp")
            try:  # a failed write (a full disk) leaves nothing: its masks stayed without a JSON, which no
                # start looks for, forever (a session-52 audit)
                with open(part, "wb") as fh:
                    np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # stubs: allow_pickle
                part.replace(masks)
                write_json_atomic(base.with_suffix(".json"), meta)   # whole or not at all (``recover`` reads *.json)
            except BaseException:
                for left in (part, masks):
                    left.unlink(missing_ok=True)
                raise
            written += [masks, base.with_suffix(".json")]
        return written

    def label_watermark(self) -> int:
        """A number that moves whenever any label is saved, in commit order (the window's ``LabelWatch`` polls it)."""
        return self.db.labels.watermark()

    def schema_changed(self) -> str | None:
        """Why nothing more is saved from here, where a newer station upgraded the database's schema since this one
        opened it (``Database.schema_changed``: one small read, and every write refused from then on), else None. The
        window's ``LabelWatch`` asks it on its poll."""
        changed = self.db.schema_changed()
        return None if changed is None else str(changed)

    def label_revision(self, image_id: int) -> int:
        """The image's newest label revision (0: never labelled)."""
        rev = self.db.labels.current(image_id)
        return 0 if rev is None else rev.revision

    def keep_conflicted(self, labels: dict[int, LabelState], decided: Mapping[int, datetime] | None = None) -> str:
        """Write labels refused because someone saved the image meanwhile to ``recovery/conflicts``:
        kept for a person to look at, never replayed over the newer label by ``recover`` (``decided``: when each was
        made, else now)."""
        return self.write_recovery(labels, recovery_dir() / CONFLICTS, decided=decided)

    def recover(self, folder: Path | None = None, wait_s: float | None = None) -> Recovered:
        """Save labels left in the recovery folder by an earlier session.

        A label whose file names the revision it was made on is saved only on that revision: when someone
        saved the image since (another station, while this one could not reach the database), their label
        stays, and the kept one moves to ``recovery/conflicts`` for a person to look at (it was replayed over
        theirs unseen before); one the database already holds (the save landed after the file was written)
        is done. Files of another database are left alone, and counted (``elsewhere``). A file marked superseded
        (``mark_superseded``: a window's inspector labelled the image after it) is set aside whatever revision it
        names, and counted (``superseded``).

        A file taken to be this database's only because it is the database it records, moved (``_this_database``:
        the same id and (st_dev, st_ino), nothing left at the recorded path), is copied to ``recovery/replayed`` before
        it is replayed, and its saved labels are counted (``moved``, with the files named; those left waiting too,
        ``moved_waiting``): a copy of the database given the moved file's freed inode (a backup restored once the
        original went to another filesystem) is taken for it too, and took the labels without a trace (a session-53
        review); now they are on the file opened and the copies say what they were, for a person to bring to the moved
        database.

        ``wait_s``: how long each save waits for another program's write lock (None: the busy timeout). A label
        refused as busy stays in its file and is returned in ``waiting``, and after ``BUSY_IN_A_ROW`` such
        refusals the rest are not tried (on SQLite the whole file is locked): the window's start-up held the GUI
        thread for the busy timeout per file, 30 s for three files before any window appeared (a session-52
        audit). The window keeps those waiting with its own labels and its retry saves them (``replay``)."""
        root = folder or recovery_dir()
        _sweep_leftovers(root)
        saved, aside, unreadable, busy, elsewhere, moved, superseded = 0, 0, 0, 0, 0, 0, 0
        superseded_stuck, stuck_reason = 0, ""
        waiting: list[Replay] = []
        moved_from: list[str] = []
        for meta_path in sorted(root.glob("*.json")) if root.is_dir() else []:
            try:
                try:
                    meta = read_json_bounded(meta_path)   # (a few hundred bytes: a large or deep file is not one)
                    if not isinstance(meta, dict):
                        raise ValueError("not a recovery file")
                    match = self._this_database(meta)
                    if match is None:
                        elsewhere += 1   # said at start: kept, it no longer stays in recovery/ unseen
                        continue
                    arrays = recovery_arrays(meta_path.with_suffix(".npz"))
                    int(meta["image_id"])
                except FileNotFoundError:
                    if not meta_path.exists():
                        continue  # another start (a station sharing this home) took the file meanwhile: not damaged
                    if (root / CONFLICTS / meta_path.with_suffix(".npz").name).exists():
                        # its masks were set aside first (``_set_aside``), by a station sharing this home now, or
                        # by one killed before it moved the JSON: the JSON follows them, not "lost its masks"
                        _set_aside(root, meta_path)
                        continue
                    log.warning("the recovery file %s lost its masks: kept aside", meta_path)  # (the review: skipped
                    _set_aside(root, meta_path)                                      # silently at every start)
                    unreadable += 1
                    continue
                except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
                    # a file no start can read was only logged, and tried again at every start (a session-46
                    # probe): set aside with the others a person looks at, and counted in the start-up box
                    log.warning("cannot read the recovery file %s (%s): kept aside", meta_path, exc)
                    _set_aside(root, meta_path)
                    unreadable += 1
                    continue
                if meta.get("superseded"):
                    # its revision cannot order it: the inspector's label may be in a recovery file of its own, on
                    # the same revision, and sorted after it; by that revision alone it was saved first and the
                    # inspector's went to conflicts (a session-53 review)
                    log.warning("%s: marked superseded (%s): kept aside", meta_path, meta["superseded"])
                    try:
                        _set_aside(root, meta_path)
                    except OSError as exc:
                        # the move that failed in the window fails here too (conflicts/ unusable): never replayed,
                        # and said at every start, not only logged (a session-53 re-read)
                        log.warning("%s: cannot be set aside (%s): stays, never replayed", meta_path, exc)
                        stuck_reason = exc.strerror or str(exc)
                        superseded_stuck += 1
                        continue
                    superseded += 1
                    continue
                if match == MOVED:   # (an OSError: logged below, the file stays for the next start)
                    _file_pair(meta_path, root / REPLAYED, copy=True)
                mask, region = arrays.get("mask"), arrays.get("region")
                shape = self._file_shape(int(meta["image_id"]))
                other = self._other_image(int(meta["image_id"]), meta)
                if other or shape is not None and any(a is not None and a.shape != shape for a in (mask, region)):
                    # the file now holds a picture of another size (replaced and indexed meanwhile): the mask was
                    # drawn on the earlier one (a session-46 probe saved a 64 x 64 mask on a 128 x 96 picture); or
                    # the image id is another file's now, or its bytes changed
                    log.warning("%s: image %s is not the picture the label was made on (%s): kept aside",
                                meta_path, meta["image_id"], other or "its mask is of another size")
                    _set_aside(root, meta_path)
                    aside += 1
                    continue
                st = LabelState(meta.get("class_name"), mask, meta.get("anomaly_verdict"), region,
                                meta.get("review_state", "corrected"),
                                from_prediction_id=meta.get("from_prediction_id"),
                                objects=parse(meta.get("object_classes")),
                                from_model_version_id=self._version_id(meta.get("from_model_version_id")))
                base = meta.get("base_revision")
                author = meta.get("author") if isinstance(meta.get("author"), str) and meta.get("author") else None
                replay = Replay(meta_path, int(meta["image_id"]), st,
                                "recovered after a failed save" + _decided(meta.get("decided_at")),
                                None if base is None else int(base), author,
                                _source(meta.get("source")),   # (absent from older files: not said)
                                tuple(str(d) for d in meta.get("may_land") or ()),
                                meta["path"] if isinstance(meta.get("path"), str) and meta["path"] else None,
                                meta["db_file"] if match == MOVED else None)
                if busy >= BUSY_IN_A_ROW:
                    waiting.append(replay)   # the database is locked: not tried, it waits with the others
                    continue
                try:
                    kind, _saved = self.replay(replay, wait_s)
                except StorageBusy as exc:
                    log.warning("%s: the database is busy (%s): the label waits", meta_path, exc)
                    busy += 1
                    waiting.append(replay)
                    continue
                except LabelGone as exc:   # (went since ``_other_image`` looked, or its model answer did)
                    log.warning("%s: %s: kept aside", meta_path, exc)
                    busy = 0
                    aside += 1
                    continue
                busy = 0
                if kind == ASIDE:
                    aside += 1
                else:
                    saved += 1
                    if match == MOVED:
                        moved += 1
                        if meta["db_file"] not in moved_from:
                            moved_from.append(meta["db_file"])
            except Exception as exc:  # noqa: BLE001 - one bad recovery file must not stop the others; logged
                log.warning("could not replay %s: %s", meta_path, exc)
                continue
        # those copied and left waiting are said at start as well: the window's retry saved them on this file, and
        # nothing said the move (a session-53 review)
        moved_waiting = [r.moved_from for r in waiting if r.moved_from is not None]
        moved_from += [f for f in dict.fromkeys(moved_waiting) if f not in moved_from]
        kept = bool(moved or moved_waiting)
        return Recovered(saved, aside, str(root / CONFLICTS) if aside or unreadable or superseded else None, unreadable,
                         tuple(waiting), elsewhere, moved, tuple(moved_from), self._db_file() if kept else None,
                         str(root / REPLAYED) if kept else None, superseded, len(moved_waiting), superseded_stuck,
                         stuck_reason)

    def replay(self, r: Replay, wait_s: float | None = None) -> tuple[str, Saved | None]:
        """Save one recovery file's label on the revision it was made on, under the inspector who made it (not
        whoever starts the station next), and remove the file: ("saved", the revision), or ("held", None) where
        the database holds that label already (the save landed after the file was written), or (``ASIDE``, None)
        where someone saved the image since: their label stays and the file moves to ``recovery/conflicts``.
        ``StorageBusy`` (the file stays) where the lock was not had within ``wait_s``; ``LabelGone``, the file moved to
        ``recovery/conflicts`` first, where the image (or the model answer the label took from) is no longer stored:
        no one labelled it since, and the window's retry said so of such a label (a session-52 audit). ``recover``
        and the window's retry of a label ``recover`` left waiting (``ReviewController.adopt_recovered``) both call
        it."""
        image_id, st, note = r.image_id, r.state, r.note
        saved: Saved | None = None
        try:
            saved = self.save(image_id, st, note, expected_revision=r.base, author=r.author, source=r.source,
                              wait_s=wait_s)
        except LabelGone:
            self.set_aside(r)
            raise
        except LabelConflict:
            current = self.db.labels.current(image_id)
            own = self._own_landing(image_id, r.base, r.author, r.may_land) if current is not None else None
            if own is not None:  # only this window's own writes landed after the file: replayed on them
                try:
                    saved = self.save(image_id, st, note, expected_revision=own, author=r.author, source=r.source,
                                      wait_s=wait_s)
                    current = self.db.labels.current(image_id)
                except LabelConflict:
                    current = self.db.labels.current(image_id)
            if saved is None and (current is None or not _label_from_revision(current).same_content(st)):
                self.set_aside(r)
                return ASIDE, None
        self.drop_recovery(r)
        return ("saved", saved) if saved is not None else ("held", None)

    def set_aside(self, r: Replay) -> Path:
        """Move a recovery file's label (its JSON and masks) to ``conflicts`` beside it, for a person to look at, never
        replayed: one made before a newer label of its image, someone's saved since (``replay``) or the window's
        inspector's edit made while it waited behind another (``ReviewController``). Returns that folder. ``OSError``
        where a move fails (the file then stays where the next start looks)."""
        _set_aside(r.path.parent, r.path)
        return r.path.parent / CONFLICTS

    def mark_superseded(self, r: Replay, base: int | None) -> None:
        """Mark a recovery file's label superseded: the window's inspector labelled the image (on revision ``base``)
        while it waited, and it could not be set aside (``set_aside`` failed), so the next start sets it aside
        (``recover``) instead of saving it over that newer label. Not by ``base`` alone: where the database was still
        locked at close, the inspector's label went to a recovery file of its own on the same revision, the older file
        was replayed first and saved, and the inspector's went to conflicts (a session-53 review). ``base`` is written
        too, for a station that does not read the mark. The JSON is rewritten whole or not at all, as
        ``recovery_files`` writes it. ``OSError`` or ``ValueError`` where the file cannot be read or written."""
        meta = read_json_bounded(r.path)
        if not isinstance(meta, dict):
            raise ValueError(f"{r.path} is not a recovery file")
        meta["base_revision"] = base
        meta["superseded"] = {"by": self.settings.author, "at": datetime.now(timezone.utc).isoformat(),
                              "why": "labelled again in a window while this label waited behind another"}
        write_json_atomic(r.path, meta)

    def drop_recovery(self, r: Replay) -> None:
        """Remove a recovery file whose label is in the database (``replay``) or that a newer one of this window
        replaces (made on top of it, on screen). A file that cannot be removed is logged, not raised: its label is
        saved, and the file is replayed at the next start like any other (found held, or set aside)."""
        for path in (r.path, r.path.with_suffix(".npz")):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s: %s (it is replayed at the next start, or set aside)", path, exc)

    def _db_file(self) -> str | None:
        """The SQLite file the labels are made on, every link followed, as a recovery file records it (None: not a
        SQLite file). Resolved when written, not when read: a station opened through a link that was repointed later
        (``current.sqlite`` -> next week's file) gave the labels to the file the link named then, and the file they
        were made on refused them (a session-52 audit). Not its (device, inode) identity: a file deleted and another
        created beside it (``line3.sqlite`` gone, ``line4.sqlite`` new) often gets the freed inode, which would hand
        it the old file's labels, and a file replaced at its path (a backup moved over it) takes them by that path,
        as docs/database.md says."""
        here = self.db.file
        return None if here is None else str(_real_path(here) or here)

    def _this_database(self, meta: dict[str, Any]) -> str | None:
        """Whether a recovery file was written on this database: ``SAME`` where it names it (its file, or its URL),
        ``MOVED`` where this is taken to be the database it names, moved, None where not. For SQLite: on this file,
        however either URL was spelled (a session-52 audit: a label kept by a station started with
        ``sqlite:///line3.sqlite`` was never replayed by one opening the same file as ``sqlite:////abs/line3.sqlite``,
        nor the other way round, and two files both opened as ``sqlite:///line3.sqlite`` from different folders took
        each other's). A file written before it recorded the database's file (``db_file``) is this one's by its URL as
        written, or by the file that URL names read from the folder the station runs in.

        A file that also records the database's own id (``Database.identity``) is this one's where the ids are the
        same, the file opened is the one it was written on (the same (st_dev, st_ino), ``Database.file_inode``) and
        no file is left at the path it records: the database was moved to another folder (a session-52 audit: its
        labels were "another database's" at every start, never replayed). A copy of the database (a backup opened to
        look at it) has its id too, and must not take the labels of the file it was copied from: while that file is
        at the recorded path the path decides, and once it has moved the copy is another file (a session-53 review:
        a backup opened first took, and removed, the moved original's labels). A move to another filesystem gives
        the file another (st_dev, st_ino): its labels are another database's there, as before the id. The inode is
        not proof: once the original has left its filesystem (moved away, or deleted), a copy made there afterwards
        often gets its freed inode, and is taken for it; hence ``MOVED``, on which ``recover`` keeps a copy of each
        file and says where its labels went."""
        here = self.db.file
        if here is None:
            return SAME if meta.get("db") == self.db.url else None
        recorded = meta.get("db_file")
        same_file = self.db.file_inode is not None and meta.get("db_inode") == list(self.db.file_inode)
        if isinstance(recorded, str) and isinstance(meta.get("db_id"), str) and meta["db_id"] == self.db.identity \
                and same_file and (moved_from := _real_path(Path(recorded))) is not None and not moved_from.exists():
            return MOVED
        if not isinstance(recorded, str):
            if meta.get("db") == self.db.url:
                return SAME
            named = sqlite_file(meta["db"]) if isinstance(meta.get("db"), str) else None
            if named is None:
                return None
            recorded = str(named)
        theirs = _real_path(Path(recorded))
        return SAME if theirs is not None and theirs == _real_path(here) else None

    def _other_image(self, image_id: int, meta: dict[str, Any]) -> str | None:
        """Why the image ``meta``'s label was made on is not ``image_id``'s now (None: it is, or the file does not
        say: written before it recorded the path and the hash)."""
        info = self.db.images.get(image_id)
        if info is None:
            return "the image is gone"
        path, digest = meta.get("path"), meta.get("content_hash")
        now = self.db.images.path_of(image_id)
        if path and (now is None or Path(now) != Path(path)):
            return f"the id is {now}'s now, the label was made on {path}"
        if digest and info.content_hash and digest != info.content_hash:
            return "its file holds other bytes now"
        return None

    def _version_id(self, value: Any) -> int | None:
        """A recovery file's model version id where it names one of this database's versions, else None: the file is
        user data, and an id past the column's range made the save raise, its label never replayed nor set aside
        (the review of session 47)."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2 ** 31:
            return None
        return value if self.db.model_versions.get(value) is not None else None

    def _file_shape(self, image_id: int) -> tuple[int, int] | None:
        """(height, width) of the image's file now, from its header (None: not known)."""
        from inference.imageio import stored_size

        path = self.db.images.path_of(image_id)
        size = stored_size(path) if path is not None else None  # as stored, not EXIF-turned (the session-46 review)
        return (size[1], size[0]) if size else None

    def _own_landing(self, image_id: int, base: int | None, author: str | None, may_land: tuple[str, ...]
                     ) -> int | None:
        """The image's current revision when every revision saved after ``base`` is one of the labels the file's
        window still had on its way (``may_land``: same author, same content): closing without waiting for them,
        the window based its file on the revision before them, and they landed afterwards. Seen by a session-43
        probe: the newest edit was set aside at the next start as if another station had labelled the image.
        None otherwise (someone else saved it: their label stays)."""
        landing = set(may_land)
        if not landing or base is None:
            return None
        after = [r for r in self.db.labels.history(image_id) if r.revision > base]
        if not after or any(r.author != author
                            or _label_from_revision(r).content_digest() not in landing for r in after):
            return None
        return max(r.revision for r in after)


def _real_path(path: Path) -> Path | None:
    """``path`` absolute, ``~`` expanded and every link followed (None: a path no system reads, a loop of links or a
    NUL): the one reading by which a recovery file's database is recorded and compared (``ReviewService._db_file``)."""
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _set_aside(root: Path, meta_path: Path) -> None:
    """A recovery file and its masks to ``root/conflicts``, for a person to look at (never replayed)."""
    _file_pair(meta_path, root / CONFLICTS)


def _file_pair(meta_path: Path, into: Path, copy: bool = False) -> None:
    """Move (or ``copy``) a recovery file and its masks into the folder ``into``. The masks go first: a station killed
    between the two moves leaves the JSON where the next start looks, and that start moves it after its masks
    (``recover``); moved second, the masks were left in the recovery folder beside no JSON, the pair split for good
    (a session-52 audit). ``OSError`` where a move or copy fails."""
    into.mkdir(parents=True, exist_ok=True)
    for path in (meta_path.with_suffix(".npz"), meta_path):
        if path.exists():
            if copy:
                shutil.copy2(path, into / path.name)
            else:
                path.replace(into / path.name)


def _sweep_leftovers(root: Path) -> None:
    """Remove what failed or killed writes of recovery files left in ``root`` and its ``conflicts``: masks without
    their JSON, temporary files. Only those older than ``LEFTOVER_AGE_S``: a station sharing this home may be
    writing the pair right now (the masks go first, the JSON after them). Masks whose JSON is in the other folder
    are a pair being set aside (``_set_aside``) by a station sharing this home, or by one killed between its two
    moves: kept (a two-day-old pair swept between them lost its masks, a session-52 audit)."""
    now = time.time()
    folders = (root, root / CONFLICTS)
    for folder in folders:
        for path in [*folder.glob("*.npz"), *folder.glob("*.tmp")] if folder.is_dir() else []:
            try:
                if path.suffix == ".npz" and any((f / path.with_suffix(".json").name).exists() for f in folders) \
                        or now - path.stat().st_mtime < LEFTOVER_AGE_S:
                    continue
                path.unlink()
            except OSError as exc:   # gone meanwhile, or not ours to remove: the next start looks again
                log.debug("recovery leftover %s: %s", path, exc)
                continue
            log.info("removed %s: left by a recovery file's failed write", path)


def recovery_arrays(path: Path) -> dict[str, np.ndarray]:
    """The masks of a recovery file, each checked from its header before it is read: a 2-D array of at most
    ``MAX_PIXELS`` (a session-46 probe: a 299 KB file holding a 16000 x 16000 mask took 2.3 GB at start-up).
    ValueError for anything else."""
    import zipfile

    from inference.imageio import MAX_PIXELS

    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            key = name.removesuffix(".npy")
            if key not in ("mask", "region"):
                raise ValueError(f"unexpected array {name!r}")
            with zf.open(name) as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read_header(fh)
                if len(shape) != 2 or shape[0] * shape[1] > MAX_PIXELS or dtype != np.dtype(bool):
                    raise ValueError(f"{key} is {dtype} of shape {shape}, not a mask")
    with np.load(path, allow_pickle=False) as z:
        for key in ("mask", "region"):
            if key in z:
                out[key] = z[key]
    return out


@dataclass(frozen=True)
class Recovered:
    """What ``recover`` did: labels saved (or found saved already), labels kept aside in ``aside`` because the image
    changed after them (someone labelled it, or its file was replaced), and files no start could read, put there too."""

    saved: int = 0
    kept_aside: int = 0
    aside: str | None = None
    unreadable: int = 0
    waiting: tuple[Replay, ...] = ()   # refused as busy: still in their files, for the window to keep and retry
    # files written on another database, left where they are: a file whose database was moved, or was opened by a
    # link since repointed, stayed in recovery/ at every start and nobody was told (a session-52 audit)
    elsewhere: int = 0
    # of ``saved``, labels kept for a database file no longer at its path (``moved_from``) saved on this one
    # (``moved_to``), taken to be it moved: a backup given its freed inode is taken for it too (a session-53 review),
    # so each such recovery file is copied to ``replayed`` first
    moved: int = 0
    moved_from: tuple[str, ...] = ()
    moved_to: str | None = None
    replayed: str | None = None
    # labels kept aside in ``aside`` because their files were marked superseded (``mark_superseded``)
    superseded: int = 0
    # of ``waiting``, labels taken to be the moved database's as ``moved`` (copied to ``replayed`` too)
    moved_waiting: int = 0
    # labels marked superseded that could not be moved to conflicts/ either (``stuck_reason``): left in the recovery
    # folder, never replayed, said at every start
    superseded_stuck: int = 0
    stuck_reason: str = ""


@dataclass(frozen=True)
class Replay:
    """A recovery file's label, read and checked against the picture now, ready for ``ReviewService.replay``."""

    path: Path                  # its JSON (the masks beside it: .npz)
    image_id: int
    state: LabelState
    note: str                   # "recovered after a failed save (decided …)"
    base: int | None            # the revision it was made on (None: not known)
    author: str | None          # who made it
    source: str | None          # how the image came to be labelled
    may_land: tuple[str, ...]   # content digests of the writes its window still had on their way
    image_path: str | None = None   # the image's file as the label was made on it (None: an older file)
    moved_from: str | None = None   # the database file it records, where it is taken to be this one moved (``MOVED``)

    def image(self) -> str:
        """The image named for a person: by its file where the recovery file says it, else by its id."""
        return self.image_path or f"image {self.image_id}"


ASIDE = "aside"    # ``replay``: someone saved the image since; the file went to recovery/conflicts
LEFTOVER_AGE_S = 3600.0  # masks without their JSON this old are a failed write's, not one on its way (``recover``)
BUSY_IN_A_ROW = 2  # refusals for the lock in a row after which ``recover`` tries no more files (SQLite: all locked)



CONFLICTS = "conflicts"  # below recovery_dir(): refused saves kept for a person (recover skips it)
REPLAYED = "replayed"    # below recovery_dir(): copies of files replayed on a database taken to be theirs moved
SAME, MOVED = "same", "moved"   # ``_this_database``: the file names this database; it is taken to be its moved


def _prediction_mask(p: PredictionView) -> np.ndarray | None:
    """The segmenter's answer as a label mask, where it stands (not out of domain). Its "no target" is an answer
    too: accepted, it is a reviewed frame without targets (an empty mask, ADR 0069), which the masks export and a
    segmenter retraining read as background. Seen at the station: 11 accepted infrared frames gave "needs at least
    10 reviewed frames with masks; there are 9". Alone, so the first mask edit does not resize the heatmap."""
    return p.mask if p.mask is not None and answer_stands("segmenter", p.out_of_domain) else None


def recovery_dir() -> Path:
    return data_dir() / "recovery"


def _label_from_revision(rev: LabelRevisionInfo) -> LabelState:
    def mask(data: bytes | None) -> np.ndarray | None:
        if data is None:
            return None
        try:
            return decode_mask_png(data)
        except DisplayError:
            return None
    label_mask = mask(rev.mask_png)
    return LabelState(class_name=rev.class_name, mask=label_mask,
                      anomaly_verdict=rev.anomaly_verdict.value if rev.anomaly_verdict else None,
                      anomaly_region=mask(rev.anomaly_mask_png), review_state=str(rev.review_state.value),
                      revision=rev.revision, author=rev.author, from_prediction_id=rev.from_prediction_id,
                      note=rev.note, objects=resolve(label_mask, _objects(rev)),
                      from_model_version_id=rev.from_model_version_id)


def _decided(value: Any) -> str:
    """" (decided 2026-12-07T02:16:28+00:00)" from a recovery file's time, or "" where it holds none we can read."""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) and len(value) < 40 else None
    except ValueError:
        when = None
    return f" (decided {when.isoformat(timespec='seconds')})" if when is not None and when.tzinfo else ""


def _source(value: Any) -> str | None:
    """A recovery file's ``source`` as a ``LabelSource`` value, or None for anything else (a hand-edited file or one
    of a newer station): such a label is saved as one whose source is not said, never as what the file claims."""
    from database import LabelSource
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return LabelSource(value).value
    except ValueError:
        pass
    log.warning("a recovery file's label source %r is not one this station knows: not kept", str(value)[:40])
    return None


def _objects(rev: LabelRevisionInfo | RevisionSummary) -> tuple[ObjectClass, ...]:
    """A revision's object classes; a row another program garbled reads as none (logged), never a crash."""
    try:
        return parse(rev.object_classes)
    except ObjectClassError as exc:
        log.warning("image %s revision %s: object classes ignored: %s", rev.image_id, rev.revision, exc)
        return ()


def _queue_item(r: QueueRow) -> QueueItem:
    return QueueItem(
        image_id=r.image_id, folder_id=r.folder_id, rel_path=r.rel_path,
        path=str(Path(r.root_path) / r.rel_path), review_state=r.review_state, flagged=bool(r.flagged),
        predicted_class=r.predicted_class, confidence=r.confidence, anomaly_score=r.anomaly_score,
        target_count=r.target_count, label_class=r.label_class,
        error=MISSING if r.missing else r.error,
        has_prediction=any(v is not None for v in (r.predicted_class, r.confidence, r.target_count,
                                                   r.anomaly_score)),
        content_hash=r.content_hash,
        out_of_domain=tuple(f for f, v in r.in_domain.items() if is_out_of_domain(v)),
        flag_override=r.flag_override, flag_by=r.flag_by, anomaly_version=r.anomaly_version,
    )
