"""Out-of-domain flags: each prediction's in-domain score (branch ood, issue 20 item 3).

How like its model's training images the image is (``inference.domain``: 1 typical, below 0.5 out
of domain). Existing rows get NULL: predicted before the model had domain statistics, so never
called out of domain.

Revision ID: 0007_ood_in_domain
Revises: 0006_champion_challenger
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_ood_in_domain'
down_revision = '0006_champion_challenger'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("in_domain", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("predictions", "in_domain")
