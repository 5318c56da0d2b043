"""The plain, frozen records the review station's screens work with.

They are what ``ReviewService`` hands out and takes back: no ORM rows and no Qt objects, so the
GUI can hold them, pass them to pool threads and compare them in undo commands. Masks are numpy
bool arrays at the image's own size.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from app.services.object_classes import ObjectClass
from app.services.wording import agree, plural
from inference import families
from inference.results import MODEL_FAILED

REVIEW_STATES = ("unreviewed", "accepted", "corrected", "rejected")
VERDICTS = ("normal", "anomalous")
SORT_KEYS = ("name", "uncertainty", "anomaly", "confidence", "targets", "state", "label_next")


@dataclass(frozen=True)
class FolderInfo:
    id: int
    name: str
    root_path: str
    image_count: int = 0
    note: str = ""  # what indexing wants the inspector to know (e.g. bad rows of trace.csv)


@dataclass(frozen=True)
class FolderChange:
    """What a re-scan of an open folder found on disk since the last one (``ReviewService.rescan_folder``)."""

    folder_id: int
    name: str
    added: int = 0       # new image files indexed
    changed: int = 0     # files whose content changed (their predictions are stale)
    restored: int = 0    # files back after they had gone
    gone: int = 0        # files that disappeared (rows kept, labels and all, marked missing)
    unreadable: int = 0  # files that could not be read while hashing
    seconds: float = 0.0  # how long the scan took (the window spaces its re-scans by it)
    new_ids: tuple[int, ...] = ()  # the added and changed images (what the window pre-labels)
    moved_ids: tuple[int, ...] = ()  # images whose file was moved or renamed inside the folder: their rows followed
    set_aside: int = 0   # of the changed ones, reviewed images whose label went into the history (other pixels now)
    renamed_to: str | None = None  # the folder was renamed on disk to this path: its row followed it

    @property
    def moved(self) -> int:
        return len(self.moved_ids)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.restored or self.gone or self.unreadable or self.moved
                    or self.renamed_to)

    def summary(self) -> str:
        counts = [(n, what) for n, what in ((self.added, "new"), (self.changed, "changed"),
                                            (self.moved, "moved or renamed"),
                                            (self.restored, "back"), (self.gone, "gone"),
                                            (self.unreadable, "unreadable")) if n]
        parts = [f"{n} {what}" for n, what in counts]
        counted = sum(n for n, _ in counts)
        renamed = (f"{self.name}: renamed on disk to {self.renamed_to}; followed there, with its labels"
                   if self.renamed_to is not None else "")
        if not parts:
            return renamed or f"{self.name}: unchanged"
        notes = [n for n in ("moved ones keep their labels" if self.moved else "",
                             f"{plural(self.set_aside, 'changed one')} back to unreviewed, "
                             f"{agree(self.set_aside, 'its label', 'their labels')} kept in the history"
                             if self.set_aside else "") if n]
        files = "image file" if counted == 1 else "image files"  # "1 new, 1 gone image files": by all of them
        text = f"{self.name}: {', '.join(parts)} {files} on disk" + (f" ({'; '.join(notes)})" if notes else "")
        return f"{renamed}. {text}" if renamed else text


MISSING = "file is missing"  # a QueueItem's error when its file is gone (its row and labels are kept)
# How the worker begins the reason it stores on an image it read but could not pre-label (``Worker._retry``): a model
# that raised on it alone, or the worker stopping on an error with it in hand. The file is fine.
PREDICTION_FAILED = "prediction failed: "
WORKER_STOPPED = "the worker stopped on an error while processing it: "


def prelabel_failure(error: str | None) -> bool:
    """Whether an image's stored error (``QueueItem.error``) is its pre-labelling's, the file being read fine, rather
    than its file's own (one the reader refused, or the indexer could not read). The image row keeps one text for both
    (so automatic pre-labelling leaves either alone, and the export decodes either before trusting the file); only the
    worker's own wordings tell them apart. A session-52 audit: the label panel said "Cannot load: anomaly model failed:
    …" for a file that reads fine, and the inspector took the image for broken."""
    if not error:
        return False
    family, model_failed, _ = error.partition(MODEL_FAILED)
    return (bool(model_failed) and family in families.NAMES) or error.startswith((PREDICTION_FAILED, WORKER_STOPPED))


