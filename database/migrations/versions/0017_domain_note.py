"""Why a prediction's model calls the image out of domain: ``predictions.domain_note`` (issue 20 item 3).

A short text (``inference.domain_notes``, at most 400 characters): the property that lies furthest beyond the
model's training images ("stored as colour with alpha (4 channels; training files: grey)"), shown beside
"out of domain" in the label panel. Existing rows get NULL: the panel then says only that the image is out of
domain, as before.

Revision ID: 0017_domain_note
Revises: 0016_model_files
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017_domain_note'
down_revision = '0016_model_files'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("domain_note", sa.String(400), nullable=True))


def downgrade() -> None:
    op.drop_column("predictions", "domain_note")
