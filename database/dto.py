"""Frozen data objects the repositories return (and a few they take).

They are plain data, safe to pass between threads and processes; no ORM row ever leaves
``database/``. JSON columns come back as fresh dicts/tuples owned by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from database.states import AnomalyVerdict, ItemStatus, JobStatus, LabelSource, ReviewState


@dataclass(frozen=True, slots=True)
class FolderInfo:
    id: int
    root_path: str
    name: str
    added_at: datetime
    indexed_at: datetime | None


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file seen by the indexer, relative to its folder's root (forward slashes)."""

    rel_path: str
    size_bytes: int
    mtime_ns: int
    content_hash: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class IndexResult:
    added_ids: tuple[int, ...]
    changed_ids: tuple[int, ...]  # content changed: their predictions were dropped
    unchanged: int
    missing: int                  # rows whose file is gone (kept, with their labels)
    restored: int                 # rows whose file came back
    # changed rows whose old and new bytes are both known and differ (not a file that could not be read)
    content_changed_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageInfo:
    id: int
    folder_id: int
    rel_path: str
    content_hash: str | None
    size_bytes: int
    mtime_ns: int
    width: int | None
    height: int | None
    review_state: ReviewState
    flagged: bool
    priority: float
    missing: bool
    error: str | None
    added_at: datetime
    updated_at: datetime
    trace_serial: str | None = None
    trace_lot: str | None = None
    trace_station: str | None = None
    flag_override: bool | None = None  # an inspector's flag decision (None: the models decide)
    flag_by: str | None = None


SortKey = Literal["rel_path", "priority", "updated_at", "confidence", "anomaly_score", "id"]


@dataclass(frozen=True, slots=True)
class ImageQuery:
    """Filters and order of the review queue / gallery.

    ``model_version_id`` selects whose prediction ``predicted_class``, the score bounds and the
    score sorts refer to; images without such a prediction sort last.
    """

    folder_id: int | None = None
    states: tuple[ReviewState, ...] = ()
    flagged: bool | None = None
    include_missing: bool = False
    path_contains: str | None = None
    model_version_id: int | None = None
    predicted_class: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    min_anomaly_score: float | None = None
    max_anomaly_score: float | None = None
    has_error: bool | None = None
    sort: SortKey = "rel_path"
    descending: bool = False
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ClassInfo:
    id: int
    task: str
    name: str
    index: int


@dataclass(frozen=True, slots=True)
class ModelVersionInfo:
    id: int
    family: str
    name: str
    checkpoint_path: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    card: dict[str, Any]
    active: bool
    bundled: bool
    parent_id: int | None
    created_at: datetime
    challenger: bool = False   # registered for review beside the active version (app/services/champion.py)


@dataclass(frozen=True, slots=True)
class ModelActivationInfo:
    """One recorded change of a family's active version (``model_activations``)."""

    id: int
    family: str
    version_id: int | None
    previous_id: int | None
    version_name: str
    previous_name: str | None
    action: str          # activate | promote | rollback
    author: str
    note: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PredictionIn:
    """What a worker stores for one image and model version (replaces an earlier one)."""

    image_id: int
    model_version_id: int
    class_scores: dict[str, float] | None = None
    predicted_class: str | None = None
    confidence: float | None = None
    mask_png: bytes | None = None
    mask_ref: str | None = None
    target_count: int | None = None
    anomaly_score: float | None = None
    anomaly_map_ref: str | None = None
    flags: tuple[str, ...] = ()
    in_domain: float | None = None  # the model's in-domain score (inference.domain); None: no statistics
    domain_note: str | None = None  # why it is out of domain (inference.domain_notes); None inside or not known
    # The image's routing rule names this version (a routed job's pinned family): this row counts for
    # the image whatever the active version is (``database/current_predictions``). False: it counts
    # when its version is the active one and no named version's row counts there.
    counts: bool = False


@dataclass(frozen=True, slots=True)
class PredictionInfo:
    id: int
    image_id: int
    model_version_id: int
    class_scores: dict[str, float] | None
    predicted_class: str | None
    confidence: float | None
    mask_png: bytes | None
    mask_ref: str | None
    target_count: int | None
    anomaly_score: float | None
    anomaly_map_ref: str | None
    flags: tuple[str, ...]
    created_at: datetime
    in_domain: float | None = None
    domain_note: str | None = None
    # Its version's family when it is the prediction that counts for the image, else None.
    current_family: str | None = None


