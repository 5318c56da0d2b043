"""Inspectors' flag decisions kept as history: ``flag_decisions``.

``images.flag_override`` / ``flag_by`` (0012_inspector_flag) hold only the latest decision, overwritten in place, so
the audit could not say who sent a part for a second look, who cleared the flag, or when (a session-51 audit). Each
flag write and clear now adds a row here in the same transaction; ``flagged`` NULL means the flag was handed back to
the models. Earlier decisions were never recorded, so the table starts empty (an image's current ``flag_by`` says
who, not when). Downgrade drops the table and the history with it.

Revision ID: 0022_flag_decisions
Revises: 0021_queue_folder_confidence
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022_flag_decisions'
down_revision = '0021_queue_folder_confidence'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'flag_decisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('flagged', sa.Boolean(), nullable=True),
        sa.Column('author', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'],
                                name=op.f('fk_flag_decisions_image_id_images'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_flag_decisions')),
    )
    op.create_index('ix_flag_decisions_image', 'flag_decisions', ['image_id'])


def downgrade() -> None:
    op.drop_index('ix_flag_decisions_image', table_name='flag_decisions')
    op.drop_table('flag_decisions')
