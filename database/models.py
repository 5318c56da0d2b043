"""ORM schema: the tables every other part of the station reads and writes through repositories.

Nothing outside ``database/`` sees these classes; repositories translate rows into frozen DTOs so
a session's lifetime never leaks into the GUI thread or a worker process.

Statuses are stored as short strings guarded by CHECK constraints (rather than native enums)
so the same migration runs on SQLite and PostgreSQL and adding a state later is a plain
constraint change.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from enum import Enum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from database.states import ItemStatus, JobStatus, ReviewState
from database.types import UTCDateTime

# Deterministic constraint names: migrations on SQLite (batch mode) need them to alter tables.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def db_now(s: Session) -> datetime:
    """Now by the database's clock (UTC): what heartbeats, claims and label revisions are stamped with. Each station
    stamped its own clock, so a line PC 90 s behind had a healthy worker's batches taken as stale (a session-45 probe)
    and its revisions dated before the ones they follow (a session-47 audit). SQLite lives on one machine: its clock is
    this process's. PostgreSQL's ``now()`` is the transaction's start, so it is read once per session (each is one
    transaction): a worker's batch stamps items, predictions and its heartbeat without a round trip each."""
    if s.get_bind().dialect.name == "postgresql":
        if "db_now" not in s.info:
            s.info["db_now"] = cast(datetime, s.scalar(select(func.now()))).astimezone(timezone.utc)
        return cast(datetime, s.info["db_now"])
    return utcnow()


