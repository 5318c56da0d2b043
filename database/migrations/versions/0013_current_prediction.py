"""The prediction that counts: ``predictions.current_family`` (docs/design/routing-versions.md).

Every reader took "the prediction that counts" for an image and a family to be its **active**
version's, by one version id per family, so a project could not run the tile classifier on one
folder and the steel one on another. The marker moves that choice onto the row: a prediction's
``current_family`` is its version's family when it is the one the window shows, reviews, filters
and counts, NULL otherwise; at most one per (image, family) (``uq_predictions_image_current``;
NULLs are distinct on both databases, so any number of other rows). Filled here so that today's
active versions' rows count (nothing on screen changes).

The queue's indexes lead with the marker where they led with the version id (same shapes: the
review queue joins on ``current_family = :family`` where it joined on ``model_version_id = :id``).
``ix_predictions_model_version`` stays for the per-version reads (a resumed job, clean-ups).

Revision ID: 0013_current_prediction
Revises: 0012_inspector_flag
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_current_prediction'
down_revision = '0012_inspector_flag'
branch_labels = None
depends_on = None

QUEUE_INDEXES: dict[str, list[str | sa.TextClause]] = {
    "ix_predictions_queue_confidence": ["{key}", "confidence", "name_key", "image_id"],
    "ix_predictions_queue_anomaly": ["{key}", sa.text("anomaly_score DESC"), "name_key", "image_id"],
    "ix_predictions_queue_targets": ["{key}", sa.text("target_count DESC"), "name_key", "image_id"],
    "ix_predictions_folder_class": ["{key}", "folder_id", "predicted_class"],
    "ix_predictions_folder_anomaly": ["{key}", "folder_id", "anomaly_score"]}
UNIQUE = "uq_predictions_image_current"


def _columns(key: str, columns: list[str | sa.TextClause]) -> list[str | sa.TextClause]:
    return [key if c == "{key}" else c for c in columns]


def _reindex(key: str) -> None:
    for name, columns in QUEUE_INDEXES.items():
        op.drop_index(name, table_name="predictions")
        op.create_index(name, "predictions", _columns(key, columns))


def upgrade() -> None:
    # Plain ADD/DROP COLUMN, never batch mode (SQLite's batch copy would lose the expression indexes).
    op.add_column("predictions", sa.Column("current_family", sa.String(length=64), nullable=True))
    versions = sa.table("model_versions", sa.column("id", sa.Integer), sa.column("family", sa.String),
                        sa.column("active", sa.Boolean))
    predictions = sa.table("predictions", sa.column("model_version_id", sa.Integer),
                           sa.column("current_family", sa.String))
    family = (sa.select(versions.c.family).where(versions.c.id == predictions.c.model_version_id)
              .scalar_subquery())
    active = sa.select(versions.c.id).where(versions.c.active.is_(True))
    op.execute(predictions.update().where(predictions.c.model_version_id.in_(active))
               .values(current_family=family))
    _reindex("current_family")
    op.create_index(UNIQUE, "predictions", ["image_id", "current_family"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        # The fill rewrote the active versions' rows: the table is twice its pages until a vacuum, and
        # PostgreSQL scales its row estimates by them. Left to autovacuum, a 100,000-image queue's first
        # page under a score range took 137 ms instead of 0.9 (a sort of the range instead of the name
        # walk); fresh statistics give the planner the real size (benchmarks/results/current-prediction.md).
        op.execute("ANALYZE predictions")


def downgrade() -> None:
    op.drop_index(UNIQUE, table_name="predictions")
    _reindex("model_version_id")
    op.drop_column("predictions", "current_family")
