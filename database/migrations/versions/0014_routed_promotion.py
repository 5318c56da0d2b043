"""A promotion in routing rules is an activation record: ``model_activations.action`` may be 'route' (ADR 0060).

Promoting the challenger of a version routing rules name (the tile classifier on ``tiles/*``) names it in those
rules instead of making it the family's active version. It is recorded beside the activations — who, when, which
version replaced which, the rules in its note — so the audit export lists it; it changes no active version, so
*Roll back* does not read it.

Revision ID: 0014_routed_promotion
Revises: 0013_current_prediction
"""
from __future__ import annotations

from alembic import op

revision = '0014_routed_promotion'
down_revision = '0013_current_prediction'
branch_labels = None
depends_on = None

BEFORE = "action IN ('activate', 'promote', 'rollback')"
AFTER = "action IN ('activate', 'promote', 'rollback', 'route')"


def _check(rule: str) -> None:
    # Batch mode: SQLite cannot alter a CHECK constraint in place, so the table is copied (PostgreSQL alters it).
    with op.batch_alter_table("model_activations") as batch:
        batch.drop_constraint(op.f("ck_model_activations_action"), type_="check")
        batch.create_check_constraint(op.f("ck_model_activations_action"), rule)


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM model_activations WHERE action = 'route'")
    _check(BEFORE)
