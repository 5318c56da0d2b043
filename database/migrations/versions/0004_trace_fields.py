"""Traceability: serial, lot and station per image (searchable), and the trace each label revision saw.

Existing rows keep everything and get no trace (NULL) until the project's trace rule is applied.

Revision ID: 0004_trace_fields
Revises: 0003_queue_indexes
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0004_trace_fields'
down_revision = '0003_queue_indexes'
branch_labels = None
depends_on = None

IMAGE_COLUMNS = ("trace_serial", "trace_lot", "trace_station")
INDEXES = {"ix_images_trace_serial": "trace_serial", "ix_images_trace_lot": "trace_lot"}


# Plain ADD/DROP COLUMN, never batch mode: SQLite's batch copy of ``images`` would lose the
# queue's expression indexes (0003), which it cannot reflect. SQLite drops columns since 3.35.


def upgrade() -> None:
    for name in IMAGE_COLUMNS:
        op.add_column("images", sa.Column(name, sa.String(length=255), nullable=True))
    for index, column in INDEXES.items():
        op.create_index(index, "images", ["folder_id", sa.text(f"lower({column})")])
    op.add_column("label_revisions", sa.Column("trace", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("label_revisions", "trace")
    for index in INDEXES:
        op.drop_index(index, table_name="images")
    for name in IMAGE_COLUMNS:
        op.drop_column("images", name)