class _Unchanged:
    """Marker: keep this field as the previous revision had it."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __bool__(self) -> bool:
        return False


UNCHANGED: Any = _Unchanged()


@dataclass(frozen=True, slots=True)
class LabelChange:
    """An edit of an image's label. Fields left ``UNCHANGED`` carry over from the current
    revision; ``None`` clears a field. Each revision stores the whole resulting label."""

    review_state: ReviewState
    class_name: str | None = UNCHANGED
    mask_png: bytes | None = UNCHANGED
    anomaly_verdict: AnomalyVerdict | None = UNCHANGED
    anomaly_mask_png: bytes | None = UNCHANGED
    from_prediction_id: int | None = None
    note: str | None = None
    object_classes: list[dict[str, Any]] | None = UNCHANGED  # seeds of the mask's classified components
    source: LabelSource | None = None  # how the image came to be labelled, when known (e.g. a "label next" proposal)
    # the model the label was taken from where no prediction row says it any more (a revision brought back after its
    # prediction was dropped: the window's restore left the audit's model column empty, a session-47 audit)
    from_model_version_id: int | None = None


@dataclass(frozen=True, slots=True)
class LabelRevisionInfo:
    id: int
    image_id: int
    revision: int
    author: str
    created_at: datetime
    changed: tuple[str, ...]  # what differs from the previous revision: class, mask, verdict, anomaly_mask, state
    class_name: str | None
    mask_png: bytes | None
    anomaly_verdict: AnomalyVerdict | None
    anomaly_mask_png: bytes | None
    review_state: ReviewState
    from_prediction_id: int | None
    note: str | None
    trace: dict[str, str] | None = None  # serial/lot/station of the image when this revision was saved
    object_classes: list[dict[str, Any]] | None = None  # [{"x", "y", "class"}]; None: the image's class
    source: str | None = None  # LabelSource value: how the image came to be labelled; None: not said
    from_model_version_id: int | None = None  # the model the label was taken from (kept when its prediction goes)
    # What this save did to the image's review state (a save or a revert; None for revisions read
    # back). Not part of the revision: two DTOs of one revision are equal with or without it.
    moved: StateMove | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RevisionSummary:
    """A revision as the label history lists it: whether it holds a mask or an anomaly region, not their bytes (the
    history dock read every revision's masks at each label change: a session-51 audit). ``LabelRevisionInfo`` is the
    whole revision."""
    image_id: int
    revision: int
    author: str
    created_at: datetime
    changed: tuple[str, ...]
    class_name: str | None
    anomaly_verdict: AnomalyVerdict | None
    review_state: ReviewState
    note: str | None
    has_mask: bool
    has_anomaly_mask: bool
    trace: dict[str, str] | None = None
    object_classes: list[dict[str, Any]] | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class StateMove:
    """One save's move of its image between review states, read under the save's row lock (so
    exact even with other stations saving): ``folder_id``'s per-state counts lose one
    ``before`` and gain one ``after``. ``counted``: the image is not missing (the counts skip
    missing images)."""

    image_id: int
    folder_id: int
    before: ReviewState
    after: ReviewState
    counted: bool


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: int
    kind: str
    status: JobStatus
    params: dict[str, Any]
    result: dict[str, Any] | None
    priority: int
    progress_done: int
    progress_failed: int
    progress_total: int
    message: str | None
    error: str | None
    claimed_by: str | None
    attempts: int
    heartbeat_at: datetime | None
    cancel_requested: bool
    has_items: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status.finished


@dataclass(frozen=True, slots=True)
class JobItemInfo:
    id: int
    job_id: int
    image_id: int | None
    status: ItemStatus
    claimed_by: str | None
    claimed_at: datetime | None
    attempts: int
    error: str | None
    image_path: str | None = None  # folder root joined with the image's relative path
    folder_root: str | None = None  # the image's folder root as stored (a worker that does not see it leaves the item)
    content_hash: str | None = None  # the image's bytes when the item was claimed (a batch's answers are for those)


@dataclass(frozen=True, slots=True)
class ClaimedBatch:
    job: JobInfo
    items: tuple[JobItemInfo, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    current_job_id: int | None
