"""Storage: SQLAlchemy 2 ORM, Alembic migrations applied at start-up, repositories of frozen DTOs.

Usage::

    db = open_database(url)            # DatabaseError (one sentence) when it cannot be used
    folder = db.folders.add("/data/parts")
    db.images.sync(folder.id, entries)
    batch = db.jobs.claim_items(worker_id, limit=8)

Nothing here imports Qt, torch or the rest of the application.
"""
from database.dto import (
    UNCHANGED,
    ClaimedBatch,
    ClassInfo,
    FileEntry,
    FolderInfo,
    ImageInfo,
    ImageQuery,
    IndexResult,
    JobInfo,
    JobItemInfo,
    LabelChange,
    LabelRevisionInfo,
    ModelVersionInfo,
    PredictionIn,
    PredictionInfo,
    WorkerInfo,
)
from database.engine import Database, open_database
from database.errors import (
    ConflictError,
    DatabaseError,
    LockedError,
    ReadOnlyError,
    RowGoneError,
    SchemaTooNewError,
    StaleLabelError,
)
from database.jobs import new_worker_id
from database.states import AnomalyVerdict, ItemStatus, JobStatus, LabelSource, ReviewState

__all__ = [
    "UNCHANGED", "AnomalyVerdict", "ClaimedBatch", "ClassInfo", "ConflictError", "Database", "DatabaseError", "LockedError",
    "ReadOnlyError", "RowGoneError", "StaleLabelError", "FileEntry", "FolderInfo", "ImageInfo", "ImageQuery", "IndexResult", "ItemStatus", "JobInfo", "JobItemInfo",
    "JobStatus", "LabelChange", "LabelRevisionInfo", "LabelSource", "ModelVersionInfo", "PredictionIn", "PredictionInfo",
    "ReviewState", "SchemaTooNewError", "WorkerInfo", "new_worker_id", "open_database",
]
