"""The model version a label revision took its answer from: ``label_revisions.from_model_version_id``.

A revision that accepted a prediction names it (``from_prediction_id``), and the audit read the model through it. The
prediction row goes when its image is re-indexed as changed or the routing clean-up removes it (the key is then set
to NULL), and the audit showed the decision as made without a model (a session-44 probe). The version's id is kept on
the revision itself, filled here from the predictions still there.

Revision ID: 0018_revision_model_version
Revises: 0017_domain_note
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018_revision_model_version'
down_revision = '0017_domain_note'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("label_revisions", sa.Column("from_model_version_id", sa.Integer(), nullable=True))
    op.execute("UPDATE label_revisions SET from_model_version_id = (SELECT predictions.model_version_id FROM "
               "predictions WHERE predictions.id = label_revisions.from_prediction_id) "
               "WHERE from_prediction_id IS NOT NULL")


def downgrade() -> None:
    op.drop_column("label_revisions", "from_model_version_id")
