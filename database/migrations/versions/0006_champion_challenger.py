"""Champion and challenger: a retrained version waits for review as its family's challenger, and
every change of a family's active version is recorded (who, when, from which version).

``model_versions.challenger`` (at most one per family, as ``active``) and the append-only
``model_activations`` table. Existing versions are not challengers; no activation is invented
for the past.

Revision ID: 0006_champion_challenger
Revises: 0005_object_classes
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_champion_challenger'
down_revision = '0005_object_classes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): the table keeps its partial unique index on ``active``.
    op.add_column('model_versions', sa.Column('challenger', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index('uq_model_versions_challenger_family', 'model_versions', ['family'], unique=True,
                    sqlite_where=sa.text('challenger'), postgresql_where=sa.text('challenger'))
    op.create_table(
        'model_activations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('family', sa.String(length=32), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=True),
        sa.Column('previous_id', sa.Integer(), nullable=True),
        sa.Column('version_name', sa.String(length=255), nullable=False),
        sa.Column('previous_name', sa.String(length=255), nullable=True),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('author', sa.String(length=255), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('activate', 'promote', 'rollback')", name=op.f('ck_model_activations_action')),
        sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'],
                                name=op.f('fk_model_activations_version_id_model_versions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['previous_id'], ['model_versions.id'],
                                name=op.f('fk_model_activations_previous_id_model_versions'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_activations')),
    )
    op.create_index('ix_model_activations_family', 'model_activations', ['family', 'id'])


def downgrade() -> None:
    op.drop_index('ix_model_activations_family', table_name='model_activations')
    op.drop_table('model_activations')
    op.drop_index('uq_model_versions_challenger_family', table_name='model_versions')
    op.drop_column('model_versions', 'challenger')
