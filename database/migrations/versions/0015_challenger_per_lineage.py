"""One challenger per family *and parent*: ``uq_model_versions_challenger_lineage`` (ADR 0060).

Routing rules may give two lines two versions of a family (the tile and the steel classifier); each is retrained
from its own images' labels and its challenger waits beside it. With one challenger per family the second line's
retraining silently took the first one's challenger away. A version's parent is the version it was retrained from,
so (family, parent_id) is its lineage; a version without a parent (a folder added by hand) may be made a challenger
on its own (NULLs are distinct in a unique index on both databases; ``_make_challenger`` keeps it to one).

Revision ID: 0015_challenger_per_lineage
Revises: 0014_routed_promotion
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015_challenger_per_lineage'
down_revision = '0014_routed_promotion'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('uq_model_versions_challenger_family', table_name='model_versions')
    op.create_index('uq_model_versions_challenger_lineage', 'model_versions', ['family', 'parent_id'], unique=True,
                    sqlite_where=sa.text('challenger'), postgresql_where=sa.text('challenger'))


def downgrade() -> None:
    # Keep the newest challenger of each family, as the one-per-family rule had it.
    op.execute("UPDATE model_versions SET challenger = false WHERE challenger AND id NOT IN "
               "(SELECT MAX(id) FROM model_versions WHERE challenger GROUP BY family)")
    op.drop_index('uq_model_versions_challenger_lineage', table_name='model_versions')
    op.create_index('uq_model_versions_challenger_family', 'model_versions', ['family'], unique=True,
                    sqlite_where=sa.text('challenger'), postgresql_where=sa.text('challenger'))
