"""Queue keys at a million images: the newest label class on the image row, a name key on predictions.

- ``images.label_class``: the class of each image's newest label revision, a cache kept in step
  by ``database/labels.py`` in the transaction that appends a revision (ADR 0024). The class
  filter read each image's history through a correlated subquery (1M images: 0.7-1.7 s).
  Backfilled here from the revisions, which stay the truth.
- ``predictions.name_key``: ``lower(rel_path)`` of the prediction's image (immutable: a row's
  name never changes). The score orders break ties by name; with the key in the score indexes
  an order whose key has few distinct values (the target count: ties of 250k images at 1M) is one
  index walk instead of a sort of each tie. The high-first keys are indexed high first.
- The flag filter walks the flagged images by name (``ix_images_queue_flagged``), not every name.
- The text filter (a name containing the text, or that serial or lot) finds its few images
  without reading every name: on SQLite an FTS5 trigram index of the names
  (``images_name_fts``, external content, kept in step by triggers; skipped where the SQLite
  library lacks FTS5 or its trigram tokenizer: the filter then walks the names as before), and
  on both databases indexes on the folded serial and lot.

Revision ID: 0008_queue_keys
Revises: 0007_ood_in_domain
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_queue_keys'
down_revision = '0007_ood_in_domain'
branch_labels = None
depends_on = None

OLD = {"ix_predictions_queue_confidence": ["model_version_id", "confidence", "image_id"],
       "ix_predictions_queue_anomaly": ["model_version_id", "anomaly_score", "image_id"],
       "ix_predictions_queue_targets": ["model_version_id", "target_count", "image_id"]}
NEW: dict[str, list[str | sa.TextClause]] = {
    "ix_predictions_queue_confidence": ["model_version_id", "confidence", "name_key", "image_id"],
    "ix_predictions_queue_anomaly": ["model_version_id", sa.text("anomaly_score DESC"), "name_key", "image_id"],
    "ix_predictions_queue_targets": ["model_version_id", sa.text("target_count DESC"), "name_key", "image_id"]}

IMAGE_INDEXES: dict[str, list[str | sa.TextClause]] = {
    "ix_images_queue_flagged": ["folder_id", "missing", "flagged", sa.text("lower(rel_path)"), "id"],
    "ix_images_trace_serial": ["folder_id", sa.text("lower(trace_serial)")],
    "ix_images_trace_lot": ["folder_id", sa.text("lower(trace_lot)")]}
FTS = "images_name_fts"
FTS_TRIGGERS = {
    "images_name_fts_insert": f"AFTER INSERT ON images BEGIN "
                              f"INSERT INTO {FTS}(rowid, rel_path) VALUES (new.id, new.rel_path); END",
    "images_name_fts_delete": f"AFTER DELETE ON images BEGIN "
                              f"INSERT INTO {FTS}({FTS}, rowid, rel_path) VALUES ('delete', old.id, old.rel_path); END",
    "images_name_fts_update": f"AFTER UPDATE OF rel_path ON images BEGIN "
                              f"INSERT INTO {FTS}({FTS}, rowid, rel_path) VALUES ('delete', old.id, old.rel_path); "
                              f"INSERT INTO {FTS}(rowid, rel_path) VALUES (new.id, new.rel_path); END"}

# Plain ADD/DROP COLUMN, never batch mode (SQLite's batch copy would lose the expression indexes).


def _trigram_fts_available() -> bool:
    """Whether this SQLite library has FTS5 with the trigram tokenizer (3.34+)."""
    bind = op.get_bind()
    try:
        bind.exec_driver_sql("CREATE VIRTUAL TABLE temp.probe_trigram USING fts5(x, tokenize='trigram')")
    except sa.exc.DBAPIError:
        return False
    bind.exec_driver_sql("DROP TABLE temp.probe_trigram")
    return True


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("images", sa.Column("label_class", sa.String(length=255), nullable=True))
    name_type = sa.String(4096, collation="C") if postgres else sa.String(4096)
    op.add_column("predictions", sa.Column("name_key", name_type, nullable=True))
    op.execute("UPDATE images SET label_class = (SELECT r.class_name FROM label_revisions r "
               "WHERE r.image_id = images.id ORDER BY r.revision DESC LIMIT 1) "
               "WHERE EXISTS (SELECT 1 FROM label_revisions r WHERE r.image_id = images.id)")
    op.execute("UPDATE predictions SET name_key = (SELECT lower(i.rel_path) FROM images i "
               "WHERE i.id = predictions.image_id)")
    for name in OLD:
        op.drop_index(name, table_name="predictions")
    for name, columns in NEW.items():
        op.create_index(name, "predictions", columns)
    for name, columns in IMAGE_INDEXES.items():
        op.create_index(name, "images", columns)
    if not postgres and _trigram_fts_available():
        op.execute(f"CREATE VIRTUAL TABLE {FTS} USING fts5(rel_path, content='images', content_rowid='id', "
                   "tokenize='trigram')")
        op.execute(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")
        for name, body in FTS_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in FTS_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(f"DROP TABLE IF EXISTS {FTS}")
    for name in IMAGE_INDEXES:
        op.drop_index(name, table_name="images")
    for name in NEW:
        op.drop_index(name, table_name="predictions")
    for name, columns in OLD.items():
        op.create_index(name, "predictions", columns)
    op.drop_column("predictions", "name_key")
    op.drop_column("images", "label_class")
