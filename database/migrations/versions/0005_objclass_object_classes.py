"""Per-object classes: a revision may name a class for each component of its mask (ADR 0017).

One nullable JSON column; every existing revision keeps NULL, which means what it always meant:
every component has the image's class.

Revision ID: 0005_object_classes
Revises: 0004_trace_fields
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_object_classes'
down_revision = '0004_trace_fields'
branch_labels = None
depends_on = None

# Plain ADD/DROP COLUMN, never batch mode (see 0004): SQLite's batch copy would lose expression indexes.


def upgrade() -> None:
    op.add_column("label_revisions", sa.Column("object_classes", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("label_revisions", "object_classes")
