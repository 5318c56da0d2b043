"""Review queue at scale: indexes for its page walks and counts; rel_path in byte order on PostgreSQL.

The gallery reads the queue a page at a time (database/review_queue.py): each order it offers
must be an index walk, and the per-state counts an index-only aggregate. PostgreSQL's
``rel_path`` takes ``COLLATE "C"`` so names sort by bytes, as SQLite sorts them.

Revision ID: 0003_queue_indexes
Revises: 0002_project_settings
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_queue_indexes'
down_revision = '0002_project_settings'
branch_labels = None
depends_on = None

PREDICTION_INDEXES = {"ix_predictions_queue_confidence": "confidence",
                      "ix_predictions_queue_anomaly": "anomaly_score",
                      "ix_predictions_queue_targets": "target_count"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("images", "rel_path", type_=sa.String(4096, collation="C"),
                        existing_type=sa.String(4096), existing_nullable=False)
    op.create_index("ix_images_queue_name", "images",
                    ["folder_id", "missing", sa.text("lower(rel_path)"), "id", "review_state", "flagged"])
    op.create_index("ix_images_queue_state", "images",
                    ["folder_id", "missing", "review_state", sa.text("lower(rel_path)"), "id", "flagged"])
    for name, column in PREDICTION_INDEXES.items():
        op.create_index(name, "predictions", ["model_version_id", column, "image_id"])


def downgrade() -> None:
    for name in PREDICTION_INDEXES:
        op.drop_index(name, table_name="predictions")
    op.drop_index("ix_images_queue_state", table_name="images")
    op.drop_index("ix_images_queue_name", table_name="images")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("images", "rel_path", type_=sa.String(4096),
                        existing_type=sa.String(4096, collation="C"), existing_nullable=False)
