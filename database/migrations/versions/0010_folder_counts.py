"""Exact counts of a folder's class and score-range filters from indexes (issue 22).

The gallery's exact row count under a class or an anomaly-score range filter joined every image
of the folder to its prediction (1M images: 0.5-0.8 s on SQLite, 0.6-1.5 s on PostgreSQL, idle).
With the image's folder copied onto each prediction (``predictions.folder_id``, immutable: an
image never changes folder) both become counts of index ranges (``database/review_queue.py``,
``_indexed_count``):

- ``ix_predictions_folder_anomaly`` (version, folder, score): the predictions of a folder in a
  score range, index-only;
- ``ix_predictions_folder_class`` (version, folder, class): the predictions of a class;
- ``ix_images_label_class`` (folder, label class; partial: labelled images only): the images
  whose label's class is the filter's, for the images whose prediction says otherwise.

Missing images (kept, not counted) are subtracted, found from the folder's missing images.

Revision ID: 0010_folder_counts
Revises: 0009_pg_search
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010_folder_counts'
down_revision = '0009_pg_search'
branch_labels = None
depends_on = None

PREDICTION_INDEXES = {
    "ix_predictions_folder_class": ["model_version_id", "folder_id", "predicted_class"],
    "ix_predictions_folder_anomaly": ["model_version_id", "folder_id", "anomaly_score"]}
LABELLED = "label_class IS NOT NULL"


def upgrade() -> None:
    op.add_column("predictions", sa.Column("folder_id", sa.Integer(), nullable=True))
    op.execute("UPDATE predictions SET folder_id = (SELECT i.folder_id FROM images i WHERE i.id = predictions.image_id)")
    for name, columns in PREDICTION_INDEXES.items():
        op.create_index(name, "predictions", columns)
    op.create_index("ix_images_label_class", "images", ["folder_id", "label_class"],
                    sqlite_where=sa.text(LABELLED), postgresql_where=sa.text(LABELLED))


def downgrade() -> None:
    op.drop_index("ix_images_label_class", table_name="images")
    for name in PREDICTION_INDEXES:
        op.drop_index(name, table_name="predictions")
    op.drop_column("predictions", "folder_id")