@dataclass(frozen=True)
class QueueItem:
    """One gallery cell: enough to draw badges and to sort/filter without loading pixels."""

    image_id: int
    folder_id: int
    rel_path: str
    path: str
    review_state: str = "unreviewed"
    flagged: bool = False
    predicted_class: str | None = None
    confidence: float | None = None
    anomaly_score: float | None = None
    target_count: int | None = None
    label_class: str | None = None
    error: str | None = None
    has_prediction: bool = False
    content_hash: str | None = None  # keys the on-disk thumbnail cache
    out_of_domain: tuple[str, ...] = ()  # families whose active model calls the image unlike its training images
    flag_override: bool | None = None  # an inspector's flag decision, kept over the models' (None: theirs)
    flag_by: str | None = None         # who set it
    anomaly_version: int | None = None  # the version whose anomaly score this is (its threshold colours the chip)

    @property
    def name(self) -> str:
        return self.rel_path.rsplit("/", 1)[-1]

    @property
    def flag_text(self) -> str:
        """What the flag is and whose decision it is, for a tooltip or the status bar."""
        if self.flag_override is None:
            return "flagged by the models" if self.flagged else "not flagged"
        by = f" by {self.flag_by}" if self.flag_by else " by an inspector"
        return ("flagged" if self.flag_override else "flag removed") + by + " (kept over the models' flags)"

    @property
    def uncertainty(self) -> float:
        """1 - confidence: what an inspector should look at first (no prediction = most uncertain)."""
        return 1.0 if self.confidence is None else 1.0 - float(self.confidence)


@dataclass(frozen=True)
class FlagDecision:
    """An image's flag as stored: ``override`` None leaves it to the models (``flagged`` is what they said when it
    was read), True or False is an inspector's (``by``), kept over theirs. F's undo puts back the one F replaced: it
    wrote an inspector's "flag removed" over the models' flag, so a later pre-label run or threshold change that
    flagged the image was ignored (a session-51 audit)."""

    flagged: bool
    override: bool | None = None
    by: str | None = None

    @classmethod
    def of(cls, item: QueueItem) -> FlagDecision:
        return cls(item.flagged, item.flag_override, item.flag_by)

    @classmethod
    def inspector(cls, flagged: bool, by: str | None) -> FlagDecision:
        """F's decision: flagged or not by ``by``, whatever the models say later."""
        return cls(flagged, flagged, by)


@dataclass(frozen=True)
class QueueFilter:
    """What the review queue shows, and in which order."""

    folder_id: int | None = None
    states: frozenset[str] = frozenset()  # empty = every state
    flagged_only: bool = False
    class_name: str | None = None  # predicted or labelled class
    score_min: float | None = None  # anomaly score range
    score_max: float | None = None
    out_of_domain_only: bool = False  # only images an active model calls out of domain
    text: str = ""
    sort: str = "name"
    descending: bool = False
    ranking: tuple[int, ...] = ()  # sort "label_next": the proposed image ids, best first

    def with_(self, **changes: Any) -> "QueueFilter":
        return replace(self, **changes)

    @property
    def narrows(self) -> bool:
        """Whether it may list fewer than the folder's images (a state, flag, class, score, out-of-domain or name
        filter; an order lists them all): an empty view is then not an empty folder."""
        return bool(self.states or self.flagged_only or self.class_name or self.score_min is not None
                    or self.score_max is not None or self.out_of_domain_only or self.text)


