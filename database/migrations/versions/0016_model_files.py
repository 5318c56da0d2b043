"""Model versions' files kept in the database: ``model_files`` (ADR 0062).

A version registered at one station — a retraining, a folder brought by hand — was only a path on that station's
disk; every other station and worker of a shared database failed the images it claimed with "model cannot be
loaded". The files inference reads (JSON, safetensors, text; a few MB per version) are now rows here, written into
each station's cache when it needs them. Rows are added by the services as versions are registered or first
loaded where their folder is; this migration adds the table only.

Revision ID: 0016_model_files
Revises: 0015_challenger_per_lineage
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016_model_files'
down_revision = '0015_challenger_per_lineage'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'model_files',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_version_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=1024), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                                name=op.f('fk_model_files_model_version_id_model_versions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_files')),
        sa.UniqueConstraint('model_version_id', 'name', name='uq_model_files_version_name'),
    )


def downgrade() -> None:
    op.drop_table('model_files')