def _in(column: str, values: Iterable[Enum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON(none_as_null=True), list[Any]: JSON(none_as_null=True),
                           datetime: UTCDateTime()}


def table_of(model: type[Base]) -> Table:
    """The model's Core table, for bulk inserts (the stubs type ``__table__`` as a FromClause)."""
    return cast(Table, model.__table__)


VERSION_NAME_CHARS = 255  # a model version's name (PostgreSQL refuses a longer one; SQLite would keep it)


class Folder(Base):
    __tablename__ = "folders"

    id: Mapped[int] = mapped_column(primary_key=True)
    root_path: Mapped[str] = mapped_column(String(4096), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    indexed_at: Mapped[datetime | None]


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("folder_id", "rel_path", name="uq_images_folder_rel_path"),
        CheckConstraint(_in("review_state", ReviewState), name="review_state"),
        Index("ix_images_folder_state", "folder_id", "review_state"),
        Index("ix_images_content_hash", "content_hash"),
        # The review queue's page walks (database/review_queue.py): by name within a folder, and
        # by name within each review state (the state order; also the per-state counts). The
        # trailing state and flag let the state and flag filters and counts read the index only.
        # The text filter (a name containing it, or that serial or lot: database.images.text_match)
        # reads the trailing serial and lot from the index too (migration 0004_trace_fields).
        Index("ix_images_queue_name", "folder_id", "missing", func.lower(text("rel_path")), "id",
              "review_state", "flagged", func.lower(text("trace_serial")), func.lower(text("trace_lot"))),
        Index("ix_images_queue_state", "folder_id", "missing", "review_state", func.lower(text("rel_path")), "id",
              "flagged", func.lower(text("trace_serial")), func.lower(text("trace_lot"))),
        # The text filter's serial and lot lookups (0008_queue_keys; its names: the SQLite FTS5
        # table ``images_name_fts`` that migration keeps, outside this metadata).
        # The flag filter by name (0008_queue_keys): the flagged few, not a walk of every name.
        Index("ix_images_queue_flagged", "folder_id", "missing", "flagged", func.lower(text("rel_path")), "id"),
        Index("ix_images_trace_serial", "folder_id", func.lower(text("trace_serial"))),
        Index("ix_images_trace_lot", "folder_id", func.lower(text("trace_lot"))),
        # The class filter's exact count (0010_folder_counts): the labelled images of a folder by
        # their label's class (the few a person labelled, not every image).
        Index("ix_images_label_class", "folder_id", "label_class",
              sqlite_where=text("label_class IS NOT NULL"), postgresql_where=text("label_class IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    # Byte order on PostgreSQL too (COLLATE "C"), as on SQLite: one queue order on both.
    rel_path: Mapped[str] = mapped_column(String(4096).with_variant(String(4096, collation="C"), "postgresql"))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None]
    height: Mapped[int | None]
    review_state: Mapped[str] = mapped_column(String(16), default=ReviewState.UNREVIEWED.value,
                                              server_default=ReviewState.UNREVIEWED.value)
    flagged: Mapped[bool] = mapped_column(default=False, server_default=false())
    # An inspector's own flag decision (0012_inspector_flag): NULL lets the models' flag rules set
    # ``flagged``; True / False is what an inspector set with the flag key, which pre-labelling and
    # re-flagging never overwrite (before, the next pre-label run undid a manual flag).
    flag_override: Mapped[bool | None] = mapped_column(nullable=True)
    flag_by: Mapped[str | None] = mapped_column(String(255))
    priority: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    missing: Mapped[bool] = mapped_column(default=False, server_default=false())
    error: Mapped[str | None] = mapped_column(Text)
    # Traceability (app/services/trace.py): which part, lot and station the picture shows.
    trace_serial: Mapped[str | None] = mapped_column(String(255))
    trace_lot: Mapped[str | None] = mapped_column(String(255))
    trace_station: Mapped[str | None] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The class of the newest label revision (None: no revision, or one without a class): a
    # cache the queue's class filter reads instead of each image's history (migration
    # 0008_queue_keys, ADR 0024). The revisions are the truth; database/labels.py writes this
    # in the transaction that appends each revision.
    label_class: Mapped[str | None] = mapped_column(String(255))


class TaskClass(Base):
    __tablename__ = "classes"
    __table_args__ = (
        UniqueConstraint("task", "name", name="uq_classes_task_name"),
        UniqueConstraint("task", "index", name="uq_classes_task_index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    index: Mapped[int]


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("family", "name", name="uq_model_versions_family_name"),
        # At most one active version per family, enforced by the database itself.
        Index("uq_model_versions_active_family", "family", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
        # At most one challenger per family and parent (app/services/champion.py): the version under review
        # beside the one it was retrained from; two lines' versions (routing rules, ADR 0060) each have their own.
        Index("uq_model_versions_challenger_lineage", "family", "parent_id", unique=True,
              sqlite_where=text("challenger"), postgresql_where=text("challenger")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    family: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(VERSION_NAME_CHARS))
    checkpoint_path: Mapped[str] = mapped_column(String(4096))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(default=False, server_default=false())
    bundled: Mapped[bool] = mapped_column(default=False, server_default=false())
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A retrained version waiting for review beside the active one (the champion); never both.
    challenger: Mapped[bool] = mapped_column(default=False, server_default=false())


class ModelFile(Base):
    """One file of a model version's folder, kept in the database (ADR 0062): a version registered at one
    station (a retraining, a folder brought by hand) must load at every station and worker of a shared
    database, which do not see that station's disk. Only the files inference reads (JSON, safetensors,
    text) are kept; each station writes them into its own cache when it needs them."""

    __tablename__ = "model_files"
    __table_args__ = (UniqueConstraint("model_version_id", "name", name="uq_model_files_version_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1024))     # posix path inside the version's folder
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ModelActivation(Base):
    """One change of a family's active version, who made it and why (promote / roll back / activate),
    or of the version routing rules name (route: a routed champion's challenger promoted in its rules,
    ADR 0060); rows are only ever added: the audit trail of which model pre-labelled when, and what a
    roll back returns to (activations only)."""

    __tablename__ = "model_activations"
    __table_args__ = (
        CheckConstraint("action IN ('activate', 'promote', 'rollback', 'route')", name="action"),
        Index("ix_model_activations_family", "family", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    family: Mapped[str] = mapped_column(String(32))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    version_name: Mapped[str] = mapped_column(String(255))
    previous_name: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(255))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("image_id", "model_version_id", name="uq_predictions_image_model"),
        Index("ix_predictions_model_version", "model_version_id"),
        # At most one prediction counts per (image, family) (0013_current_prediction; NULLs are
        # distinct, so any number of others).
        Index("uq_predictions_image_current", "image_id", "current_family", unique=True),
        # The review queue's score orders: one family's predictions that count, walked by score,
        # ties by the image's name key and id (0008_queue_keys, 0013). The high-first keys are
        # stored high first, so their order (score down, name up) is one forward walk and its
        # reverse one backward walk. The in-domain score ends each (0019_queue_domain; the anomaly and target ones
        # below): the score sorts read whether each answer stands from the index, and a folder's answers out of domain
        # (a stretch by name) are a range of ``ix_predictions_queue_domain`` (its folder before the score: another
        # folder's answers out of domain are not read).
        Index("ix_predictions_queue_confidence", "current_family", "confidence", "name_key", "image_id", "in_domain"),
        Index("ix_predictions_queue_domain", "current_family", "folder_id", "in_domain", "name_key", "image_id"),
        # The same walk by confidence of one folder's answers (0021_queue_folder_confidence): a folder's queue by
        # confidence reads no other folder's entries (another line's answers out of domain at 1.0 came before the
        # first page of "confidence"). The one above stays for a queue of every folder.
        Index("ix_predictions_folder_confidence", "current_family", "folder_id", "confidence", "name_key", "image_id",
              "in_domain"),
        # (ix_predictions_queue_anomaly and _targets: below the class, they name its columns)
        # Exact counts of a folder's class and score-range filters read these alone (index-only
        # range counts, 0010_folder_counts): one family's predictions that count, of one folder. Both end in the
        # in-domain score: a class or a score counts where its answer stands (0019_queue_domain).
        Index("ix_predictions_folder_class", "current_family", "folder_id", "predicted_class", "in_domain"),
        Index("ix_predictions_folder_anomaly", "current_family", "folder_id", "anomaly_score", "in_domain"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    class_scores: Mapped[dict[str, Any] | None]
    predicted_class: Mapped[str | None] = mapped_column(String(255))
    confidence: Mapped[float | None] = mapped_column(Float)
    mask_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    mask_ref: Mapped[str | None] = mapped_column(String(4096))
    target_count: Mapped[int | None]
    anomaly_score: Mapped[float | None] = mapped_column(Float)
    anomaly_map_ref: Mapped[str | None] = mapped_column(String(4096))
    flags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # How like the model's training images this image is (inference.domain; < 0.5: out of domain).
    in_domain: Mapped[float | None] = mapped_column(Float)
    # Why that score is below the threshold, in words (inference.domain_notes; 0017_domain_note); NULL inside.
    domain_note: Mapped[str | None] = mapped_column(String(400))
    # ``lower(rel_path)`` of the image, copied when the row is inserted (a name never changes):
    # the queue's score orders break ties by name, and this lets one index walk give that order.
    name_key: Mapped[str | None] = mapped_column(String(4096).with_variant(String(4096, collation="C"),
                                                                           "postgresql"))
    # The image's folder, copied when the row is inserted (an image never changes folder): a
    # folder's class and score counts are then ranges of the prediction indexes above.
    folder_id: Mapped[int | None]
    # The version's family when this is the prediction that counts for its image (the one the
    # window shows, reviews, filters and counts), else NULL: today the active version's rows
    # (``database/current_predictions.py`` keeps it so). docs/design/routing-versions.md.
    current_family: Mapped[str | None] = mapped_column(String(64))


Index("ix_predictions_queue_anomaly", Prediction.current_family, Prediction.anomaly_score.desc(),
      Prediction.name_key, Prediction.image_id, Prediction.in_domain)
Index("ix_predictions_queue_targets", Prediction.current_family, Prediction.target_count.desc(),
      Prediction.name_key, Prediction.image_id, Prediction.in_domain)


class LabelRevision(Base):
    """One saved state of an image's label; rows are only ever added (history is the audit trail)."""

    __tablename__ = "label_revisions"
    __table_args__ = (
        UniqueConstraint("image_id", "revision", name="uq_label_revisions_image_revision"),
        CheckConstraint(_in("review_state", ReviewState), name="review_state"),
        CheckConstraint("anomaly_verdict IS NULL OR anomaly_verdict IN ('normal', 'anomalous')",
                        name="anomaly_verdict"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    revision: Mapped[int]
    author: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed: Mapped[str] = mapped_column(String(64))
    class_name: Mapped[str | None] = mapped_column(String(255))
    mask_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    anomaly_verdict: Mapped[str | None] = mapped_column(String(16))
    anomaly_mask_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    review_state: Mapped[str] = mapped_column(String(16))
    from_prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id", ondelete="SET NULL"))
    # The model version of that prediction, kept as a record (migration 0018): the prediction row goes when its image
    # is re-indexed as changed or the routing clean-up removes it, and the audit then showed the decision as made
    # without a model (a session-44 probe). None: no prediction taken.
    from_model_version_id: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    # How the image came to be labelled (``LabelSource``; None: not said): "label_next" when it was saved while
    # the image was one of the proposals of "label next" (migration 0011): the retrain command's class-mix
    # estimate does not read such labels as drawn like the folder's unlabelled images (ADR 0049).
    source: Mapped[str | None] = mapped_column(String(32))
    # The image's serial/lot/station when this revision was saved: the audit trail keeps what the
    # part was then, even if the trace rule or the sidecar CSV changes later. None: no trace.
    trace: Mapped[dict[str, Any] | None]
    # Per-object classes (app/services/object_classes.py, ADR 0017): [{"x", "y", "class"}, ...], one
    # pixel of a component of ``mask_png`` and that component's own class. None: every component
    # has the image's class (all revisions saved before migration 0005_object_classes).
    object_classes: Mapped[list[Any] | None]


class FlagDecisionEntry(Base):
    """One inspector's flag decision as it was written (F, its undo and redo): rows are only ever added, in the
    transaction that writes ``images.flag_override`` (migration 0022_flag_decisions). The image keeps only the latest
    decision, overwritten in place, so the audit could not say who sent a part for a second look or who cleared it,
    and when (a session-51 audit). ``flagged`` None: the flag was handed back to the models; ``author`` who made the
    write (None: no name set at the station, as ``images.flag_by``); ``created_at`` by the database's clock, as label
    revisions."""

    __tablename__ = "flag_decisions"
    __table_args__ = (
        Index("ix_flag_decisions_image", "image_id"),   # the cascade of an image's delete, and a folder's audit
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    flagged: Mapped[bool | None] = mapped_column(nullable=True)
    author: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LabelWatermark(Base):
    """One row whose ``mark`` every transaction that changes labels raises as its last write, so it moves in commit
    order on every engine: a window polls it (``LabelRepository.watermark``) to learn that labels changed. The newest
    revision's id did not: on PostgreSQL an import takes its ids when it inserts and commits later, so a single save
    at another station meanwhile committed a higher id first and the import's commit left the highest id where it
    was; open windows kept their old counts, gallery and label-next list (a session-51 audit)."""

    __tablename__ = "label_watermark"

    id: Mapped[int] = mapped_column(primary_key=True)   # always 1 (migration 0020_label_watermark writes it)
    mark: Mapped[int] = mapped_column(BigInteger)


class DatabaseIdentity(Base):
    """One row holding the database's own id (``Database.identity``), a random UUID made once by migration
    0023_database_identity: a record of the database kept outside it (a recovery file) names it by this id as well as
    by its file's path, so the record still finds it once the file is moved to another folder (a session-52 audit)."""

    __tablename__ = "database_identity"

    id: Mapped[int] = mapped_column(primary_key=True)   # always 1
    uid: Mapped[str] = mapped_column(String(32))


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        Index("ix_jobs_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None]
    priority: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    progress_done: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    progress_failed: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    progress_total: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default=false())
    has_items: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobItem(Base):
    """One image of a job: the unit several workers split a job by."""

    __tablename__ = "job_items"
    __table_args__ = (
        CheckConstraint(_in("status", ItemStatus), name="status"),
        Index("ix_job_items_job_status", "job_id", "status"),
        Index("ix_job_items_claimed_by", "claimed_by"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.QUEUED.value)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]


class Worker(Base):
    """A worker process's liveness: items it holds are requeued when its heartbeat goes stale."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    current_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))


class ProjectSetting(Base):
    """One project-wide setting (flag thresholds, auto pre-label, model routing) as JSON, shared by
    every station and worker on this database; per-user UI state stays in each user's QSettings."""

    __tablename__ = "project_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(255))