@dataclass(frozen=True)
class QueuePage:
    """A page of the queue and where it ended (an opaque cursor: pass it back as ``after`` to
    read the next page without walking to its position)."""

    items: list[QueueItem]
    cursor: object | None


@dataclass(frozen=True)
class PredictionView:
    """The merged model output for one image (classifier + segmenter + anomaly families)."""

    prediction_ids: dict[str, int] = field(default_factory=dict)  # family -> prediction id
    predicted_class: str | None = None
    confidence: float | None = None
    class_scores: dict[str, float] = field(default_factory=dict)
    mask: np.ndarray | None = None
    target_count: int | None = None
    anomaly_score: float | None = None
    heatmap: np.ndarray | None = None
    heat_range: tuple[float, float] | None = None  # colour-map range: the pixel threshold sits mid-scale
    anomalous: bool | None = None  # anomaly score over the reviewer's threshold
    threshold: float | None = None  # the image-level threshold the verdict used
    flags: tuple[str, ...] = ()
    models: dict[str, str] = field(default_factory=dict)  # family -> model version name
    out_of_domain: tuple[str, ...] = ()  # families whose model calls the image unlike its training images
    in_domain: dict[str, float] = field(default_factory=dict)  # family -> in-domain score (where known)
    domain_notes: dict[str, str] = field(default_factory=dict)  # family -> why it is out of domain (where known)
    version_ids: dict[str, int] = field(default_factory=dict)  # family -> the model version whose answer this is
    # Why the anomaly family's map is not drawn although it made one (not on this station, unreadable);
    # None when it is here or there is none (ADR 0061)
    heatmap_missing: str | None = None
    # family -> when its answer was stored: a job that runs a version again rewrites its row (same id)
    answered_at: dict[str, Any] = field(default_factory=dict)

    @property
    def pixel_threshold(self) -> float | None:
        """The anomaly model's region threshold (mid-scale of ``heat_range``): a map's pixels at or above it are the
        region Accept takes; None without a map."""
        return None if self.heat_range is None else (self.heat_range[0] + self.heat_range[1]) / 2.0

    def same_answers(self, other: "PredictionView") -> bool:
        """The same stored answers, with their maps as available: nothing to redraw."""
        return (self.prediction_ids == other.prediction_ids and self.answered_at == other.answered_at
                and self.heatmap_missing == other.heatmap_missing)


@dataclass(frozen=True, eq=False)
class LabelState:
    """The editable label of one image (what a revision stores)."""

    class_name: str | None = None
    mask: np.ndarray | None = None
    anomaly_verdict: str | None = None
    anomaly_region: np.ndarray | None = None
    review_state: str = "unreviewed"
    revision: int = 0
    author: str | None = None
    from_prediction_id: int | None = None
    note: str | None = None
    objects: tuple[ObjectClass, ...] = ()  # classes of the mask's own objects (canonical seeds; the rest: class_name)
    from_model_version_id: int | None = None  # the model it came from, where its prediction row is gone

    def same_content(self, other: "LabelState") -> bool:
        """Equal labels (ignoring who/when), used to skip no-op saves."""
        return (self.class_name == other.class_name
                and self.objects == other.objects
                and self.anomaly_verdict == other.anomaly_verdict
                and self.review_state == other.review_state
                and _same_mask(self.mask, other.mask, empty_is_an_answer=True)
                and _same_mask(self.anomaly_region, other.anomaly_region))

    def content_digest(self) -> str:
        """A short fingerprint that two labels share exactly when ``same_content`` holds: a recovery file names the
        labels this window still had on their way with it, so the next start can tell their landing from another
        station's save."""
        h = hashlib.sha256(repr((self.class_name, self.objects, self.anomaly_verdict, self.review_state)).encode())
        for m, empty_is_an_answer in ((self.mask, True), (self.anomaly_region, False)):
            if m is None or not (empty_is_an_answer or m.any()):
                h.update(b"-")
            else:
                h.update(repr(m.shape).encode() + np.packbits(m.astype(bool)).tobytes())
        return h.hexdigest()[:32]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelState) and self.same_content(other) and self.revision == other.revision

    __hash__ = None  # type: ignore[assignment]

    def with_(self, **changes: Any) -> "LabelState":
        return replace(self, **changes)


