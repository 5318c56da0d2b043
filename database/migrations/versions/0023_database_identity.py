"""The database's own id: ``database_identity``, one row whose ``uid`` (a random UUID) is made here, once.

A recovery file (labels a window could not save) named its database by the SQLite file's path alone, so a database
file moved to another folder was "another database" to every start and its kept labels were never replayed (a
session-52 audit). The id travels with the file: the file records it, and a start on the moved file knows its labels.
A copy of the file carries the same id (it is the same database's past), so the path still tells a copy from the file
it was copied from (``ReviewService._this_database``). Downgrade drops the table.

Revision ID: 0023_database_identity
Revises: 0022_flag_decisions
"""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0023_database_identity'
down_revision = '0022_flag_decisions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("database_identity",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("uid", sa.String(length=32), nullable=False),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_database_identity")))
    op.get_bind().execute(sa.text("INSERT INTO database_identity (id, uid) VALUES (1, :uid)"),
                          {"uid": uuid.uuid4().hex})


def downgrade() -> None:
    op.drop_table("database_identity")
