"""A folder's "confidence" and "uncertainty" read only that folder's answers: ``ix_predictions_folder_confidence``.

The score sorts walk ``ix_predictions_queue_confidence`` (family, confidence, name key, image: 0008_queue_keys), which
has no folder, so a folder's queue by confidence read every folder's entries between its own and dropped the others at
the image join. Most confident first, that is every other folder's answer at a higher confidence before the first
page: a line whose frames are all out of the classifier's domain (infrared through the steel model) answers 1.0, and
beside 100,000 of them a folder of 10,000 images took 10-14 ms for its first page (1.5 alone: session 50).

``ix_predictions_folder_confidence`` (family, **folder**, confidence, name key, image, in-domain score), new: the
stretch of the answers shown (``review_queue._Shape.segments``) states the folder on the prediction when the query
has one, and its walks, offsets and counts are ranges of the folder's entries. ``ix_predictions_queue_confidence``
stays for a queue of every folder (``QueueQuery.folder_id`` None), which no folder bounds.

Index changes only (no rows, no reads change); benchmarks/results/queue-domain-index.md, "session 51", has the
figures and what it costs to write.

Revision ID: 0021_queue_folder_confidence
Revises: 0020_label_watermark
"""
from __future__ import annotations

from alembic import op

revision = '0021_queue_folder_confidence'
down_revision = '0020_label_watermark'
branch_labels = None
depends_on = None

INDEX = ("ix_predictions_folder_confidence",
         ["current_family", "folder_id", "confidence", "name_key", "image_id", "in_domain"])


def upgrade() -> None:
    op.create_index(INDEX[0], "predictions", INDEX[1])


def downgrade() -> None:
    op.drop_index(INDEX[0], table_name="predictions")