def _same_mask(a: np.ndarray | None, b: np.ndarray | None, empty_is_an_answer: bool = False) -> bool:
    """``empty_is_an_answer``: an empty mask ("no target here", ADR 0069) differs from None ("not set"); a probe found
    one eraser stroke on a label without a mask taken for no change, so "no target" was never saved. An anomaly
    region is stored only where one is drawn, so there the two are one."""
    if a is None or b is None:
        if empty_is_an_answer:
            return a is None and b is None
        return (a is None or not a.any()) and (b is None or not b.any())
    return a.shape == b.shape and bool(np.array_equal(a.astype(bool), b.astype(bool)))


@dataclass(frozen=True)
class StateMove:
    """What one save did to the folder's per-state counts: one image left ``before`` for
    ``after`` (read under the save's lock, so exact whatever the gallery's copy of the row
    said). ``counted``: the image is one the counts include (not missing)."""

    image_id: int
    folder_id: int
    before: str
    after: str
    counted: bool = True

    def moves(self, folder_id: int | None) -> bool:
        """Whether the counts of ``folder_id`` (None: every folder) change by this save."""
        return self.counted and self.before != self.after and folder_id in (None, self.folder_id)

    def undone(self) -> "StateMove":
        """The move back (a guessed move taken back when the database's answer comes)."""
        return replace(self, before=self.after, after=self.before)

    def applied(self, counts: dict[str, int], folder_id: int | None) -> dict[str, int]:
        """``counts`` (of ``folder_id``'s review states) after this save."""
        out = dict(counts)
        if self.moves(folder_id):
            out[self.before] = max(0, out.get(self.before, 0) - 1)
            out[self.after] = out.get(self.after, 0) + 1
        return out


@dataclass(frozen=True)
class Saved:
    """A stored label (revision, author, note filled in) and the state move it made (None:
    not known, e.g. a save of before this record existed)."""

    label: LabelState
    moved: StateMove | None = None


@dataclass(frozen=True)
class ImageDetail:
    item: QueueItem
    width: int | None
    height: int | None
    prediction: PredictionView | None
    label: LabelState
    prelabel_error: str | None = None  # why the latest pre-label run of this image failed (no prediction)
    trace: dict[str, str] = field(default_factory=dict)  # the part's serial/lot/station (known ones only)
    # The class buttons for this image (``ReviewService._classes_here``): the classes of the classifier
    # version whose answer counts here, else the project's own list, else the version its routing rule
    # names. Empty where a classifier runs: the folder's list stands.
    classes: tuple[str, ...] = ()
    # False where the model routing runs no classifier on this image: ``classes`` are then only those labels in
    # its subfolder use (none: no buttons, and the panel says why), never another part's model's classes.
    classifier_runs: bool = True
    pages: int = 1  # images the file holds (a multi-page TIFF): only the first is shown, labelled and pre-labelled
    # why the station cannot read the file (``unreadable_file``: its size and header, no decoding), or None: A, the
    # class and verdict keys refuse it from the label's arrival, before the viewer has decoded anything
    unreadable: str | None = None


@dataclass(frozen=True)
class RevisionInfo:
    revision: int
    author: str
    created_at: datetime
    changed: str
    review_state: str
    class_name: str | None
    anomaly_verdict: str | None
    has_mask: bool
    has_region: bool
    note: str | None = None
    trace: dict[str, str] = field(default_factory=dict)  # the part as recorded with this revision
    object_classes: tuple[str, ...] = ()  # the classes objects had of their own, in reading order
    source: str | None = None  # how the image came to be labelled ("label_next": a proposal of label next)
