"""The labels' watermark: ``label_watermark``, one row whose ``mark`` every transaction that changes labels raises.

A window's ``LabelWatch`` polled the newest revision's id to learn that labels had changed elsewhere. On PostgreSQL
ids are taken when a transaction inserts, not when it commits: an import (``append_many``) took 20023..24022, a
single save at another station meanwhile committed 24023 first, and when the import committed the highest id stayed
24023, so open windows kept their counts, gallery and label-next list until the next save anywhere (a session-51
audit). A counter row raised as the last write of each such transaction moves in commit order on both engines (the
row lock orders the raises on PostgreSQL; SQLite has one writer). It starts at the newest revision's id, so no
window's last look equals it by chance across the upgrade.

Revision ID: 0020_label_watermark
Revises: 0019_queue_domain
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020_label_watermark'
down_revision = '0019_queue_domain'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("label_watermark",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("mark", sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_label_watermark")))
    op.execute("INSERT INTO label_watermark (id, mark) SELECT 1, COALESCE(MAX(id), 0) FROM label_revisions")


def downgrade() -> None:
    op.drop_table("label_watermark")
