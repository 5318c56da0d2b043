"""Traceability: serial, lot and station per image (searchable), and the trace each label revision saw.

Existing rows keep everything and get no trace (NULL) until the project's trace rule is applied.
The queue's two name indexes (0003) gain ``lower(trace_serial)`` and ``lower(trace_lot)`` as
trailing columns: the text filter matches a name *or* a serial or lot, and with them it still
reads the index only (without, a search read every row of the folder: 2.5x slower at 200k).

Revision ID: 0004_trace_fields
Revises: 0003_queue_indexes
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_trace_fields'
down_revision = '0003_queue_indexes'
branch_labels = None
depends_on = None

IMAGE_COLUMNS = ("trace_serial", "trace_lot", "trace_station")
NAME: list[str | sa.TextClause] = ["folder_id", "missing", sa.text("lower(rel_path)"), "id", "review_state", "flagged"]
STATE: list[str | sa.TextClause] = ["folder_id", "missing", "review_state", sa.text("lower(rel_path)"), "id", "flagged"]
TRACE: list[str | sa.TextClause] = [sa.text("lower(trace_serial)"), sa.text("lower(trace_lot)")]

# Plain ADD/DROP COLUMN, never batch mode: SQLite's batch copy of ``images`` would lose the
# queue's expression indexes, which it cannot reflect. SQLite drops columns since 3.35.


def _queue_indexes(trace: list[str | sa.TextClause]) -> None:
    for name in ("ix_images_queue_name", "ix_images_queue_state"):
        op.drop_index(name, table_name="images")
    op.create_index("ix_images_queue_name", "images", NAME + trace)
    op.create_index("ix_images_queue_state", "images", STATE + trace)


def upgrade() -> None:
    for name in IMAGE_COLUMNS:
        op.add_column("images", sa.Column(name, sa.String(length=255), nullable=True))
    _queue_indexes(TRACE)
    op.add_column("label_revisions", sa.Column("trace", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("label_revisions", "trace")
    _queue_indexes([])
    for name in IMAGE_COLUMNS:
        op.drop_column("images", name)
