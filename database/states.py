"""The closed vocabularies stored as strings in the database (review, job and item states)."""
from __future__ import annotations

from enum import StrEnum


class ReviewState(StrEnum):
    UNREVIEWED = "unreviewed"
    ACCEPTED = "accepted"    # the prediction was confirmed as is
    CORRECTED = "corrected"  # an inspector changed the label
    REJECTED = "rejected"    # unusable image: excluded from training and export


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class ItemStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AnomalyVerdict(StrEnum):
    NORMAL = "normal"
    ANOMALOUS = "anomalous"


class LabelSource(StrEnum):
    """How the image came to be labelled, when the station knows (``label_revisions.source``; None: not said)."""
    LABEL_NEXT = "label_next"  # one of the images "label next" proposed (its selection is not the folder's mix)
