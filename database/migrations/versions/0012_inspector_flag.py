"""An inspector's flag decision: ``images.flag_override`` and ``images.flag_by``.

``images.flagged`` was written by both the flag key and the models' flag rules, so the next
pre-label run or threshold change undid a flag an inspector had set (or cleared). The override
keeps the inspector's decision: NULL lets the models decide, True / False is what an inspector
set, and model writes leave those rows' ``flagged`` alone. Existing rows get NULL: which of
their flags an inspector set was never stored.

Revision ID: 0012_inspector_flag
Revises: 0011_label_source
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_inspector_flag'
down_revision = '0011_label_source'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("flag_override", sa.Boolean(), nullable=True))
    op.add_column("images", sa.Column("flag_by", sa.String(length=255), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, never batch mode (SQLite's batch copy would lose the expression indexes).
    op.drop_column("images", "flag_by")
    op.drop_column("images", "flag_override")
