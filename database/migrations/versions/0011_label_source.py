"""How an image came to be labelled: ``label_revisions.source`` (issue 20, ADR 0049).

A label saved while its image was one of the proposals of "label next" is stored with source
"label_next". Those images were chosen because the model was unsure of them, not drawn like the
folder's other images, so the retrain command's class-mix estimate does not read their
out-of-fold errors as the folder's. Older revisions keep NULL (not said).

Revision ID: 0011_label_source
Revises: 0010_folder_counts
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_label_source'
down_revision = '0010_folder_counts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("label_revisions", sa.Column("source", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("label_revisions") as batch:
        batch.drop_column("source")
